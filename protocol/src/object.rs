//! The layout of one object in object storage (the offload tier of issue 9): the batches of
//! one or more streams, in data blocks, then a sparse index and a fixed footer.
//!
//! ```text
//! object := block* index footer
//! block  := block header (stream u64, first offset u64, end offset u64, batches u32,
//!           bytes u32, CRC32C u32 of the batches) then its batches, each
//!           (offset u64, count u32, CRC32C u32 of the payload, length u32, payload)
//! index  := one entry per block (stream u64, first offset u64, end offset u64,
//!           position u64, length u32), sorted by (stream, first offset)
//! footer := index position u64, index length u32, index CRC32C u32, version u16,
//!           6 bytes zero, magic "STRATAOB" (32 bytes, little-endian integers)
//! ```
//!
//! A reader fetches the footer (the last [`FOOTER_LEN`] bytes), then the index, then only the
//! blocks it needs: the index is sparse (a block is [`BLOCK_TARGET`] bytes or so), so an object
//! of many streams is read with a few ranged GETs. Every part is checked (magic, CRC, bounds,
//! offsets contiguous) and a bad object is an error, never a panic or an allocation sized by
//! its own claims.
//!
//! Pure encoding and decoding: no I/O, no knowledge of where objects live or who writes them.

use bytes::{BufMut, Bytes, BytesMut};

/// Last eight bytes of every object.
pub const MAGIC: &[u8; 8] = b"STRATAOB";
pub const VERSION: u16 = 1;
pub const FOOTER_LEN: usize = 32;
const BLOCK_HEADER_LEN: usize = 8 + 8 + 8 + 4 + 4 + 4;
const BATCH_HEADER_LEN: usize = 8 + 4 + 4 + 4;
const INDEX_ENTRY_LEN: usize = 8 + 8 + 8 + 8 + 4;
/// A block is closed once it holds about this many bytes.
pub const BLOCK_TARGET: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("corrupt object: {0}")]
    Corrupt(String),
    #[error("batches must be added in stream and offset order without gaps: {0}")]
    OutOfOrder(String),
}

fn corrupt(what: impl Into<String>) -> ObjectError {
    ObjectError::Corrupt(what.into())
}

/// One stream batch as an object holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBatch {
    pub offset: u64,
    pub count: u32,
    /// CRC32C of `payload`.
    pub crc: u32,
    pub payload: Bytes,
}

impl ObjectBatch {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.count)
    }
}

/// Where the batches of `stream` in `[start, end)` lie in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub stream: u64,
    pub start: u64,
    pub end: u64,
    pub position: u64,
    pub length: u32,
}

/// The footer: where the index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub index_position: u64,
    pub index_length: u32,
    pub index_crc: u32,
}

/// Builds one object from batches added in (stream, offset) order, each stream's offsets
/// contiguous.
#[derive(Debug, Default)]
pub struct ObjectBuilder {
    out: BytesMut,
    index: Vec<IndexEntry>,
    /// The open block: (stream, first offset, batches encoded so far, how many).
    block: Option<(u64, u64, BytesMut, u32)>,
    last: Option<(u64, u64)>,
}

