//! The per-step change-review report of a run.
//!
//! [`aggregate::build`] reads the run directory (journal + probe data) into one [`model`]; the
//! Markdown and HTML reports are Tera templates (`templates/`) over it, and the JSON
//! report is the model itself, versioned. The HTML report is one self-contained file
//! (styles and the charts inline as SVG); the Markdown report embeds the charts as PNGs
//! written next to it.

pub mod aggregate;
pub mod chart;
pub mod compare;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde_json::Value;
use tera::Tera;

pub use aggregate::{ReportError, build};
pub use compare::{Comparison, compare};
pub use model::{FORMAT_VERSION, Report};

/// A report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A summary for a terminal.
    Text,
    Md,
    Html,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Md => "md",
            Format::Html => "html",
            Format::Json => "json",
        }
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Model(#[from] ReportError),
    #[error("cannot render the {format} report")]
    Template {
        format: &'static str,
        #[source]
        source: tera::Error,
    },
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The Markdown report: every value is escaped ([`escape_markdown`]), so a command's
/// output cannot put raw HTML or terminal escapes into it.
static MARKDOWN: LazyLock<Result<Tera, tera::Error>> = LazyLock::new(|| {
    engine(
        &[
            ("report.md", include_str!("../../templates/report.md.tera")),
            (
                "compare.md",
                include_str!("../../templates/compare.md.tera"),
            ),
        ],
        escape_markdown,
    )
});

/// The HTML report: every value is escaped as HTML, control characters made visible.
static HTML: LazyLock<Result<Tera, tera::Error>> = LazyLock::new(|| {
    engine(
        &[
            (
                "report.html",
                include_str!("../../templates/report.html.tera"),
            ),
            (
                "compare.html",
                include_str!("../../templates/compare.html.tera"),
            ),
        ],
        escape_html,
    )
});

fn engine(
    templates: &[(&'static str, &'static str)],
    escape: fn(&str) -> String,
) -> Result<Tera, tera::Error> {
    let mut tera = Tera::default();
    tera.add_raw_templates(templates.iter().copied())?;
    tera.autoescape_on(templates.iter().map(|(name, _)| *name).collect());
    tera.set_escape_fn(escape);
    tera.register_filter("ms", filter_ms);
    tera.register_filter("secs", filter_secs);
    tera.register_filter("clock", filter_clock);
    tera.register_filter("utc", filter_utc);
    tera.register_filter("num", filter_num);
    tera.register_filter("cell", filter_cell);
    tera.register_filter("outages", filter_outages);
    Ok(tera)
}

/// Markdown text that shows `text` as it is: no HTML tag, entity or control character
/// of it takes effect.
fn escape_markdown(text: &str) -> String {
    crate::redact::printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn escape_html(text: &str) -> String {
    tera::escape_html(&crate::redact::printable(text))
}

/// `1234.5` (ms) → `1.23 s`, `12.3` → `12.3 ms`, `0.21` → `0.21 ms`.
fn filter_ms(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_f64() {
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.2} ms"),
        None => "–".into(),
    }))
}

/// Seconds with a unit: `0.42 s`, `3 m 05 s`.
fn filter_secs(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_f64() {
        Some(s) if s >= 60.0 => format!("{} m {:02} s", (s / 60.0).floor(), (s % 60.0).round()),
        Some(s) => format!("{s:.2} s"),
        None => "–".into(),
    }))
}

/// An RFC 3339 time → `HH:MM:SS.mmm` (UTC).
fn filter_clock(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%H:%M:%S%.3f")
                    .to_string()
            })
            .unwrap_or_else(|| "–".into()),
    ))
}

/// An RFC 3339 time → `2026-11-22 03:12:05 UTC`.
fn filter_utc(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            })
            .unwrap_or_else(|| "–".into()),
    ))
}

/// A number with at most two decimals.
fn filter_num(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.2}")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }))
}

