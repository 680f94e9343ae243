//! Real `leafnet` processes on loopback: one TCP+QUIC node, one TCP-only, one QUIC-only. They
//! connect; `status` and `peers` through the CLI say the right things.

use std::time::{Duration, Instant};

use leafnet_tests::proc::{NodeProc, cli, cli_json};

fn common<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--network",
        "local",
        "--local",
        "true",
        "--api",
        "127.0.0.1:0",
    ];
    v.extend_from_slice(extra);
    v
}

/// A bare HTTP/1.1 GET (no token), returning the whole response.
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr.trim())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: leafnet\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn find_addr(status: &serde_json::Value, needle: &str) -> String {
    status["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains(needle))
        .map(|a| format!("{a}/p2p/{}", status["peer_id"].as_str().unwrap_or_default()))
        .unwrap_or_else(|| panic!("no {needle} address in {status}"))
}

#[test]
fn tcp_only_quic_only_and_both_connect() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d0, d1, d2) = (
        tmp.path().join("both"),
        tmp.path().join("tcp"),
        tmp.path().join("quic"),
    );
    let mut n0 = NodeProc::spawn(
        &d0,
        &common(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ]),
    )?;
    let s0 = n0.wait_ready(Duration::from_secs(30))?;
    let (tcp0, quic0) = (find_addr(&s0, "/tcp/"), find_addr(&s0, "/quic-v1"));
    let mut n1 = NodeProc::spawn(
        &d1,
        &common(&[
            "--transport",
            "tcp",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &tcp0,
        ]),
    )?;
    let mut n2 = NodeProc::spawn(
        &d2,
        &common(&[
            "--transport",
            "quic",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            &quic0,
        ]),
    )?;
    let s1 = n1.wait_ready(Duration::from_secs(30))?;
    let s2 = n2.wait_ready(Duration::from_secs(30))?;
    assert!(
        s1["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.as_str().unwrap().contains("/tcp/"))
    );
    assert!(
        s2["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.as_str().unwrap().contains("/quic-v1"))
    );

    // Wait until node0 sees both, with the right transports.
    let deadline = Instant::now() + Duration::from_secs(30);
    let peers0 = loop {
        let p = cli_json(&d0, &["peers"])?;
        let arr = p.as_array().cloned().unwrap_or_default();
        let has = |id: &serde_json::Value, t: &str| {
            arr.iter()
                .any(|x| x["peer_id"] == *id && x["transport"] == t && x["direction"] == "inbound")
        };
        if has(&s1["peer_id"], "tcp") && has(&s2["peer_id"], "quic") {
            break arr;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node0 peers never showed both: {p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(peers0.len(), 2, "{peers0:?}");

    let p1 = cli_json(&d1, &["peers"])?;
    assert_eq!(p1[0]["peer_id"], s0["peer_id"]);
    assert_eq!(p1[0]["transport"], "tcp");
    assert_eq!(p1[0]["direction"], "outbound");
    let p2 = cli_json(&d2, &["peers"])?;
    assert_eq!(p2[0]["transport"], "quic");

    // status: connected peers, routing table, reachability on a local network, storage.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cli_json(&d0, &["status"])?;
        if s["connected_peers"] == 2 && s["routing_table_size"] == 2 {
            assert_eq!(s["reachability"], "public");
            assert_eq!(s["kad_mode"], "server");
            assert_eq!(s["network"], "local");
            assert!(s["storage"]["file_bytes"].as_u64().unwrap_or(0) > 0);
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "node0 status never settled: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // RTT gets measured by ping on every connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cli_json(&d1, &["peers"])?[0]["rtt_ms"].is_null() {
        anyhow::ensure!(Instant::now() < deadline, "no rtt measured");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The text form works too.
    let out = cli(&d0, &["status"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(s0["peer_id"].as_str().unwrap()));

    // /metrics: Prometheus text with libp2p's and leafnet's own series, no token needed.
    let metrics = http_get(&std::fs::read_to_string(d0.join("api.addr"))?, "/metrics")?;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("leafnet_connected_peers 2"), "{metrics}");
    assert!(metrics.contains("libp2p_kad"), "no kad metrics");
    // /v1 needs the token.
    assert!(
        http_get(&std::fs::read_to_string(d0.join("api.addr"))?, "/v1/status")?
            .starts_with("HTTP/1.1 401")
    );

    for n in [&mut n1, &mut n2, &mut n0] {
        assert!(n.stop(), "node did not stop on SIGTERM: {}", n.log());
    }
    assert!(
        !d0.join("api.addr").exists(),
        "api.addr left behind after a clean stop"
    );
    Ok(())
}
