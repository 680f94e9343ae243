//! Interop with another libp2p implementation: a js-libp2p peer (`tests/interop/probe.mjs`) dials a
//! real `leafnet` process over TCP + noise + yamux and runs identify, ping, and Kademlia FIND_NODE
//! and GET_PROVIDERS on leafnet's protocol id `/leafnet/local/kad/1.0.0`, for the raw key
//! `/leafnet/dht/interop-key`.
//!
//! Needs Node.js (>= 20) and, the first time, npm with access to the registry (`npm ci` in
//! `tests/interop`, only when its `node_modules` is missing or older than the lock file). Without
//! them the test says why on stderr and passes without checking anything.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use leafnet_tests::proc::{NodeProc, cli_json};
use serde_json::Value;

const KEY_NAME: &str = "interop-key";
const KAD_PROTOCOL: &str = "/leafnet/local/kad/1.0.0";

/// Writes to the real stderr: the test harness captures `eprintln!`, which would hide a skip.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "interop_js: {msg}");
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// `PROGRAM --version`, or `None` when it cannot run.
fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` with stdout/stderr to files in `dir`, killing it by PID after `timeout`; returns
/// whether it succeeded, its stdout and its stderr.
fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<(bool, String, String)> {
    let (out_path, err_path) = (
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.err")),
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    let deadline = Instant::now() + timeout;
    let ok = loop {
        if let Some(st) = child.try_wait()? {
            break st.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            anyhow::bail!("{name} still running after {timeout:?}, killed; stderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok((
        ok,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    ))
}

/// `node_modules` as `npm ci` leaves it after a complete install, at least as new as the lock file.
fn modules_installed(dir: &Path) -> bool {
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        mtime(dir.join("node_modules/.package-lock.json")),
        mtime(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => {
            installed >= lock && dir.join("node_modules/libp2p/package.json").exists()
        }
        _ => false,
    }
}

/// Makes sure the js side can run; `Err(reason)` to skip.
fn prepare_js(dir: &Path, scratch: &Path) -> Result<(), String> {
    let node = version_of("node").ok_or("`node` is not on PATH (or does not run)")?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("Node.js {node} is too old: js-libp2p needs >= 20"));
    }
    if modules_installed(dir) {
        return Ok(());
    }
    let npm = version_of("npm")
        .ok_or("`npm` is not on PATH and tests/interop/node_modules is missing")?;
    say(&format!(
        "node {node}, npm {npm}: running npm ci in {}",
        dir.display()
    ));
    let started = Instant::now();
    let mut cmd = Command::new("npm");
    cmd.arg("ci")
        .arg("--prefix")
        .arg(dir)
        .args(["--no-audit", "--no-fund"]);
    match run_bounded(cmd, scratch, "npm-ci", Duration::from_secs(300)) {
        Ok((true, _, _)) if modules_installed(dir) => {
            say(&format!(
                "npm ci took {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Ok((true, _, _)) => Err("npm ci succeeded but node_modules looks incomplete".into()),
        Ok((false, _, err)) => Err(format!("npm ci failed: {}", err.trim())),
        Err(e) => Err(format!("npm ci: {e:#}")),
    }
}

fn common<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    // TCP only: the js peer speaks TCP, and a leafnet node with QUIC enabled as well cannot dial
    // a /tcp/ address (its DNS-wrapped QUIC transport takes every address), which would keep the
    // second node from joining the first.
    let mut v = vec![
        "--network",
        "local",
        "--local",
        "true",
        "--transport",
        "tcp",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
    ];
    v.extend_from_slice(extra);
    v
}

fn tcp_addr(status: &Value) -> anyhow::Result<String> {
    let peer = status["peer_id"].as_str().context("no peer_id")?;
    let a = status["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .with_context(|| format!("no loopback TCP address in {status}"))?;
    Ok(format!("{a}/p2p/{peer}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn js_libp2p_identifies_pings_and_queries_kademlia() -> anyhow::Result<()> {
    let dir = interop_dir();
    let tmp = tempfile::tempdir()?;
    if let Err(reason) = prepare_js(&dir, tmp.path()) {
        say(&format!("SKIPPED, nothing checked: {reason}"));
        return Ok(());
    }

    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    let mut n1 = NodeProc::spawn(&d1, &common(&[]))?;
    let s1 = n1.wait_ready(Duration::from_secs(30))?;
    let addr1 = tcp_addr(&s1)?;
    let id1 = s1["peer_id"].as_str().context("peer_id")?.to_owned();
    let mut n2 = NodeProc::spawn(&d2, &common(&["--bootstrap", &addr1]))?;
    let s2 = n2.wait_ready(Duration::from_secs(30))?;
    let id2 = s2["peer_id"].as_str().context("peer_id")?.to_owned();

    // FIND_NODE on node 1 has something to return once node 2 is in its routing table.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cli_json(&d1, &["status"])?;
        if s["routing_table_size"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node 2 never entered node 1's routing table: {s}\n{}\n{}",
            n1.log(),
            n2.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let provided = cli_json(&d1, &["dht", "provide", KEY_NAME])?;
    anyhow::ensure!(
        provided["key"] == format!("/leafnet/dht/{KEY_NAME}"),
        "{provided}"
    );

    let mut cmd = Command::new("node");
    cmd.arg(dir.join("probe.mjs"))
        .arg(&addr1)
        .arg(KEY_NAME)
        .current_dir(&dir);
    let (ok, out, err) = run_bounded(cmd, tmp.path(), "probe", Duration::from_secs(45))?;
    anyhow::ensure!(
        ok,
        "probe failed: {}\n--- node 1 log:\n{}",
        err.trim(),
        n1.log()
    );
    let line = out.lines().last().context("probe printed nothing")?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("probe output {line}"))?;
    say(&format!("js-libp2p saw: {line}"));

    assert_eq!(v["peer_id"], id1.as_str(), "{v}");
    let agent = v["agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("leafnet/"), "agent {agent}");
    assert_eq!(v["protocol_version"], "/leafnet/local/1.0.0", "{v}");
    let protocols = strings(&v["protocols"]);
    for p in [KAD_PROTOCOL, "/ipfs/ping/1.0.0", "/ipfs/id/1.0.0"] {
        assert!(protocols.contains(&p), "{p} not in {protocols:?}");
    }
    assert!(v["ping_ms"].as_f64().unwrap_or(0.0) > 0.0, "ping_ms: {v}");
    // The node's own FIND_NODE reply lists node 2. js kad-dht's iterative lookup ends with the
    // peers that answered it: node 1 at least (js only follows a returned peer that is closer to
    // the key than the peer that returned it, so node 2 depends on the random peer ids).
    let closest = strings(&v["closest_peers"]);
    assert!(
        closest.contains(&id2.as_str()),
        "closest_peers {closest:?} lacks node 2 {id2}"
    );
    let walked = strings(&v["closest_peers_query"]);
    assert!(
        walked.contains(&id1.as_str()),
        "closest_peers_query {walked:?} lacks node 1 {id1}"
    );
    let providers = v["providers"].as_array().context("providers")?;
    let p1 = providers
        .iter()
        .find(|p| p["id"] == id1.as_str())
        .with_context(|| format!("node 1 is not among the providers: {v}"))?;
    let addrs = strings(&p1["addrs"]);
    assert!(
        addrs.iter().any(|a| a.starts_with("/ip4/127.0.0.1/tcp/")),
        "provider addresses {addrs:?}"
    );

    for n in [&mut n2, &mut n1] {
        assert!(
            n.child.try_wait()?.is_none(),
            "a node died during the probe: {}",
            n.log()
        );
        assert!(n.stop(), "node did not stop on SIGTERM: {}", n.log());
    }
    Ok(())
}
