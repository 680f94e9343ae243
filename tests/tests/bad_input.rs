//! Bad input gets one clear `error:` line naming the problem, a non-zero exit, and nothing
//! in the data dir is overwritten.

use std::{path::Path, process::Output, time::Duration};

use leafnet_tests::proc::{NodeProc, cli};

const BASE: &[&str] = &[
    "--network",
    "local",
    "--local",
    "true",
    "--api",
    "127.0.0.1:0",
];

fn run_node(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["node", "run"];
    args.extend_from_slice(BASE);
    args.extend_from_slice(extra);
    cli(dir, &args)
}

/// Exactly one `error:` line, containing every `needle`; exit code `code`.
fn assert_one_error(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "want one error line, got: {stderr}");
    for n in needles {
        assert!(
            errors[0].contains(n),
            "error line lacks {n:?}: {}",
            errors[0]
        );
    }
    assert_eq!(out.status.code(), Some(code), "{stderr}");
}

#[test]
fn malformed_multiaddr() {
    let d = tempfile::tempdir().unwrap();
    assert_one_error(
        &run_node(d.path(), &["--listen", "/ip4/127.0.0.1/tcp/notaport"]),
        1,
        &["p2p.listen[0]", "notaport"],
    );
    assert_one_error(
        &run_node(d.path(), &["--bootstrap", "hello"]),
        1,
        &["p2p.bootstrap[0]", "hello"],
    );
    let out = cli(d.path(), &["dial", "/ip4/nope"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn unknown_transport() {
    let d = tempfile::tempdir().unwrap();
    assert_one_error(
        &run_node(d.path(), &["--transport", "pigeon"]),
        1,
        &["unknown transport 'pigeon'"],
    );
}

#[test]
fn port_in_use() {
    let d = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    assert_one_error(
        &run_node(d.path(), &["--transport", "tcp", "--listen", &listen]),
        1,
        &[&listen, "in use"],
    );
    // the API port, too
    let api = format!("127.0.0.1:{port}");
    let out = cli(
        d.path(),
        &[
            "node",
            "run",
            "--network",
            "local",
            "--transport",
            "tcp",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            &api,
        ],
    );
    assert_one_error(&out, 1, &["control API", &api, "in use"]);
}

#[test]
fn unusable_data_dir() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert_one_error(&run_node(&file, &[]), 1, &["not-a-dir"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // a data dir inside a file cannot be created
    assert_one_error(
        &run_node(&file.join("sub"), &[]),
        1,
        &["cannot create data dir"],
    );
}

#[test]
fn corrupt_redb_file_is_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let junk = vec![0x42u8; 10_000];
    std::fs::write(d.path().join("leafnet.redb"), &junk).unwrap();
    assert_one_error(
        &run_node(d.path(), &["--listen", "/ip4/127.0.0.1/tcp/0"]),
        1,
        &["leafnet.redb", "corrupt"],
    );
    assert_eq!(std::fs::read(d.path().join("leafnet.redb")).unwrap(), junk);
}

#[test]
fn corrupt_config_and_key_are_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let cfg = "[p2p]\nlisten = 7\n";
    std::fs::write(d.path().join("leafnet.toml"), cfg).unwrap();
    assert_one_error(&run_node(d.path(), &[]), 1, &["leafnet.toml", "line 2"]);
    assert_eq!(
        std::fs::read_to_string(d.path().join("leafnet.toml")).unwrap(),
        cfg
    );
    assert_one_error(&cli(d.path(), &["config", "show"]), 1, &["leafnet.toml"]);

    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("node.key"), b"not a key").unwrap();
    assert_one_error(
        &run_node(d.path(), &["--listen", "/ip4/127.0.0.1/tcp/0"]),
        1,
        &["node.key"],
    );
    assert_eq!(
        std::fs::read(d.path().join("node.key")).unwrap(),
        b"not a key"
    );
}

#[test]
fn no_node_running_exits_2() {
    let d = tempfile::tempdir().unwrap();
    for args in [&["status"][..], &["peers"], &["dht", "providers", "x"]] {
        assert_one_error(&cli(d.path(), args), 2, &["no node running"]);
    }
}

#[test]
fn wrong_token_and_unknown_namespace_against_a_running_node() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("n");
    let mut node = NodeProc::spawn(
        &dir,
        &[BASE, &["--listen", "/ip4/127.0.0.1/tcp/0"]].concat(),
    )
    .unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();

    // unknown key namespace, and a namespace that takes no provider records
    assert_one_error(
        &cli(&dir, &["dht", "provide", "/leafnet/bogus/x"]),
        1,
        &["unknown key namespace 'bogus'"],
    );
    assert_one_error(
        &cli(&dir, &["dht", "providers", "/ipfs/x"]),
        1,
        &["bad key"],
    );
    assert_one_error(
        &cli(&dir, &["dht", "provide", "/leafnet/node/x"]),
        1,
        &["takes no provider records"],
    );

    // A second data dir pointing at the same API with another token.
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(dir.join("api.addr"), other.join("api.addr")).unwrap();
    std::fs::write(other.join("api.token"), "0".repeat(64)).unwrap();
    assert_one_error(&cli(&other, &["status"]), 1, &["refused the API token"]);

    // A second node on the same data dir: the database is in use.
    let out = run_node(&dir, &["--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_one_error(&out, 1, &["in use"]);
    assert!(node.stop());
}
