//! Small durable-file helpers shared by the log store and the state machine: checksummed record
//! framing, atomic replacement of a whole file, and in-place overwriting of a small hint.
//!
//! Owns: the on-disk record format `u32 length (LE) | u32 CRC32C (LE) | payload`.
//! Must not: panic on anything read back; a short or corrupt record is reported, not trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Largest record accepted when reading back (a Raft entry or a snapshot is far smaller).
pub const MAX_RECORD: usize = 256 * 1024 * 1024;
pub const RECORD_HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("corrupt {0}")]
    Corrupt(String),
    #[error("a record of {0} bytes is over the {MAX_RECORD}-byte limit of what can be read back")]
    TooLarge(usize),
}

impl DiskError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> DiskError {
        let context = context.into();
        move |source| DiskError::Io { context, source }
    }
}

/// Appends one framed record to `buf`. A payload over [`MAX_RECORD`] is refused: it could be
/// written but never read back.
pub fn frame_record(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), DiskError> {
    if payload.len() > MAX_RECORD {
        return Err(DiskError::TooLarge(payload.len()));
    }
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&protocol::checksum(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// What was found at one position of a record file.
pub enum Parsed<'a> {
    /// A whole, checksummed record and the position just after it.
    Record(&'a [u8], usize),
    /// Nothing more: the end of the data.
    End,
    /// A torn or corrupt record starts here.
    Bad(String),
}

/// Parses the record at `pos` of `data`.
pub fn parse_record(data: &[u8], pos: usize) -> Parsed<'_> {
    let rest = &data[pos.min(data.len())..];
    if rest.is_empty() {
        return Parsed::End;
    }
    if rest.len() < RECORD_HEADER {
        return Parsed::Bad(format!("torn header at {pos}"));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_RECORD {
        return Parsed::Bad(format!("record length {len} at {pos} too large"));
    }
    let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Parsed::Bad(format!("torn record at {pos}"));
    };
    if protocol::checksum(payload) != crc {
        return Parsed::Bad(format!("checksum mismatch at {pos}"));
    }
    Parsed::Record(payload, pos + RECORD_HEADER + len)
}

/// Fsyncs a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(DiskError::io(format!("fsync dir {}", dir.display())))
}

/// Replaces `dir/name` with one framed record holding `payload`: temp file, fsync, rename,
/// and (when `durable`) fsync of the directory.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    payload: &[u8],
    durable: bool,
) -> Result<(), DiskError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut buf = Vec::with_capacity(payload.len().min(MAX_RECORD) + RECORD_HEADER);
    frame_record(&mut buf, payload)?;
    let ctx = || format!("write {}", tmp.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(DiskError::io(ctx()))?;
    f.write_all(&buf).map_err(DiskError::io(ctx()))?;
    if durable {
        f.sync_all().map_err(DiskError::io(ctx()))?;
    }
    drop(f);
    fs::rename(&tmp, &dst).map_err(DiskError::io(format!("rename to {}", dst.display())))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Overwrites `dir/name` in place with one framed record holding `payload`, without fsync,
/// truncation or rename: for a hint written very often (a rename frees the old file's blocks
/// each time, which costs a synchronous discard on some disks). A crash may leave it torn;
/// [`read_hint`] then finds nothing. Bytes past the record (a longer earlier one) stay.
pub fn overwrite_hint(dir: &Path, name: &str, payload: &[u8]) -> Result<(), DiskError> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let mut buf = Vec::with_capacity(payload.len().min(MAX_RECORD) + RECORD_HEADER);
    frame_record(&mut buf, payload)?;
    let ctx = || format!("write {}", path.display());
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(DiskError::io(ctx()))?;
    f.write_all_at(&buf, 0).map_err(DiskError::io(ctx()))
}

/// Reads the first record of a file written by [`overwrite_hint`] (or [`write_atomic`]):
/// None when it is missing, torn or corrupt.
pub fn read_hint(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let data = fs::read(dir.join(name)).ok()?;
    match parse_record(&data, 0) {
        Parsed::Record(payload, _) => Some(payload.to_vec()),
        _ => None,
    }
}

/// Reads a file written by [`write_atomic`]. `Ok(None)` when it does not exist.
pub fn read_atomic(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, DiskError> {
    let path = dir.join(name);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DiskError::io(format!("read {}", path.display()))(e)),
    };
    match parse_record(&data, 0) {
        Parsed::Record(payload, end) if end == data.len() => Ok(Some(payload.to_vec())),
        Parsed::Record(..) => Err(DiskError::Corrupt(format!(
            "{}: trailing bytes",
            path.display()
        ))),
        Parsed::End => Err(DiskError::Corrupt(format!("{}: empty", path.display()))),
        Parsed::Bad(why) => Err(DiskError::Corrupt(format!("{}: {why}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_roundtrip_and_corruption() -> Result<(), DiskError> {
        let dir = tempfile::tempdir().map_err(DiskError::io("tempdir"))?;
        assert!(read_atomic(dir.path(), "x")?.is_none());
        write_atomic(dir.path(), "x", b"hello", true)?;
        assert_eq!(
            read_atomic(dir.path(), "x")?.as_deref(),
            Some(&b"hello"[..])
        );
        let path = dir.path().join("x");
        let mut data = fs::read(&path).map_err(DiskError::io("read"))?;
        let last = data.len() - 1;
        data[last] ^= 1;
        fs::write(&path, &data).map_err(DiskError::io("write"))?;
        assert!(matches!(
            read_atomic(dir.path(), "x"),
            Err(DiskError::Corrupt(_))
        ));
        Ok(())
    }

    #[test]
    fn hints_are_overwritten_in_place_and_torn_ones_ignored() -> Result<(), DiskError> {
        let dir = tempfile::tempdir().map_err(DiskError::io("tempdir"))?;
        assert_eq!(read_hint(dir.path(), "h"), None);
        overwrite_hint(dir.path(), "h", b"a longer first hint")?;
        overwrite_hint(dir.path(), "h", b"short")?;
        assert_eq!(read_hint(dir.path(), "h").as_deref(), Some(&b"short"[..]));
        let path = dir.path().join("h");
        let mut data = fs::read(&path).map_err(DiskError::io("read"))?;
        data[RECORD_HEADER] ^= 1;
        fs::write(&path, &data).map_err(DiskError::io("write"))?;
        assert_eq!(read_hint(dir.path(), "h"), None);
        Ok(())
    }

    #[test]
    fn records_that_could_not_be_read_back_are_not_written() -> Result<(), DiskError> {
        let dir = tempfile::tempdir().map_err(DiskError::io("tempdir"))?;
        write_atomic(dir.path(), "x", b"kept", true)?;
        let huge = vec![0u8; MAX_RECORD + 1];
        assert!(matches!(
            write_atomic(dir.path(), "x", &huge, true),
            Err(DiskError::TooLarge(n)) if n == MAX_RECORD + 1
        ));
        assert_eq!(read_atomic(dir.path(), "x")?.as_deref(), Some(&b"kept"[..]));
        Ok(())
    }
}