/// A step's outages in a few words: `1 disconnect (1.50 s), 2 stalls`, or `–`.
fn filter_outages(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut parts = Vec::new();
    for (key, word) in [
        ("disconnects", "disconnect"),
        ("stalls", "stall"),
        ("refusals", "refusal"),
        ("errors", "error"),
    ] {
        let count = n(key);
        if count == 0 {
            continue;
        }
        let plural = if count == 1 { "" } else { "s" };
        let mut part = format!("{count} {word}{plural}");
        if key == "disconnects" {
            let s = v
                .get("disconnected_s")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            part.push_str(&format!(" ({s:.2} s)"));
        }
        parts.push(part);
    }
    Ok(Value::String(if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }))
}

/// Text safe inside a Markdown table cell.
fn filter_cell(v: &Value, _: &std::collections::HashMap<String, Value>) -> tera::Result<Value> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(Value::String(
        text.replace('|', "\\|").replace(['\n', '\r'], " "),
    ))
}

fn templates(
    tera: &'static LazyLock<Result<Tera, tera::Error>>,
) -> Result<&'static Tera, RenderError> {
    tera.as_ref().map_err(|e| RenderError::Template {
        format: "any",
        source: tera::Error::msg(e.to_string()),
    })
}

/// The report as JSON text.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The report as Markdown; `images` names the chart files written next to it (by
/// [`write_images`]).
pub fn to_markdown(report: &Report, images: &Images) -> Result<String, RenderError> {
    let mut ctx =
        tera::Context::from_serialize(report).map_err(|source| RenderError::Template {
            format: "md",
            source,
        })?;
    ctx.insert("timeline_png", &images.timeline);
    ctx.insert("bench_charts", &images.bench);
    templates(&MARKDOWN)?
        .render("report.md", &ctx)
        .map_err(|source| RenderError::Template {
            format: "md",
            source,
        })
}

/// The report as one self-contained HTML page.
pub fn to_html(report: &Report) -> Result<String, RenderError> {
    let mut ctx =
        tera::Context::from_serialize(report).map_err(|source| RenderError::Template {
            format: "html",
            source,
        })?;
    let timeline = if chart::has_timeline(report) {
        Some(chart::timeline_svg(report)?)
    } else {
        None
    };
    let mut bench = Vec::new();
    for c in chart::bench_charts(report) {
        bench.push(BenchImage {
            image: chart::bench_svg(report, &c)?,
            title: c.title,
        });
    }
    ctx.insert("timeline_svg", &timeline);
    ctx.insert("bench_charts", &bench);
    templates(&HTML)?
        .render("report.html", &ctx)
        .map_err(|source| RenderError::Template {
            format: "html",
            source,
        })
}

/// The chart files of a Markdown report, by file name (they sit next to it).
#[derive(Debug, Default)]
pub struct Images {
    pub timeline: Option<String>,
    /// The benchmark charts, in the order of [`chart::bench_charts`].
    pub bench: Vec<BenchImage>,
}

/// A benchmark chart as a report shows it: its title, and its file name (Markdown) or its
/// SVG document (HTML).
#[derive(Debug, serde::Serialize)]
pub struct BenchImage {
    pub title: String,
    pub image: String,
}

/// Draws the PNG charts next to a Markdown report at `md_path`.
pub fn write_images(report: &Report, md_path: &Path) -> Result<Images, RenderError> {
    let dir = md_path.parent().unwrap_or(Path::new("."));
    let stem = md_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    let mut images = Images::default();
    if chart::has_timeline(report) {
        let name = format!("{stem}-timeline.png");
        chart::timeline_png(report, &dir.join(&name))?;
        images.timeline = Some(name);
    }
    for (i, c) in chart::bench_charts(report).into_iter().enumerate() {
        let name = format!("{stem}-bench-{}.png", i + 1);
        chart::bench_png(report, &c, &dir.join(&name))?;
        images.bench.push(BenchImage {
            title: c.title,
            image: name,
        });
    }
    Ok(images)
}

/// Writes the report of `run_dir` in `format` to `path` (charts next to a Markdown one).
pub fn write_report(run_dir: &Path, format: Format, path: &Path) -> Result<PathBuf, RenderError> {
    let report = build(run_dir)?;
    write_rendered(&report, format, path)
}

