//! The frame: how every request and response travels over TCP.
//!
//! ```text
//! u32  length of everything after this field (big endian)
//! u8   protocol version (PROTOCOL_VERSION)
//! u8   flags (FLAG_RESPONSE, FLAG_ERROR)
//! u16  opcode
//! u64  request id (a response carries its request's id)
//! u16  length of the W3C trace context, then that many ASCII bytes (`traceparent`)
//! ...  body: bincode of the request, the response, or an RpcError when FLAG_ERROR is set
//! ```
//!
//! The length is checked against the configured maximum before any buffer is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{ErrorCode, RpcError};

pub const PROTOCOL_VERSION: u8 = 1;
pub const FLAG_RESPONSE: u8 = 0b01;
pub const FLAG_ERROR: u8 = 0b10;
/// Default largest frame a process accepts: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Bytes of the fixed header after the length prefix, without the trace context.
const FIXED_HEADER: usize = 1 + 1 + 2 + 8 + 2;
const MAX_TRACE_CONTEXT: usize = 512;

/// Names a request type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u16);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub flags: u8,
    pub opcode: Opcode,
    pub request_id: u64,
    /// W3C `traceparent` of the caller's span, empty when none.
    pub trace_context: String,
}

impl Header {
    pub fn request(opcode: Opcode, request_id: u64, trace_context: String) -> Self {
        Header {
            version: PROTOCOL_VERSION,
            flags: 0,
            opcode,
            request_id,
            trace_context,
        }
    }

    /// The header of the response to a request with this header.
    pub fn response_to(&self, error: bool) -> Self {
        Header {
            version: PROTOCOL_VERSION,
            flags: FLAG_RESPONSE | if error { FLAG_ERROR } else { 0 },
            opcode: self.opcode,
            request_id: self.request_id,
            trace_context: String::new(),
        }
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

impl Frame {
    /// The trace context as it goes on the wire: dropped when longer than allowed.
    fn trace_on_wire(&self) -> &[u8] {
        let trace = self.header.trace_context.as_bytes();
        if trace.len() > MAX_TRACE_CONTEXT {
            &[]
        } else {
            trace
        }
    }

    /// The frame's length field: every byte after the length prefix.
    pub fn wire_len(&self) -> usize {
        FIXED_HEADER + self.trace_on_wire().len() + self.body.len()
    }

    /// An error response to the request with `header`.
    pub fn error_response(header: &Header, error: &RpcError) -> Frame {
        // Encoding an RpcError cannot fail: it is a plain enum and a string.
        let body = crate::codec::encode(error).unwrap_or_default();
        Frame {
            header: header.response_to(true),
            body: Bytes::from(body),
        }
    }
}

/// Length-prefixed frame codec with a size limit, for `tokio_util::codec::Framed*`.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        FrameCodec { max_frame }
    }

    /// Whether `frame` can be sent: senders check before they queue a frame, so that one too
    /// large fails at once, as itself, instead of breaking the connection it would share.
    pub fn check(&self, frame: &Frame) -> Result<(), FrameError> {
        let size = frame.wire_len();
        if size > self.max_frame {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame,
            });
        }
        Ok(())
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

/// Why a byte stream could not be cut into frames. After any of these the stream is out of
/// step and the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    pub fn to_rpc_error(&self) -> RpcError {
        match self {
            FrameError::TooLarge { .. } => {
                RpcError::new(ErrorCode::FrameTooLarge, self.to_string())
            }
            FrameError::Malformed(_) => RpcError::new(ErrorCode::MalformedFrame, self.to_string()),
            FrameError::Io(_) => RpcError::new(ErrorCode::Unavailable, self.to_string()),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                size: len,
                limit: self.max_frame,
            });
        }
        if len < FIXED_HEADER {
            return Err(FrameError::Malformed(format!(
                "frame length {len} is shorter than the header"
            )));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut frame = src.split_to(len);
        let version = frame.get_u8();
        let flags = frame.get_u8();
        let opcode = Opcode(frame.get_u16());
        let request_id = frame.get_u64();
        let trace_len = frame.get_u16() as usize;
        if trace_len > MAX_TRACE_CONTEXT || trace_len > frame.len() {
            return Err(FrameError::Malformed(format!(
                "trace context length {trace_len} is out of bounds"
            )));
        }
        let trace = frame.split_to(trace_len);
        let trace_context = String::from_utf8(trace.to_vec())
            .map_err(|_| FrameError::Malformed("trace context is not UTF-8".into()))?;
        Ok(Some(Frame {
            header: Header {
                version,
                flags,
                opcode,
                request_id,
                trace_context,
            },
            body: frame.freeze(),
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.check(&frame)?;
        let trace = frame.trace_on_wire();
        let len = frame.wire_len();
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(frame.header.version);
        dst.put_u8(frame.header.flags);
        dst.put_u16(frame.header.opcode.0);
        dst.put_u64(frame.header.request_id);
        dst.put_u16(trace.len() as u16);
        dst.put_slice(trace);
        dst.put_slice(&frame.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            header: Header::request(Opcode(7), 42, "00-abc-def-01".into()),
            body: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn round_trip_in_pieces() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(sample(), &mut buf).unwrap();
        codec.encode(sample(), &mut buf).unwrap();
        let all = buf.split().freeze();
        let mut feed = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            feed.put_u8(*b);
            while let Some(f) = codec.decode(&mut feed).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].header, sample().header);
        assert_eq!(&got[1].body[..], b"hello");
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn short_and_bad_trace_lengths_are_malformed() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 1, 2][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(FIXED_HEADER as u32);
        buf.put_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        buf.put_u16(400);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }
}
