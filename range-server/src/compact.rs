//! Object compaction: merges a stream's runs of small slices (many small uploads) into one
//! object of that stream, dropping what lies below the stream's start, so that the object
//! count per stream stays bounded by its retained bytes over the target size, not by how
//! often it was uploaded.
//!
//! The offloader calls [`compact_streams`] for the streams it offloads (one compactor per
//! stream at a time, as PD assigns offload). A merge follows the upload order: reserve an
//! id, PUT, then `CompactObjects` at PD, which swaps the run for the new object in one Raft
//! command and refuses a run that changed meanwhile (its upload is then swept as an orphan).
//! The replaced objects are deleted by PD's collector once no stream names them. It reads
//! objects, never a range.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::model::{ObjectSlice, StreamId};
use protocol::object::ObjectBuilder;
use protocol::pd::{CompactObjects, DescribeStream, PrepareObject};
use protocol::{ErrorCode, RpcError};
use stream_client::{Objects, PdClient};

#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// A slice smaller than this is small; a merge stops once it holds this much, and a run
    /// that holds this much is merged.
    pub target_bytes: u64,
    /// A run of this many consecutive small slices is merged even below `target_bytes` (a
    /// quiet stream's many tiny uploads).
    pub min_slices: usize,
    /// A slice uploaded less than this long ago is left alone: merging waits until a burst
    /// is over (and data that retention soon drops is never rewritten).
    pub min_age: Duration,
}

impl Default for CompactConfig {
    fn default() -> Self {
        CompactConfig {
            target_bytes: 64 << 20,
            min_slices: 64,
            min_age: Duration::from_secs(600),
        }
    }
}

/// Most slices one merge takes.
const MAX_RUN: usize = 1000;

