//! Unit tests of the WAL: round trips, group commit, segment rolls, recovery from torn and
//! corrupt records, and refusing writes after a failed sync.

use std::sync::mpsc;

use bytes::Bytes;

use super::record::{parse_header, FRAME_HEADER};
use super::*;

fn data(stream_id: u64, offset: u64, payload: &[u8]) -> WalRecord {
    WalRecord::Data(DataRecord {
        stream_id,
        index: 0,
        epoch: 1,
        range_start: 0,
        offset,
        count: 1,
        confirmed: offset,
        crc: protocol::checksum(payload),
        payload: Bytes::copy_from_slice(payload),
    })
}

fn open(dir: &Path, segment_bytes: u64) -> (Wal, Recovered, Metrics) {
    let metrics = Metrics::default();
    let opts = WalOptions {
        segment_bytes,
        ..WalOptions::default()
    };
    let (wal, rec) = Wal::open(dir, opts, metrics.clone()).unwrap();
    (wal, rec, metrics)
}

/// Appends synchronously from a plain thread (the writer is a plain thread too).
fn append(wal: &Wal, rec: WalRecord) -> Result<Location, WalError> {
    let (tx, rx) = mpsc::channel();
    wal.submit(
        rec,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap()
}

/// Appends records at offsets `0..count` of `stream_id` (index 0), one offset each.
fn append_many(
    wal: &Wal,
    stream_id: u64,
    count: u64,
    payload: impl Fn(u64) -> Vec<u8>,
) -> Vec<Location> {
    (0..count)
        .map(|i| append(wal, data(stream_id, i, &payload(i))).unwrap())
        .collect()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rec, _) = open(dir.path(), 1 << 20);
    assert_eq!(rec.records, 0);
    let a = append(&wal, data(1, 0, b"first")).unwrap();
    let b = append(&wal, data(1, 1, b"second")).unwrap();
    assert_eq!(b.position, a.position + a.length as u64);
    assert_eq!(wal.read_blocking(a).unwrap(), data(1, 0, b"first"));
    let got = wal.read_data_blocking(&[a, b]).unwrap();
    assert_eq!(&got[1].payload[..], b"second");
    // A location that does not point at a record is an error, not a panic.
    let bad = Location {
        segment: a.segment,
        position: a.position + 3,
        length: a.length,
    };
    assert!(matches!(wal.read_blocking(bad), Err(WalError::Corrupt(..))));
    let missing = Location { segment: 99, ..a };
    assert!(wal.read_blocking(missing).is_err());
}

#[test]
fn group_commit_covers_many_appends_with_fewer_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, metrics) = open(dir.path(), 64 << 20);
    let n = 2000u64;
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        wal.submit(
            data(i % 4, i, &[i as u8; 100]),
            Box::new(move |r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    drop(tx);
    let mut done: Vec<(u64, Location)> = rx.iter().map(|(i, r)| (i, r.unwrap())).collect();
    assert_eq!(done.len() as u64, n);
    // Completed in submission order, at increasing positions.
    let order: Vec<u64> = done.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, (0..n).collect::<Vec<_>>());
    done.sort_by_key(|(_, l)| l.position);
    let syncs = metrics.fsyncs.get();
    assert!(syncs >= 1 && syncs < n, "{syncs} syncs for {n} appends");
    let (i, loc) = done[1234];
    assert_eq!(
        wal.read_blocking(loc).unwrap(),
        data(i % 4, i, &[i as u8; 100])
    );
}

#[test]
fn segments_roll_and_recover_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let locs;
    {
        let (wal, _, _) = open(dir.path(), 1000);
        locs = append_many(&wal, 5, 30, |_| vec![7u8; 200]);
        assert!(locs.last().unwrap().segment > locs[0].segment);
        // A segment never grows past the limit.
        for l in &locs {
            assert!(l.position + l.length as u64 <= 1000);
        }
        assert_eq!(
            wal.read_blocking(locs[29]).unwrap(),
            data(5, 29, &[7u8; 200])
        );
    }
    let (wal, rec, _) = open(dir.path(), 1000);
    assert_eq!(rec.records, 30);
    assert!(rec.segments > 1);
    assert!(rec.truncated.is_none());
    let range = &rec.ranges[&(5, 0)];
    assert_eq!(range.next, 30);
    assert_eq!(range.batches[&17].loc, locs[17]);
    let next = append(&wal, data(5, 30, b"after")).unwrap();
    assert!(next.segment >= locs[29].segment);
}