fn write_rendered(report: &Report, format: Format, path: &Path) -> Result<PathBuf, RenderError> {
    let text = match format {
        Format::Text => to_text(report),
        Format::Json => to_json(report),
        Format::Html => to_html(report)?,
        Format::Md => {
            let images = write_images(report, path)?;
            to_markdown(report, &images)?
        }
    };
    std::fs::write(path, text).map_err(|source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// The report's outcome and steps as plain text, for a terminal.
pub fn to_text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let o = &report.outcome;
    let secs = |v: Option<f64>| v.map_or("not measured".to_string(), |s| format!("{s:.2} s"));
    let _ = writeln!(
        out,
        "{} ({})",
        report.run.id.as_deref().unwrap_or("probe"),
        o.status
    );
    let _ = writeln!(
        out,
        "time clients could not write: {} ({} disconnects, {} stalls, {} refusals, {} errors)",
        secs(o.unwritable_s),
        o.disconnects,
        o.stalls,
        o.refusals,
        o.errors
    );
    if let Some(note) = &o.probe_note {
        let _ = writeln!(out, "not measured: {note}");
    }
    if let Some(c) = &o.cutover {
        let _ = writeln!(
            out,
            "cutover at {} ({} -> {}): write gap {}",
            c.step,
            c.from,
            c.to,
            c.write_gap_ms
                .map_or_else(|| "not measured".to_string(), |g| format!("{g:.1} ms"))
        );
    }
    if let Some(p) = &o.parity {
        let _ = writeln!(
            out,
            "key parity: {} ({} keys, last of {} checks: {})",
            if p.equal { "equal" } else { "NOT equal" },
            p.keys_checked,
            p.checks,
            p.step
        );
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:<10} {:>9} {:>9} {:>9} {:>9} {:>7}  outages",
        "step", "status", "duration", "requests", "p50", "p99", "errors"
    );
    let outages = |row: Result<Value, serde_json::Error>| {
        filter_outages(
            &row.unwrap_or(Value::Null),
            &std::collections::HashMap::new(),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    };
    for s in &report.steps {
        let (p50, p99) = latencies(&s.latency);
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:>9} {:>9} {p50:>9} {p99:>9} {:>7}  {}",
            s.id,
            s.status,
            s.duration_s.map_or("–".into(), |d| format!("{d:.2} s")),
            s.latency.requests,
            s.latency.errors,
            outages(serde_json::to_value(s))
        );
        for r in &s.shards {
            let (p50, p99) = latencies(&r.latency);
            let _ = writeln!(
                out,
                "  shard {:<14} {:<10} {:>9} {:>9} {p50:>9} {p99:>9} {:>7}  {}",
                r.shard,
                "",
                "",
                r.latency.requests,
                r.latency.errors,
                outages(serde_json::to_value(r))
            );
        }
    }
    out
}

/// A row's p50 and p99, or `–` when none of its requests was answered.
fn latencies(s: &model::Stats) -> (String, String) {
    let ms = |v: f64| {
        if s.requests > s.errors {
            format!("{v:.2} ms")
        } else {
            "–".into()
        }
    };
    (ms(s.p50_ms), ms(s.p99_ms))
}

/// The comparison in `format`.
pub fn render_comparison(c: &Comparison, format: Format) -> Result<String, RenderError> {
    let (engine, name, label) = match format {
        Format::Text => return Ok(compare::to_text(c)),
        Format::Json => {
            return Ok(serde_json::to_string_pretty(c)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        }
        Format::Md => (&MARKDOWN, "compare.md", "md"),
        Format::Html => (&HTML, "compare.html", "html"),
    };
    let ctx = tera::Context::from_serialize(c).map_err(|source| RenderError::Template {
        format: label,
        source,
    })?;
    templates(engine)?
        .render(name, &ctx)
        .map_err(|source| RenderError::Template {
            format: label,
            source,
        })
}

/// Writes report.md (+ chart png), report.html, report.json into `run_dir`.
pub fn write_run_reports(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let report = build(run_dir)?;
    let mut written = Vec::new();
    for format in [Format::Md, Format::Html, Format::Json] {
        let path = run_dir.join(format!("report.{}", format.extension()));
        written.push(write_rendered(&report, format, &path)?);
    }
    Ok(written)
}