/// The first run of consecutive small slices worth merging: one that holds `target_bytes`
/// (cut there), or `min_slices` of them, at most [`MAX_RUN`]. A busy stream's merge thus
/// yields an object of the target size, never merged again (each byte is rewritten once,
/// not once per round as when every few slices were merged into a still-small one); a
/// quiet stream's slices are merged by count. Only slices at least `min_age` old (by
/// `now_ms`) count as small: a run ends at a young one. Slices wholly below
/// `start_offset` are not there (PD drops them).
pub fn plan(
    slices: &[ObjectSlice],
    config: &CompactConfig,
    now_ms: u64,
) -> Option<std::ops::Range<usize>> {
    let old_before = now_ms.saturating_sub(config.min_age.as_millis() as u64);
    let small = |s: &ObjectSlice| s.bytes < config.target_bytes && s.created_ms <= old_before;
    let mut i = 0;
    while i < slices.len() {
        if !small(&slices[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut bytes = 0;
        while j < slices.len()
            && small(&slices[j])
            && j - i < MAX_RUN
            && bytes < config.target_bytes
        {
            bytes += slices[j].bytes;
            j += 1;
        }
        let full = bytes >= config.target_bytes || j - i >= config.min_slices;
        if full && j - i >= 2 {
            return Some(i..j);
        }
        i = j.max(i + 1);
    }
    None
}

/// Merges one run of small slices of each stream in `streams` that has one. Errors of one
/// stream are logged and do not stop the others.
pub async fn compact_streams(
    config: &CompactConfig,
    objects: &Objects,
    pd: &PdClient,
    node: u64,
    streams: &BTreeSet<StreamId>,
) -> usize {
    let mut merged = 0;
    for &stream_id in streams {
        match compact_stream(config, objects, pd, node, stream_id).await {
            Ok(true) => merged += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(stream = stream_id, "compaction failed: {e}"),
        }
    }
    merged
}

async fn compact_stream(
    config: &CompactConfig,
    objects: &Objects,
    pd: &PdClient,
    node: u64,
    stream_id: StreamId,
) -> Result<bool, RpcError> {
    let info = pd.call(DescribeStream { stream_id }).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let Some(run) = plan(&info.objects, config, now_ms) else {
        return Ok(false);
    };
    let slices = &info.objects[run];
    let run_start = slices[0].start;
    let run_end = slices[slices.len() - 1].end;
    let mut builder = ObjectBuilder::new();
    let mut next = run_start.max(info.start_offset);
    let mut first = None;
    let mut bytes = 0u64;
    for slice in slices {
        while next < slice.end {
            let batches = objects.read(slice, stream_id, next, 8 << 20).await?;
            let mut moved = false;
            for b in batches {
                if b.end() <= next {
                    continue;
                }
                if first.is_some() && b.offset != next {
                    return Err(RpcError::new(
                        ErrorCode::Internal,
                        format!(
                            "stream {stream_id}: object {} has a gap at {next}",
                            slice.object_id
                        ),
                    ));
                }
                first.get_or_insert(b.offset);
                next = b.end();
                bytes += b.payload.len() as u64;
                builder.add(stream_id, &b).map_err(|e| {
                    RpcError::new(
                        ErrorCode::Internal,
                        format!("building a compacted object: {e}"),
                    )
                })?;
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
    let Some(first) = first else {
        return Ok(false);
    };
    if next != run_end {
        return Err(RpcError::new(
            ErrorCode::Internal,
            format!("stream {stream_id}: read to {next}, the run ends at {run_end}"),
        ));
    }
    let (object, _) = builder.finish();
    let size = object.len() as u64;
    let object_id = pd.call(PrepareObject { node_id: node }).await?;
    objects.put(object_id, object).await?;
    let replaces: Vec<u64> = slices.iter().map(|s| s.object_id).collect();
    let count = replaces.len();
    pd.call(CompactObjects {
        object_id,
        size,
        stream_id,
        replaces,
        start: first.max(run_start),
        end: run_end,
        bytes,
    })
    .await?;
    tracing::info!(
        stream = stream_id,
        slices = count,
        object = object_id,
        size,
        "merged small objects"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(object_id: u64, start: u64, bytes: u64) -> ObjectSlice {
        ObjectSlice {
            object_id,
            object_size: bytes,
            start,
            end: start + 10,
            bytes,
            created_ms: 0,
        }
    }

    /// Long after every slice of the tests was uploaded.
    const NOW: u64 = 3_600_000;

    #[test]
    fn runs_of_small_slices_are_planned_up_to_the_target() {
        let config = CompactConfig {
            target_bytes: 100,
            min_slices: 3,
            min_age: Duration::from_secs(60),
        };
        let big = |id, start| slice(id, start, 500);
        let small = |id, start| slice(id, start, 30);
        // Two small, one big, then five small: the five, cut at the target (4 x 30 >= 100).
        let slices = vec![
            small(1, 0),
            small(2, 10),
            big(3, 20),
            small(4, 30),
            small(5, 40),
            small(6, 50),
            small(7, 60),
            small(8, 70),
        ];
        assert_eq!(plan(&slices, &config, NOW), Some(3..7));
        assert_eq!(plan(&slices[..5], &config, NOW), None);
        assert_eq!(plan(&[], &config, NOW), None);
    }

    /// Merging every few slices into a still-small object merged that object again and
    /// again as the stream grew (a 30 s produce burst rewrote its data several times over).
    /// A run waits until it holds the target, or `min_slices` of them.
    #[test]
    fn a_run_below_the_target_and_the_count_waits() {
        let config = CompactConfig {
            target_bytes: 100,
            min_slices: 5,
            min_age: Duration::from_secs(60),
        };
        let small = |id, start| slice(id, start, 30);
        let three: Vec<_> = (0..3).map(|i| small(i, i * 10)).collect();
        assert_eq!(plan(&three, &config, NOW), None);
        let four: Vec<_> = (0..4).map(|i| small(i, i * 10)).collect();
        assert_eq!(plan(&four, &config, NOW), Some(0..4));
        let tiny: Vec<_> = (0..5).map(|i| slice(i, i * 10, 1)).collect();
        assert_eq!(plan(&tiny, &config, NOW), Some(0..5));
        assert_eq!(plan(&tiny[..4], &config, NOW), None);
    }

    /// A burst's uploads are merged once they are `min_age` old, not while the burst runs:
    /// a young slice is never taken and ends a run.
    #[test]
    fn young_slices_wait_for_the_minimum_age() {
        let config = CompactConfig {
            target_bytes: 100,
            min_slices: 3,
            min_age: Duration::from_secs(60),
        };
        let at = |id: u64, created_ms| ObjectSlice {
            created_ms,
            ..slice(id, id * 10, 30)
        };
        // Four slices uploaded 10 s apart, the last at NOW.
        let slices: Vec<_> = (0..4).map(|i| at(i, NOW - 30_000 + i * 10_000)).collect();
        assert_eq!(plan(&slices, &config, NOW), None);
        // 60 s later the first three are old enough, the fourth is not yet.
        assert_eq!(plan(&slices, &config, NOW + 50_000), Some(0..3));
        assert_eq!(plan(&slices, &config, NOW + 60_000), Some(0..4));
        // An old run behind a young slice is still found.
        let mut mixed = vec![at(0, NOW)];
        mixed.extend((1..4).map(|i| at(i, 0)));
        assert_eq!(plan(&mixed, &config, NOW), Some(1..4));
    }
}
