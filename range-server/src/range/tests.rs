//! Unit tests of the range rules (RangeState) and of the range actor over a real WAL.

use prometheus_client::metrics::gauge::Gauge;

use super::*;
use crate::wal::WalOptions;

fn append(offset: u64, count: u32, epoch: u64, payload: &[u8]) -> Append {
    Append {
        stream_id: 1,
        index: 0,
        epoch,
        range_start: 100,
        offset,
        count,
        confirmed: 0,
        crc: protocol::checksum(payload),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn entry(count: u32, len: u32) -> BatchEntry {
    BatchEntry {
        count,
        crc: 0,
        payload_len: len,
        loc: Location {
            segment: 1,
            position: 0,
            length: 0,
        },
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, RpcError>) -> ErrorCode {
    r.unwrap_err().code
}

/// The error code `s` refuses `append` with.
fn refused(s: &mut RangeState, append: Append) -> ErrorCode {
    code(s.check_append(&append))
}

#[test]
fn append_rules_give_each_error_code() {
    let mut s = RangeState::new(1, 0, 5, 100);
    // Accept at next.
    s.check_append(&append(100, 10, 5, b"a")).unwrap();
    assert_eq!(s.next, 110);
    // Stale epoch.
    assert_eq!(refused(&mut s, append(110, 1, 4, b"x")), ErrorCode::Fenced);
    // Bad CRC.
    let mut bad = append(110, 1, 5, b"x");
    bad.crc ^= 1;
    assert_eq!(code(s.check_append(&bad)), ErrorCode::BadChecksum);
    // In flight (accepted, not durable yet).
    assert_eq!(
        refused(&mut s, append(100, 10, 5, b"a")),
        ErrorCode::InFlight
    );
    // Overtaking.
    assert_eq!(
        refused(&mut s, append(111, 1, 5, b"x")),
        ErrorCode::Overtaking
    );
    // Durable now: a repeat is already committed.
    s.batch_durable(100, entry(10, 1));
    assert_eq!(s.durable, 110);
    assert_eq!(
        refused(&mut s, append(100, 10, 5, b"a")),
        ErrorCode::AlreadyCommitted
    );
    // A newer epoch is accepted and raises the range's.
    s.check_append(&append(110, 2, 7, b"b")).unwrap();
    assert_eq!(s.epoch, 7);
    assert_eq!(refused(&mut s, append(112, 1, 5, b"x")), ErrorCode::Fenced);
    // Wrong range start, empty batch.
    let mut other = append(112, 1, 7, b"x");
    other.range_start = 0;
    assert_eq!(code(s.check_append(&other)), ErrorCode::InvalidArgument);
    assert_eq!(
        refused(&mut s, append(112, 0, 7, b"x")),
        ErrorCode::InvalidArgument
    );
    // Sealed: refused, after the epoch check.
    s.seal(7, None).unwrap();
    assert_eq!(
        refused(&mut s, append(112, 1, 7, b"x")),
        ErrorCode::RangeSealed
    );
    assert_eq!(refused(&mut s, append(112, 1, 6, b"x")), ErrorCode::Fenced);
}

#[test]
fn seal_is_idempotent_and_fenced() {
    let mut s = RangeState::new(1, 0, 3, 0);
    s.check_append(&append(0, 4, 3, b"a")).map_err(|_| ()).ok();
    let mut s2 = RangeState::new(1, 0, 3, 100);
    s2.check_append(&append(100, 4, 3, b"a")).unwrap();
    s2.batch_durable(100, entry(4, 1));
    let r1 = s2.seal(4, None).unwrap();
    assert_eq!(r1.local_end, 104);
    assert_eq!(s2.epoch, 4);
    let r2 = s2.seal(4, None).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(code(s2.seal(3, None)), ErrorCode::Fenced);
    let r3 = s2.seal(5, Some(102)).unwrap();
    assert_eq!(r3.final_end, Some(102));
    s2.seal(5, Some(102)).unwrap();
    s2.seal(6, None).unwrap();
    assert_eq!(s2.final_end, Some(102));
    assert_eq!(code(s2.seal(6, Some(103))), ErrorCode::InvalidArgument);
    assert_eq!(code(s2.commit(5, 200)), ErrorCode::Fenced);
    drop(s);
}

/// A sealed range whose final end is known takes the appends that fill it up to that end
/// (a new writer copying the sealed tail to a replica that missed it), and nothing past it.
#[test]
fn a_sealed_range_is_filled_up_to_its_final_end_only() {
    let mut s = RangeState::new(1, 0, 1, 100);
    s.check_append(&append(100, 4, 1, b"a")).unwrap();
    s.batch_durable(100, entry(4, 1));
    s.seal(2, None).unwrap();
    // Sealed without a known end: nothing more.
    assert_eq!(
        refused(&mut s, append(104, 2, 2, b"b")),
        ErrorCode::RangeSealed
    );
    s.seal(2, Some(110)).unwrap();
    s.check_append(&append(104, 2, 2, b"b")).unwrap();
    s.batch_durable(104, entry(2, 1));
    assert_eq!(
        refused(&mut s, append(106, 6, 2, b"c")),
        ErrorCode::RangeSealed
    );
    s.check_append(&append(106, 4, 2, b"c")).unwrap();
    // The older writer stays fenced.
    assert_eq!(refused(&mut s, append(110, 1, 1, b"d")), ErrorCode::Fenced);
}

fn fetch(offset: u64, end: u64, max_bytes: u32) -> Fetch {
    Fetch {
        stream_id: 1,
        index: 0,
        offset,
        end,
        max_bytes,
    }
}

/// A range at 100 holding durable, unconfirmed batches at 100 (10 offsets), 110 (5), 115 (5)
/// and 120 (10).
fn four_durable_batches() -> RangeState {
    let mut s = RangeState::new(1, 0, 1, 100);
    for (off, count) in [(100u64, 10u32), (110, 5), (115, 5), (120, 10)] {
        s.check_append(&append(off, count, 1, b"p")).unwrap();
        s.batch_durable(off, entry(count, 100));
    }
    s
}

/// Once PD says the stream starts further on, the batches wholly below are no longer
/// indexed, reads below the start are refused, and the batch holding the start stays.
#[test]
fn trimming_forgets_the_batches_below_the_stream_start() {
    let mut s = four_durable_batches();
    s.confirmed = 130;
    assert_eq!(s.indexed_batches(), 4);
    s.trim_to(112);
    assert_eq!(s.indexed_batches(), 3);
    assert_eq!(
        code(s.plan_fetch(&fetch(105, u64::MAX, 1000))),
        ErrorCode::OffsetOutOfRange
    );
    let plan = s.plan_fetch(&fetch(112, u64::MAX, 1000)).unwrap();
    assert_eq!(plan.first().map(|(off, _)| *off), Some(110));
    s.trim_to(100); // never backwards
    assert_eq!(s.indexed_batches(), 3);
    s.trim_to(120);
    assert_eq!(s.indexed_batches(), 1);
    s.trim_to(130);
    assert_eq!(s.indexed_batches(), 0);
    // Appends go on at the end.
    s.check_append(&append(130, 1, 1, b"p")).unwrap();
    s.batch_durable(130, entry(1, 100));
    assert_eq!(s.indexed_batches(), 1);
}

/// However much a reader asks for, one answer holds at most what fits a frame (its first
/// batch always).
#[test]
fn fetch_answers_fit_a_frame_whatever_max_bytes_asks() {
    use protocol::range_rpc::{FETCH_BATCH_OVERHEAD, MAX_APPEND_BYTES, MAX_FETCH_BYTES};
    let mut s = RangeState::new(1, 0, 1, 100);
    // Six batches of 4 MiB: 24 MiB in all, more than a 16 MiB frame.
    let big = 4 << 20;
    for off in 100..106u64 {
        s.check_append(&append(off, 1, 1, b"p")).unwrap();
        s.batch_durable(off, entry(1, big));
    }
    s.commit(1, 106).unwrap();
    let plan = s.plan_fetch(&fetch(100, u64::MAX, u32::MAX)).unwrap();
    let bytes: u64 = plan
        .iter()
        .map(|(_, e)| e.payload_len as u64 + FETCH_BATCH_OVERHEAD)
        .sum();
    assert_eq!(plan.len(), 3);
    assert!(bytes <= MAX_FETCH_BYTES);
    // One batch as large as an append may be still comes back alone.
    let mut s = RangeState::new(1, 0, 1, 100);
    s.check_append(&append(100, 1, 1, b"p")).unwrap();
    s.batch_durable(100, entry(1, MAX_APPEND_BYTES as u32));
    s.commit(1, 101).unwrap();
    assert_eq!(
        s.plan_fetch(&fetch(100, u64::MAX, u32::MAX)).unwrap().len(),
        1
    );
}

#[test]
fn fetch_from_inside_a_batch_and_readable_end() {
    let mut s = four_durable_batches();
    // Nothing confirmed yet.
    assert_eq!(
        code(s.plan_fetch(&fetch(100, u64::MAX, 1000))),
        ErrorCode::OffsetOutOfRange
    );
    s.commit(1, 120).unwrap();
    assert_eq!(s.readable_end(), 120);
    let plan = s.plan_fetch(&fetch(112, u64::MAX, 10_000)).unwrap();
    assert_eq!(plan.iter().map(|p| p.0).collect::<Vec<_>>(), vec![110, 115]);
    // max_bytes: at least one batch, then stop before exceeding.
    let plan = s.plan_fetch(&fetch(100, u64::MAX, 150)).unwrap();
    assert_eq!(plan.len(), 1);
    let plan = s.plan_fetch(&fetch(100, u64::MAX, 1)).unwrap();
    assert_eq!(plan.len(), 1);
    // end bound.
    let plan = s.plan_fetch(&fetch(100, 115, 10_000)).unwrap();
    assert_eq!(plan.iter().map(|p| p.0).collect::<Vec<_>>(), vec![100, 110]);
    assert_eq!(
        code(s.plan_fetch(&fetch(99, u64::MAX, 1))),
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        code(s.plan_fetch(&fetch(120, u64::MAX, 1))),
        ErrorCode::OffsetOutOfRange
    );
    // A final end caps reads even past confirmed data.
    s.seal(2, Some(115)).unwrap();
    assert_eq!(s.readable_end(), 115);
    let plan = s.plan_fetch(&fetch(100, u64::MAX, 10_000)).unwrap();
    assert_eq!(plan.iter().map(|p| p.0).collect::<Vec<_>>(), vec![100, 110]);
    assert_eq!(s.report().sealed_end, Some(115));
    // Past a sealed range's end: nothing, but an answer (carrying sealed_end), not an error.
    assert!(s
        .plan_fetch(&fetch(120, u64::MAX, 10_000))
        .unwrap()
        .is_empty());
}

#[test]
fn a_reader_with_the_sealed_end_from_pd_reads_past_the_last_commit() {
    // The writer confirmed only up to 110 here; PD sealed the range at 120 and this replica
    // never got the seal notice. A reader that names end 120 (from PD) reads all of it.
    let mut s = four_durable_batches();
    s.commit(1, 110).unwrap();
    let open = s.plan_fetch(&fetch(100, u64::MAX, 10_000)).unwrap();
    assert_eq!(open.iter().map(|p| p.0).collect::<Vec<_>>(), vec![100]);
    let sealed = s.plan_fetch(&fetch(100, 120, 10_000)).unwrap();
    assert_eq!(
        sealed.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![100, 110, 115]
    );
    assert_eq!(s.readable_end_for(120), 120);
    // Never past local durable data.
    assert_eq!(s.readable_end_for(200), 130);
}

// ---- actor tests with a real WAL ----

struct Fixture {
    _dir: tempfile::TempDir,
    wal: Wal,
    cache: Arc<TailCache>,
    metrics: Metrics,
}

fn fixture(cache_bytes: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default(), metrics.clone()).unwrap();
    Fixture {
        _dir: dir,
        wal,
        cache: Arc::new(TailCache::new(cache_bytes, Gauge::default())),
        metrics,
    }
}

fn start(f: &Fixture) -> Addr<RangeActor> {
    RangeActor::new(
        RangeState::new(1, 0, 1, 100),
        f.wal.clone(),
        f.cache.clone(),
        f.metrics.clone(),
        Default::default(),
    )
    .start()
}

async fn ask_append(addr: &Addr<RangeActor>, req: Append) -> Result<AppendResponse, RpcError> {
    forward(addr, req).await.unwrap()
}

fn send_append(
    addr: &Addr<RangeActor>,
    req: Append,
) -> oneshot::Receiver<Result<AppendResponse, RpcError>> {
    forward(addr, req)
}

async fn ask_fetch(addr: &Addr<RangeActor>, req: Fetch) -> Result<FetchResponse, RpcError> {
    forward(addr, req).await.unwrap()
}

async fn ask_seal(
    addr: &Addr<RangeActor>,
    epoch: u64,
    end: Option<u64>,
) -> Result<SealResponse, RpcError> {
    let req = Seal {
        stream_id: 1,
        index: 0,
        epoch,
        range_start: 100,
        end,
        node: 0,
    };
    forward(addr, req).await.unwrap()
}

#[actix::test]
async fn pipelined_appends_are_answered_in_order_and_fetched_back() {
    let f = fixture(1 << 20);
    let addr = start(&f);
    let mut rxs = Vec::new();
    for i in 0..200u64 {
        let mut req = append(100 + i * 2, 2, 1, format!("batch-{i}").as_bytes());
        req.confirmed = 100 + i * 2;
        rxs.push(send_append(&addr, req));
    }
    let mut last = 0;
    for (i, rx) in rxs.into_iter().enumerate() {
        let durable = rx.await.unwrap().unwrap().durable;
        assert!(durable >= 100 + (i as u64 + 1) * 2 && durable > last);
        last = durable;
    }
    assert_eq!(last, 500);
    assert!(f.metrics.fsyncs.get() < 200);
    // Confirmed = 498 from the last piggyback; fetch from inside batch 10 (offsets 120..122).
    let resp = ask_fetch(&addr, fetch(121, u64::MAX, u32::MAX))
        .await
        .unwrap();
    assert_eq!(resp.readable_end, 498);
    assert_eq!(resp.batches[0].offset, 120);
    assert_eq!(resp.batches[0].payload, b"batch-10".to_vec());
    assert_eq!(resp.batches.last().unwrap().offset, 496);
    for b in &resp.batches {
        assert_eq!(protocol::checksum(&b.payload), b.crc);
    }
    // Duplicates of durable data.
    let e = ask_append(&addr, append(100, 2, 1, b"batch-0"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyCommitted);
}

#[actix::test]
async fn fetch_reads_the_wal_when_the_cache_evicted_the_batch() {
    // Room for two of the batches.
    let budget = 2 * (40 + crate::cache::ENTRY_OVERHEAD) + 10;
    let f = fixture(budget);
    let addr = start(&f);
    for i in 0..10u64 {
        let mut req = append(100 + i, 1, 1, &[i as u8; 40]);
        req.confirmed = 100 + i;
        ask_append(&addr, req).await.unwrap();
    }
    assert!(f.cache.bytes() <= budget);
    let resp = ask_fetch(&addr, fetch(100, u64::MAX, u32::MAX))
        .await
        .unwrap();
    assert_eq!(resp.batches.len(), 9);
    for (i, b) in resp.batches.iter().enumerate() {
        assert_eq!(b.payload, vec![i as u8; 40]);
    }
    assert!(f.metrics.fetch_disk_reads.get() > 0);
    assert!(f.metrics.fetch_cache_hits.get() > 0);
}

#[actix::test]
async fn seal_waits_for_earlier_appends_and_is_idempotent() {
    let f = fixture(1 << 20);
    let addr = start(&f);
    let a = send_append(&addr, append(100, 5, 1, b"one"));
    let b = send_append(&addr, append(105, 5, 1, b"two"));
    let sealed = ask_seal(&addr, 1, None).await.unwrap();
    assert_eq!(sealed.local_end, 110);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(ask_seal(&addr, 1, None).await.unwrap().local_end, 110);
    let e = ask_append(&addr, append(110, 1, 1, b"x"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::RangeSealed);
    assert_eq!(
        ask_seal(&addr, 0, None).await.unwrap_err().code,
        ErrorCode::Fenced
    );
    assert_eq!(ask_seal(&addr, 2, Some(105)).await.unwrap().local_end, 110);
    let resp = ask_fetch(&addr, fetch(100, u64::MAX, u32::MAX))
        .await
        .unwrap();
    assert_eq!(resp.sealed_end, Some(105));
    assert_eq!(resp.readable_end, 105);
    assert_eq!(resp.batches.len(), 1);
}

#[actix::test]
async fn a_disk_fault_fails_appends_and_never_acks() {
    let f = fixture(1 << 20);
    let addr = start(&f);
    ask_append(&addr, append(100, 1, 1, b"ok")).await.unwrap();
    f.wal.inject_fault();
    let e = ask_append(&addr, append(101, 1, 1, b"lost"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StorageError);
    let e = ask_append(&addr, append(101, 1, 1, b"lost"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StorageError);
    assert!(!f.wal.is_healthy());
}

/// A batch that becomes durable wholly below what PD said the stream keeps elsewhere is not
/// indexed: it would never be read, only hold its WAL segment.
#[test]
fn a_batch_durable_below_the_trim_point_is_not_indexed() {
    let mut s = RangeState::new(1, 0, 1, 100);
    for offset in [100, 110, 120] {
        s.check_append(&append(offset, 10, 1, b"x")).unwrap();
    }
    s.batch_durable(100, entry(10, 1));
    s.trim_to(125);
    assert_eq!(s.indexed_batches(), 0);
    // In flight when the trim came: durable now, below the point.
    s.batch_durable(110, entry(10, 1));
    assert_eq!(s.indexed_batches(), 0);
    // Holding the point: kept.
    s.batch_durable(120, entry(10, 1));
    assert_eq!(s.indexed_batches(), 1);
    assert_eq!(s.durable, 130);
}

/// A replica left out of a range switch (it refused appends while its WAL was full) holds the
/// range's data but never heard the seal nor the last confirmed offset. When PD makes it the
/// range's uploader, the final end PD names makes that data offloadable; before, it answered
/// "nothing to upload" for good and the stream's offload (and every WAL holding the range)
/// was stuck.
#[actix::test]
async fn an_uploader_that_missed_the_seal_offloads_up_to_the_final_end() {
    let f = fixture(1 << 20);
    let addr = start(&f);
    let mut req = append(100, 10, 1, b"ten records");
    req.confirmed = 100;
    ask_append(&addr, req).await.unwrap();
    let status = |sealed_end| {
        let (tx, rx) = oneshot::channel();
        addr.do_send(OffloadStatusMsg {
            from: 100,
            sealed_end,
            reply: tx,
        });
        rx
    };
    // Without the final end, only what it knows confirmed (nothing) is offloadable.
    assert_eq!(status(None).await.unwrap().0, 100);
    // Sealed at 110 by the others: all of it.
    let (end, bytes) = status(Some(110)).await.unwrap();
    assert_eq!((end, bytes), (110, b"ten records".len() as u64));
}
