//! WAL recovery at start, before anything is served: a sequential scan of every segment in
//! order that stops at the first torn or corrupt record (short read, impossible length, CRC
//! mismatch, undecodable body), truncates that segment there, moves every later segment aside
//! (`*.discarded`), and rebuilds the per-range index. It tells a torn tail (what a crash
//! leaves of the last, unsynced group commit) from corruption of synced data: a bad record
//! followed, further than one group commit can span, by a good one was synced, so what
//! followed it is lost and [`Recovered::lost_data`] says so. It never panics on disk contents
//! and never serves data past the last good record.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::record::{parse_header, WalRecord, FRAME_HEADER, MAX_BODY};
use super::{segment_name, Location};

/// One batch in a range's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry {
    pub count: u32,
    /// CRC32C of the payload.
    pub crc: u32,
    pub payload_len: u32,
    pub loc: Location,
}

/// What the WAL holds of one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRange {
    pub stream_id: u64,
    pub index: u32,
    pub epoch: u64,
    pub start: u64,
    /// End of the local data: the next offset the range would accept.
    pub next: u64,
    pub confirmed: u64,
    pub sealed: bool,
    pub final_end: Option<u64>,
    pub batches: BTreeMap<u64, BatchEntry>,
}

impl RecoveredRange {
    pub fn new(stream_id: u64, index: u32, epoch: u64, start: u64) -> Self {
        RecoveredRange {
            stream_id,
            index,
            epoch,
            start,
            next: start,
            confirmed: start,
            sealed: false,
            final_end: None,
            batches: BTreeMap::new(),
        }
    }
}

/// The result of recovery.
#[derive(Debug, Default)]
pub struct Recovered {
    pub ranges: BTreeMap<(u64, u32), RecoveredRange>,
    /// Good records found.
    pub records: u64,
    /// Bytes of good records.
    pub bytes: u64,
    pub segments: usize,
    /// Where the scan stopped early, and why.
    pub truncated: Option<(Location, String)>,
    /// Later segments moved aside after a corrupt record.
    pub discarded: Vec<PathBuf>,
    /// Records that may have been acknowledged were dropped (segments discarded, or a
    /// corrupt record found well before the end of the last segment): this server cannot
    /// tell how far it held the ranges it knew.
    pub lost_data: bool,
    /// The segment appends continue in, and its length.
    pub tail_segment: u64,
    pub tail_len: u64,
}

/// Every segment in `dir` with its length, in order.
pub fn segment_lengths(dir: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    list_segments(dir)?
        .into_iter()
        .map(|seq| Ok((seq, std::fs::metadata(dir.join(segment_name(seq)))?.len())))
        .collect()
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(seq) = stem.parse::<u64>() {
                seqs.push(seq);
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

enum ScanEnd {
    Clean(u64),
    Bad(u64, String),
}

/// Reads up to `buf.len()` bytes; returns how many were read (less only at end of file).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn scan_segment(
    seq: u64,
    file: &File,
    out: &mut Recovered,
    body: &mut Vec<u8>,
) -> std::io::Result<ScanEnd> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(4 * 1024 * 1024, file);
    let mut pos = 0u64;
    loop {
        let mut header = [0u8; FRAME_HEADER];
        let n = read_full(&mut reader, &mut header)?;
        if n == 0 {
            return Ok(ScanEnd::Clean(pos));
        }
        if n < FRAME_HEADER {
            return Ok(ScanEnd::Bad(pos, format!("torn header ({n} bytes)")));
        }
        let (len, crc) = parse_header(&header);
        if len == 0 || len > MAX_BODY || pos + (FRAME_HEADER + len) as u64 > file_len {
            return Ok(ScanEnd::Bad(
                pos,
                format!("record length {len} is impossible here (torn or corrupt)"),
            ));
        }
        body.resize(len, 0);
        if read_full(&mut reader, body)? < len {
            return Ok(ScanEnd::Bad(pos, "torn body".into()));
        }
        if protocol::checksum(body) != crc {
            return Ok(ScanEnd::Bad(pos, "CRC mismatch".into()));
        }
        let (record, payload_len) = match WalRecord::decode_meta(body) {
            Ok(r) => r,
            Err(e) => return Ok(ScanEnd::Bad(pos, format!("undecodable record: {e}"))),
        };
        let loc = Location {
            segment: seq,
            position: pos,
            length: (FRAME_HEADER + len) as u32,
        };
        apply(out, record, payload_len, loc);
        out.records += 1;
        out.bytes += loc.length as u64;
        pos += loc.length as u64;
    }
}

