//! What a backup directory holds and how it is checked: `manifest.json` names every file with
//! its size and SHA-256, so a restore can refuse a damaged or incomplete backup before it
//! writes anything.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The backup layout ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The version of the bank that took it.
    pub bank_version: String,
    /// The commit it was built from ("unknown" outside a checkout).
    pub bank_commit: String,
    /// The instant of the cut (RFC 3339, UTC).
    pub cut_at: String,
    /// How long writes were paused for the cut, in milliseconds.
    pub pause_ms: f64,
    /// Every file of the backup but the manifest.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name, in the backup and in the data dir (a plain file name).
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads the manifest of the backup at `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "{} has no {MANIFEST}: it is not a backup, or an unfinished one",
                dir.display()
            ),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        anyhow::ensure!(
            manifest.format_version == FORMAT_VERSION,
            "{} is of backup format {}; this build reads format {FORMAT_VERSION}",
            path.display(),
            manifest.format_version
        );
        for file in &manifest.files {
            anyhow::ensure!(
                is_plain_name(&file.name),
                "{} names a file outside the backup: {:?}",
                path.display(),
                file.name
            );
        }
        Ok(manifest)
    }

    /// Writes it into `dir` (and syncs it).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        sync_file(&path)
    }

    /// The bytes of every file together.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }

    /// Checks every file of the backup at `dir` against the manifest: present, of its size,
    /// of its SHA-256.
    pub fn verify(&self, dir: &Path) -> anyhow::Result<()> {
        for expected in &self.files {
            let found = FileEntry::of(&dir.join(&expected.name))?;
            anyhow::ensure!(
                found.bytes == expected.bytes,
                "{} is damaged: {} bytes where the manifest says {}",
                dir.join(&expected.name).display(),
                found.bytes,
                expected.bytes
            );
            anyhow::ensure!(
                found.sha256 == expected.sha256,
                "{} is damaged: its SHA-256 is not the manifest's",
                dir.join(&expected.name).display()
            );
        }
        Ok(())
    }
}

/// A name without a directory part: the only kind a manifest may hold.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && name != MANIFEST
}

impl FileEntry {
    /// The entry of the file at `path` (its name, size and SHA-256), read once.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("{} is missing or unreadable", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let read = file
                .read(&mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            hasher.update(&buffer[..read]);
        }
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Flushes a file's bytes to disk.
pub fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn sync_dir(path: &Path) -> anyhow::Result<()> {
    sync_file(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn backup_with(dir: &Path, content: &[u8]) -> Manifest {
        std::fs::write(dir.join("a.db"), content).unwrap();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            bank_version: "0.1.0".into(),
            bank_commit: "unknown".into(),
            cut_at: "2026-01-01T00:00:00Z".into(),
            pause_ms: 1.0,
            files: vec![FileEntry::of(&dir.join("a.db")).unwrap()],
        };
        manifest.write(dir).unwrap();
        manifest
    }

    #[test]
    fn a_manifest_reads_back_and_verifies_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = backup_with(dir.path(), b"hello");
        assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);
        manifest.verify(dir.path()).unwrap();
        assert_eq!(manifest.bytes(), 5);
    }

    #[test]
    fn a_flipped_byte_or_a_missing_file_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = backup_with(dir.path(), b"hello");
        std::fs::write(dir.path().join("a.db"), b"hellp").unwrap();
        let error = manifest.verify(dir.path()).unwrap_err().to_string();
        assert!(error.contains("SHA-256"), "{error}");
        std::fs::remove_file(dir.path().join("a.db")).unwrap();
        let error = manifest.verify(dir.path()).unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn a_manifest_naming_a_path_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = backup_with(dir.path(), b"x");
        manifest.files[0].name = "../secret.key".into();
        manifest.write(dir.path()).unwrap();
        let error = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("outside"), "{error}");
        std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
        let error = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no manifest.json"), "{error}");
    }
}
