//! The bank's master secret and the keys derived from it.
//!
//! Processes that share a data directory share the secret file `secret.key` (created on first
//! start, mode 0600) and so verify each other's tokens; `--token-secret` overrides the file.
//! Each use gets its own key, derived with HMAC-SHA256 under a label, so a key leaked from one
//! use does not open another.

use anyhow::Context;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The master secret; never printed.
#[derive(Clone)]
pub struct MasterSecret(Vec<u8>);

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(***)")
    }
}

/// A derived 32-byte key; never printed.
#[derive(Clone)]
pub struct DerivedKey(pub [u8; 32]);

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(***)")
    }
}

impl MasterSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() >= 16,
            "the token secret must be at least 16 bytes"
        );
        Ok(Self(bytes))
    }

    /// Reads `secret.key` under the data directory, creating it on first start.
    ///
    /// Creation is race-free between processes: the file is written under a temporary name and
    /// hard-linked into place, so the first writer wins and everyone reads the winner's secret.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("secret.key");
        if !path.exists() {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let temp = data_dir.join(format!("secret.key.{}", std::process::id()));
            write_private(&temp, hex::encode(bytes).as_bytes())?;
            let linked = std::fs::hard_link(&temp, &path);
            let _ = std::fs::remove_file(&temp);
            if let Err(error) = linked {
                if error.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(error).context("installing secret.key");
                }
            }
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let bytes = hex::decode(text.trim()).context("secret.key is not hex")?;
        Self::from_bytes(bytes)
    }

    pub fn derive(&self, label: &str) -> DerivedKey {
        DerivedKey(hmac_sha256(&self.0, label.as_bytes()))
    }
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of an HMAC-SHA256 tag.
pub fn verify_hmac_sha256(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

#[cold]
fn unreachable_hmac() -> ! {
    panic!("hmac accepts keys of any length")
}

/// Makes every file and directory this process creates private to its user (umask 077):
/// SQLite's databases and their -wal and -shm files, the event log, the secret. Call once at
/// start, before anything is created.
pub fn private_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// Creates the data directory private to the service user (0700), or tightens an existing one,
/// and the files in it, that others could read.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode != 0o700 {
            match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                Ok(()) => {
                    tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "data directory made private (0700)")
                }
                // Not ours to change (a volume's root owned by root, say): the files stay 0600.
                Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data directory is not private and cannot be made so; use a folder of the bank's own")
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("making {} private", dir.display()))
                }
            }
        }
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let Ok(metadata) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            if metadata.is_file() && mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))
                    .with_context(|| format!("making {} private", path.display()))?;
                tracing::warn!(file = %path.display(), was = format!("{mode:o}"), "data file made private");
            }
        }
    }
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterSecret::load_or_create(dir.path()).unwrap();
        let second = MasterSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first.derive("x").0, second.derive("x").0);
        assert_ne!(first.derive("x").0, first.derive("y").0);
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = MasterSecret::from_bytes(vec![7; 32]).unwrap();
        assert_eq!(format!("{secret:?}"), "MasterSecret(***)");
    }

    #[test]
    fn hmac_verifies_only_its_own_tag() {
        let tag = hmac_sha256(b"key", b"message");
        assert!(verify_hmac_sha256(b"key", b"message", &tag));
        assert!(!verify_hmac_sha256(b"key", b"other", &tag));
        assert!(!verify_hmac_sha256(b"other", b"message", &tag));
    }
}
