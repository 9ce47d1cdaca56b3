//! Every `runbook …` command shown in `README.md` and `docs/*.md`, run against the binary so
//! the docs cannot drift from it.
//!
//! Commands are taken from fenced code blocks tagged `sh`, `bash`, `shell` or `console`, or
//! not tagged at all (output is tagged `text`); in a `console` block only `$ ` lines are
//! commands. A line ending in `\` continues on the next one. Each file is checked in its own
//! temporary folder holding a copy of `runbooks/` and `cloudformation/`, with `HOME` inside
//! it, and its commands run in the order shown, through `sh -c`, so redirections and
//! `NAME=value` prefixes work as a reader would type them. `mkdir -p` lines run too (they
//! make the folders a redirection writes into).
//!
//! - Commands that can run here run for real. Every endpoint that `seed`, `verify`, `probe`
//!   or `bench` names is replaced by a real server this test starts on a free loopback port
//!   (Valkey when the endpoint's text says `valkey` or it is verify's `--target`, Redis
//!   otherwise), the same server for the same `host:port` throughout one file, so a seed shown
//!   before a verify is what the verify compares.
//! - `RUN_ID`, `<RUN_ID>` and any run id (`20261201-0759-engine-change-610e`) stand for the
//!   latest run of that runbook (any runbook for `RUN_ID`) that a `run` shown earlier in the
//!   same file made.
//! - Sizes are cut down so each command takes seconds: `--keys` and `--requests` to at most
//!   2000, `--keyspace` to 100, `--elements` to 10, `--duration` to 1s; a `probe` without
//!   `--duration` and a `bench` without a length or key space get them.
//! - A `run` with `--platform aws` needs a real account, so it is not run. It is parsed by the
//!   real binary twice instead: once with `--help` added at the end (clap checks every flag
//!   and value before it, then prints the help and stops before any work), and once as `plan`
//!   with the same flags (without `--yes`), which validates the runbook and its variables for
//!   aws and makes no AWS call.
//!
//! A command must exit 0, unless the comment at its end says `exit status N`. Every run a
//! file made is destroyed at the end (its servers stopped), and every server the test
//! started is stopped with it.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Engine, Server, Workspace, runbook_bin};

/// Every Markdown file with commands; `every_markdown_file_is_checked` keeps it complete.
const FILES: &[&str] = &[
    "README.md",
    "docs/actions.md",
    "docs/aws-permissions.md",
    "docs/bench.md",
    "docs/commands.md",
    "docs/everyday-changes.md",
    "docs/platforms.md",
    "docs/probe-and-report.md",
    "docs/runbook-format.md",
    "docs/runs.md",
    "docs/testing.md",
    "docs/verify-and-seed.md",
];

/// The documents that show no `runbook` command (any other must show one).
const WITHOUT_COMMANDS: &[&str] = &["docs/testing.md"];

/// How long one command may take before the test gives up on it.
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// One command as a document shows it.
#[derive(Debug, PartialEq)]
struct Shown {
    line: usize,
    text: String,
    expected: i32,
}

