//! Reading a runbook file: YAML with spans, so every later error can point at its place.
//!
//! The YAML library is `marked-yaml`: maintained, small, and it keeps a line and column for
//! every node (serde_yaml, the usual choice, is archived and deprecated). It keeps scalars as
//! text and remembers whether they were quoted, which lets validation type values itself
//! against each action's schema instead of guessing.

use std::path::{Path, PathBuf};

use marked_yaml::{LoadError, LoaderOptions, Node};
use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, Loc, render};
use crate::runbook::{Runbook, Source};

/// Why a runbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error("cannot read the runbook {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax or meaning: every problem of the file, rendered with locations.
    #[error("{0}")]
    Invalid(String),
}

/// Reads, parses and validates the runbook at `path`.
pub fn load(path: &Path) -> Result<Runbook, LoadFailure> {
    let text = read_text(path).map_err(|source| LoadFailure::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_text(path, text)
}

/// A YAML file's text, without the byte-order mark some editors put first (it is not part
/// of the YAML; left in, it would be read as part of the first key).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Parses and validates runbook text that came from `path`.
pub fn load_text(path: &Path, text: String) -> Result<Runbook, LoadFailure> {
    let source = Source {
        path: path.to_path_buf(),
        digest: digest(&text),
        text,
    };
    let root = parse(&source.text, Document::Runbook)
        .map_err(|d| LoadFailure::Invalid(render(path, &source.text, &[d])))?;
    crate::validate::validate(&root, source.clone())
        .map_err(|diags| LoadFailure::Invalid(render(path, &source.text, &diags)))
}

/// `sha256:<hex>` of a runbook's text.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The most a runbook or vars file may weigh; real ones are a few kilobytes.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The deepest nesting of mappings and sequences accepted. Real runbooks stay under 10; the
/// tree is read recursively, so without a bound a few thousand levels overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Checks what the tree builder cannot be trusted with, before it runs: size, NUL bytes,
/// nesting depth and a second YAML document (which would otherwise be silently ignored).
/// The event parser used here keeps its own stack, so deep input cannot overflow ours.
pub fn check_shape(text: &str) -> Result<(), Diagnostic> {
    use yaml_rust2::parser::{Event, Parser};
    let at_offset = |offset: usize| {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Loc::new(line, column, 1)
    };
    if text.len() > MAX_BYTES {
        return Err(Diagnostic::at(
            Loc::new(1, 1, 1),
            format!(
                "the file is {} bytes; at most {MAX_BYTES} are read",
                text.len()
            ),
        )
        .help("split it, or move data into files the steps read"));
    }
    if let Some(offset) = text.find('\0') {
        return Err(
            Diagnostic::at(at_offset(offset), "a NUL byte: this is not a text file")
                .help("remove the NUL byte; YAML text cannot contain one"),
        );
    }
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut documents) = (0usize, 0usize);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // Syntax errors are reported, with their place, by the tree builder.
            Err(_) => return Ok(()),
        };
        let loc = Loc::new(mark.line(), mark.col() + 1, 1);
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::at(loc, "a second YAML document")
                        .help("a file holds one runbook: remove the `---` and what follows, or move it to its own file"));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Diagnostic::at(
                        loc,
                        format!("nested more than {MAX_DEPTH} levels deep"),
                    )
                    .help("flatten the structure"));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth -= 1,
            _ => {}
        }
    }
}

/// What a YAML file holds, which says how to write its top level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Runbook,
    /// A `--vars-file`.
    Vars,
}

/// Parses YAML text into a node tree with locations, after [`check_shape`].
pub fn parse(text: &str, document: Document) -> Result<Node, Diagnostic> {
    check_shape(text)?;
    // A quoted scalar is text: `default: "0001"` stays `0001`, not the number 1.
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true)
        .toplevel_mapping();
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| yaml_error(e, document))
}

