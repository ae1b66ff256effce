//! Process chores shared by the binaries: publishing bound addresses for scripts and tests,
//! keeping the node id PD gave the process, and waiting for a shutdown signal. Owns no long-lived state and knows no process's
//! configuration.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `dir/name` atomically: a temporary file, fsync, rename, fsync of `dir`.
pub fn write_file_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The file in a process's data dir that keeps the node id PD gave it, so a restart re-joins
/// as the same node.
pub const NODE_ID_FILE: &str = "node_id";

/// The node id kept by an earlier run (None when absent or unreadable).
pub fn load_node_id(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(NODE_ID_FILE)).ok()?;
    match text.trim().parse() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unreadable node_id file");
            None
        }
    }
}

/// Keeps `id` for the next run (atomically, see [`write_file_atomic`]).
pub fn store_node_id(dir: &Path, id: u64) -> std::io::Result<()> {
    write_file_atomic(dir, NODE_ID_FILE, &format!("{id}\n"))
}

/// Publishes the addresses a process bound for scripts and tests: one file per `(name, text)`
/// in `dir`, each written atomically and holding exactly `text`, in the order given (readers
/// wait for the last one). An error names the file it could not write.
pub fn publish_addresses(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    for (name, text) in files {
        write_file_atomic(dir, name, text)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{name}: {e}")))?;
    }
    Ok(())
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `task` on a thread of its own with a single-threaded tokio runtime, for work that must
/// not wait behind a busy actor thread (lease heartbeats: a saturated event loop is not a dead
/// process). RPC clients used inside `task` must be created inside it, so their connection
/// tasks live on that runtime too.
pub fn spawn_dedicated<F, Fut>(name: &str, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(task()),
                Err(e) => tracing::error!("cannot start a runtime for a dedicated thread: {e}"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_node_id(dir.path()), None);
        store_node_id(dir.path(), 42).unwrap();
        assert_eq!(load_node_id(dir.path()), Some(42));
        std::fs::write(dir.path().join(NODE_ID_FILE), "garbage").unwrap();
        assert_eq!(load_node_id(dir.path()), None);
    }
}