/// The commands of one Markdown text, in order.
fn commands(markdown: &str) -> Vec<Shown> {
    let mut found = Vec::new();
    let mut block: Option<String> = None;
    let mut lines = markdown.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if let Some(tag) = line.trim_start().strip_prefix("```") {
            block = match block {
                None => Some(tag.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        let Some(tag) = block.as_deref() else {
            continue;
        };
        if !matches!(tag, "" | "sh" | "bash" | "shell" | "console") {
            continue;
        }
        let mut text = if tag == "console" {
            match line.strip_prefix("$ ") {
                Some(rest) => rest.to_string(),
                None => continue,
            }
        } else {
            line.to_string()
        };
        while let Some(head) = text.trim_end().strip_suffix('\\') {
            let head = head.trim_end().to_string();
            let Some((_, next)) = lines.next() else { break };
            text = format!("{head} {}", next.trim());
        }
        let (command, comment) = match text.find(" # ") {
            Some(at) => (text[..at].trim().to_string(), text[at..].to_string()),
            None => (text.trim().to_string(), String::new()),
        };
        if !is_command(&command) {
            continue;
        }
        found.push(Shown {
            line: index + 1,
            text: command,
            expected: expected_status(&comment),
        });
    }
    found
}

/// A `runbook` command (after any `NAME=value` prefixes), or a `mkdir -p`.
fn is_command(text: &str) -> bool {
    let mut words = text.split_whitespace().skip_while(|w| is_assignment(w));
    match words.next() {
        Some("runbook") => true,
        Some("mkdir") => words.next() == Some("-p"),
        _ => false,
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The exit status a trailing comment announces (`# exit status 1`), else 0.
fn expected_status(comment: &str) -> i32 {
    comment
        .split("exit status ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// `20261201-0759-engine-change-610e` → `engine-change`.
fn runbook_of(run_id: &str) -> Option<&str> {
    let bytes = run_id.as_bytes();
    let digits = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_digit);
    if bytes.len() < 20 || !digits(0..8) || bytes[8] != b'-' || !digits(9..13) || bytes[13] != b'-'
    {
        return None;
    }
    let (name, hex) = run_id[14..].rsplit_once('-')?;
    (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty())
        .then_some(name)
}

/// One document's commands being run: its folder, its servers and the runs it made.
struct Session {
    doc: String,
    ws: Workspace,
    servers: BTreeMap<String, Server>,
    runs: Vec<String>,
}

impl Session {
    fn new(doc: &str) -> Session {
        let ws = Workspace::new();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["runbooks", "cloudformation"] {
            copy_dir(&repo.join(dir), &ws.path().join(dir));
        }
        std::fs::create_dir_all(ws.path().join("home")).expect("home folder");
        Session {
            doc: doc.to_string(),
            ws,
            servers: BTreeMap::new(),
            runs: Vec::new(),
        }
    }

    fn check(&mut self, shown: &Shown) {
        let words: Vec<&str> = shown.text.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| !is_assignment(w))
            .expect("a command word");
        if words[at] == "mkdir" {
            self.expect(shown, &shown.text, 0);
            return;
        }
        let (args, redirects) = split_redirects(&words[at + 1..]);
        let verb = args.first().copied().unwrap_or_default();
        let mut args: Vec<String> = args.iter().map(|a| self.run_id(shown, a)).collect();
        if matches!(verb, "seed" | "verify" | "probe" | "bench") {
            self.data_plane(verb, &mut args);
        }
        let prefix = words[..at].join(" ");
        let line = |args: &[String]| {
            [
                prefix.as_str(),
                "runbook",
                &args.join(" "),
                &redirects.join(" "),
            ]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
        };
        if verb == "run" && has_pair(&args, "--platform", "aws") {
            let mut help = args.clone();
            help.push("--help".into());
            self.expect(shown, &line(&help), 0);
            let mut plan: Vec<String> = args
                .iter()
                .filter(|a| !matches!(a.as_str(), "--yes" | "-y"))
                .cloned()
                .collect();
            plan[0] = "plan".into();
            self.expect(shown, &line(&plan), 0);
            return;
        }
        let stdout = self.expect(shown, &line(&args), shown.expected);
        let id = stdout.lines().next().unwrap_or_default().trim().to_string();
        if verb == "resume" && runbook_of(&id).is_some() {
            self.runs.push(id);
        } else if verb == "run" {
            assert!(
                runbook_of(&id).is_some(),
                "{}:{}: `{}` did not print a run id first, but {id:?}",
                self.doc,
                shown.line,
                shown.text
            );
            self.runs.push(id);
        }
    }

    /// A run-id placeholder replaced by the latest matching run of this document.
    fn run_id(&self, shown: &Shown, word: &str) -> String {
        let wanted = match word {
            "RUN_ID" | "<RUN_ID>" => None,
            _ => match runbook_of(word) {
                Some(name) => Some(name),
                None => return word.to_string(),
            },
        };
        self.runs
            .iter()
            .rev()
            .find(|id| wanted.is_none() || runbook_of(id) == wanted)
            .unwrap_or_else(|| {
                panic!(
                    "{}:{}: `{}` names a run, but no `runbook run` of {} comes before it in this file",
                    self.doc,
                    shown.line,
                    shown.text,
                    wanted.unwrap_or("any runbook")
                )
            })
            .clone()
    }

    /// Endpoints replaced by this test's servers, sizes cut down, lengths added.
    fn data_plane(&mut self, verb: &str, args: &mut Vec<String>) {
        for i in 1..args.len() {
            let flag = args[i - 1].clone();
            let value = &args[i];
            let new = match flag.as_str() {
                "--endpoint" | "--source" | "--target" => {
                    let valkey =
                        flag == "--target" || value.to_ascii_lowercase().contains("valkey");
                    self.server(
                        value,
                        if valkey {
                            Engine::Valkey
                        } else {
                            Engine::Redis
                        },
                    )
                }
                "--keys" | "--requests" => cap(value, 2000),
                "--keyspace" => cap(value, 100),
                "--elements" => cap(value, 10),
                "--duration" => "1s".to_string(),
                _ => continue,
            };
            args[i] = new;
        }
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let mut extra = Vec::new();
        if verb == "probe" && !has("--duration") {
            extra.extend(["--duration", "1s"]);
        }
        if verb == "bench" {
            if !has("--requests") && !has("--duration") {
                extra.extend(["--requests", "2000"]);
            }
            if !has("--keyspace") {
                extra.extend(["--keyspace", "100"]);
            }
            if !has("--elements") {
                extra.extend(["--elements", "10"]);
            }
        }
        args.extend(extra.into_iter().map(String::from));
    }

    /// The URL of the server standing for `endpoint` (started the first time it is named).
    fn server(&mut self, endpoint: &str, engine: Engine) -> String {
        let server = self
            .servers
            .entry(host_port(endpoint))
            .or_insert_with(|| Server::start(engine));
        server.url()
    }

    /// Runs one shell line in the document's folder; asserts its exit status; its stdout.
    fn expect(&self, shown: &Shown, line: &str, expected: i32) -> String {
        let bin_dir = runbook_bin().parent().expect("a folder").to_path_buf();
        let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .expect("PATH");
        let home = self.ws.path().join("home");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(self.ws.path())
            .env("PATH", path)
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh");
        let pid = child.id();
        let deadline = Instant::now() + COMMAND_DEADLINE;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                // SAFETY: signalling the process group this test started for the command.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = out.status.code().unwrap_or(-1);
        assert_eq!(
            status,
            expected,
            "{}:{}: `{}` (run as `{line}`) exited with {status}, the docs expect {expected}\n--- stdout\n{stdout}\n--- stderr\n{}",
            self.doc,
            shown.line,
            shown.text,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Session {
    /// Stops the servers of every run the document made (the test's own servers stop as
    /// they drop).
    fn drop(&mut self) {
        let runs = std::fs::read_dir(self.ws.state_dir().join("runs"))
            .into_iter()
            .flatten()
            .flatten();
        for run in runs {
            let id = run.file_name().to_string_lossy().into_owned();
            let destroyed = self.ws.cmd(&["destroy", &id]).run();
            if destroyed.status != 0 && !std::thread::panicking() {
                panic!("runbook destroy {id}: {}", destroyed.stderr);
            }
        }
    }
}

/// The words before the first redirection, and the redirections.
fn split_redirects<'a>(words: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let at = words
        .iter()
        .position(|w| matches!(*w, ">" | ">>" | "<" | "2>" | "2>&1" | "|"))
        .unwrap_or(words.len());
    (words[..at].to_vec(), words[at..].to_vec())
}

fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

fn cap(value: &str, most: u64) -> String {
    let n: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("a number, not {value:?}"));
    n.min(most).to_string()
}

/// `rediss://user:pw@host:6379/2` → `host:6379`.
fn host_port(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target: PathBuf = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs every command of one document.
fn check(doc: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let shown = commands(&text);
    assert_eq!(
        shown.is_empty(),
        WITHOUT_COMMANDS.contains(&doc),
        "{doc}: shows {} command(s); WITHOUT_COMMANDS says otherwise",
        shown.len()
    );
    let mut session = Session::new(doc);
    for command in &shown {
        session.check(command);
    }
}

#[test]
fn every_markdown_file_is_checked() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(repo.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    found.extend(docs);
    assert_eq!(found, FILES);
}

#[test]
fn commands_are_read_from_shell_and_console_blocks_only() {
    let markdown = "\
Text with `runbook inline` is not a command.

```sh
runbook plan a.yaml --var x=1   # dry run
RUNBOOK_VAR_y=2 runbook run a.yaml \\
  --yes                         # exit status 1
ssh -N bastion &
mkdir -p out
```

```console
$ runbook show RUN_ID
runbook output that is not a command
```

```text
runbook bench ops/s as a share
```

```yaml
runbook: not a command
```
";
    assert_eq!(
        commands(markdown),
        vec![
            Shown {
                line: 4,
                text: "runbook plan a.yaml --var x=1".into(),
                expected: 0
            },
            Shown {
                line: 5,
                text: "RUNBOOK_VAR_y=2 runbook run a.yaml --yes".into(),
                expected: 1
            },
            Shown {
                line: 8,
                text: "mkdir -p out".into(),
                expected: 0
            },
            Shown {
                line: 12,
                text: "runbook show RUN_ID".into(),
                expected: 0
            },
        ]
    );
}

#[test]
fn run_ids_are_recognised() {
    assert_eq!(
        runbook_of("20261201-0759-engine-change-610e"),
        Some("engine-change")
    );
    assert_eq!(runbook_of("engine-change"), None);
    assert_eq!(runbook_of("20261201-0759-engine-change-61x0"), None);
    assert_eq!(
        host_port("rediss://default:pw@my-valkey.example:6379/2"),
        "my-valkey.example:6379"
    );
    assert_eq!(host_port("127.0.0.1:7001"), "127.0.0.1:7001");
}

#[test]
fn readme() {
    check("README.md");
}

#[test]
fn actions() {
    check("docs/actions.md");
}

#[test]
fn aws_permissions() {
    check("docs/aws-permissions.md");
}

#[test]
fn bench() {
    check("docs/bench.md");
}

#[test]
fn commands_and_flags() {
    check("docs/commands.md");
}

#[test]
fn everyday_changes() {
    check("docs/everyday-changes.md");
}

#[test]
fn platforms() {
    check("docs/platforms.md");
}

#[test]
fn probe_and_report() {
    check("docs/probe-and-report.md");
}

#[test]
fn runbook_format() {
    check("docs/runbook-format.md");
}

#[test]
fn runs() {
    check("docs/runs.md");
}

#[test]
fn testing() {
    check("docs/testing.md");
}

#[test]
fn verify_and_seed() {
    check("docs/verify-and-seed.md");
}

/// docs/actions.md names every registered action under its own heading, and its `Outputs:`
/// paragraph names exactly the outputs the action declares (from its reply type), so the
/// reference cannot promise an output the platforms do not return.
#[test]
fn the_actions_reference_lists_every_action_with_its_declared_outputs() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/actions.md"))
            .expect("docs/actions.md");
    let mut wrong = Vec::new();
    for spec in runbook::actions::REGISTRY {
        let heading = format!("### `{}`\n", spec.name);
        let Some(at) = text.find(&heading) else {
            wrong.push(format!("{}: no section", spec.name));
            continue;
        };
        let section = &text[at + heading.len()..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let Some(outputs) = section.find("Outputs:").map(|i| &section[i..]) else {
            wrong.push(format!("{}: no `Outputs:` paragraph", spec.name));
            continue;
        };
        let paragraph = &outputs[..outputs.find("\n\n").unwrap_or(outputs.len())];
        // Every name in backticks is an output; nested fields and other words are written plain.
        let mut named: Vec<String> = paragraph
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        named.sort();
        named.dedup();
        let mut declared = spec.outputs.names();
        declared.sort();
        if named != declared {
            wrong.push(format!(
                "{}: the docs name {named:?}, the action declares {declared:?}",
                spec.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/actions.md is out of date:\n{}",
        wrong.join("\n")
    );
}
