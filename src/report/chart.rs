//! The report's charts: the latency timeline (steps as bands, outages marked) and, per
//! benchmark step, the engines side by side (throughput, p50 and p99 bars per workload, and
//! the ops/s and p99 of each open-loop workload over time, bursts and restarts marked),
//! drawn once as SVG for the HTML report and once as PNG for Markdown.
//!
//! Text in a PNG needs a font in memory: DejaVu Sans Mono ships inside the binary
//! (`assets/fonts`, Bitstream Vera licence) so a chart looks the same on every machine and
//! the tool never reads fonts from the system.

use std::path::Path;
use std::sync::Once;

use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::model::{Bench, Report};

/// Which latency of a timeline second a line of the chart draws.
type PickLatency = fn(&super::model::TimelinePoint) -> f64;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 420);

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {why}")]
pub struct ChartError {
    chart: &'static str,
    why: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is part of the binary; it always parses.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |e| ChartError {
        chart,
        why: e.to_string(),
    }
}

/// Whether the report has latency data to draw.
pub fn has_timeline(report: &Report) -> bool {
    !report.timeline.is_empty()
}

/// The timeline as an SVG document.
pub fn timeline_svg(report: &Report) -> Result<String, ChartError> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw_timeline(&root, report)?;
        root.present().map_err(err("timeline"))?;
    }
    Ok(out)
}

/// The timeline as a PNG file.
pub fn timeline_png(report: &Report, path: &Path) -> Result<(), ChartError> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw_timeline(&root, report)?;
    root.present().map_err(err("timeline"))
}

fn secs(t: DateTime<Utc>, t0: DateTime<Utc>) -> f64 {
    (t - t0).num_milliseconds() as f64 / 1000.0
}

const BAND_COLORS: [RGBColor; 2] = [RGBColor(222, 235, 247), RGBColor(240, 240, 240)];
/// The plot's width in pixels (the chart less its margins and axis labels), and the width
/// of a label's character: where step names fit.
const PLOT_WIDTH_PX: f64 = 1010.0;
const CHAR_PX: f64 = 7.5;
/// Rows of step names above the bands.
const LABEL_ROWS: usize = 6;
/// Runs up to this long get the worst latency of each tenth of a second.
const TENTHS_UP_TO_S: f64 = 600.0;

