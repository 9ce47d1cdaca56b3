//! Errors a person can act on: `file:line:column`, the line itself, a caret under the
//! problem, and a "did you mean" where a near name exists. A file's errors are collected
//! and shown together, not the first one only.

use std::fmt::Write as _;
use std::path::Path;

/// A place in a runbook file (1-based line and column; `len` characters to underline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

impl Loc {
    pub fn new(line: usize, column: usize, len: usize) -> Loc {
        Loc { line, column, len }
    }

    /// This place moved `offset` characters to the right, underlining `len`.
    pub fn shifted(self, offset: usize, len: usize) -> Loc {
        Loc {
            line: self.line,
            column: self.column + offset,
            len,
        }
    }
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Option<Loc>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(loc: Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            loc: Some(loc),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean `x`?" when `candidates` has a name near `wrong`.
    pub fn suggest<'a>(
        self,
        wrong: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Diagnostic {
        match suggest(wrong, candidates) {
            Some(near) => self.help(format!("did you mean `{near}`?")),
            None => self,
        }
    }
}

/// The candidate closest to `wrong`, if it is close enough to be a likely typo.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Renders diagnostics of one file the way compilers do.
pub fn render(path: &Path, source: &str, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "error: {}", d.message);
        match d.loc {
            Some(loc) => {
                let width = loc.line.to_string().len();
                let pad = " ".repeat(width);
                let _ = writeln!(
                    out,
                    "{pad}--> {}:{}:{}",
                    path.display(),
                    loc.line,
                    loc.column
                );
                let text = lines.get(loc.line.saturating_sub(1)).copied().unwrap_or("");
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{} | {}", loc.line, text);
                let caret_at: String = text
                    .chars()
                    .take(loc.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{pad} | {caret_at}{}", "^".repeat(loc.len.max(1)));
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "{pad} = help: {help}");
                }
            }
            None => {
                let _ = writeln!(out, "  --> {}", path.display());
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "  = help: {help}");
                }
            }
        }
    }
    let n = diagnostics.len();
    let _ = write!(
        out,
        "\n{} in {}",
        if n == 1 {
            "1 error".to_string()
        } else {
            format!("{n} errors")
        },
        path.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(suggest("exce", ["exec", "sleep"]), Some("exec"));
        assert_eq!(
            suggest("stack.deplyo", ["stack.deploy", "stack.delete"]),
            Some("stack.deploy")
        );
        assert_eq!(suggest("zzzzzz", ["exec", "sleep"]), None);
    }

    #[test]
    fn renders_a_caret_under_the_problem() {
        let src = "steps:\n  - id: a\n    action: exce\n";
        let d =
            Diagnostic::at(Loc::new(3, 13, 4), "unknown action `exce`").suggest("exce", ["exec"]);
        let text = render(Path::new("rb.yaml"), src, &[d]);
        assert_eq!(
            text,
            "error: unknown action `exce`\n --> rb.yaml:3:13\n  |\n3 |     action: exce\n  |             ^^^^\n  = help: did you mean `exec`?\n\n1 error in rb.yaml"
        );
    }
}
