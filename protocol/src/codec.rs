//! The one place that knows the body encoding (bincode 2, standard configuration with a size
//! limit). Other crates encode and decode through these two functions only.

use crate::error::{ErrorCode, RpcError};

/// Upper bound on any single decoded allocation; frames are already bounded by the frame codec.
const DECODE_LIMIT: usize = 256 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// A value that can be carried in a frame body.
pub trait Message: bincode::Encode + bincode::Decode<()> {}
impl<T: bincode::Encode + bincode::Decode<()>> Message for T {}

pub fn encode<T: Message>(value: &T) -> Result<Vec<u8>, RpcError> {
    bincode::encode_to_vec(value, config())
        .map_err(|e| RpcError::new(ErrorCode::Internal, format!("encode: {e}")))
}

/// Decodes a whole body; trailing bytes are an error so a confused peer is caught early.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, RpcError> {
    whole_body(
        bincode::decode_from_slice::<T, _>(bytes, config()),
        bytes.len(),
    )
}

/// Encodes a value through its serde form (for foreign types such as openraft's messages).
pub fn encode_serde<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| RpcError::new(ErrorCode::Internal, format!("encode: {e}")))
}

/// Decodes a value through its serde form; trailing bytes are an error.
pub fn decode_serde<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    whole_body(
        bincode::serde::decode_from_slice::<T, _>(bytes, config()),
        bytes.len(),
    )
}

/// The decoded value of a body of `len` bytes, when decoding used all of them.
fn whole_body<T>(
    decoded: Result<(T, usize), bincode::error::DecodeError>,
    len: usize,
) -> Result<T, RpcError> {
    let (value, used) =
        decoded.map_err(|e| RpcError::new(ErrorCode::MalformedFrame, format!("decode: {e}")))?;
    if used != len {
        return Err(RpcError::new(
            ErrorCode::MalformedFrame,
            format!("{} trailing bytes after body", len - used),
        ));
    }
    Ok(value)
}
