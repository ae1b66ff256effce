//! Test support for the fuzz tests each crate runs over the decoders that read untrusted
//! bytes (Kafka requests, record batches, RPC frames, WAL records, meta and group records):
//! how long to run and how to spoil a valid input. Tests only; no process calls it.
//!
//! A run is a few thousand inputs by default (seconds in CI); with `STRATA_FUZZ_SECS` set it
//! runs that long instead, which is how `scripts/fuzz` runs them for minutes. A crash (a
//! panic, or an abort such as a failed allocation) fails the test; each test prints its
//! figure as `fuzz NAME: N inputs`.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many inputs a fuzz test tries.
pub struct Budget {
    name: &'static str,
    deadline: Option<Instant>,
    left: u64,
    /// Inputs tried so far.
    pub runs: u64,
    pub rng: StdRng,
}

impl Budget {
    /// `default_runs` inputs, or `STRATA_FUZZ_SECS` seconds when that is set. The seed is
    /// printed so a crash can be replayed with `STRATA_FUZZ_SEED`.
    pub fn new(name: &'static str, default_runs: u64) -> Budget {
        let secs = std::env::var("STRATA_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let seed = std::env::var("STRATA_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| rand::rng().random());
        eprintln!("fuzz {name}: seed {seed}");
        Budget {
            name,
            deadline: secs.map(|s| Instant::now() + Duration::from_secs(s)),
            left: default_runs,
            runs: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether to try one more input.
    pub fn another(&mut self) -> bool {
        let more = match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => self.left > 0,
        };
        if more {
            self.left = self.left.saturating_sub(1);
            self.runs += 1;
        }
        more
    }

    /// A spoiled copy of one of `valid` (or random bytes now and then): truncated, bytes
    /// flipped, a huge count or varint written over it, a piece duplicated or removed.
    pub fn spoil(&mut self, valid: &[Vec<u8>]) -> Vec<u8> {
        let rng = &mut self.rng;
        if valid.is_empty() || rng.random_ratio(1, 16) {
            let len = rng.random_range(0..256);
            return (0..len).map(|_| rng.random()).collect();
        }
        let mut b = valid[rng.random_range(0..valid.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..6) {
                0 => b.truncate(at),
                1 => b[at] = rng.random(),
                2 => {
                    let huge: [u8; 4] = match rng.random_range(0..3) {
                        0 => i32::MAX.to_be_bytes(),
                        1 => (-2i32).to_be_bytes(),
                        _ => (rng.random::<u32>() >> rng.random_range(0..32)).to_be_bytes(),
                    };
                    let end = (at + 4).min(b.len());
                    b[at..end].copy_from_slice(&huge[..end - at]);
                }
                3 => {
                    let varint = [0xff, 0xff, 0xff, 0xff, 0x0f];
                    b.splice(at..at, varint);
                }
                4 => {
                    let end = rng.random_range(at..b.len().min(at + 64) + 1);
                    let piece = b[at..end].to_vec();
                    b.splice(at..at, piece);
                }
                _ => {
                    let end = rng.random_range(at..b.len().min(at + 16) + 1);
                    b.drain(at..end);
                }
            }
        }
        b
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!("fuzz {}: {} inputs", self.name, self.runs);
        }
    }
}