fn draw_timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = err("timeline");
    root.fill(&WHITE).map_err(&e)?;
    let first_second = report.timeline.first().map(|p| p.second).unwrap_or(0);
    let last_second = report.timeline.last().map(|p| p.second).unwrap_or(0);
    let t0 = [
        report.run.started_at,
        DateTime::from_timestamp(first_second, 0),
        report.bands.first().map(|b| b.start),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or_else(Utc::now);
    let x_end = [
        Some(secs(
            DateTime::from_timestamp(last_second + 1, 0).unwrap_or(t0),
            t0,
        )),
        report
            .bands
            .iter()
            .map(|b| secs(b.end, t0))
            .reduce(f64::max),
        report.run.finished_at.map(|t| secs(t, t0)),
    ]
    .into_iter()
    .flatten()
    .fold(1.0, f64::max);
    let y_max = report
        .timeline
        .iter()
        .map(|p| p.max_ms)
        .fold(10.0, f64::max)
        * 2.0;
    let y_min = 0.05;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Probe latency (ms, log scale): p50, p99 per second and the worst; outages the clients felt in red, others grey",
            (FAMILY, 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end, (y_min..y_max).log_scale())
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "seconds since {} UTC",
            t0.format("%Y-%m-%d %H:%M:%S")
        ))
        .y_desc("latency (ms)")
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(&e)?;
    let span = |band: &super::model::Band| {
        let a = secs(band.start, t0);
        (a, secs(band.end, t0).max(a))
    };
    for (i, band) in report.bands.iter().enumerate() {
        let (a, b) = span(band);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y_min), (b, y_max)],
                BAND_COLORS[i % 2].mix(0.8).filled(),
            )))
            .map_err(&e)?;
    }
    // Every step is named where its band starts, in the first of six rows where the name
    // does not run into the previous one; only a step that finds no room is left to the tables.
    let per_char = x_end / PLOT_WIDTH_PX * CHAR_PX;
    let mut row_ends = [f64::NEG_INFINITY; LABEL_ROWS];
    for band in &report.bands {
        let (a, _) = span(band);
        let width = (band.step.chars().count() as f64 + 1.0) * per_char;
        let Some(row) = row_ends.iter().position(|end| *end <= a) else {
            continue;
        };
        row_ends[row] = a + width;
        chart
            .draw_series(std::iter::once(Text::new(
                band.step.clone(),
                (a, y_max / 1.4_f64.powi(1 + row as i32)),
                (FAMILY, 12).into_font().color(&RGBColor(40, 40, 90)),
            )))
            .map_err(&e)?;
    }
    // Outages in red while the clients were on that endpoint, in grey otherwise.
    for d in &report.outages {
        let a = secs(d.start, t0);
        let b = a + (d.duration_ms / 1000.0).max(0.05);
        let clients: Vec<(f64, f64)> = if report.clients.is_empty() {
            vec![(a, b)]
        } else {
            report
                .clients
                .iter()
                .filter(|c| c.endpoint.as_deref() == Some(d.endpoint.as_str()))
                .map(|c| (secs(c.start, t0).max(a), secs(c.end, t0).min(b)))
                .filter(|(x, y)| y > x)
                .collect()
        };
        let others = std::iter::once(((a, b), RGBColor(120, 120, 140).mix(0.25)));
        let felt = clients.into_iter().map(|span| (span, RED.mix(0.35)));
        for ((x, y), color) in others.chain(felt) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y_min), (y, y_max)],
                    color.filled(),
                )))
                .map_err(&e)?;
        }
    }
    let series: [(&str, RGBColor, PickLatency); 2] = [
        ("p99", RGBColor(230, 120, 20), |p| p.p99_ms),
        ("p50", RGBColor(30, 90, 200), |p| p.p50_ms),
    ];
    let grey = RGBColor(150, 150, 150);
    // The worst latency per tenth of a second on short runs, per second on long ones.
    let short = x_end <= TENTHS_UP_TO_S;
    let mut worst: Vec<(f64, f64)> = Vec::new();
    for p in &report.timeline {
        let at = secs(DateTime::from_timestamp(p.second, 0).unwrap_or(t0), t0);
        if short {
            for (i, v) in p.tenths_max_ms.iter().enumerate() {
                worst.push((at + (i as f64 + 0.5) / 10.0, *v));
            }
        } else {
            worst.push((at + 0.5, p.max_ms));
        }
    }
    let max_label = if short { "max per 0.1 s" } else { "max" };
    let mut first = true;
    for seg in worst
        .split(|(_, v)| *v <= 0.0)
        .filter(|seg| !seg.is_empty())
    {
        let points: Vec<(f64, f64)> = seg.iter().map(|(x, v)| (*x, v.max(y_min))).collect();
        let drawn = chart
            .draw_series(LineSeries::new(points, grey.stroke_width(1)))
            .map_err(&e)?;
        if first {
            drawn.label(max_label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2))
            });
            first = false;
        }
    }
    for (name, color, pick) in series {
        let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut previous: Option<i64> = None;
        for p in &report.timeline {
            let v = pick(p);
            if v <= 0.0 {
                previous = None;
                continue;
            }
            if previous != Some(p.second - 1) {
                segments.push(Vec::new());
            }
            if let Some(seg) = segments.last_mut() {
                let x = secs(DateTime::from_timestamp(p.second, 0).unwrap_or(t0), t0) + 0.5;
                seg.push((x, v.max(y_min)));
            }
            previous = Some(p.second);
        }
        for (i, seg) in segments.into_iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(seg, color.stroke_width(2)))
                .map_err(&e)?;
            if i == 0 {
                drawn.label(name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(&e)?;
    Ok(())
}

/// One benchmark chart of a report: a `bench.run` step's bars, or one of its open-loop
/// workloads over time.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchChart {
    pub step: String,
    /// The workload of a timeline ([`Bench::group`](super::model::Bench)); `None` for the
    /// step's bars.
    pub group: Option<String>,
    pub title: String,
}

