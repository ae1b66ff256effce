//! The process's own health for Prometheus, read from `/proc/self` at each scrape:
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_threads`, `process_cpu_seconds_total` and `process_start_time_seconds` (the names
//! Prometheus's client libraries use, so standard dashboards work).
//!
//! Owns: nothing but the start time. Must not: fail a scrape: a value that cannot be read is
//! left out (on a system without `/proc` there are none).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub struct ProcessCollector {
    start_time: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ProcessCollector { start_time }
    }
}

/// A `Key:   value kB` line of /proc/self/status, in bytes (or as a plain number).
fn status_value(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut parts = line[key.len()..].split_whitespace();
    let n: i64 = parts.next()?.parse().ok()?;
    Some(if parts.next() == Some("kB") {
        n * 1024
    } else {
        n
    })
}

/// User plus system CPU seconds from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_sec > 0).then(|| ticks / per_sec as f64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                status_value(&status, "VmRSS:"),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                status_value(&status, "VmSize:"),
            ),
            (
                "process_threads",
                "Threads of the process",
                status_value(&status, "Threads:"),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                std::fs::read_dir("/proc/self/fd")
                    .ok()
                    .map(|d| d.count() as i64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        let start = ConstGauge::new(self.start_time);
        let metric = encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            None,
            start.metric_type(),
        )?;
        start.encode(metric)?;
        if let Some(cpu) = cpu_seconds() {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn this_process_reports_its_memory_threads_fds_and_cpu() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::default()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for name in [
            "process_resident_memory_bytes ",
            "process_threads ",
            "process_open_fds ",
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name}in:\n{text}"));
            assert!(
                value > 0.0 || name.starts_with("process_cpu"),
                "{name}{value}"
            );
        }
    }
}
