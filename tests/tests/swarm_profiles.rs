//! Real processes: a 5-node `scripts/swarm.sh` swarm; profiles set on 3 nodes through the CLI;
//! `profile get` and `profile near` from the other 2 find them.

use std::time::{Duration, Instant};

use leafnet_tests::proc::{ScriptSwarm, cli, cli_json};

#[test]
fn profiles_across_a_real_swarm() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("swarm");
    // A port range away from the defaults and from other runs (two per node, five nodes).
    let port = 21_000 + (std::process::id() % 500) as u16 * 10;
    let sw = ScriptSwarm::start(&dir, port, 5)?;
    let node = |k: usize| sw.node(k);

    // Three owners publish their profiles.
    let places = [
        ("Ada", "52.5200,13.4050"),
        ("Bo", "52.5300,13.4100"),
        ("Cy", "48.8566,2.3522"),
    ];
    let mut accounts = Vec::new();
    for (k, (name, loc)) in places.iter().enumerate() {
        let r = cli_json(
            &node(k),
            &[
                "profile",
                "set",
                "--name",
                name,
                "--location",
                loc,
                "--service",
                "chat",
            ],
        )?;
        accounts.push(
            r["profile"]["account_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    // The other two find them by key...
    for k in [3, 4] {
        for (i, acct) in accounts.iter().enumerate() {
            let p = cli_json(&node(k), &["profile", "get", acct])?;
            assert_eq!(p["name"], places[i].0, "{p}");
            assert_eq!(p["account_id"], acct.as_str());
        }
    }
    // ...and by place: within 5 km of Berlin's centre, Ada first, then Bo; Paris is not there.
    // Cell announcements may still be settling right after publishing: retry for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in [3, 4] {
        loop {
            let r = cli_json(
                &node(k),
                &["profile", "near", "52.52", "13.405", "--radius", "5km"],
            )?;
            let names: Vec<&str> = r["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x["profile"]["name"].as_str())
                .collect();
            if names == ["Ada", "Bo"] {
                assert!(r["results"][0]["distance_m"].as_f64().unwrap() < 10.0);
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node{k}: profile near found {names:?}: {r}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // Filters and a radius that reaches Paris from Berlin (about 880 km).
    let r = cli_json(
        &node(4),
        &[
            "profile", "near", "52.52", "13.405", "--radius", "1000km", "--name", "c*",
        ],
    )?;
    assert_eq!(r["results"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["results"][0]["profile"]["name"], "Cy");

    // Bad input: one line, non-zero exit.
    let out = cli(&node(3), &["profile", "get", "not-an-account"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an account id"));
    let out = cli(&node(3), &["profile", "near", "95", "0", "--radius", "1km"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(
        &node(3),
        &["profile", "set", "--name", "X", "--location", "0,200"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longitude"));
    Ok(())
}