/// Descriptors this process holds open on files under `dir`.
fn open_files_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Reading every record of a WAL of 300 segments keeps at most MAX_OPEN_SEGMENTS of them open
/// (and the writer's), where every segment once stayed open for the life of the process, so
/// a busy server ran out of descriptors after about a thousand segments.
#[test]
fn reads_across_many_segments_hold_a_bounded_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path(), 1000);
    let locs = append_many(&wal, 5, 300 * 4, |_| vec![7u8; 200]);
    let segments = locs.last().unwrap().segment - locs[0].segment + 1;
    assert!(segments >= 300, "{segments} segments");
    for (i, loc) in locs.iter().enumerate().rev() {
        assert_eq!(
            wal.read_blocking(*loc).unwrap(),
            data(5, i as u64, &[7u8; 200])
        );
    }
    assert!(wal.open_segments() <= MAX_OPEN_SEGMENTS);
    let open = open_files_under(dir.path());
    assert!(
        open <= MAX_OPEN_SEGMENTS + 1 && open < segments as usize / 4,
        "{open} files open under the WAL dir after reading {segments} segments"
    );
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn recovery_after_truncated_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let last;
    {
        let (wal, _, _) = open(dir.path(), 1 << 20);
        append_many(&wal, 1, 10, |_| b"0123456789".to_vec());
        last = append(&wal, data(1, 10, b"torn record")).unwrap();
    }
    let seg = dir.path().join(segment_name(last.segment));
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last.position + last.length as u64 - 3).unwrap();
    drop(f);
    let (wal, rec, _) = open(dir.path(), 1 << 20);
    assert_eq!(rec.records, 10);
    assert_eq!(rec.ranges[&(1, 0)].next, 10);
    assert_eq!(rec.truncated.as_ref().unwrap().0.position, last.position);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), last.position);
    // Appends continue right after the last good record and survive another restart.
    let again = append(&wal, data(1, 10, b"rewritten")).unwrap();
    assert_eq!(again.position, last.position);
    drop(wal);
    let (_, rec, _) = open(dir.path(), 1 << 20);
    assert_eq!(rec.records, 11);
    assert_eq!(rec.ranges[&(1, 0)].next, 11);
}

use std::fs::OpenOptions;

#[test]
fn recovery_after_flipped_bit_discards_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let locs;
    {
        let (wal, _, _) = open(dir.path(), 600);
        locs = append_many(&wal, 2, 12, |i| vec![i as u8; 150]);
    }
    // Flip one bit in the payload of record 4 (in the first segment or two).
    let bad = locs[4];
    let seg = dir.path().join(segment_name(bad.segment));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[bad.position as usize + 70] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let later_segments = locs.iter().filter(|l| l.segment > bad.segment).count();
    assert!(later_segments > 0);

    let (wal, rec, _) = open(dir.path(), 600);
    assert_eq!(rec.records, 4);
    assert_eq!(rec.ranges[&(2, 0)].next, 4);
    assert!(!rec.discarded.is_empty());
    assert!(rec.lost_data);
    assert!(wal_files(dir.path())
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".discarded")));
    let again = append(&wal, data(2, 4, b"again")).unwrap();
    assert_eq!((again.segment, again.position), (bad.segment, bad.position));
    drop(wal);
    let (_, rec, _) = open(dir.path(), 600);
    assert_eq!(rec.records, 5);
}

/// A bad record followed, further than one group commit can span, by good ones was synced
/// (a crash tears only the last group): recovery says data was lost, so the server does not
/// vouch for how far it held its ranges. A bad record near the end is a torn tail and loses
/// nothing acknowledged. Before, both were taken for a torn tail.
#[test]
fn corruption_before_the_unsynced_tail_is_reported_as_lost_data() {
    let small = WalOptions {
        segment_bytes: 1 << 20,
        max_group_bytes: 2048,
        max_record_bytes: 2048,
        max_bytes: None,
    };
    let write = |dir: &Path| {
        let (wal, _) = Wal::open(dir, small.clone(), Metrics::default()).unwrap();
        append_many(&wal, 4, 100, |i| vec![i as u8; 200])
    };
    let flip = |dir: &Path, loc: Location| {
        let seg = dir.join(segment_name(loc.segment));
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[loc.position as usize + 60] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
    };
    // Record 10 of 100 (about 2 KB in, 20 KB of good records after it: beyond the window).
    let dir = tempfile::tempdir().unwrap();
    let locs = write(dir.path());
    assert!(locs.iter().all(|l| l.segment == locs[0].segment));
    flip(dir.path(), locs[10]);
    let (_, rec) = Wal::open(dir.path(), small.clone(), Metrics::default()).unwrap();
    assert_eq!(rec.records, 10);
    assert!(rec.discarded.is_empty());
    assert!(
        rec.lost_data,
        "corruption followed by synced records was taken for a torn tail"
    );

    // Record 95 of 100: within one group of the end, a torn tail.
    let dir = tempfile::tempdir().unwrap();
    let locs = write(dir.path());
    flip(dir.path(), locs[95]);
    let (_, rec) = Wal::open(dir.path(), small, Metrics::default()).unwrap();
    assert_eq!(rec.records, 95);
    assert!(!rec.lost_data);
}