/// The benchmark charts of `report`, in order: each step's bars, then a timeline for each of
/// its workloads that ran in open loop.
pub fn bench_charts(report: &Report) -> Vec<BenchChart> {
    let mut charts = Vec::new();
    for step in distinct(report.benchmarks.iter().map(|b| b.step.clone())) {
        let rows: Vec<&Bench> = report
            .benchmarks
            .iter()
            .filter(|b| b.step == step)
            .collect();
        charts.push(BenchChart {
            step: step.clone(),
            group: None,
            title: format!("{step}: throughput, p50 and p99 per workload, engines side by side"),
        });
        for group in distinct(
            rows.iter()
                .filter(|b| !b.timeline.is_empty())
                .map(|b| b.group.clone()),
        ) {
            charts.push(BenchChart {
                step: step.clone(),
                title: format!("{step}: {group}, ops/s and p99 over time, one line per engine"),
                group: Some(group),
            });
        }
    }
    charts
}

/// A benchmark chart as an SVG document.
pub fn bench_svg(report: &Report, chart: &BenchChart) -> Result<String, ChartError> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, bench_size(chart)).into_drawing_area();
        draw_bench(&root, report, chart)?;
        root.present().map_err(err("benchmark"))?;
    }
    Ok(out)
}

/// A benchmark chart as a PNG file.
pub fn bench_png(report: &Report, chart: &BenchChart, path: &Path) -> Result<(), ChartError> {
    register_font();
    let root = BitMapBackend::new(path, bench_size(chart)).into_drawing_area();
    draw_bench(&root, report, chart)?;
    root.present().map_err(err("benchmark"))
}

fn bench_size(chart: &BenchChart) -> (u32, u32) {
    match chart.group {
        None => (SIZE.0, 640),
        Some(_) => (SIZE.0, 560),
    }
}

/// The values of `items` in the order they first appear.
fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// One colour per engine, in the order the engines ran.
const ENGINE_COLORS: [RGBColor; 6] = [
    RGBColor(200, 40, 40),
    RGBColor(30, 90, 200),
    RGBColor(40, 150, 70),
    RGBColor(230, 120, 20),
    RGBColor(120, 60, 170),
    RGBColor(90, 90, 90),
];
const BURST_COLOR: RGBColor = RGBColor(255, 214, 153);

fn engine_color(i: usize) -> RGBColor {
    ENGINE_COLORS[i % ENGINE_COLORS.len()]
}

fn draw_bench<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    chart: &BenchChart,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = err("benchmark");
    root.fill(&WHITE).map_err(&e)?;
    let rows: Vec<&Bench> = report
        .benchmarks
        .iter()
        .filter(|b| b.step == chart.step)
        .collect();
    let engines = distinct(rows.iter().map(|b| b.label.clone()));
    let body = root.titled(&chart.title, (FAMILY, 16)).map_err(&e)?;
    match &chart.group {
        None => draw_bars(root, &body, &rows, &engines),
        Some(group) => {
            let rows: Vec<&Bench> = rows.into_iter().filter(|b| &b.group == group).collect();
            draw_over_time(&body, &rows, &engines)
        }
    }
}

