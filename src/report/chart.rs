//! The report's charts: the latency timeline (steps as bands, outages marked) and the
//! benchmark bars, drawn once as SVG for the HTML report and once as PNG for Markdown.
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

use super::model::Report;

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

/// The benchmark bars as an SVG document.
pub fn bench_svg(report: &Report) -> Result<String, ChartError> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw_bench(&root, report)?;
        root.present().map_err(err("benchmark"))?;
    }
    Ok(out)
}

/// The benchmark bars as a PNG file.
pub fn bench_png(report: &Report, path: &Path) -> Result<(), ChartError> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw_bench(&root, report)?;
    root.present().map_err(err("benchmark"))
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

fn draw_bench<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = err("benchmark");
    root.fill(&WHITE).map_err(&e)?;
    let labels: Vec<String> = report
        .benchmarks
        .iter()
        .map(|b| format!("{} {}", b.op, b.endpoint))
        .collect();
    let n = labels.len().max(1);
    let y_max = report
        .benchmarks
        .iter()
        .map(|b| b.ops_per_sec)
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption("Benchmark throughput (operations per second)", (FAMILY, 16))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 11))
        .y_desc("ops/s")
        .draw()
        .map_err(&e)?;
    chart
        .draw_series(report.benchmarks.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, b.ops_per_sec)],
                RGBColor(30, 90, 200).filled(),
            )
        }))
        .map_err(&e)?;
    // Each bar is named above itself: axis labels would not line up with the bars.
    chart
        .draw_series(
            report
                .benchmarks
                .iter()
                .zip(&labels)
                .enumerate()
                .map(|(i, (b, label))| {
                    Text::new(
                        format!("{label}: {:.0}/s", b.ops_per_sec),
                        (i as f64 + 0.15, b.ops_per_sec + y_max * 0.02),
                        (FAMILY, 11).into_font(),
                    )
                }),
        )
        .map_err(&e)?;
    Ok(())
}
