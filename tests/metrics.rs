//! The Prometheus endpoint (`metricsProvider.httpPort`, `/metrics`). Volery only: the Debian
//! ZooKeeper has no Prometheus provider on its class path.

mod common;

use std::collections::BTreeMap;

use common::{bounded, create_persistent, free_port, unique_path, Flavor, Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request; returns the status line and the body.
async fn http(port: u16, request: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    common::within(10, "metrics response", s.read_to_end(&mut out))
        .await
        .expect("read");
    let text = String::from_utf8(out).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a length");
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// `name{labels}` -> value, for every sample line.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            )
        })
        .collect()
}

async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (status, body) = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let kind = line.rsplit(' ').next().unwrap();
        assert!(["gauge", "counter", "summary"].contains(&kind), "{line}");
    }
    samples(&body)
}

#[tokio::test]
async fn metrics_endpoint_reports_zookeeper_names_and_moves() {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return;
    }
    bounded(async {
        let port = free_port();
        let server = Server::start_with(Options {
            metrics_port: Some(port),
            ..Options::default()
        })
        .await;
        let before = scrape(port).await;
        for name in [
            "znode_count",
            "watch_count",
            "ephemerals_count",
            "approximate_data_size",
            "num_alive_connections",
            "global_sessions",
            "outstanding_requests",
            "avg_latency",
            "min_latency",
            "max_latency",
            "packets_received",
            "packets_sent",
            "open_file_descriptor_count",
            "fsynctime_count",
            "fsynctime_sum",
            "fsynctime{quantile=\"0.5\"}",
            "readlatency_count",
            "updatelatency_count",
        ] {
            assert!(before.contains_key(name), "no {name} in {before:?}");
        }
        assert_eq!(
            before["znode_count"], 5.0,
            "ZooKeeper's count for a fresh tree"
        );

        let client = server.client().await;
        let path = unique_path("metrics");
        for i in 0..3 {
            create_persistent(&client, &format!("{path}-{i}"), b"v").await;
        }
        client.get_data(&format!("{path}-0")).await.expect("get");
        let _ = client.get_data(&format!("{path}-missing")).await;

        let after = scrape(port).await;
        assert_eq!(after["znode_count"], before["znode_count"] + 3.0);
        assert_eq!(after["global_sessions"], 1.0);
        assert!(after["num_alive_connections"] >= 1.0);
        assert!(
            after["fsynctime_count"] > before["fsynctime_count"],
            "creates are synced"
        );
        // The Rust client creates with opcode create2.
        let creates = |m: &BTreeMap<String, f64>, name: &str| {
            ["create", "create2"]
                .iter()
                .map(|op| m.get(&name.replace("OP", op)).copied().unwrap_or(0.0))
                .sum::<f64>()
        };
        assert_eq!(creates(&after, "requests_total{op=\"OP\"}"), 3.0);
        assert_eq!(after["requests_total{op=\"getData\"}"], 2.0);
        assert_eq!(after["request_errors_total{op=\"getData\"}"], 1.0, "NoNode");
        assert_eq!(creates(&after, "request_latency_ms_count{op=\"OP\"}"), 3.0);
        assert!(creates(&after, "request_latency_ms{op=\"OP\",quantile=\"0.99\"}") > 0.0);
        assert!(after["updatelatency_count"] >= 3.0);
        assert!(after["packets_received"] > before["packets_received"]);

        let (status, _) = http(port, "GET /nothing HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _) = http(port, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    })
    .await
}