/// A panel of bars: its name, the figure of a result it draws, and how a value reads.
type Panel = (&'static str, fn(&Bench) -> f64, fn(f64) -> String);

/// Three panels (ops/s, p50, p99), a group of bars per workload, one bar per engine.
fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    rows: &[&Bench],
    engines: &[String],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = err("benchmark");
    let groups = distinct(rows.iter().map(|b| b.group.clone()));
    let n = groups.len().max(1) as f64;
    let width = 0.8 / engines.len().max(1) as f64;
    let panels: [Panel; 3] = [
        (
            "throughput (ops/s)",
            |b| b.ops_per_sec,
            |v| format!("{v:.0}"),
        ),
        ("p50 latency (ms)", |b| b.p50_ms, |v| format!("{v:.2}")),
        ("p99 latency (ms)", |b| b.p99_ms, |v| format!("{v:.2}")),
    ];
    let areas = body.split_evenly((panels.len(), 1));
    for (panel, ((name, pick, show), area)) in panels.iter().zip(&areas).enumerate() {
        let last = panel + 1 == panels.len();
        let y_max = rows.iter().map(|b| pick(b)).fold(0.0, f64::max).max(0.01) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(*name, (FAMILY, 13))
            .margin(8)
            .x_label_area_size(if last { 30 } else { 4 })
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, 0.0..y_max)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(4)
            .y_label_formatter(&|v| show(*v))
            .label_style((FAMILY, 11))
            .draw()
            .map_err(&e)?;
        for (j, engine) in engines.iter().enumerate() {
            let color = engine_color(j);
            let bars: Vec<(f64, f64)> = groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    let b = rows.iter().find(|b| &b.label == engine && &b.group == g)?;
                    Some((i as f64 + 0.1 + j as f64 * width, pick(b)))
                })
                .collect();
            let drawn = chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Rectangle::new([(x, 0.0), (x + width * 0.9, v)], color.filled())
                }))
                .map_err(&e)?;
            if panel == 0 {
                drawn.label(engine.clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            }
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Text::new(show(v), (x, v + y_max * 0.03), (FAMILY, 10).into_font())
                }))
                .map_err(&e)?;
        }
        if panel == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FAMILY, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(&e)?;
        }
        if last {
            // Each workload is named under its own group (axis labels would not line up),
            // its persistence mode on a second line.
            let style =
                TextStyle::from((FAMILY, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            for (i, g) in groups.iter().enumerate() {
                let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
                let (name, mode) = match g.split_once(" (") {
                    Some((name, mode)) => (name.to_string(), Some(format!("({mode}"))),
                    None => (g.clone(), None),
                };
                for (line, text) in std::iter::once(name).chain(mode).enumerate() {
                    root.draw(&Text::new(
                        text,
                        (x, y + 4 + 12 * line as i32),
                        style.clone(),
                    ))
                    .map_err(&e)?;
                }
            }
        }
    }
    Ok(())
}

