//! The on-disk record format of the WAL: framing (`[u32 len][u32 crc32c][body]`, little
//! endian, `len` and `crc` over the body) and the hand-written body layout. Pure functions:
//! no I/O, no state.
//!
//! ```text
//! body, Data (kind 1):  u8 kind, u64 stream_id, u32 index, u64 epoch, u64 range_start,
//!                       u64 offset, u32 count, u64 confirmed, u32 crc, payload...
//! body, Seal (kind 2):  u8 kind, u64 stream_id, u32 index, u64 epoch, u64 range_start,
//!                       u64 local_end, u8 has_final_end, u64 final_end
//! ```

use bytes::Bytes;

/// Bytes of the frame header before the body: `u32 len` and `u32 crc`.
pub const FRAME_HEADER: usize = 8;
/// Largest body the WAL writes or accepts while reading; anything larger is corruption.
pub const MAX_BODY: usize = 256 * 1024 * 1024;

const KIND_DATA: u8 = 1;
const KIND_SEAL: u8 = 2;
const DATA_HEADER: usize = 1 + 8 + 4 + 8 + 8 + 8 + 4 + 8 + 4;
const SEAL_BODY: usize = 1 + 8 + 4 + 8 + 8 + 8 + 1 + 8;

/// One batch of a range: the accepted append, as received (its `crc` is the CRC32C of
/// `payload`, checked on the wire). Only its fields matter here; the body layout above is
/// written by hand and does not depend on the wire encoding.
pub type DataRecord = protocol::range_rpc::Append;

/// The seal of a range: no append after it; `final_end` once PD decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRecord {
    pub stream_id: u64,
    pub index: u32,
    pub epoch: u64,
    pub range_start: u64,
    pub local_end: u64,
    pub final_end: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalRecord {
    Data(DataRecord),
    Seal(SealRecord),
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record body of {0} bytes is too short")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("seal record has trailing bytes")]
    Trailing,
}

impl WalRecord {
    pub fn body_len(&self) -> usize {
        match self {
            WalRecord::Data(d) => DATA_HEADER + d.payload.len(),
            WalRecord::Seal(_) => SEAL_BODY,
        }
    }

    /// Length of the whole frame on disk.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER + self.body_len()
    }

    /// Appends the framed record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let frame_start = out.len();
        out.extend_from_slice(&(self.body_len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        let body_start = out.len();
        match self {
            WalRecord::Data(d) => {
                put_head(out, KIND_DATA, d.stream_id, d.index, d.epoch, d.range_start);
                out.extend_from_slice(&d.offset.to_le_bytes());
                out.extend_from_slice(&d.count.to_le_bytes());
                out.extend_from_slice(&d.confirmed.to_le_bytes());
                out.extend_from_slice(&d.crc.to_le_bytes());
                out.extend_from_slice(&d.payload);
            }
            WalRecord::Seal(s) => {
                put_head(out, KIND_SEAL, s.stream_id, s.index, s.epoch, s.range_start);
                out.extend_from_slice(&s.local_end.to_le_bytes());
                out.push(u8::from(s.final_end.is_some()));
                out.extend_from_slice(&s.final_end.unwrap_or(0).to_le_bytes());
            }
        }
        let crc = protocol::checksum(&out[body_start..]);
        out[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a body whose length and CRC were already checked.
    pub fn decode(body: &[u8]) -> Result<WalRecord, DecodeError> {
        Self::decode_bytes(Bytes::copy_from_slice(body))
    }

    /// Like [`WalRecord::decode`]; a data record's payload shares `body`'s buffer.
    pub fn decode_bytes(body: Bytes) -> Result<WalRecord, DecodeError> {
        let (mut rec, _) = Self::decode_meta(&body)?;
        if let WalRecord::Data(d) = &mut rec {
            d.payload = body.slice(DATA_HEADER..);
        }
        Ok(rec)
    }

    /// Like [`WalRecord::decode`] but leaves a data record's payload empty (for recovery,
    /// which only needs the header fields). Returns the payload length beside the record.
    pub fn decode_meta(body: &[u8]) -> Result<(WalRecord, usize), DecodeError> {
        let rec = Self::decode_header(body)?;
        let payload_len = match rec {
            WalRecord::Data(_) => body.len() - DATA_HEADER,
            WalRecord::Seal(_) => 0,
        };
        Ok((rec, payload_len))
    }

    fn decode_header(body: &[u8]) -> Result<WalRecord, DecodeError> {
        let mut r = Reader { buf: body, pos: 0 };
        // Fields are read in the order written, which is the body layout.
        match r.u8()? {
            KIND_DATA => Ok(WalRecord::Data(DataRecord {
                stream_id: r.u64()?,
                index: r.u32()?,
                epoch: r.u64()?,
                range_start: r.u64()?,
                offset: r.u64()?,
                count: r.u32()?,
                confirmed: r.u64()?,
                crc: r.u32()?,
                payload: Bytes::new(),
            })),
            KIND_SEAL => {
                let seal = SealRecord {
                    stream_id: r.u64()?,
                    index: r.u32()?,
                    epoch: r.u64()?,
                    range_start: r.u64()?,
                    local_end: r.u64()?,
                    final_end: {
                        let has_final = r.u8()?;
                        let final_end = r.u64()?;
                        (has_final != 0).then_some(final_end)
                    },
                };
                if r.pos != body.len() {
                    return Err(DecodeError::Trailing);
                }
                Ok(WalRecord::Seal(seal))
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// Writes what every body starts with: its kind and the range it belongs to.
fn put_head(out: &mut Vec<u8>, kind: u8, stream_id: u64, index: u32, epoch: u64, start: u64) {
    out.push(kind);
    out.extend_from_slice(&stream_id.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
}

/// Parses a frame header: `(body length, crc)`.
pub fn parse_header(header: &[u8; FRAME_HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Short(self.buf.len()))?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> WalRecord {
        WalRecord::Data(DataRecord {
            stream_id: 7,
            index: 2,
            epoch: 3,
            range_start: 100,
            offset: 110,
            count: 5,
            confirmed: 105,
            crc: protocol::checksum(b"hello"),
            payload: Bytes::from_static(b"hello"),
        })
    }

    #[test]
    fn data_and_seal_round_trip() {
        let seal = WalRecord::Seal(SealRecord {
            stream_id: 7,
            index: 2,
            epoch: 4,
            range_start: 100,
            local_end: 115,
            final_end: Some(112),
        });
        for rec in [data(), seal] {
            let mut buf = Vec::new();
            rec.encode_into(&mut buf);
            assert_eq!(buf.len(), rec.frame_len());
            let mut header = [0u8; FRAME_HEADER];
            header.copy_from_slice(&buf[..FRAME_HEADER]);
            let (len, crc) = parse_header(&header);
            assert_eq!(len, buf.len() - FRAME_HEADER);
            assert_eq!(crc, protocol::checksum(&buf[FRAME_HEADER..]));
            assert_eq!(WalRecord::decode(&buf[FRAME_HEADER..]).unwrap(), rec);
        }
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        assert!(WalRecord::decode(&[]).is_err());
        assert!(WalRecord::decode(&[9, 1, 2]).is_err());
        assert!(WalRecord::decode(&[1, 1, 2]).is_err());
        assert!(WalRecord::decode(&[2; 10]).is_err());
    }
}
