//! Decompressing the records of a Kafka batch, with a cap on what comes out.
//!
//! Owns: the four codecs a v2 batch may use (gzip, snappy in the xerial framing Kafka
//! producers write or raw, lz4 frames, zstd) behind one [`records`] call that never produces
//! more than its `cap` bytes, however much the compressed bytes claim or expand to. A
//! decompression bomb is an error, not an allocation.
//!
//! Must not: trust a declared size before checking it against the cap, or parse records
//! (that is `batch`'s walk, over what this returns).

use std::io::Read;

/// The most bytes one batch's records may decompress to (128 MiB). Producers compress batches
/// of `batch.size` (16 KiB to 1 MiB by default), so an honest batch is far below it.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 * 1024 * 1024;

/// Codec numbers of a batch's attributes (its lowest three bits).
pub const GZIP: i16 = 1;
pub const SNAPPY: i16 = 2;
pub const LZ4: i16 = 3;
pub const ZSTD: i16 = 4;

/// The snappy framing of Java's xerial library, which Kafka producers write: this magic, then
/// blocks of (big-endian u32 length, raw snappy block).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// The decompressed bytes of `compressed` under `codec`, at most `cap` of them.
pub fn records(codec: i16, compressed: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    match codec {
        GZIP => read_capped(flate2::read::GzDecoder::new(compressed), cap, "gzip"),
        SNAPPY => snappy(compressed, cap),
        LZ4 => {
            let decoder = lz4::Decoder::new(compressed).map_err(|e| format!("lz4: {e}"))?;
            read_capped(decoder, cap, "lz4")
        }
        ZSTD => {
            let decoder =
                zstd::stream::read::Decoder::new(compressed).map_err(|e| format!("zstd: {e}"))?;
            read_capped(decoder, cap, "zstd")
        }
        other => Err(format!("unknown compression codec {other}")),
    }
}

/// Reads `reader` to its end, failing once it has given more than `cap` bytes.
fn read_capped(reader: impl Read, cap: usize, codec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{codec}: {e}"))?;
    if out.len() > cap {
        return Err(format!("{codec}: decompresses to more than {cap} bytes"));
    }
    Ok(out)
}

fn snappy(compressed: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if !compressed.starts_with(XERIAL_MAGIC) {
        snappy_block(compressed, cap, &mut out)?;
        return Ok(out);
    }
    let mut rest = compressed
        .get(XERIAL_HEADER_LEN..)
        .ok_or("snappy: cut short in its header")?;
    while !rest.is_empty() {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or("snappy: cut short in a block length")?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = after
            .get(..len)
            .ok_or("snappy: a block runs past the batch")?;
        snappy_block(block, cap - out.len(), &mut out)?;
        rest = &after[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, if its declared size is within `room`.
fn snappy_block(block: &[u8], room: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let len = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if len > room {
        return Err(format!("snappy: decompresses to more than {room} bytes"));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xerial(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in data.chunks(block) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, r) = e.finish();
        r.unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips_under_the_cap() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        for (codec, compressed) in [
            (GZIP, gzip(&data)),
            (SNAPPY, xerial(&data, 32 * 1024)),
            (SNAPPY, raw_snappy),
            (LZ4, lz4(&data)),
            (ZSTD, zstd),
        ] {
            assert_eq!(records(codec, &compressed, data.len()).unwrap(), data);
        }
    }

    #[test]
    fn bombs_stop_at_the_cap() {
        // 64 MiB of zeros compress to at most a few MiB (snappy) and to KiB (the others);
        // with a 1 MiB cap none may expand.
        let zeros = vec![0u8; 64 << 20];
        let cap = 1 << 20;
        for (codec, compressed) in [
            (GZIP, gzip(&zeros)),
            (SNAPPY, xerial(&zeros, 1 << 20)),
            (
                SNAPPY,
                snap::raw::Encoder::new().compress_vec(&zeros).unwrap(),
            ),
            (LZ4, lz4(&zeros)),
            (ZSTD, zstd::encode_all(&zeros[..], 3).unwrap()),
        ] {
            assert!(compressed.len() < zeros.len() / 16);
            let e = records(codec, &compressed, cap).expect_err("capped");
            assert!(e.contains("more than"), "codec {codec}: {e}");
        }
        assert!(records(7, b"", cap).is_err());
        assert!(records(
            SNAPPY,
            b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff",
            cap
        )
        .is_err());
    }
}
