//! One Kafka produce is one OpenTelemetry trace across processes: the broker's request span
//! and the range servers' append spans share a trace id. A real OTLP collector (rotel, from
//! PyPI) receives the spans over HTTP and logs them; the test reads its log. This test lives
//! in its own binary because it sets OTEL_EXPORTER_OTLP_ENDPOINT for the processes it starts.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::{kafka, Cluster};
use rdkafka::producer::BaseRecord;

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn rotel_agent() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "rotel is not installed (pip install -r integration/python/requirements.txt)"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A span as rotel's detailed debug log prints it.
#[derive(Debug, Default, Clone)]
struct Span {
    trace: String,
    name: String,
    opcode: Option<String>,
    api: Option<String>,
    /// OpenTelemetry's `messaging.system` attribute.
    system: Option<String>,
}

fn parse_spans(log: &str) -> Vec<Span> {
    log.split("Span #")
        .skip(1)
        .filter_map(|block| {
            let field = |key: &str| {
                block.lines().find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix(key)
                        .map(|rest| rest.trim_start().trim_start_matches(':').trim().to_string())
                })
            };
            let attr = |key: &str| {
                block.lines().find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix(&format!("-> {key}: Str("))
                        .map(|rest| rest.trim_end_matches(')').to_string())
                })
            };
            Some(Span {
                trace: field("Trace ID")?,
                name: field("Name")?,
                opcode: attr("opcode"),
                api: attr("api"),
                system: attr("messaging.system"),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_is_one_trace_across_broker_and_range_servers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("rotel.log");
    let (http, grpc) = (free_port(), free_port());
    let log = std::fs::File::create(&log_path).expect("log file");
    let _collector = Collector(
        Command::new(rotel_agent())
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rotel-agent"),
    );
    // Inherited by every process the harness starts (this binary runs only this test).
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{http}"),
    );
    let cluster = Cluster::builder().brokers(1).start().await;
    let bootstrap = cluster.bootstrap();
    kafka::create_topic(&bootstrap, "traced", 1, &[])
        .await
        .expect("create topic");
    let producer = kafka::producer(&bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    kafka::send(
        &producer,
        BaseRecord::with_opaque_to("traced", Box::new(0))
            .key(&b"k"[..])
            .payload(&b"follow me"[..]),
    );
    let delivered = kafka::flush(&producer, Duration::from_secs(30));
    assert_eq!(delivered.len(), 1, "the record was acknowledged");

    // Spans reach the collector in batches (every few seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let spans = parse_spans(&text);
        let mut by_trace: HashMap<&str, Vec<&Span>> = HashMap::new();
        for s in &spans {
            by_trace.entry(s.trace.as_str()).or_default().push(s);
        }
        let joined = spans
            .iter()
            .filter(|s| s.name == "Produce" && s.api.as_deref() == Some("Produce"))
            .filter(|s| s.system.as_deref() == Some("kafka"))
            .any(|produce| {
                let appends = by_trace[produce.trace.as_str()]
                    .iter()
                    .filter(|s| s.name == "Append" && s.opcode.as_deref() == Some("100"))
                    .count();
                appends >= 2
            });
        if joined {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no Produce trace holding range-server append spans; {} spans seen:\n{:?}",
            spans.len(),
            spans.iter().rev().take(20).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