impl ObjectBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch of `stream`. Refused when it does not follow the previous batch (same
    /// stream, at its end; or a stream ordered after it), or is empty.
    pub fn add(&mut self, stream: u64, batch: &ObjectBatch) -> Result<(), ObjectError> {
        if batch.count == 0 {
            return Err(ObjectError::OutOfOrder(format!(
                "stream {stream}: empty batch at {}",
                batch.offset
            )));
        }
        let end = batch
            .offset
            .checked_add(u64::from(batch.count))
            .ok_or_else(|| {
                ObjectError::OutOfOrder(format!(
                    "stream {stream}: offset {} overflows",
                    batch.offset
                ))
            })?;
        match self.last {
            Some((s, e)) if s == stream && e != batch.offset => {
                return Err(ObjectError::OutOfOrder(format!(
                    "stream {stream}: batch at {} after the end {e}",
                    batch.offset
                )))
            }
            Some((s, _)) if s > stream => {
                return Err(ObjectError::OutOfOrder(format!(
                    "stream {stream} after stream {s}"
                )))
            }
            _ => {}
        }
        let same_block = matches!(&self.block, Some((s, _, bytes, _))
            if *s == stream && bytes.len() < BLOCK_TARGET);
        if !same_block {
            self.close_block();
            self.block = Some((stream, batch.offset, BytesMut::new(), 0));
        }
        if let Some((_, _, bytes, n)) = self.block.as_mut() {
            bytes.put_u64_le(batch.offset);
            bytes.put_u32_le(batch.count);
            bytes.put_u32_le(batch.crc);
            bytes.put_u32_le(batch.payload.len() as u32);
            bytes.put_slice(&batch.payload);
            *n += 1;
        }
        self.last = Some((stream, end));
        Ok(())
    }

    fn close_block(&mut self) {
        let Some((stream, start, bytes, batches)) = self.block.take() else {
            return;
        };
        let end = self.last.map_or(start, |(_, e)| e);
        let position = self.out.len() as u64;
        self.out.put_u64_le(stream);
        self.out.put_u64_le(start);
        self.out.put_u64_le(end);
        self.out.put_u32_le(batches);
        self.out.put_u32_le(bytes.len() as u32);
        self.out.put_u32_le(crate::checksum(&bytes));
        self.out.put_slice(&bytes);
        self.index.push(IndexEntry {
            stream,
            start,
            end,
            position,
            length: (BLOCK_HEADER_LEN + bytes.len()) as u32,
        });
    }

    /// Bytes written so far (blocks closed and open).
    pub fn len(&self) -> usize {
        self.out.len() + self.block.as_ref().map_or(0, |b| b.2.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole object and its index.
    pub fn finish(mut self) -> (Bytes, Vec<IndexEntry>) {
        self.close_block();
        let index_position = self.out.len() as u64;
        let mut index = BytesMut::with_capacity(self.index.len() * INDEX_ENTRY_LEN);
        for e in &self.index {
            index.put_u64_le(e.stream);
            index.put_u64_le(e.start);
            index.put_u64_le(e.end);
            index.put_u64_le(e.position);
            index.put_u32_le(e.length);
        }
        self.out.put_slice(&index);
        self.out.put_u64_le(index_position);
        self.out.put_u32_le(index.len() as u32);
        self.out.put_u32_le(crate::checksum(&index));
        self.out.put_u16_le(VERSION);
        self.out.put_slice(&[0; 6]);
        self.out.put_slice(MAGIC);
        (self.out.freeze(), self.index)
    }
}

/// Little-endian reads that fail instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ObjectError> {
        if self.buf.len() < n {
            return Err(corrupt(format!(
                "{} bytes left, {n} needed",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, ObjectError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn u32(&mut self) -> Result<u32, ObjectError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, ObjectError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

/// Reads the footer from the last [`FOOTER_LEN`] bytes of an object of `object_len` bytes.
pub fn parse_footer(tail: &[u8], object_len: u64) -> Result<Footer, ObjectError> {
    if tail.len() != FOOTER_LEN {
        return Err(corrupt(format!("footer of {} bytes", tail.len())));
    }
    let mut r = Reader { buf: tail };
    let index_position = r.u64()?;
    let index_length = r.u32()?;
    let index_crc = r.u32()?;
    let version = r.u16()?;
    r.take(6)?;
    if r.take(8)? != MAGIC {
        return Err(corrupt("no magic number: not a Strata object"));
    }
    if version != VERSION {
        return Err(corrupt(format!("object version {version}")));
    }
    let index_end = index_position.checked_add(u64::from(index_length));
    if index_end != object_len.checked_sub(FOOTER_LEN as u64) {
        return Err(corrupt(format!(
            "index at {index_position} of {index_length} bytes does not end at the footer"
        )));
    }
    Ok(Footer {
        index_position,
        index_length,
        index_crc,
    })
}

/// Reads the index (the `footer.index_length` bytes at `footer.index_position`).
pub fn parse_index(bytes: &[u8], footer: &Footer) -> Result<Vec<IndexEntry>, ObjectError> {
    if bytes.len() != footer.index_length as usize || !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
        return Err(corrupt(format!("index of {} bytes", bytes.len())));
    }
    if crate::checksum(bytes) != footer.index_crc {
        return Err(corrupt("index CRC mismatch"));
    }
    let mut r = Reader { buf: bytes };
    let mut out = Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN);
    let mut previous: Option<IndexEntry> = None;
    while !r.buf.is_empty() {
        let e = IndexEntry {
            stream: r.u64()?,
            start: r.u64()?,
            end: r.u64()?,
            position: r.u64()?,
            length: r.u32()?,
        };
        let fits = e
            .position
            .checked_add(u64::from(e.length))
            .is_some_and(|end| end <= footer.index_position);
        let ordered = previous.is_none_or(|p| (p.stream, p.end) <= (e.stream, e.start));
        if e.start >= e.end || !fits || !ordered || (e.length as usize) < BLOCK_HEADER_LEN {
            return Err(corrupt(format!("index entry {e:?} out of place")));
        }
        previous = Some(e);
        out.push(e);
    }
    Ok(out)
}

/// The entries of `index` holding offsets of `stream` at or after `offset`, in order.
pub fn entries_from(index: &[IndexEntry], stream: u64, offset: u64) -> &[IndexEntry] {
    let from = index.partition_point(|e| (e.stream, e.end) <= (stream, offset));
    let to = index.partition_point(|e| e.stream <= stream);
    &index[from..to.max(from)]
}

/// Reads one block (the `entry.length` bytes at `entry.position`), checking it against its
/// index entry, its CRC and every batch's CRC, and that its batches are contiguous.
pub fn parse_block(bytes: &[u8], entry: &IndexEntry) -> Result<Vec<ObjectBatch>, ObjectError> {
    if bytes.len() != entry.length as usize {
        return Err(corrupt(format!("block of {} bytes", bytes.len())));
    }
    let mut r = Reader { buf: bytes };
    let (stream, start, end) = (r.u64()?, r.u64()?, r.u64()?);
    let (batches, length, crc) = (r.u32()?, r.u32()?, r.u32()?);
    if (stream, start, end) != (entry.stream, entry.start, entry.end)
        || length as usize != r.buf.len()
    {
        return Err(corrupt(format!(
            "block header ({stream}, {start}..{end}, {length} bytes) does not match its index entry"
        )));
    }
    if crate::checksum(r.buf) != crc {
        return Err(corrupt("block CRC mismatch"));
    }
    // Every batch takes at least its header: a count the bytes cannot hold is a lie.
    let mut out = Vec::with_capacity((batches as usize).min(r.buf.len() / BATCH_HEADER_LEN));
    let mut next = start;
    while !r.buf.is_empty() {
        let (offset, count, batch_crc, len) = (r.u64()?, r.u32()?, r.u32()?, r.u32()?);
        let payload = Bytes::copy_from_slice(r.take(len as usize)?);
        if offset != next || count == 0 || crate::checksum(&payload) != batch_crc {
            return Err(corrupt(format!("batch at {offset} (expected {next})")));
        }
        next = offset
            .checked_add(u64::from(count))
            .ok_or_else(|| corrupt("offset overflow"))?;
        out.push(ObjectBatch {
            offset,
            count,
            crc: batch_crc,
            payload,
        });
    }
    if out.len() != batches as usize || next != end {
        return Err(corrupt(format!(
            "block claims {batches} batches to {end}, holds {} to {next}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads a whole object held in memory: its index and every block, checked.
pub fn parse_object(object: &[u8]) -> Result<Vec<(IndexEntry, Vec<ObjectBatch>)>, ObjectError> {
    let tail_at = object
        .len()
        .checked_sub(FOOTER_LEN)
        .ok_or_else(|| corrupt("shorter than a footer"))?;
    let footer = parse_footer(&object[tail_at..], object.len() as u64)?;
    let index_at = footer.index_position as usize;
    let index = parse_index(&object[index_at..tail_at], &footer)?;
    index
        .iter()
        .map(|e| {
            let at = e.position as usize;
            let block = parse_block(&object[at..at + e.length as usize], e)?;
            Ok((*e, block))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(offset: u64, count: u32, len: usize) -> ObjectBatch {
        let payload = Bytes::from(
            (0..len)
                .map(|i| (offset as usize).wrapping_add(i) as u8)
                .collect::<Vec<_>>(),
        );
        ObjectBatch {
            offset,
            count,
            crc: crate::checksum(&payload),
            payload,
        }
    }

    /// Two streams, the first large enough for several blocks: every batch reads back, the
    /// index is sparse (a block per ~1 MiB), and lookups find the block holding an offset.
    #[test]
    fn objects_round_trip_through_footer_index_and_blocks() {
        let mut b = ObjectBuilder::new();
        let mut written = Vec::new();
        let mut offset = 100;
        for i in 0..300u64 {
            let x = batch(offset, (i % 3 + 1) as u32, 10_000);
            b.add(7, &x).unwrap();
            offset = x.end();
            written.push((7, x));
        }
        for i in 0..5u64 {
            let x = batch(i * 2, 2, 50);
            b.add(9, &x).unwrap();
            written.push((9, x));
        }
        let (object, index) = b.finish();
        assert!(
            index.len() >= 3 && index.len() <= 5,
            "{} blocks",
            index.len()
        );
        let parsed = parse_object(&object).unwrap();
        let read: Vec<(u64, ObjectBatch)> = parsed
            .iter()
            .flat_map(|(e, batches)| batches.iter().map(|x| (e.stream, x.clone())))
            .collect();
        assert_eq!(read, written);
        assert_eq!(parsed.iter().map(|(e, _)| *e).collect::<Vec<_>>(), index);
        // The block holding offset 400 of stream 7, and everything of stream 9 from 5 on.
        let from = entries_from(&index, 7, 400);
        assert!(from[0].start <= 400 && 400 < from[0].end, "{from:?}");
        assert_eq!(from.last().map(|e| e.end), Some(offset));
        assert!(entries_from(&index, 7, offset).is_empty());
        assert_eq!(entries_from(&index, 9, 5).len(), 1);
        assert!(entries_from(&index, 9, 10).is_empty());
        assert!(entries_from(&index, 8, 0).is_empty());
    }

    #[test]
    fn batches_out_of_order_are_refused() {
        let mut b = ObjectBuilder::new();
        b.add(2, &batch(0, 2, 5)).unwrap();
        assert!(b.add(2, &batch(3, 1, 5)).is_err(), "a gap");
        assert!(b.add(1, &batch(0, 1, 5)).is_err(), "an earlier stream");
        assert!(b.add(3, &batch(0, 0, 5)).is_err(), "an empty batch");
        assert!(b.add(3, &batch(u64::MAX, 1, 5)).is_err(), "an overflow");
        assert!(b.add(2, &batch(2, 1, 5)).is_ok());
    }

    #[test]
    fn every_part_of_a_spoiled_object_is_an_error() {
        let mut b = ObjectBuilder::new();
        for i in 0..10u64 {
            b.add(1, &batch(i, 1, 100)).unwrap();
        }
        let (object, _) = b.finish();
        assert!(parse_object(&object).is_ok());
        for at in [0, 30, 100, object.len() - FOOTER_LEN - 3, object.len() - 1] {
            let mut bad = object.to_vec();
            bad[at] ^= 0x40;
            assert!(
                parse_object(&bad).is_err(),
                "a flipped byte at {at} went unnoticed"
            );
        }
        assert!(parse_object(&object[..object.len() - 1]).is_err());
        assert!(parse_object(&object[1..]).is_err());
        assert!(parse_object(b"").is_err());
    }
}
