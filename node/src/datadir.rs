//! The data directory: `leafnet.toml`, `node.key`, `leafnet.redb`, `api.token`, `api.addr`.
//!
//! The first run creates what is missing (directory 0700, key and token 0600). Nothing that
//! exists is ever overwritten: a file that cannot be read or parsed is an error naming it.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use libp2p::identity::Keypair;

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data dir at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `--data-dir`, else `LEAFNET_DATA_DIR` (handled by clap), else `$XDG_DATA_HOME/leafnet`.
    pub fn default_root() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("leafnet")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("leafnet.toml")
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }
    /// The human's account key (ed25519 secret, hex), created on first run.
    pub fn account_key(&self) -> PathBuf {
        self.root.join("account.key")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("leafnet.redb")
    }
    pub fn api_token(&self) -> PathBuf {
        self.root.join("api.token")
    }
    /// Written by a running node: the address its API actually listens on.
    pub fn api_addr(&self) -> PathBuf {
        self.root.join("api.addr")
    }

    /// Creates the directory (0700) if it does not exist and checks it is usable.
    pub fn ensure(&self) -> anyhow::Result<()> {
        if !self.root.exists() {
            fs::create_dir_all(&self.root)
                .with_context(|| format!("cannot create data dir {}", self.root.display()))?;
            set_mode(&self.root, 0o700)?;
        }
        let md = fs::metadata(&self.root)
            .with_context(|| format!("cannot read data dir {}", self.root.display()))?;
        if !md.is_dir() {
            bail!("data dir {} is not a directory", self.root.display());
        }
        fs::read_dir(&self.root)
            .with_context(|| format!("cannot read data dir {}", self.root.display()))?;
        Ok(())
    }

    /// Writes the default config if there is none.
    pub fn ensure_config(&self, text: &str) -> anyhow::Result<bool> {
        let p = self.config();
        if p.exists() {
            return Ok(false);
        }
        write_new(&p, text.as_bytes(), 0o644)?;
        Ok(true)
    }

    /// Loads the node key, creating one on first run.
    pub fn load_or_create_key(&self) -> anyhow::Result<Keypair> {
        let p = self.node_key();
        if p.exists() {
            let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            return Keypair::from_protobuf_encoding(&bytes)
                .with_context(|| format!("{} is not a valid node key", p.display()));
        }
        let kp = Keypair::generate_ed25519();
        let bytes = kp
            .to_protobuf_encoding()
            .context("cannot encode node key")?;
        write_new(&p, &bytes, 0o600)?;
        Ok(kp)
    }

    /// Loads the account key, creating one on first run.
    pub fn load_or_create_account(&self) -> anyhow::Result<ed25519_dalek::SigningKey> {
        let p = self.account_key();
        if p.exists() {
            let text =
                fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret)
                .map_err(|_| anyhow::anyhow!("{} is not a valid account key", p.display()))?;
            return Ok(ed25519_dalek::SigningKey::from_bytes(&secret));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        write_new(&p, hex::encode(secret).as_bytes(), 0o600)?;
        Ok(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    /// Loads the API token, creating one on first run.
    pub fn load_or_create_token(&self) -> anyhow::Result<String> {
        let p = self.api_token();
        if p.exists() {
            return self.read_token();
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let token = hex::encode(raw);
        write_new(&p, token.as_bytes(), 0o600)?;
        Ok(token)
    }

    /// Reads the API token (for CLI clients).
    pub fn read_token(&self) -> anyhow::Result<String> {
        let p = self.api_token();
        let t = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            bail!("{} is empty", p.display());
        }
        Ok(t)
    }
}

/// Creates `path` with `mode`, refusing to replace an existing file.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_creates_key_and_token_0600_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path().join("n"));
        d.ensure().unwrap();
        let k1 = d.load_or_create_key().unwrap();
        let t1 = d.load_or_create_token().unwrap();
        assert_eq!(d.load_or_create_key().unwrap().public(), k1.public());
        assert_eq!(d.load_or_create_token().unwrap(), t1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(m(d.node_key()), 0o600);
            assert_eq!(m(d.api_token()), 0o600);
            assert_eq!(m(d.root().to_owned()), 0o700);
        }
    }

    #[test]
    fn corrupt_key_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        fs::write(d.node_key(), b"garbage").unwrap();
        let e = d.load_or_create_key().unwrap_err().to_string();
        assert!(e.contains("node.key"), "{e}");
        assert_eq!(fs::read(d.node_key()).unwrap(), b"garbage");
    }
}
