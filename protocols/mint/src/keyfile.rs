//! Issuer key files: the 32-byte ed25519 secret as 64 lowercase hex characters and a newline,
//! mode 0600 on Unix. The issuer keeps this file offline; the node never needs it.

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Read as _, Write as _},
    path::Path,
};

use ed25519_dalek::SigningKey;

use crate::MintError;

/// Makes a new key from the operating system's randomness.
///
/// This crate has no RNG dependency (ed25519-dalek's `rand_core` feature is off and `getrandom`
/// is not a dependency), so it reads the kernel's CSPRNG through `/dev/urandom` with std; that
/// is what `getrandom` falls back to as well. Fails (rather than making a weak key) where there
/// is no `/dev/urandom`.
pub fn generate() -> Result<SigningKey, MintError> {
    let mut seed = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| MintError::Io(format!("cannot read /dev/urandom for a new key: {e}")))?;
    if seed == [0; 32] {
        // 2^-256 for a working source: a broken one.
        return Err(MintError::Io("/dev/urandom returned only zeros".into()));
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// Makes a new key and writes it to `path` (mode 0600), refusing to overwrite an existing file.
pub fn write_new(path: &Path) -> Result<SigningKey, MintError> {
    let key = generate()?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            MintError::Io(format!(
                "{} exists; refusing to overwrite a key file",
                path.display()
            ))
        } else {
            MintError::Io(format!("cannot create {}: {e}", path.display()))
        }
    })?;
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| MintError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(key)
}

/// Reads a key file: 64 hex characters, surrounding whitespace ignored.
pub fn read(path: &Path) -> Result<SigningKey, MintError> {
    let f = File::open(path).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            MintError::Io(format!("key file {} does not exist", path.display()))
        } else {
            MintError::Io(format!("cannot read key file {}: {e}", path.display()))
        }
    })?;
    // A key file is 65 bytes; do not read a huge file into memory to say so.
    let mut text = String::new();
    f.take(1024).read_to_string(&mut text).map_err(|e| {
        if e.kind() == ErrorKind::InvalidData {
            MintError::BadKeyFile(format!("{} is not text", path.display()))
        } else {
            MintError::Io(format!("cannot read key file {}: {e}", path.display()))
        }
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
        MintError::BadKeyFile(format!(
            "{} must hold 64 hex characters (an issuer key from `leafnet mint keygen`)",
            path.display()
        ))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("issuer.key");
        let k = write_new(&p).unwrap();
        assert_eq!(read(&p).unwrap().to_bytes(), k.to_bytes());
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(text, text.to_lowercase());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No overwrite; the first key is intact.
        assert!(matches!(write_new(&p), Err(MintError::Io(m)) if m.contains("refusing")));
        assert_eq!(read(&p).unwrap().to_bytes(), k.to_bytes());
        // Two keys differ.
        assert_ne!(generate().unwrap().to_bytes(), k.to_bytes());
    }

    #[test]
    fn bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        assert!(matches!(read(&missing), Err(MintError::Io(m)) if m.contains("does not exist")));
        for content in [
            &b"hello"[..],
            &[b'a'; 63],
            &[b'g'; 64],
            &[0xff; 64],
            &[b'a'; 2000],
        ] {
            let p = dir.path().join("bad.key");
            std::fs::write(&p, content).unwrap();
            let err = read(&p).unwrap_err();
            assert!(matches!(err, MintError::BadKeyFile(_)), "{err:?}");
            assert!(!err.is_misbehaviour());
        }
        let p = dir.path().join("upper.key");
        std::fs::write(&p, format!("  {}\r\n", "AB".repeat(32))).unwrap();
        assert_eq!(read(&p).unwrap().to_bytes(), [0xab; 32]);
    }
}
