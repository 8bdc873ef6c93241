//! `onlinebank backup` and `onlinebank restore`: one consistent cut of an embedded data dir
//! (every role's database, the event log `bus.db` and the token secret), and a restore that
//! checks it whole before it writes anything. How the cut is taken and why it is consistent:
//! docs/architecture.md, "Backup: one cut of the whole data dir", and [`onlinebank_core::db::cut`].
//!
//! Who takes the cut: with no process serving the data dir, the command itself (nothing
//! writes); with one, that process, asked through its admin listener (`POST /backup`, see
//! [`admin`]): its writers pause between two batches for the cut; with several `serve`
//! processes, the command pauses each through its admin listener (`POST /backup/pause`, a lease
//! that ends by itself), takes the snapshots itself and resumes them.

pub mod admin;
pub mod manifest;
pub mod serving;

use crate::cli::{BackupArgs, RestoreArgs};
use anyhow::Context;
use manifest::{sync_dir, sync_file, FileEntry, Manifest, FORMAT_VERSION};
use onlinebank_core::db::cut::{take_cut, Cut};
use onlinebank_core::secret::MasterSecret;
use onlinebank_core::{Role, Settings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The token secret's file in a data dir.
const SECRET: &str = "secret.key";
/// The event log's file in a data dir.
const EVENT_LOG: &str = "bus.db";
/// The longest a writer stays paused if the resume never comes.
pub const HOLD: Duration = Duration::from_secs(1);

/// What `backup --json` prints as its last line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// The backup's directory.
    pub path: PathBuf,
    /// The bytes of its files.
    pub bytes: u64,
    /// How long writes were paused for the cut, in milliseconds.
    pub pause_ms: f64,
    /// How long the whole backup took, in milliseconds.
    pub took_ms: f64,
}

/// The database files of the data dir at `dir` that exist: every role's, then the event log.
pub fn database_files(dir: &Path) -> Vec<PathBuf> {
    Role::ALL
        .iter()
        .map(|role| dir.join(format!("{role}.db")))
        .chain([dir.join(EVENT_LOG)])
        .filter(|path| path.is_file())
        .collect()
}

/// Milliseconds of `duration`, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Refuses a target directory that holds anything (an empty or missing one is fine).
fn ensure_empty(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{what} {} is not empty: nothing was written",
            dir.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    }
    Ok(())
}

/// A private working directory beside `target` (same filesystem, so it can be renamed into
/// place), named after it and `purpose`.
fn working_dir_beside(target: &Path, purpose: &str) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(target)?;
    let parent = absolute
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", target.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let working = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&working);
    std::fs::create_dir(&working).with_context(|| format!("creating {}", working.display()))?;
    onlinebank_core::secret::ensure_private_dir(&working)?;
    Ok(working)
}

/// Moves the finished `working` directory to `target` (a missing or empty directory).
fn put_in_place(working: &Path, target: &Path) -> anyhow::Result<()> {
    sync_dir(working)?;
    std::fs::rename(working, target)
        .with_context(|| format!("moving {} to {}", working.display(), target.display()))?;
    if let Some(parent) = std::path::absolute(target)?.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Takes a backup of the data dir `dir` into `dest` (a missing or empty directory), pausing
/// this process's writers of its files for the cut; `serving` are the processes expected to
/// serve the data dir (this one, or none): the cut is given up if another one does.
pub async fn take_here(dir: &Path, dest: &Path, serving: &[u32]) -> anyhow::Result<BackupReport> {
    let started = Instant::now();
    ensure_empty(dest, "the backup's target")?;
    let files = database_files(dir);
    anyhow::ensure!(
        !files.is_empty(),
        "{} holds no database of the bank",
        dir.display()
    );
    let cut = take_cut(&files, HOLD).await?;
    serving::ensure_only(dir, serving)?;
    tracing::info!(
        writers = cut.writers,
        pause_ms = millis(cut.pause),
        "backup: cut taken"
    );
    copy_cut(cut, dir, dest, started).await
}

/// Copies the snapshots of `cut` (and the data dir's secret) into `dest` with their manifest.
async fn copy_cut(
    cut: Cut,
    dir: &Path,
    dest: &Path,
    started: Instant,
) -> anyhow::Result<BackupReport> {
    let cut_at = chrono::DateTime::<chrono::Utc>::from(cut.at)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (dir, dest) = (dir.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let working = working_dir_beside(&dest, "backup")?;
        let written = write_backup(&cut, &dir, &working, cut_at).and_then(|manifest| {
            put_in_place(&working, &dest)?;
            Ok(manifest)
        });
        let manifest = match written {
            Ok(manifest) => manifest,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&working);
                return Err(error);
            }
        };
        Ok(BackupReport {
            path: std::path::absolute(&dest)?,
            bytes: manifest.bytes(),
            pause_ms: manifest.pause_ms,
            took_ms: millis(started.elapsed()),
        })
    })
    .await?
}

