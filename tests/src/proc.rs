//! Real `leafnet` processes on loopback: spawn, drive through the CLI, kill by PID.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// The `leafnet` binary: `LEAFNET_BIN`, else the one cargo built next to this test executable
/// (`target/<profile>/leafnet`). `cargo test -p leafnet-tests` does not build another package's
/// binary, so the first caller builds it when it is missing.
pub fn leafnet_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("LEAFNET_BIN") {
            return p.into();
        }
        // A program in target/<profile>/ has it beside itself; a test in
        // target/<profile>/deps/ one level up.
        let exe = std::env::current_exe().unwrap_or_default();
        let own = exe.parent().unwrap_or(Path::new("target/debug"));
        let dir = if own.join("leafnet").exists() || !own.ends_with("deps") {
            own
        } else {
            own.parent().unwrap_or(own)
        };
        let bin = dir.join("leafnet");
        if !bin.exists() {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["build", "-p", "leafnet-node", "--bin", "leafnet"]);
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("cargo runs");
            assert!(st.success(), "building the leafnet binary failed");
        }
        bin
    })
    .clone()
}

/// Runs `leafnet --data-dir DIR ARGS…` to completion.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(leafnet_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("LEAFNET_DATA_DIR")
        .output()
        .expect("leafnet binary runs")
}

/// Runs a CLI command with `--json` and parses its output.
pub fn cli_json(dir: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let out = cli(dir, &a);
    if !out.status.success() {
        anyhow::bail!(
            "leafnet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("json output")
}

/// A `leafnet node run` process, killed by PID when dropped.
#[derive(Debug)]
pub struct NodeProc {
    pub child: Child,
    pub dir: PathBuf,
}

impl NodeProc {
    /// Starts `leafnet --data-dir DIR node run ARGS…`, stderr to DIR/node.log.
    pub fn spawn(dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with(&leafnet_bin(), dir, args)
    }

    /// [`NodeProc::spawn`] with an explicit `leafnet` binary (benchmarks name theirs).
    pub fn spawn_with(
        bin: &Path,
        dir: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .arg("node")
            .arg("run")
            .args(args)
            .env_remove("LEAFNET_DATA_DIR")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(Self {
            child,
            dir: dir.to_owned(),
        })
    }

    /// Waits until the API answers `status`, or the process exits, or `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                anyhow::bail!("node exited with {st}: {}", self.log());
            }
            if self.dir.join("api.addr").exists()
                && let Ok(v) = cli_json(&self.dir, &["status"])
            {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("node not ready after {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait up to 10 s, then SIGKILL; returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `scripts/swarm.sh` swarm of real nodes in `dir`, with p2p ports from `port` and API ports
/// from `port + 1000`; stopped (by the script, which kills only its own PIDs) when dropped.
#[derive(Debug)]
pub struct ScriptSwarm {
    dir: PathBuf,
    port: u16,
}

impl ScriptSwarm {
    /// Runs `swarm.sh start n`; fails with the script's output when it fails.
    pub fn start(dir: &Path, port: u16, n: usize) -> anyhow::Result<Self> {
        let s = Self {
            dir: dir.to_owned(),
            port,
        };
        let out = s.run(&["start", &n.to_string()]);
        anyhow::ensure!(
            out.status.success(),
            "swarm.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(s)
    }

    /// Runs `scripts/swarm.sh ARGS` for this swarm.
    pub fn run(&self, args: &[&str]) -> Output {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new(".."))
            .to_owned();
        Command::new("bash")
            .arg(repo.join("scripts/swarm.sh"))
            .args(args)
            .env("LEAFNET_SWARM_DIR", &self.dir)
            .env("LEAFNET_BIN", leafnet_bin())
            .env("LEAFNET_SWARM_PORT", self.port.to_string())
            .env("LEAFNET_SWARM_API_PORT", (self.port + 1000).to_string())
            .env("LEAFNET_SWARM_TIMEOUT", "90")
            .output()
            .unwrap_or_else(|e| panic!("bash runs: {e}"))
    }

    /// Node `k`'s data dir.
    pub fn node(&self, k: usize) -> PathBuf {
        self.dir.join(format!("node{k}"))
    }
}

impl Drop for ScriptSwarm {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}
