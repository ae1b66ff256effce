//! PD's live status page: `/api/status` (the JSON scripts read) names every node and every
//! partition's leader, and `/` shown in headless Chromium (Playwright) lists the three brokers
//! and the topic's leaders, then, without a reload, the killed broker down and its partitions
//! moved. `STRATA_SCREENSHOT=path.png` keeps a screenshot of the page at the end.

use integration::testing::*;
use integration::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_cluster_and_a_failure_live() {
    require_command("chromium", "apt-get install chromium");
    require_python_modules("playwright", "Playwright (PyPI playwright)");
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(3),
        &[("shown", 6)],
    )
    .await;
    let ids: Vec<u64> = (0..3)
        .map(|i| cluster.broker_id(i).expect("broker id"))
        .collect();
    let (code, body) =
        integration::http_get(&cluster.pd.http_addr, "/api/status").expect("GET /api/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    for id in &ids {
        let n = nodes
            .iter()
            .find(|n| n["id"] == *id)
            .unwrap_or_else(|| panic!("broker {id} not in {nodes:?}"));
        assert_eq!(n["kind"], "broker");
        assert_eq!(n["alive"], true);
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
    }
    let topic = status["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "shown"))
        .expect("topic shown");
    let leaders: Vec<u64> = topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(|p| p["leader"].as_u64())
        .collect();
    assert_eq!(leaders.len(), 6, "{topic}");
    // Each partition's data stream: its open range, on three range servers.
    for p in topic["partitions"].as_array().expect("partitions") {
        let ranges = p["ranges"].as_array().expect("ranges");
        let last = ranges.last().expect("a range");
        assert!(last["end"].is_null(), "{p}");
        assert_eq!(last["servers"].as_array().map(Vec::len), Some(3), "{p}");
    }
    let (code, page) = integration::http_get(&cluster.pd.http_addr, "/").expect("GET /");
    assert_eq!(code, 200);
    assert!(
        page.contains("/api/status") && !page.contains("http://") && !page.contains("https://"),
        "the page must load nothing from elsewhere"
    );

    // broker-2 is killed by the browser test itself, between its two looks.
    let victim = 1;
    let pid = cluster.broker(victim).pid().expect("broker-2 runs");
    let url = format!("http://{}/", cluster.pd.http_addr);
    let brokers = ids
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (kill_id, kill_pid) = (ids[victim].to_string(), pid.to_string());
    let screenshot = std::env::var("STRATA_SCREENSHOT").ok();
    let mut args = vec![
        "--url",
        &url,
        "--topic",
        "shown",
        "--partitions",
        "6",
        "--brokers",
        &brokers,
        "--kill-id",
        &kill_id,
        "--kill-pid",
        &kill_pid,
    ];
    if let Some(path) = &screenshot {
        args.extend(["--screenshot", path.as_str()]);
    }
    let out = run_python_script(&cluster, "status_page_test.py", &args);
    eprintln!("{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
    // The script saw it exit (SIGKILL); reap it here.
    cluster.broker(victim).kill();
    assert!(!cluster.broker(victim).is_running(), "broker-2 still runs");
}