/// Writes every file of the backup and its manifest into `working`.
fn write_backup(cut: &Cut, dir: &Path, working: &Path, cut_at: String) -> anyhow::Result<Manifest> {
    let mut files = Vec::new();
    for snapshot in &cut.snapshots {
        let name = snapshot
            .file
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("{} has no file name", snapshot.file.display()))?;
        let target = working.join(name);
        snapshot.copy_to(&target)?;
        sync_file(&target)?;
        files.push(FileEntry::of(&target)?);
    }
    let secret = dir.join(SECRET);
    if secret.is_file() {
        let target = working.join(SECRET);
        std::fs::copy(&secret, &target).with_context(|| format!("copying {}", secret.display()))?;
        sync_file(&target)?;
        files.push(FileEntry::of(&target)?);
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        bank_version: env!("CARGO_PKG_VERSION").to_owned(),
        bank_commit: option_env!("ONLINEBANK_COMMIT")
            .unwrap_or("unknown")
            .to_owned(),
        cut_at,
        pause_ms: millis(cut.pause),
        files,
    };
    manifest.write(working)?;
    Ok(manifest)
}

/// `onlinebank backup`: asks the processes serving the data dir to take the cut, or takes it
/// here when none does (see the module docs); prints what it did.
pub async fn run_backup(args: &BackupArgs) -> anyhow::Result<()> {
    let mut attempt = 1;
    let report = loop {
        match back_up_once(&args.data_dir, &args.to, args.token_secret.as_deref()).await {
            Err(error) if attempt < ATTEMPTS && is_worth_retrying(&error) => {
                tracing::info!(attempt, error = %format!("{error:#}"), "backup: trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                attempt += 1;
            }
            outcome => break outcome?,
        }
    };
    println!(
        "backup of {} written to {} ({} bytes; writes paused {} ms; took {} ms)",
        args.data_dir.display(),
        report.path.display(),
        report.bytes,
        report.pause_ms,
        report.took_ms
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// How many times `onlinebank backup` tries when processes start or stop under it.
const ATTEMPTS: u32 = 5;

/// A process started (or is starting) on the data dir under the backup: another try may meet
/// a steady set of processes.
fn is_worth_retrying(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains(serving::OTHERS_STARTED) || text.contains(STARTING)
}

/// What a backup says while a process is starting on the data dir.
const STARTING: &str = "is starting on the data dir";

/// The internal token the processes serving `dir` expect: derived from `token_secret` (their
/// `--token-secret`) when given, else from the data dir's `secret.key`.
fn internal_token(dir: &Path, token_secret: Option<&str>) -> anyhow::Result<String> {
    let secret = match token_secret {
        Some(secret) => MasterSecret::from_bytes(secret.as_bytes().to_vec())?,
        None => {
            anyhow::ensure!(
                dir.join(SECRET).is_file(),
                "{} has no {SECRET}: give the bank's --token-secret",
                dir.display()
            );
            MasterSecret::load_or_create(dir)?
        }
    };
    Ok(Settings::new(dir.to_path_buf(), secret).internal_token())
}

/// One backup attempt, by whoever must take the cut (see the module docs).
async fn back_up_once(
    dir: &Path,
    to: &Path,
    token_secret: Option<&str>,
) -> anyhow::Result<BackupReport> {
    let live = serving::live(dir)?;
    if let Some(starting) = live.iter().find(|serving| serving.admin_url.is_none()) {
        anyhow::bail!(
            "process {} {STARTING} {}: back it up once it serves",
            starting.pid,
            dir.display()
        );
    }
    if live.is_empty() {
        return take_here(dir, to, &[]).await;
    }
    let token = internal_token(dir, token_secret)?;
    match live.as_slice() {
        [one] => admin::ask_to_back_up(one, to, &token).await,
        several => admin::back_up_with_leases(several, dir, to, &token).await,
    }
}

/// `onlinebank restore`: checks the whole backup, then writes it as the data dir `--data-dir`.
pub fn run_restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let manifest = restore(&args.from, &args.data_dir)?;
    println!(
        "restored the backup of {} ({} files, {} bytes) into {}; start it with: onlinebank up --data-dir {}",
        manifest.cut_at,
        manifest.files.len(),
        manifest.bytes(),
        args.data_dir.display(),
        args.data_dir.display()
    );
    Ok(())
}

/// Checks the backup at `from` against its manifest, then writes it as the data dir `new` (a
/// missing or empty directory): into a working directory beside it, renamed into place once
/// complete. Nothing is written when anything is wrong.
pub fn restore(from: &Path, new: &Path) -> anyhow::Result<Manifest> {
    let manifest = Manifest::read(from)?;
    ensure_empty(new, "the data dir")?;
    manifest.verify(from)?;
    let working = working_dir_beside(new, "restore")?;
    let written = write_restore(&manifest, from, &working).and_then(|()| {
        put_in_place(&working, new)?;
        Ok(())
    });
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&working);
        return Err(error);
    }
    Ok(manifest)
}

/// Copies every file of the backup into `working`, checked again as copied. The event log's
/// outbox sources need no rewrite: the log records files inside the data dir by name and moves
/// older absolute records into the dir it opens (onlinebank-bus `EmbeddedLog::open`).
fn write_restore(manifest: &Manifest, from: &Path, working: &Path) -> anyhow::Result<()> {
    for expected in &manifest.files {
        let target = working.join(&expected.name);
        std::fs::copy(from.join(&expected.name), &target)
            .with_context(|| format!("copying {}", expected.name))?;
        anyhow::ensure!(
            FileEntry::of(&target)? == *expected,
            "{} changed while it was restored",
            from.join(&expected.name).display()
        );
        sync_file(&target)?;
    }
    Ok(())
}
