//! Every message for bad input, compared whole: the place (`file:line:column`), the line,
//! the caret, the suggestion, all problems at once, exit status 2 and nothing on stdout.
//! A message is the interface a person reads first when something is wrong; a change to
//! one should be seen in review.

use indoc::indoc;

use crate::support::{Workspace, vary};

/// A runbook whose first step succeeds and whose second waits for an approval.
const DEMO: &str = indoc! {r#"
    version: 1
    name: demo
    params:
      greeting: { default: hello }
      region: { required: true }
      token: { secret: true, required: false }
    steps:
      - id: first
        action: exec
        with: { command: "echo {{ params.greeting }}" }
      - id: ask
        action: approve
        with: { message: "Go on?" }
"#};

#[test]
fn a_runbook_reports_every_mistake_with_its_place_line_caret_and_suggestion() {
    let ws = Workspace::new();
    ws.write(
        "bad.yaml",
        indoc! {r#"
            version: 1
            name: bad
            params:
              keys: 10
            stepz: []
            steps:
              - id: one
                action: exce
              - id: one
                action: sleep
                with: { duraton: 1s }
              - id: three
                action: sleep
                timeout: 10 parsecs
                with: { duration: "{{ params.kyes }}" }
              - id: four
                action: exec
                with: { command: "echo {{ steps.thre.outputs.stdout }}" }
        "#},
    );
    ws.cmd(&["plan", "bad.yaml"])
        .status(2)
        .stderr(indoc! {r#"
            error: unknown field `stepz` in the runbook
             --> bad.yaml:5:1
              |
            5 | stepz: []
              | ^^^^^
              = help: did you mean `steps`?

            error: unknown action `exce`
             --> bad.yaml:8:13
              |
            8 |     action: exce
              |             ^^^^
              = help: did you mean `exec`?

            error: duplicate step id `one`
             --> bad.yaml:9:9
              |
            9 |   - id: one
              |         ^^^
              = help: the first step with this id is at line 7; ids must be unique

            error: `sleep` needs the input `duration`
              --> bad.yaml:11:11
               |
            11 |     with: { duraton: 1s }
               |           ^
               = help: add `duration:` under `with:`

            error: `sleep` has no input `duraton`
              --> bad.yaml:11:13
               |
            11 |     with: { duraton: 1s }
               |             ^^^^^^^
               = help: did you mean `duration`?

            error: `timeout`: `parsecs` in `10 parsecs` is not a unit (use ms, s, m, h or d)
              --> bad.yaml:14:14
               |
            14 |     timeout: 10 parsecs
               |              ^^^^^^^^^^

            error: unknown param `kyes`
              --> bad.yaml:15:27
               |
            15 |     with: { duration: "{{ params.kyes }}" }
               |                           ^^^^^^^^^^^
               = help: did you mean `params.keys`?

            error: no step has the id `thre`
              --> bad.yaml:18:31
               |
            18 |     with: { command: "echo {{ steps.thre.outputs.stdout }}" }
               |                               ^^^^^^^^^^^^^^^^^^^^^^^^^
               = help: did you mean `steps.three`?

            8 errors in bad.yaml
        "#})
        .check();
}

#[test]
fn the_error_corpus_is_reported_whole() {
    let ws = Workspace::new();
    ws.write("errors.yaml", include_str!("../corpus/errors.yaml"));
    ws.cmd(&["plan", "errors.yaml"])
        .status(2)
        .stderr(indoc! {r#"
            error: unsupported runbook version
             --> errors.yaml:1:10
              |
            1 | version: 2
              |          ^
              = help: this tool reads `version: 1`

            error: `name` must be text
             --> errors.yaml:2:7
              |
            2 | name: [a, b]
              |       ^

            error: `params` must be a mapping (`key: value` lines)
             --> errors.yaml:3:9
              |
            3 | params: 3
              |         ^

            error: `1bad` cannot be a step id
             --> errors.yaml:5:9
              |
            5 |   - id: 1bad
              |         ^^^^
              = help: use letters, digits and `_` (templates read it as `steps.<id>`)

            error: unknown action `exce`
             --> errors.yaml:6:13
              |
            6 |     action: exce
              |             ^^^^
              = help: did you mean `exec`?

            error: this step has no `id`
             --> errors.yaml:8:11
              |
            8 |   - action: sleep
              |           ^
              = help: add `id: <name>`, unique in the runbook

            error: `sleep` needs the input `duration`
             --> errors.yaml:8:13
              |
            8 |   - action: sleep
              |             ^^^^^
              = help: add `duration:` under `with:`

            error: `attempts` must be a whole number from 1 to 100
             --> errors.yaml:9:24
              |
            9 |     retry: { attempts: 0, backof: x }
              |                        ^

            error: unknown field `backof` in `retry`
             --> errors.yaml:9:27
              |
            9 |     retry: { attempts: 0, backof: x }
              |                           ^^^^^^
              = help: did you mean `backoff`?

            error: no step has the id `nope`
              --> errors.yaml:12:27
               |
            12 |     with: { duration: "{{ steps.nope.outputs.x }} {{ params.none }} {{ run.whatever }}" }
               |                           ^^^^^^^^^^^^^^^^^^^^
               = help: step ids: dup, dup

            error: unknown param `none`
              --> errors.yaml:12:54
               |
            12 |     with: { duration: "{{ steps.nope.outputs.x }} {{ params.none }} {{ run.whatever }}" }
               |                                                      ^^^^^^^^^^^
               = help: declare it under `params:`

            error: `run` has no `whatever`
              --> errors.yaml:12:72
               |
            12 |     with: { duration: "{{ steps.nope.outputs.x }} {{ params.none }} {{ run.whatever }}" }
               |                                                                        ^^^^^^^^^^^^
               = help: `run` has: id, platform, started_at, dir

            error: duplicate step id `dup`
              --> errors.yaml:13:9
               |
            13 |   - id: dup
               |         ^^^
               = help: the first step with this id is at line 10; ids must be unique

            error: `on_failure` is `rollback` or `continue`, not `sometimes`
              --> errors.yaml:15:17
               |
            15 |     on_failure: sometimes
               |                 ^^^^^^^^^

            error: template syntax: expected a value that can be negated
              --> errors.yaml:16:26
               |
            16 |     with: { that: "{% if %}" }
               |                          ^

            error: `rollback` must be a list of steps (lines starting with `- `)
              --> errors.yaml:17:11
               |
            17 | rollback: 5
               |           ^

            16 errors in errors.yaml
        "#})
        .check();
}

#[test]
fn step_outputs_are_checked_against_what_the_action_returns() {
    let ws = Workspace::new();
    ws.write(
        "refs.yaml",
        indoc! {r#"
            version: 1
            name: refs
            steps:
              - id: first
                action: exec
                with: { command: "echo hi" }
              - id: second
                action: exec
                with: { command: "echo {{ steps.first.outputs.stdot }} {{ steps.second.outputs.stdout }}" }
        "#},
    );
    ws.cmd(&["plan", "refs.yaml"])
        .status(2)
        .stderr(indoc! {r#"
            error: `exec` (step `first`) has no output `stdot`
             --> refs.yaml:9:31
              |
            9 |     with: { command: "echo {{ steps.first.outputs.stdot }} {{ steps.second.outputs.stdout }}" }
              |                               ^^^^^^^^^^^^^^^^^^^^^^^^^
              = help: did you mean `stdout`?

            error: step `second` has not run yet at this point
             --> refs.yaml:9:63
              |
            9 |     with: { command: "echo {{ steps.first.outputs.stdot }} {{ steps.second.outputs.stdout }}" }
              |                                                               ^^^^^^^^^^^^^^^^^^^^^^^^^^^
              = help: a step can read the outputs of the steps before it

            2 errors in refs.yaml
        "#})
        .check();
}

#[test]
fn an_input_of_the_wrong_type_is_shown_at_its_step() {
    let ws = Workspace::new();
    ws.write(
        "typed.yaml",
        indoc! {"
            version: 1
            name: t
            steps:
              - id: a
                action: exec
                with: { command: true, ok_status: [zero] }
        "},
    );
    ws.cmd(&["plan", "typed.yaml"])
        .status(2)
        .stderr(indoc! {r#"
            error: invalid input for `exec`: `ok_status[0]` must be a whole number, not `zero`
             --> typed.yaml:6:39
              |
            6 |     with: { command: true, ok_status: [zero] }
              |                                       ^

            1 error in typed.yaml
        "#})
        .check();
}

#[test]
fn yaml_that_does_not_parse_points_at_where_parsing_stopped() {
    let ws = Workspace::new();
    ws.write(
        "broken.yaml",
        "version: 1\nname: x\nsteps:\n  - id: a\n    action: [exec\n",
    );
    ws.cmd(&["plan", "broken.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: YAML syntax: while parsing a flow sequence, expected ',' or ']'
             --> broken.yaml:6:1
              |
            6 | 
              | ^

            1 error in broken.yaml
        "})
        .check();
    ws.write("twice.yaml", "version: 1\nname: x\nname: y\nsteps: []\n");
    ws.cmd(&["plan", "twice.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: `name` is given twice in this mapping
             --> twice.yaml:3:1
              |
            3 | name: y
              | ^^^^
              = help: the first one is at line 2; keep one

            1 error in twice.yaml
        "})
        .check();
    ws.write("anchor.yaml", "version: 1\nname: &n x\nsteps: []\n");
    ws.cmd(&["plan", "anchor.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: YAML anchors and aliases are not supported in runbooks
             --> anchor.yaml:2:10
              |
            2 | name: &n x
              |          ^
              = help: repeat the value, or use a param and `{{ params.name }}`

            1 error in anchor.yaml
        "})
        .check();
    ws.write("list.yaml", "- version: 1\n");
    ws.cmd(&["plan", "list.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: a runbook is a YAML mapping (version, name, steps, ...)
             --> list.yaml:1:1
              |
            1 | - version: 1
              | ^
              = help: start with `version: 1`

            1 error in list.yaml
        "})
        .check();
}

#[test]
fn a_runbook_that_cannot_be_read_is_invalid_input() {
    Workspace::new()
        .cmd(&["run", "nope.yaml"])
        .status(2)
        .stderr(
            "error: cannot read the runbook nope.yaml: No such file or directory (os error 2)\n",
        )
        .check();
}

#[test]
fn a_vars_file_points_at_its_unknown_names_and_every_var_problem_is_listed() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    ws.write("vars.yaml", "greting: hi\nregion: eu-west-1\ntokn: x\n");
    ws.cmd(&[
        "plan",
        "demo.yaml",
        "--vars-file",
        "vars.yaml",
        "--var",
        "regoin=eu",
        "--var",
        "nothing",
    ])
    .status(2)
    .stderr(indoc! {"
        error: `greting` is not a param of runbook `demo`
         --> vars.yaml:1:1
          |
        1 | greting: hi
          | ^^^^^^^
          = help: did you mean `greeting`?

        error: `tokn` is not a param of runbook `demo`
         --> vars.yaml:3:1
          |
        3 | tokn: x
          | ^^^^
          = help: did you mean `token`?

        2 errors in vars.yaml

        error: `regoin` is not a param of runbook `demo`: did you mean `region`?

        error: --var `nothing` is not NAME=VALUE
    "})
    .check();
}

#[test]
fn a_missing_required_param_says_how_to_give_it() {
    let ws = Workspace::new();
    ws.write(
        "need.yaml",
        indoc! {"
            version: 1
            name: need
            params:
              region: { required: true }
              password: { required: true, secret: true }
            steps: []
        "},
    );
    ws.cmd(&["plan", "need.yaml", "--var", "zone=a"])
        .status(2)
        .stderr(indoc! {"
            error: `zone` is not a param of runbook `need`: its params: region, password

            error: param `region` is required: pass --var region=VALUE

            error: param `password` is required: pass --var password=VALUE (better: set RUNBOOK_VAR_password)
        "})
        .check();
}

#[test]
fn a_vars_file_must_parse_and_be_a_mapping() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    ws.write("list.yaml", "- region\n");
    ws.cmd(&["plan", "demo.yaml", "--vars-file", "list.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: a vars file is a YAML mapping of params to values
             --> list.yaml:1:1
              |
            1 | - region
              | ^
              = help: write one `name: value` line per param

            1 error in list.yaml
        "})
        .check();
    ws.write("broken.yaml", "region: [eu\n");
    ws.cmd(&["plan", "demo.yaml", "--vars-file", "broken.yaml"])
        .status(2)
        .stderr(indoc! {"
            error: YAML syntax: while parsing a flow sequence, expected ',' or ']'
             --> broken.yaml:2:1
              |
            2 | 
              | ^

            1 error in broken.yaml
        "})
        .check();
    ws.cmd(&["plan", "demo.yaml", "--vars-file", "none.yaml"])
        .status(2)
        .stderr(
            "error: cannot read the vars file none.yaml: No such file or directory (os error 2)\n",
        )
        .check();
}

#[test]
fn a_mistyped_flag_gets_the_near_flag_and_a_wrong_value_the_possible_ones() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    ws.cmd(&["plan", "demo.yaml", "--platfrom", "aws"])
        .status(2)
        .stderr(indoc! {"
            error: unexpected argument '--platfrom' found

              tip: a similar argument exists: '--platform'

            Usage: runbook plan --platform <PLATFORM> <FILE>

            For more information, try '--help'.
        "})
        .check();
    ws.cmd(&["plan", "demo.yaml", "--platform", "azure"])
        .status(2)
        .stderr(indoc! {"
            error: invalid value 'azure' for '--platform <PLATFORM>'
              [possible values: local, aws]

            For more information, try '--help'.
        "})
        .check();
    ws.cmd(&["plan"])
        .status(2)
        .stderr(indoc! {"
            error: the following required arguments were not provided:
              <FILE>

            Usage: runbook plan <FILE>

            For more information, try '--help'.
        "})
        .check();
}

#[test]
fn flag_values_are_checked_before_anything_runs() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    ws.cmd(&[
        "run",
        "demo.yaml",
        "--var",
        "region=eu",
        "--resolve",
        "a:1=b",
    ])
    .status(2)
    .stderr(
        "error: `a:1=b` is not a --resolve entry (expected HOST:PORT=ADDR:PORT, \
             e.g. my-cache.abc.use1.cache.amazonaws.com:6379=127.0.0.1:16379)\n",
    )
    .check();
    assert!(
        !ws.state_dir().exists(),
        "a refused run left a state folder"
    );
    ws.cmd(&[
        "probe",
        "--endpoint",
        "redis://127.0.0.1:1",
        "--interval",
        "5parsecs",
    ])
    .status(2)
    .stderr(
        "error: invalid value '5parsecs' for '--interval <DURATION>': `parsecs` in `5parsecs` is not a unit (use ms, s, m, h or d)\n\nFor more information, try '--help'.\n",
    )
    .check();
    ws.cmd(&["probe", "--endpoint", "nope://x"])
        .status(2)
        .stderr(
            "error: `nope://x` is not an endpoint: unknown scheme `nope` (expected \
             redis://[user:password@]host:port[/db], rediss://… for TLS, or host:port)\n",
        )
        .check();
}

#[test]
fn a_run_id_or_step_that_does_not_exist_gets_the_near_one() {
    let ws = Workspace::new();
    ws.write("demo.yaml", DEMO);
    ws.cmd(&["show", "nope"])
        .status(2)
        .stderr(
            "error: no run `nope` in .runbook; there are no runs there (is --state-dir right?)\n",
        )
        .check();
    let run = ws
        .cmd(&["run", "demo.yaml", "--var", "region=eu", "--yes"])
        .filter(vary::RUN_ID, "[RUN]")
        .stdout("[RUN]\n")
        .stderr(indoc! {"
            [1/2] first (exec)
              first: hello
            [2/2] ask (approve)
              ask: approved by --yes: Go on?
            report: .runbook/runs/[RUN]/report.md
            report: .runbook/runs/[RUN]/report.html
            report: .runbook/runs/[RUN]/report.json
            run [RUN] succeeded
        "})
        .check();
    let id = run.first_line();
    let typo = format!("{}x", &id[..id.len() - 1]);
    ws.cmd(&["show", &typo])
        .replace(&typo, "[TYPO]")
        .replace(id, "[RUN]")
        .status(2)
        .stderr("error: no run `[TYPO]` in .runbook; did you mean `[RUN]`?\n")
        .check();
    ws.cmd(&["show", "nope"])
        .status(2)
        .stderr("error: no run `nope` in .runbook; `runbook runs` lists the runs\n")
        .check();
    ws.cmd(&["resume", id, "--yes", "--from", "frist"])
        .status(2)
        .stderr("error: --from: runbook `demo` has no step `frist`; did you mean `first`?\n")
        .check();
}

#[test]
fn resume_refuses_a_changed_runbook_and_says_how_to_go_on() {
    let ws = Workspace::new();
    let path = ws.write("demo.yaml", DEMO);
    let id = ws
        .cmd(&["run", "demo.yaml", "--var", "region=eu"])
        .status(1)
        .filter(vary::RUN_ID, "[RUN]")
        .stdout("[RUN]\n")
        .stderr(indoc! {"
            [1/2] first (exec)
              first: hello
            [2/2] ask (approve)
              ask: approval needed: Go on? — there is no terminal to ask on
            report: .runbook/runs/[RUN]/report.md
            report: .runbook/runs/[RUN]/report.html
            report: .runbook/runs/[RUN]/report.json
            run [RUN] is awaiting approval at step `ask`: approval needed: Go on? — there is no terminal to ask on
            nothing was rolled back; to approve and go on: runbook resume [RUN] --yes
        "})
        .check()
        .first_line()
        .to_string();
    std::fs::write(&path, DEMO.replace("Go on?", "Really go on?")).unwrap();
    ws.cmd(&["resume", &id, "--yes"])
        .replace(&id, "[RUN]")
        .status(2)
        .stderr(
            "error: the runbook [WS]/demo.yaml changed since run [RUN] started (digest \
             761886531b5b then, b205366395b8 now); resuming could run steps the run never \
             planned. Undo the change, or pass --allow-changed to resume with the new file\n",
        )
        .check();
}