fn apply(out: &mut Recovered, record: WalRecord, payload_len: usize, loc: Location) {
    match record {
        WalRecord::Data(d) => {
            let range = out.ranges.entry((d.stream_id, d.index)).or_insert_with(|| {
                RecoveredRange::new(d.stream_id, d.index, d.epoch, d.range_start)
            });
            range.epoch = range.epoch.max(d.epoch);
            range.next = range.next.max(d.offset + d.count as u64);
            range.confirmed = range.confirmed.max(d.confirmed);
            range.batches.insert(
                d.offset,
                BatchEntry {
                    count: d.count,
                    crc: d.crc,
                    payload_len: payload_len as u32,
                    loc,
                },
            );
        }
        WalRecord::Seal(s) => {
            let range = out.ranges.entry((s.stream_id, s.index)).or_insert_with(|| {
                RecoveredRange::new(s.stream_id, s.index, s.epoch, s.range_start)
            });
            range.epoch = range.epoch.max(s.epoch);
            range.sealed = true;
            if s.final_end.is_some() {
                range.final_end = s.final_end;
            }
        }
    }
}

/// Whether a good record starts anywhere in `file` at or after `from`: the bad record
/// before it was followed by more than a torn group commit. Candidate positions whose header
/// is impossible are skipped at once; CRCs are computed over at most [`SEARCH_BUDGET`] bytes,
/// after which the answer is yes (the safe side: data is treated as lost).
fn good_record_after(file: &File, from: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if from >= len {
        return Ok(false);
    }
    let mut data = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut data, from)?;
    let mut budget = SEARCH_BUDGET;
    for p in 0..data.len().saturating_sub(FRAME_HEADER) {
        let mut header = [0u8; FRAME_HEADER];
        header.copy_from_slice(&data[p..p + FRAME_HEADER]);
        let (body_len, crc) = parse_header(&header);
        let Some(body) = data.get(p + FRAME_HEADER..p + FRAME_HEADER + body_len) else {
            continue;
        };
        if body_len == 0 {
            continue;
        }
        if budget < body_len {
            return Ok(true);
        }
        budget -= body_len;
        if protocol::checksum(body) == crc && WalRecord::decode_meta(body).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Bytes [`good_record_after`] checksums at most.
const SEARCH_BUDGET: usize = 1 << 30;

/// Scans `dir` (created if missing) and leaves it ready for appends after the last good record.
/// `torn_window` is the most a crash can leave unsynced at a segment's end.
pub fn recover(dir: &Path, torn_window: u64) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let seqs = list_segments(dir)?;
    let mut out = Recovered {
        tail_segment: seqs.last().copied().unwrap_or(1),
        ..Recovered::default()
    };
    let mut body = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_name(seq));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        out.segments += 1;
        match scan_segment(seq, &file, &mut out, &mut body)? {
            ScanEnd::Clean(len) => {
                out.tail_segment = seq;
                out.tail_len = len;
            }
            ScanEnd::Bad(pos, why) => {
                let last = i + 1 == seqs.len();
                let synced = !last || good_record_after(&file, pos.saturating_add(torn_window))?;
                if synced {
                    tracing::error!(segment = seq, position = pos, reason = %why,
                        "WAL corrupt before its unsynced tail: records after it are lost");
                    out.lost_data = true;
                } else {
                    tracing::warn!(segment = seq, position = pos, reason = %why,
                        "WAL recovery stops at a torn tail; truncating there");
                }
                file.set_len(pos)?;
                file.sync_all()?;
                for &later in &seqs[i + 1..] {
                    let from = dir.join(segment_name(later));
                    let to = dir.join(format!("{}.discarded", segment_name(later)));
                    std::fs::rename(&from, &to)?;
                    tracing::warn!(path = %to.display(), "WAL segment after the corrupt record moved aside");
                    out.discarded.push(to);
                }
                File::open(dir)?.sync_all()?;
                out.truncated = Some((
                    Location {
                        segment: seq,
                        position: pos,
                        length: 0,
                    },
                    why,
                ));
                out.tail_segment = seq;
                out.tail_len = pos;
                break;
            }
        }
    }
    // What survived a process crash may sit only in the page cache: make it durable before
    // anything built on it is served or reported.
    if out.segments > 0 {
        let tail = OpenOptions::new()
            .write(true)
            .open(dir.join(segment_name(out.tail_segment)))?;
        tail.sync_data()?;
    }
    Ok(out)
}
