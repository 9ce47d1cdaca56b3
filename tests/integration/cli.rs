//! The conventions a Rust command-line user expects: `--version` names the exact build, and
//! `completions` prints a script the shell accepts.

use std::process::Command;

use crate::support::Workspace;

/// The revision the test binary was built from, as git names it.
fn head_revision() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn version_names_the_package_version_and_the_git_revision() {
    let ws = Workspace::new();
    let ran = ws.cmd(&["--version"]).expect(0);
    assert_eq!(
        ran.stdout,
        format!(
            "runbook {} ({})\n",
            env!("CARGO_PKG_VERSION"),
            head_revision()
        )
    );
    assert_eq!(ran.stderr, "");
}

#[test]
fn bash_completions_parse_in_bash_and_know_every_command() {
    let ws = Workspace::new();
    let ran = ws.cmd(&["completions", "bash"]).expect(0);
    assert_eq!(ran.stderr, "");
    let script = ws.path().join("runbook.bash");
    std::fs::write(&script, &ran.stdout).expect("write the script");
    // Load the script, then ask it what `runbook <TAB>` offers.
    let probe = format!(
        "source {}; COMP_WORDS=(runbook ''); COMP_CWORD=1; _runbook runbook '' runbook; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["-c", &probe])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|w| !w.starts_with('-'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        offered,
        [
            "plan",
            "run",
            "resume",
            "report",
            "runs",
            "show",
            "probe",
            "verify",
            "seed",
            "bench",
            "destroy",
            "unlock",
            "schema",
            "completions",
            "help"
        ]
    );
}

#[test]
fn completions_for_an_unknown_shell_are_invalid_input() {
    let ws = Workspace::new();
    let ran = ws.cmd(&["completions", "tcsh"]).expect(2);
    assert_eq!(ran.stdout, "");
    assert_eq!(
        ran.stderr,
        "error: invalid value 'tcsh' for '<SHELL>'\n  [possible values: bash, elvish, fish, powershell, zsh]\n\n  tip: a similar value exists: 'zsh'\n\nFor more information, try '--help'.\n"
    );
}
