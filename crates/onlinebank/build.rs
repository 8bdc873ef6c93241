//! The build facts `onlinebank --version`, the admin listener's `GET /info` and the `onlinebank_build_info`
//! gauge report, handed to the compiler as environment variables that
//! `onlinebank_core::this_build!` reads: `ONLINEBANK_COMMIT`, the full commit `git rev-parse
//! HEAD` names ("unknown" without git or outside a checkout), and `ONLINEBANK_PROFILE`, cargo's
//! profile ("release" or "debug").
//!
//! Running git at every build would rebuild the binary at every build; instead cargo reruns this
//! script only when HEAD can have moved: when the git directory's `HEAD` changes (a checkout, a
//! detached commit), when the branch it names changes (a commit), or when `packed-refs` does.
//! `git rev-parse --git-path` finds those files in a linked worktree too, whose `.git` is a file
//! and whose branches live in the main checkout's git directory. A tree with uncommitted changes
//! is not marked: telling would mean running git at every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binary says when it was not built from a git checkout.
const UNKNOWN: &str = "unknown";

fn main() {
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git(&crate_dir, &["rev-parse", "--verify", "HEAD"])
        .filter(|commit| is_commit_id(commit))
        .unwrap_or_else(|| UNKNOWN.to_owned());
    println!("cargo:rustc-env=ONLINEBANK_COMMIT={commit}");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| UNKNOWN.to_owned());
    println!("cargo:rustc-env=ONLINEBANK_PROFILE={profile}");
    // Without any rerun-if line cargo would rerun the script whenever a file of the crate changes.
    println!("cargo:rerun-if-changed=build.rs");
    if commit != UNKNOWN {
        for watched in files_that_move_head(&crate_dir) {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
}

/// A full object name: 40 (SHA-1) or 64 (SHA-256) hex digits.
fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The files whose change can move HEAD: `HEAD` itself, the branch it names (its loose ref, or
/// the directory it will be written to while the branch is only packed), and `packed-refs`.
/// Only existing paths: cargo reruns a script at every build while a watched path is missing.
fn files_that_move_head(crate_dir: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![
        git_path(crate_dir, "HEAD"),
        git_path(crate_dir, "packed-refs"),
    ];
    if let Some(branch) = git(crate_dir, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = git_path(crate_dir, &branch);
        match loose {
            Some(file) if file.is_file() => candidates.push(Some(file)),
            Some(file) => candidates.push(file.parent().map(Path::to_path_buf)),
            None => {}
        }
    }
    candidates
        .into_iter()
        .flatten()
        .filter(|path| path.exists())
        .collect()
}

/// Where git keeps `name` (`HEAD`, `refs/heads/main`, ...) for this checkout, as an absolute path.
fn git_path(crate_dir: &Path, name: &str) -> Option<PathBuf> {
    git(crate_dir, &["rev-parse", "--git-path", name]).map(|path| crate_dir.join(path))
}

/// The trimmed output of a git command run in `dir`; `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