fn yaml_error(e: LoadError, document: Document) -> Diagnostic {
    let at = |m: &marked_yaml::Marker| Loc::new(m.line(), m.column(), 1);
    match e {
        LoadError::TopLevelMustBeMapping(m) if document == Document::Vars => {
            Diagnostic::at(at(&m), "a vars file is a YAML mapping of params to values")
                .help("write one `name: value` line per param")
        }
        LoadError::TopLevelMustBeMapping(m) => Diagnostic::at(
            at(&m),
            "a runbook is a YAML mapping (version, name, steps, ...)",
        )
        .help("start with `version: 1`"),
        LoadError::TopLevelMustBeSequence(m) => Diagnostic::at(at(&m), "expected a sequence"),
        LoadError::UnexpectedAnchor(m) => Diagnostic::at(
            at(&m),
            "YAML anchors and aliases are not supported in runbooks",
        )
        .help("repeat the value, or use a param and `{{ params.name }}`"),
        LoadError::MappingKeyMustBeScalar(m) => {
            Diagnostic::at(at(&m), "a mapping key must be plain text")
        }
        LoadError::UnexpectedTag(m) => Diagnostic::at(
            at(&m),
            "YAML tags (`!Ref`, `!!str`, ...) are not supported in runbooks",
        )
        .help("write the value without the tag; templates use `{{ ... }}`"),
        LoadError::ScanError(m, e) => {
            #[allow(deprecated)]
            let what = std::error::Error::description(&e).to_string();
            Diagnostic::at(at(&m), format!("YAML syntax: {what}"))
        }
        LoadError::DuplicateKey(inner) => {
            let key = &inner.key;
            let loc = key
                .span()
                .start()
                .map(|m| Loc::new(m.line(), m.column(), key.as_str().len()))
                .unwrap_or_default();
            let first = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!("line {}", m.line()))
                .unwrap_or_else(|| "earlier".into());
            Diagnostic::at(
                loc,
                format!("`{}` is given twice in this mapping", key.as_str()),
            )
            .help(format!("the first one is at {first}; keep one"))
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! The loader never panics, whatever the input: random text, and random edits of the
    //! runbooks in `runbooks/` and `tests/corpus/` (the corpus; failures proptest finds are
    //! kept under `proptest-regressions/`).

    use std::path::{Path, PathBuf};

    use proptest::prelude::*;

    use super::*;

    fn corpus() -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = ["runbooks", "tests/corpus"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(root.join(d))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("corpus file"))
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Delete(usize, usize),
        Insert(usize, String),
        DuplicateLine(usize),
        Swap(usize, usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let piece = prop::sample::select(vec![
            ":",
            "- ",
            "{",
            "}",
            "[",
            "]",
            "\"",
            "'",
            "{{",
            "}}",
            "{%",
            "\n",
            "  ",
            "\t",
            "#",
            "&a",
            "*a",
            "!Ref ",
            "id: x",
            "action: exec",
            "with:",
            "steps.",
            "params.",
            "~",
            "é",
            "\u{0}",
            "10s",
            "-1",
            "1e999",
        ])
        .prop_map(str::to_string);
        prop_oneof![
            (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
            (any::<usize>(), piece).prop_map(|(a, s)| Edit::Insert(a, s)),
            any::<usize>().prop_map(Edit::DuplicateLine),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        ]
    }

    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for e in edits {
            let len = chars.len().max(1);
            match e {
                Edit::Delete(at, n) => {
                    let at = at % len;
                    let end = (at + n).min(chars.len());
                    if at < end {
                        chars.drain(at..end);
                    }
                }
                Edit::Insert(at, s) => {
                    let at = at % (chars.len() + 1);
                    chars.splice(at..at, s.chars());
                }
                Edit::DuplicateLine(n) => {
                    let s: String = chars.iter().collect();
                    let lines: Vec<&str> = s.lines().collect();
                    if !lines.is_empty() {
                        let i = n % lines.len();
                        let mut out: Vec<&str> = lines.clone();
                        out.insert(i, lines[i]);
                        chars = out.join("\n").chars().collect();
                    }
                }
                Edit::Swap(a, b) => {
                    if !chars.is_empty() {
                        let (a, b) = (a % chars.len(), b % chars.len());
                        chars.swap(a, b);
                    }
                }
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn edited_runbooks_never_panic(which in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
            let corpus = corpus();
            prop_assume!(!corpus.is_empty());
            let text = apply(&corpus[which % corpus.len()], &edits);
            if let Err(LoadFailure::Invalid(message)) = load_text(Path::new("fuzz.yaml"), text) {
                prop_assert!(message.contains("fuzz.yaml"), "an error without its file: {}", message);
            }
        }

        #[test]
        fn random_text_never_panics(text in "\\PC{0,200}") {
            let _ = load_text(Path::new("fuzz.yaml"), text);
        }
    }

    #[test]
    fn the_corpus_loads_or_fails_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(load(&root.join("tests/corpus/full.yaml")).is_ok());
        match load(&root.join("tests/corpus/errors.yaml")) {
            Err(LoadFailure::Invalid(m)) => assert!(m.matches("error:").count() >= 10, "{m}"),
            other => panic!("expected many errors, got {other:?}"),
        }
    }
}