/// Two panels over the phase's time: ops/s (with the target) and p99 (log scale), one line
/// per engine, a point in the middle of each stretch; the bursts shaded, each engine's
/// restart or failover and its recovery marked.
fn draw_over_time<DB: DrawingBackend>(
    body: &DrawingArea<DB, Shift>,
    rows: &[&Bench],
    engines: &[String],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = err("benchmark");
    let color_of =
        |b: &Bench| engine_color(engines.iter().position(|l| *l == b.label).unwrap_or(0));
    let bucket = |b: &Bench| match b.timeline.as_slice() {
        [a, c, ..] => c.t_s - a.t_s,
        _ => 0.1,
    };
    let x_end = rows
        .iter()
        .filter_map(|b| b.timeline.last().map(|p| p.t_s + bucket(b)))
        .fold(0.1, f64::max);
    let top = rows
        .iter()
        .flat_map(|b| &b.timeline)
        .map(|p| p.ops_per_sec.max(p.target_ops_per_sec))
        .fold(1.0, f64::max)
        * 1.15;
    let p99_max = rows
        .iter()
        .flat_map(|b| &b.timeline)
        .map(|p| p.p99_ms)
        .fold(1.0, f64::max)
        * 2.0;
    let p99_min = 0.05;
    let bursts = rows.first().map(|b| b.bursts.clone()).unwrap_or_default();
    let areas = body.split_evenly((2, 1));
    let x_desc = "seconds since the phase started";

    // Throughput against the target.
    let mut ops = ChartBuilder::on(&areas[0])
        .caption(
            "throughput (ops/s per stretch); bursts shaded",
            (FAMILY, 13),
        )
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, 0.0..top)
        .map_err(&e)?;
    ops.configure_mesh()
        .x_desc(x_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(&e)?;
    for span in &bursts {
        ops.draw_series(std::iter::once(Rectangle::new(
            [(span.start_s, 0.0), (span.end_s, top)],
            BURST_COLOR.mix(0.6).filled(),
        )))
        .map_err(&e)?;
    }
    let grey = RGBColor(120, 120, 120);
    if let Some(b) = rows.first() {
        let half = bucket(b) / 2.0;
        ops.draw_series(LineSeries::new(
            b.timeline
                .iter()
                .map(|p| (p.t_s + half, p.target_ops_per_sec)),
            grey.stroke_width(1),
        ))
        .map_err(&e)?
        .label("target")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(1)));
    }
    for b in rows {
        let (color, half) = (color_of(b), bucket(b) / 2.0);
        ops.draw_series(LineSeries::new(
            b.timeline.iter().map(|p| (p.t_s + half, p.ops_per_sec)),
            color.stroke_width(2),
        ))
        .map_err(&e)?
        .label(b.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    mark_recoveries(&mut ops, rows, &color_of, (0.0, top), |y, i| {
        y * (0.97 - 0.07 * i as f64)
    })?;
    ops.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(&e)?;

    // p99, a line per engine broken where a stretch had no answer.
    let mut p99 = ChartBuilder::on(&areas[1])
        .caption("p99 latency (ms per stretch, log scale)", (FAMILY, 13))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, (p99_min..p99_max).log_scale())
        .map_err(&e)?;
    p99.configure_mesh()
        .x_desc(x_desc)
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(&e)?;
    for span in &bursts {
        p99.draw_series(std::iter::once(Rectangle::new(
            [(span.start_s, p99_min), (span.end_s, p99_max)],
            BURST_COLOR.mix(0.6).filled(),
        )))
        .map_err(&e)?;
    }
    for b in rows {
        let (color, half) = (color_of(b), bucket(b) / 2.0);
        let points: Vec<(f64, f64)> = b
            .timeline
            .iter()
            .map(|p| (p.t_s + half, p.p99_ms.max(0.0)))
            .collect();
        for seg in points.split(|(_, v)| *v <= 0.0).filter(|s| !s.is_empty()) {
            let seg: Vec<(f64, f64)> = seg.iter().map(|&(x, v)| (x, v.max(p99_min))).collect();
            p99.draw_series(LineSeries::new(seg, color.stroke_width(2)))
                .map_err(&e)?;
        }
    }
    mark_recoveries(&mut p99, rows, &color_of, (p99_min, p99_max), |y, i| {
        y / 1.6_f64.powi(1 + i as i32)
    })?;
    Ok(())
}

/// A solid line where each engine's restart or failover began and a dashed one where its
/// load was back, named at the height `label_at` gives the engine (by its index).
fn mark_recoveries<DB: DrawingBackend, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    rows: &[&Bench],
    color_of: &dyn Fn(&Bench) -> RGBColor,
    (y_min, y_max): (f64, f64),
    label_at: fn(f64, usize) -> f64,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    let e = err("benchmark");
    for (i, b) in rows.iter().enumerate() {
        let Some(r) = &b.recovery else { continue };
        let color = color_of(b);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(r.event_s, y_min), (r.event_s, y_max)],
                color.stroke_width(2),
            )))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} {}", b.label, r.event),
                (r.event_s, label_at(y_max, i)),
                (FAMILY, 11).into_font().color(&color),
            )))
            .map_err(&e)?;
        if let Some(back) = r.recovered_s {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(back, y_min), (back, y_max)],
                    4,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(&e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} back", b.label),
                    (back, label_at(y_max, i + rows.len())),
                    (FAMILY, 11).into_font().color(&color),
                )))
                .map_err(&e)?;
        }
    }
    Ok(())
}