#[test]
fn garbage_length_is_treated_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let loc;
    {
        let (wal, _, _) = open(dir.path(), 1 << 20);
        loc = append(&wal, data(3, 0, b"good")).unwrap();
    }
    let seg = dir.path().join(segment_name(loc.segment));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5]);
    std::fs::write(&seg, &bytes).unwrap();
    let (_, rec, _) = open(dir.path(), 1 << 20);
    assert_eq!(rec.records, 1);
    assert_eq!(rec.tail_len, loc.length as u64);
}

#[test]
fn a_failed_sync_fails_the_group_and_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, metrics) = open(dir.path(), 1 << 20);
    append(&wal, data(1, 0, b"ok")).unwrap();
    assert!(wal.is_healthy());
    wal.inject_fault();
    assert!(matches!(
        append(&wal, data(1, 1, b"lost")),
        Err(WalError::Io(_))
    ));
    assert!(!wal.is_healthy());
    assert_eq!(metrics.wal_failed.get(), 1);
    assert!(matches!(
        append(&wal, data(1, 2, b"refused")),
        Err(WalError::Failed(_))
    ));
    let e: protocol::RpcError = WalError::Failed("x".into()).into();
    assert_eq!(e.code, protocol::ErrorCode::StorageError);
}

/// Spoiled record bodies through the decoder, and spoiled segment files through recovery:
/// each is read up to its first bad record, never a crash.
#[test]
fn fuzz_wal_records_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path(), 1 << 20);
    append_many(&wal, 7, 20, |i| vec![i as u8; (i as usize * 13) % 200]);
    drop(wal);
    let files = wal_files(dir.path());
    let segment = files
        .iter()
        .find(|f| std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false))
        .expect("a segment with records")
        .clone();
    let seed_file = std::fs::read(&segment).unwrap();
    let mut bodies = Vec::new();
    let mut pos = 0;
    while pos + FRAME_HEADER <= seed_file.len() {
        let header: [u8; FRAME_HEADER] = seed_file[pos..pos + FRAME_HEADER].try_into().unwrap();
        let (len, _) = parse_header(&header);
        if len == 0 || pos + FRAME_HEADER + len > seed_file.len() {
            break;
        }
        bodies.push(seed_file[pos + FRAME_HEADER..pos + FRAME_HEADER + len].to_vec());
        pos += FRAME_HEADER + len;
    }
    let mut budget = protocol::fuzz::Budget::new("wal record bodies", 20_000);
    while budget.another() {
        let body = budget.spoil(&bodies);
        let _ = WalRecord::decode_meta(&body);
        let _ = WalRecord::decode_bytes(Bytes::from(body));
    }
    let seeds = vec![seed_file];
    let mut budget = protocol::fuzz::Budget::new("wal segment recovery", 300);
    while budget.another() {
        std::fs::write(&segment, budget.spoil(&seeds)).unwrap();
        recovery::recover(dir.path(), WalOptions::default().torn_window())
            .expect("recovery reads what it can");
    }
}

/// With a budget, the WAL says it is full once segments on disk reach it; reclaiming closed
/// segments deletes their files and frees the space; the open segment is never reclaimed;
/// a WAL reopened after a reclaim recovers what is left.
#[test]
fn a_budgeted_wal_fills_and_reclaiming_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 64 * 1024,
        max_bytes: Some(256 * 1024),
        ..WalOptions::default()
    };
    let metrics = Metrics::default();
    let (wal, _) = Wal::open(dir.path(), opts.clone(), metrics.clone()).unwrap();
    let mut written = 0;
    while !wal.is_full() {
        append(&wal, data(1, written, &[7u8; 4000])).unwrap();
        written += 1;
        assert!(written < 1000, "never full");
    }
    assert!(wal.used_bytes() >= 256 * 1024);
    let current = wal.current_segment();
    assert!(current >= 4);
    let (segments, bytes) = wal.reclaim_below(u64::MAX).unwrap();
    assert_eq!(segments as u64, current - 1, "every closed segment goes");
    assert!(bytes > 0);
    assert!(!wal.is_full());
    assert_eq!(metrics.wal_segments_reclaimed.get(), segments as u64);
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 1, "only the open segment is left");
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), opts, Metrics::default()).unwrap();
    let kept = &recovered.ranges[&(1, 0)];
    assert_eq!(kept.next, written);
    assert!(*kept.batches.keys().next().unwrap() > 0);
}
