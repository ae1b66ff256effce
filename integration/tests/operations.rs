//! How the processes behave for an operator: a broker started while PD is down waits for it
//! (alive on `/healthz`, not ready on `/readyz`) and serves once PD is back, and a second
//! broker advertising a live broker's address is refused instead of taking its id.

use std::time::{Duration, Instant};

use integration::testing::*;
use integration::{http_status, kafka, Cluster};

/// Waits (60 s at most) until `name`'s log says `what`.
fn wait_for_log(cluster: &Cluster, proc: &integration::Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proc.log().contains(what) {
        if Instant::now() > deadline {
            fail(
                cluster,
                format!("{} never logged {what:?}:\n{}", proc.name, proc.log_tail()),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_started_while_pd_is_down_waits_for_it() {
    let (_serial, mut cluster) = start_with_topics(Cluster::builder().brokers(1), &[]).await;
    cluster.pd.kill();
    assert!(!cluster.pd.is_running());
    assert_eq!(
        http_status(&cluster.pd.http_addr, "/healthz"),
        None,
        "PD still answers"
    );

    let mut late = cluster.extra_broker("broker-late", &[]);
    late.spawn();
    late.wait_for("/healthz");
    wait_for_log(&cluster, &late, "waiting for the placement driver");
    assert_eq!(
        http_status(&late.http_addr, "/readyz"),
        Some(503),
        "ready without PD"
    );
    late.wait_for("/healthz"); // still alive, not exited

    cluster.pd.start();
    late.wait_for("/readyz");
    let addr = late.rpc_addr.clone();
    let metadata = blocking(move || kafka::metadata(&addr, None)).await;
    let brokers = ok(&cluster, metadata).brokers().len();
    assert_eq!(brokers, 2, "the late broker's Metadata lists both brokers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_at_a_live_brokers_address_is_refused() {
    let (_serial, cluster) =
        start_with_topics(Cluster::builder().brokers(1), &[("same-addr", 1)]).await;
    let taken = cluster.kafka_addr(0);
    let mut twin = cluster.extra_broker("broker-twin", &["--advertise", &taken]);
    twin.spawn();
    twin.wait_for("/healthz");
    wait_for_log(&cluster, &twin, "which holds a live lease");
    assert_eq!(http_status(&twin.http_addr, "/readyz"), Some(503));

    // The first broker keeps its id and its partitions: it takes produce and reads it back,
    // and none of its streams was taken over.
    let bootstrap = cluster.bootstrap();
    let sent = blocking(move || {
        let producer = kafka::producer(&bootstrap, &[("acks", "all")]);
        for i in 0..10usize {
            let v = format!("value {i}");
            kafka::send(
                &producer,
                rdkafka::producer::BaseRecord::with_opaque_to("same-addr", Box::new(i))
                    .payload(v.as_bytes()),
            );
        }
        kafka::flush(&producer, Duration::from_secs(30))
    })
    .await;
    assert!(
        sent.iter().all(|d| d.error.is_none()),
        "produce failed: {sent:?}"
    );
    assert_eq!(read_from_start(&cluster, "same-addr", 0, 10).len(), 10);
    let log = cluster.brokers[0].log();
    assert!(
        !log.contains("taken over by a newer writer"),
        "the first broker was fenced:\n{}",
        cluster.brokers[0].log_tail()
    );
    let addr = cluster.kafka_addr(0);
    let metadata = blocking(move || kafka::metadata(&addr, None)).await;
    assert_eq!(ok(&cluster, metadata).brokers().len(), 1);
}

/// The value of the metric `name` (a gauge or counter without labels) on `http`'s /metrics.
fn metric(http: &str, name: &str) -> Option<f64> {
    let (_, body) = integration::http_get(http, "/metrics")?;
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name || key == format!("{name}_total")).then(|| value.trim().parse().ok())?
    })
}

/// A broker holds at most --max-connections Kafka connections: one more is closed as it
/// arrives (logged, counted), the open ones keep being served, and a slot that frees up is
/// used again. Before, connections were unlimited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_counted() {
    use integration::raw_kafka::RawClient;
    use kafka_protocol::messages::ApiVersionsRequest;
    let max = 12;
    let (_serial, cluster) = start_with_topics(
        Cluster::builder()
            .brokers(1)
            .broker_arg("--max-connections", &max.to_string()),
        &[],
    )
    .await;
    let addr = cluster.kafka_addr(0);
    let http = cluster.brokers[0].http_addr.clone();
    // Connections left open by the harness's own clients count too.
    let open = metric(&http, "connections").expect("connections gauge") as usize;
    let mut held: Vec<RawClient> = (open..max).map(|_| RawClient::negotiated(&addr)).collect();
    assert_eq!(metric(&http, "connections"), Some(max as f64));

    let mut over = RawClient::connect(&addr);
    let id = over.next_correlation_id();
    let _ = over.write_frame(&RawClient::encode(&ApiVersionsRequest::default(), 0, id));
    assert!(
        matches!(over.read_frame(), Ok(None) | Err(_)),
        "a connection over the limit was served"
    );
    assert!(metric(&http, "connections_refused").unwrap_or(0.0) >= 1.0);
    assert!(cluster.brokers[0]
        .log()
        .contains("refusing Kafka connections"));
    for c in &mut held {
        assert!(
            c.call(&ApiVersionsRequest::default(), 0).is_ok(),
            "a held connection"
        );
    }
    // A freed slot is taken again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, "connections") != Some(max as f64 - 1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut again = RawClient::negotiated(&addr);
    assert!(again.call(&ApiVersionsRequest::default(), 0).is_ok());
}

/// `scripts/cluster` says by its exit status whether it did what it says: `up --brokers 0`
/// succeeds (it once exited 1 after starting everything), `kill` returns once the process is
/// gone (so an immediate `start` finds its ports free), `start` and `down` succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_cluster_commands_report_what_they_did() {
    let _serial = serial().await;
    let root = repo_root();
    let data = tempfile::tempdir().expect("data dir");
    let base = free_port_base();
    let run = |args: &[&str]| cluster_script(&root, data.path(), base, args);
    let (code, out) = run(&["up", "--brokers", "0", "--range-servers", "1"]);
    assert_eq!(code, Some(0), "up --brokers 0:\n{out}");
    let pid: i32 = std::fs::read_to_string(data.path().join("range-server-1/pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let (code, out) = run(&["kill", "range-server-1"]);
    assert_eq!(code, Some(0), "kill:\n{out}");
    // Gone, or a zombie (dead, ports released) that nobody has reaped yet.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    assert!(!alive, "kill returned while pid {pid} still runs: {state}");
    let (code, out) = run(&["start", "range-server-1"]);
    assert_eq!(code, Some(0), "start right after kill:\n{out}");
    let (code, out) = run(&["status"]);
    assert_eq!(code, Some(0), "status with everything up:\n{out}");
    let (code, out) = run(&["down"]);
    assert_eq!(code, Some(0), "down:\n{out}");
}

/// The checkout this test binary was built from.
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Runs `scripts/cluster ARGS --data DATA` with the release binaries and `base` ports;
/// answers its exit code and its output (stdout, then stderr).
fn cluster_script(
    root: &std::path::Path,
    data: &std::path::Path,
    base: u16,
    args: &[&str],
) -> (Option<i32>, String) {
    let out = std::process::Command::new(root.join("scripts/cluster"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env("STRATA_BIN_DIR", integration::bin_dir())
        .env("STRATA_PORT_BASE", base.to_string())
        .output()
        .expect("run scripts/cluster");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A port base for `scripts/cluster` whose PD and first range-server ports are free now.
fn free_port_base() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..100 {
        let base: u16 = rng.random_range(20_000..40_000);
        let free = [
            base,
            base + 1000,
            base + 101,
            base + 1101,
            base + 2090,
            base + 2092,
            base - 4000,
            base - 2683,
            base - 2682,
        ]
        .iter()
        .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port base found");
}

/// Sends `values` to partition 0 of `topic` (acks=all) and fails the test on any error.
async fn produce_all(cluster: &Cluster, topic: &'static str, values: Vec<String>) {
    let bootstrap = cluster.bootstrap();
    let sent = blocking(move || {
        let producer = kafka::producer(&bootstrap, &[("acks", "all")]);
        for (i, v) in values.iter().enumerate() {
            kafka::send(
                &producer,
                rdkafka::producer::BaseRecord::with_opaque_to(topic, Box::new(i))
                    .partition(0)
                    .payload(v.as_bytes()),
            );
        }
        kafka::flush(&producer, Duration::from_secs(60))
    })
    .await;
    if let Some(d) = sent.iter().find(|d| d.error.is_some()) {
        fail(cluster, format!("produce to {topic} failed: {d:?}"));
    }
}

/// The sum over the live range servers of their metric `name`.
fn range_server_sum(cluster: &Cluster, name: &str) -> f64 {
    cluster
        .range_servers
        .iter()
        .filter(|rs| rs.is_running())
        .filter_map(|rs| metric(&rs.http_addr, name))
        .sum()
}

/// Waits (60 s at most) for `cond`, failing with `what` and the logs.
async fn wait_until(cluster: &Cluster, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        if Instant::now() > deadline {
            fail(cluster, format!("after 60 s: {what}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What is deleted is forgotten everywhere: a range trimmed away (DeleteRecords past it) and
/// the ranges of a deleted topic are retired on the range servers that held them, PD forgets
/// the streams and the trimmed range, and once nothing names a dead range server PD forgets
/// it too. Before, range servers kept every range forever and PD every stream, range and
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_trimmed_data_is_forgotten_everywhere() {
    use protocol::pd::{DescribeStream, ListNodes, ListStreams, ListTopics};
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder()
            .brokers(1)
            .pd_arg("--forget-nodes-after-secs", "2"),
        // Open ranges on the first three range servers, so the fourth has the fewest.
        &[("filler", 1)],
    )
    .await;
    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    let call_err = |e: protocol::RpcError| e.to_string();
    // The group coordinators' streams (created at a client's first FindCoordinator, which any
    // consumer with a group id sends) and every other stream have their open ranges before the
    // fourth server joins: a range opened later could land on it, and PD would rightly never
    // forget it.
    let _coordinator_finder = kafka::consumer(&cluster.bootstrap(), &[]);
    wait_until(
        &cluster,
        "the group coordinators' streams are not open",
        async || {
            let offsets = pd
                .call(ListTopics {})
                .await
                .is_ok_and(|t| t.iter().any(|t| t.name == "__consumer_offsets"));
            offsets
                && pd
                    .call(ListStreams {})
                    .await
                    .is_ok_and(|s| s.iter().all(|s| !s.ranges.is_empty()))
        },
    )
    .await;
    // A fourth range server: holding no range yet, it gets the new topic's ranges (PD places
    // ranges on the servers with the fewest open ones), and nothing else.
    let victim = cluster.add_range_server().await;
    let victim_addr = cluster.range_servers[victim].rpc_addr.clone();
    let nodes = ok(&cluster, pd.call(ListNodes {}).await.map_err(call_err));
    let Some(victim_node) = nodes.iter().find(|n| n.addr == victim_addr).map(|n| n.id) else {
        fail(
            &cluster,
            format!("PD does not list {victim_addr}: {nodes:?}"),
        );
    };
    create_topic(&cluster, "forgotten", 1, &[]).await;
    produce_all(
        &cluster,
        "forgotten",
        (0..10).map(|i| format!("a{i}")).collect(),
    )
    .await;

    let topics = ok(&cluster, pd.call(ListTopics {}).await.map_err(call_err));
    let Some((data_stream, meta_stream)) = topics
        .iter()
        .find(|t| t.name == "forgotten")
        .map(|t| (t.partitions[0].data_stream, t.partitions[0].meta_stream))
    else {
        fail(&cluster, format!("PD does not list the topic: {topics:?}"));
    };
    let describe = || {
        pd.call(DescribeStream {
            stream_id: data_stream,
        })
    };
    let stream = ok(&cluster, describe().await.map_err(call_err));
    assert!(
        stream.ranges[0].servers.contains(&victim_node),
        "the new range server does not hold the topic's range: {stream:?}"
    );
    // Kill it: the writer moves to a new range on the others.
    cluster.range_server(victim).kill();
    assert!(
        !cluster.range_servers[victim].is_running(),
        "the kill failed"
    );
    produce_all(
        &cluster,
        "forgotten",
        (10..20).map(|i| format!("b{i}")).collect(),
    )
    .await;
    let stream = ok(&cluster, describe().await.map_err(call_err));
    assert!(
        stream.ranges.len() >= 2,
        "the writer did not move to a new range: {stream:?}"
    );

    // Trim to just before the last record: the first range (wholly below) is retired on the
    // live servers that held it and PD forgets it; the range holding the new start stays, and
    // its replicas forget what lies below the start and refuse to serve it.
    let holding = stream
        .ranges
        .iter()
        .find(|r| r.start <= 19 && r.end.is_none_or(|end| end > 19))
        .cloned()
        .expect("a range holds the last record");
    let trim_to = if holding.start < 19 { 19 } else { 20 };
    let admin = kafka::admin(&cluster.bootstrap());
    let mut tpl = rdkafka::TopicPartitionList::new();
    let _ = tpl.add_partition_offset("forgotten", 0, rdkafka::Offset::Offset(trim_to as i64));
    if let Err(e) = admin.delete_records(&tpl, &kafka::admin_options()).await {
        fail(&cluster, format!("DeleteRecords: {e}"));
    }
    wait_until(&cluster, "PD still keeps the trimmed range", async || {
        describe()
            .await
            .is_ok_and(|s| s.start_offset == trim_to && s.ranges.iter().all(|r| r.index != 0))
    })
    .await;
    wait_until(
        &cluster,
        "no range server retired the trimmed range",
        async || range_server_sum(&cluster, "strata_rs_ranges_retired") >= 1.0,
    )
    .await;
    let live = |node: &u64, nodes: &[protocol::model::NodeInfo]| {
        let addr = nodes
            .iter()
            .find(|n| n.id == *node)
            .map(|n| n.addr.clone())?;
        let running = cluster
            .range_servers
            .iter()
            .any(|rs| rs.is_running() && rs.rpc_addr == addr);
        running.then_some(addr)
    };
    let nodes = ok(&cluster, pd.call(ListNodes {}).await.map_err(call_err));
    if holding.start < trim_to {
        for addr in holding.servers.iter().filter_map(|n| live(n, &nodes)) {
            let client = actors::RpcClient::new(addr.clone());
            let what = format!(
                "{addr} still serves offset {} below the stream start {trim_to}",
                holding.start
            );
            wait_until(&cluster, &what, async || {
                let fetched = client
                    .call(protocol::range_rpc::Fetch {
                        stream_id: data_stream,
                        index: holding.index,
                        offset: holding.start,
                        end: u64::MAX,
                        max_bytes: 1 << 20,
                    })
                    .await;
                fetched.is_err_and(|e| e.code == protocol::ErrorCode::OffsetOutOfRange)
            })
            .await;
        }
    }

    // Delete the topic: every range it had on the live servers is retired, PD lists none of
    // its streams, and the dead server, named by nothing now, is forgotten.
    let topic_streams = [data_stream, meta_stream];
    let mut on_live_servers = 0;
    for id in topic_streams {
        let info = ok(
            &cluster,
            pd.call(DescribeStream { stream_id: id })
                .await
                .map_err(call_err),
        );
        for r in &info.ranges {
            on_live_servers += r
                .servers
                .iter()
                .filter(|n| live(n, &nodes).is_some())
                .count();
        }
    }
    let retired_before = range_server_sum(&cluster, "strata_rs_ranges_retired");
    let deleted = admin
        .delete_topics(&["forgotten"], &kafka::admin_options())
        .await;
    if !deleted.is_ok_and(|r| r.iter().all(|r| r.is_ok())) {
        fail(&cluster, "DeleteTopics failed".into());
    }
    wait_until(&cluster, "PD still lists the topic's streams", async || {
        pd.call(ListStreams {})
            .await
            .is_ok_and(|s| s.iter().all(|s| !topic_streams.contains(&s.id)))
    })
    .await;
    let what = format!(
        "the live range servers did not retire the deleted topic's {on_live_servers} ranges"
    );
    wait_until(&cluster, &what, async || {
        range_server_sum(&cluster, "strata_rs_ranges_retired")
            >= retired_before + on_live_servers as f64
    })
    .await;
    wait_until(
        &cluster,
        "PD still lists the dead range server",
        async || {
            pd.call(ListNodes {})
                .await
                .is_ok_and(|nodes| nodes.iter().all(|n| n.id != victim_node))
        },
    )
    .await;
    assert!(
        cluster.pd.log().contains("forgot a long-dead node"),
        "PD did not log forgetting the node"
    );
    let nodes = pd.call(ListNodes {}).await.map(|n| n.len());
    assert_eq!(
        nodes,
        Ok(4),
        "PD lists the broker and the three live range servers"
    );
}

/// An idempotent producer idle for --producer-id-expiration-ms is forgotten by the partition
/// (counted in producers_expired); when it writes again it is taken as new and its records
/// are stored once. Before, the expiry was a constant a day long, without a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_are_forgotten_after_the_configured_expiry() {
    let (_serial, cluster) = start_with_topics(
        Cluster::builder()
            .brokers(1)
            .retention_check_ms(200)
            .broker_arg("--producer-id-expiration-ms", "1000"),
        &[("expiring-producers", 1)],
    )
    .await;
    let bootstrap = cluster.bootstrap();
    let http = cluster.brokers[0].http_addr.clone();
    let sent = blocking(move || {
        let producer = kafka::producer(
            &bootstrap,
            &[("acks", "all"), ("enable.idempotence", "true")],
        );
        let send = |from: usize| {
            for i in from..from + 10 {
                let v = format!("value {i}");
                kafka::send(
                    &producer,
                    rdkafka::producer::BaseRecord::with_opaque_to(
                        "expiring-producers",
                        Box::new(i),
                    )
                    .partition(0)
                    .payload(v.as_bytes()),
                );
            }
            kafka::flush(&producer, Duration::from_secs(30))
        };
        let mut sent = send(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&http, "producers_expired").unwrap_or(0.0) < 1.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        sent.extend(send(10));
        sent
    })
    .await;
    assert!(
        metric(&cluster.brokers[0].http_addr, "producers_expired").unwrap_or(0.0) >= 1.0,
        "the idle producer was not forgotten"
    );
    assert!(
        sent.iter().all(|d| d.error.is_none()),
        "produce failed: {sent:?}"
    );
    let records = read_from_start(&cluster, "expiring-producers", 0, 20);
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("value {i}")).collect();
    assert_eq!(values, expected, "every record stored once, in order");
}

/// `scripts/cluster up --observability` starts Prometheus and the otelite tracing UI beside
/// the cluster: it prints the URLs, Prometheus scrapes every process (found through file
/// service discovery, so a broker added later is scraped too), every Strata console dashboard
/// renders, every expression of the Grafana dashboard returns data, a produce through kcat is
/// one trace in otelite holding the broker's request and each range server's append, and
/// `down` stops Prometheus and otelite with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_scrapes_every_process_and_serves_the_dashboards() {
    require_command("prometheus", "apt-get install prometheus");
    let _serial = serial().await;
    let root = repo_root();
    let data = tempfile::tempdir().expect("data dir");
    let base = free_port_base();
    let run = |args: &[&str]| cluster_script(&root, data.path(), base, args);
    // Offloads every second or two, so the object-store panels have requests to show.
    let (code, out) = run(&[
        "up",
        "--observability",
        "--brokers",
        "1",
        "--range-server-args",
        "--offload-max-age-ms 1000",
    ]);
    assert_eq!(code, Some(0), "up --observability:\n{out}");
    let out_up = out.clone();
    let url = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: http://")))
            .map(|rest| rest.to_string())
            .unwrap_or_else(|| panic!("no `{name}: URL` line in:\n{out}"))
    };
    require_command("kcat", "apt-get install kcat");
    let prometheus = url("prometheus");
    let traces = url("traces");
    let traces_addr = traces.split('/').next().expect("address").to_string();
    let (code, _) = integration::http_get(&traces_addr, "/").expect("tracing UI");
    assert_eq!(code, 200, "the tracing UI serves its page");
    let prom_addr = prometheus.split('/').next().expect("address").to_string();
    let dashboards = url("dashboards");
    let status = url("status");
    assert!(dashboards.starts_with(&prom_addr), "{dashboards}");
    let (code, _) =
        integration::http_get(status.split('/').next().expect("address"), "/api/status")
            .expect("status page");
    assert_eq!(code, 200);

    // Every target up: (name, health) of each, as Prometheus reports them.
    let targets = || -> Vec<(String, String)> {
        let Some((200, body)) = integration::http_get(&prom_addr, "/api/v1/targets?state=active")
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut t: Vec<(String, String)> = v["data"]["activeTargets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t["labels"]["name"].as_str().unwrap_or("").to_string(),
                            t["health"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        t.sort();
        t
    };
    let all_up = |want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = targets();
            let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
            if names == want && now.iter().all(|(_, h)| h == "up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "targets after 60 s: {now:?}, want {want:?} up"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let rs = ["range-server-1", "range-server-2", "range-server-3"];
    all_up(&[&["broker-1", "pd"][..], &rs[..]].concat());
    let (code, out) = run(&["add", "broker"]);
    assert_eq!(code, Some(0), "add broker:\n{out}");
    all_up(&[&["broker-1", "broker-2", "pd"][..], &rs[..]].concat());

    for page in [
        "strata.html",
        "strata-brokers.html",
        "strata-range-servers.html",
        "strata-pd.html",
        "strata-object-store.html",
    ] {
        let (code, body) = integration::http_get(&prom_addr, &format!("/consoles/{page}"))
            .unwrap_or_else(|| panic!("GET {page}"));
        assert_eq!(code, 200, "{page}: {body}");
        assert!(
            !body.contains("error executing template") && body.contains("PromConsole.Graph"),
            "{page} did not render: {body}"
        );
    }
    // The brokers' table lists both brokers (its queries ran against live data).
    let (_, brokers) =
        integration::http_get(&prom_addr, "/consoles/strata-brokers.html").expect("brokers page");
    assert!(
        brokers.contains("broker-1") && brokers.contains("broker-2"),
        "{brokers}"
    );

    // Traffic and a move, then every PromQL expression of the Grafana dashboard returns data.
    let bootstrap = out_line(&out_up, "Kafka bootstrap: ");
    ok_or_panic(kafka::create_topic(&bootstrap, "graphs", 2, &[]).await);
    let producer = kafka::producer(&bootstrap, &[("acks", "all")]);
    // `n` records over both partitions of "graphs"; whether each was acknowledged.
    let produce = |n: usize| -> bool {
        for i in 0..n {
            kafka::send(
                &producer,
                rdkafka::producer::BaseRecord::with_opaque_to("graphs", Box::new(i))
                    .partition((i % 2) as i32)
                    .payload(&b"some bytes to graph"[..]),
            );
        }
        let sent = kafka::flush(&producer, Duration::from_secs(30));
        sent.iter().all(|d| d.error.is_none())
    };
    assert!(produce(500), "produce failed");
    let _ = ok_or_panic(kafka::read_partition(
        &bootstrap,
        "graphs",
        0,
        rdkafka::Offset::Beginning,
        250,
        Duration::from_secs(30),
    ));
    // A group commits an offset behind the end of partition 0 (the lag panels need one).
    {
        use rdkafka::consumer::{CommitMode, Consumer};
        let consumer = kafka::consumer(&bootstrap, &[("group.id", "dashboards")]);
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets
            .add_partition_offset("graphs", 0, rdkafka::Offset::Offset(100))
            .expect("offset");
        consumer
            .commit(&offsets, CommitMode::Sync)
            .expect("commit an offset");
    }
    let pd_rpc = std::fs::read_to_string(data.path().join("pd/rpc.addr")).expect("pd address");
    let broker_2 = std::fs::read_to_string(data.path().join("broker-2/node_id")).expect("id");
    let moved = std::process::Command::new(integration::bin_dir().join("strata-ctl"))
        .args([
            "--pd",
            pd_rpc.trim(),
            "move",
            "graphs",
            "0",
            broker_2.trim(),
        ])
        .output()
        .expect("strata-ctl move");
    assert!(moved.status.success(), "{moved:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/grafana/strata.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = exprs.clone();
    loop {
        // Traffic goes on, as in a live cluster (the per-partition series are the owners').
        let _ = produce(20);
        let _ = kafka::read_partition(
            &bootstrap,
            "graphs",
            1,
            rdkafka::Offset::Beginning,
            10,
            Duration::from_secs(10),
        );
        waiting.retain(|expr| !returns_data(&prom_addr, expr));
        if waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data after 60 s from: {waiting:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("all {} dashboard expressions return data", exprs.len());

    // One produce through kcat, then its trace in otelite's API.
    let mut kcat = std::process::Command::new("kcat")
        .args([
            "-P", "-b", &bootstrap, "-t", "graphs", "-p", "1", "-k", "kcat-key",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run kcat");
    {
        use std::io::Write;
        let mut stdin = kcat.stdin.take().expect("kcat stdin");
        stdin.write_all(b"traced by kcat\n").expect("write to kcat");
    }
    assert!(kcat.wait().expect("kcat").success(), "kcat produce failed");
    let trace = wait_for_trace(
        &traces_addr,
        "service=strata-broker&search=Produce",
        |spans| is_kcat_produce(spans, 3),
    );
    eprintln!("trace of the kcat produce: {trace}");
    // A partition's open (after the move) is a trace holding PD's side of it, and a fetch of
    // what the tail cache holds says so.
    let open = wait_for_trace(&traces_addr, "service=strata-broker&search=open", |spans| {
        has_span(spans, "OpenStream", "strata-pd")
    });
    let fetch = wait_for_trace(
        &traces_addr,
        "service=strata-broker&search=Fetch",
        |spans| has_span(spans, "tail_cache.read", "strata-broker"),
    );
    eprintln!("trace of a partition's open: {open}, of a fetch from the tail cache: {fetch}");

    let (code, out) = run(&["down"]);
    assert_eq!(code, Some(0), "down:\n{out}");
    for (what, addr) in [("Prometheus", &prom_addr), ("otelite", &traces_addr)] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{what} still listens after down"
        );
    }
}

/// The spans of every trace otelite at `addr` lists for `query` (`service=...&search=...`).
fn otelite_traces(addr: &str, query: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    // otelite caches a listing per query for a while: a new end time each time.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let listing = format!(
        "/api/traces?{query}&limit=1000&end_time={}",
        now_ns + 60_000_000_000
    );
    let listed: serde_json::Value = integration::http_get(addr, &listing)
        .filter(|(code, _)| *code == 200)
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or_default();
    let ids: Vec<String> = listed["traces"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["trace_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.into_iter()
        .filter_map(|id| {
            let (code, body) = integration::http_get(addr, &format!("/api/traces/{id}"))?;
            let detail: serde_json::Value =
                serde_json::from_str(&body).ok().filter(|_| code == 200)?;
            Some((id, detail["spans"].as_array().cloned().unwrap_or_default()))
        })
        .collect()
}

fn span_attr(span: &serde_json::Value, key: &str) -> Option<String> {
    span["attributes"][key].as_str().map(str::to_string)
}

fn span_resource(span: &serde_json::Value, key: &str) -> Option<String> {
    span["resource"]["attributes"][key]
        .as_str()
        .map(str::to_string)
}

/// Waits (60 s at most) until otelite at `addr` holds a trace of `query` for which `check`
/// says `Ok`; `Err` says what the trace lacks. Returns the trace id.
fn wait_for_trace(
    addr: &str,
    query: &str,
    check: impl Fn(&[serde_json::Value]) -> Result<(), String>,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no trace listed");
    loop {
        for (id, spans) in otelite_traces(addr, query) {
            match check(&spans) {
                Ok(()) => return id,
                Err(lacks) => last = format!("trace {id}: {lacks}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace of {query} as wanted in otelite after 60 s; last looked at: {last}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A trace whose root is a broker's Produce request from kcat (client id `rdkafka`) holding
/// an `Append` and a `wal.append` span from each of `range_servers` range servers.
fn is_kcat_produce(spans: &[serde_json::Value], range_servers: usize) -> Result<(), String> {
    let from_kcat = spans.iter().any(|s| {
        s["name"] == "Produce"
            && span_resource(s, "service.name").as_deref() == Some("strata-broker")
            && span_attr(s, "messaging.system").as_deref() == Some("kafka")
            && span_attr(s, "messaging.client.id").as_deref() == Some("rdkafka")
            && span_attr(s, "api").as_deref() == Some("Produce")
    });
    let servers_with = |name: &str| {
        let mut servers: Vec<String> = spans
            .iter()
            .filter(|s| s["name"] == name)
            .filter(|s| span_resource(s, "service.name").as_deref() == Some("strata-range-server"))
            .filter_map(|s| span_resource(s, "service.instance.id"))
            .collect();
        servers.sort();
        servers.dedup();
        servers.len()
    };
    let (appends, wal) = (servers_with("Append"), servers_with("wal.append"));
    if from_kcat && appends >= range_servers && wal >= range_servers {
        Ok(())
    } else {
        Err(format!(
            "from kcat {from_kcat}, Append on {appends} range servers, wal.append on {wal}"
        ))
    }
}

/// A trace holding a span named `name` from `service`.
fn has_span(spans: &[serde_json::Value], name: &str, service: &str) -> Result<(), String> {
    let found = spans
        .iter()
        .any(|s| s["name"] == name && span_resource(s, "service.name").as_deref() == Some(service));
    if found {
        Ok(())
    } else {
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        Err(format!("no {name} from {service} among {names:?}"))
    }
}

/// The text after `prefix` on the line of `out` that starts with it.
fn out_line(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
        .trim()
        .to_string()
}

fn ok_or_panic<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the instant query `expr` returns at least one series with a number (not NaN).
fn returns_data(prom_addr: &str, expr: &str) -> bool {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Some((200, body)) =
        integration::http_get(prom_addr, &format!("/api/v1/query?query={encoded}"))
    else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().is_some_and(|r| {
        r.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(|x| !x.is_nan())
        })
    })
}
