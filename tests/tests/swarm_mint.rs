//! Real processes: a 5-node `scripts/swarm.sh` swarm, driven only by the CLI. An issuer (with
//! `leafnet mint keygen` / `mint sign`) shows one mint file to nodes 0–1 and another to nodes
//! 2–4 for the same series; every node reports the equivocation, `mint proofs --out-dir` exports
//! the proof and `mint verify-proof` checks it with no node involved.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use leafnet_tests::proc::{ScriptSwarm, cli_json, leafnet_bin};

/// Runs the CLI with no node (`--data-dir` is irrelevant for offline commands).
fn offline(args: &[&str]) -> std::process::Output {
    Command::new(leafnet_bin())
        .args(args)
        .output()
        .expect("leafnet runs")
}

#[test]
fn split_view_across_a_real_swarm() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("swarm");
    // Apart from swarm_profiles' range (21,000-26,990 with the API ports).
    let port = 27_000 + (std::process::id() % 300) as u16 * 10;
    let sw = ScriptSwarm::start(&dir, port, 5)?;
    let node = |k: usize| sw.node(k);

    // The issuer's side, offline.
    let key = tmp.path().join("issuer.key");
    let k = key.to_str().unwrap();
    let out = offline(&["--json", "mint", "keygen", "--out", k]);
    anyhow::ensure!(out.status.success(), "keygen: {out:?}");
    let issuer = serde_json::from_slice::<serde_json::Value>(&out.stdout)?["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statements = Vec::new();
    for (name, content) in [("a.mint", "mint file A"), ("b.mint", "mint file B")] {
        let f = tmp.path().join(name);
        std::fs::write(&f, content)?;
        let out = offline(&[
            "mint",
            "sign",
            "--issuer-key",
            k,
            "--asset",
            "GOLD",
            "--series",
            "7",
            f.to_str().unwrap(),
        ]);
        anyhow::ensure!(out.status.success(), "sign: {out:?}");
        statements.push(format!("{}.statement", f.display()));
    }
    // A bad statement file gets one line and a non-zero exit, before any node is asked.
    let junk = tmp.path().join("junk.statement");
    std::fs::write(&junk, b"not a statement")?;
    let out = Command::new(leafnet_bin())
        .args(["--data-dir", node(0).to_str().unwrap(), "mint", "observe"])
        .arg(&junk)
        .output()?;
    anyhow::ensure!(!out.status.success());
    anyhow::ensure!(
        String::from_utf8_lossy(&out.stderr).lines().count() == 1,
        "{out:?}"
    );

    // The split: A to nodes 0-1, B to nodes 2-4.
    for n in 0..5 {
        let st = &statements[usize::from(n >= 2)];
        let r = cli_json(&node(n), &["mint", "observe", st])?;
        anyhow::ensure!(r["new"] == true, "{r}");
    }
    // Every node sees the equivocation within a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..5 {
        loop {
            let r = cli_json(&node(n), &["mint", "status", "--issuer", &issuer])?;
            let eq = r["series"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["equivocation"] == true));
            if eq {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "node{n} never saw it: {r}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // Export the proof from node 4 and check it offline.
    let proofs = tmp.path().join("proofs");
    let r = cli_json(
        &node(4),
        &["mint", "proofs", "--out-dir", proofs.to_str().unwrap()],
    )?;
    let id = r[0]["id"].as_str().unwrap().to_owned();
    let file = proofs.join(format!("{id}.proof"));
    let out = offline(&["--json", "mint", "verify-proof", file.to_str().unwrap()]);
    anyhow::ensure!(out.status.success(), "verify-proof: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(v["valid"] == true && v["issuer"] == issuer.as_str(), "{v}");
    // A damaged proof is refused with one line and exit 1.
    let mut bytes = std::fs::read(&file)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = tmp.path().join("bad.proof");
    std::fs::write(&bad, bytes)?;
    let out = offline(&["mint", "verify-proof", bad.to_str().unwrap()]);
    anyhow::ensure!(out.status.code() == Some(1), "{out:?}");
    Ok(())
}
