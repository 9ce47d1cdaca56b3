//! Puts the git revision the binary was built from into `runbook --version`, so a report or a
//! bug can name the exact build. Outside a git checkout (a source archive) it says so.
//!
//! On Linux the binary's debug sections are zlib-compressed at link time: backtraces still
//! name file and line (the standard library reads compressed sections), and the release
//! binary is a fraction of the size.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
    let revision =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "no git revision".into());
    println!("cargo:rustc-env=RUNBOOK_GIT_REVISION={revision}");
    // Build again when HEAD moves: a new commit, a checkout of another branch.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(p) = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|head| git(&["rev-parse", "--git-path", &head]))
    {
        println!("cargo:rerun-if-changed={p}");
    }
}
