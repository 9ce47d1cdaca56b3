//! The results as text: one table of every result, with each endpoint against the first of
//! the same workload, and for bursts a second one of the latency inside against outside.

use super::OpResult;

/// Columns as wide as their widest cell, the first `left` ones left-aligned.
fn render(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c < left {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

/// The results as text tables: every result with its ops/s relative to the first
/// endpoint's for the same persistence mode, workload and operation; the target rate when
/// the load was open; and a table of bursts when there were any.
pub fn table(results: &[OpResult]) -> String {
    let persistence = results.iter().any(|r| r.persistence.is_some());
    let open = results.iter().any(|r| r.target_ops_per_sec.is_some());
    let mut header: Vec<&str> = Vec::new();
    if persistence {
        header.push("persistence");
    }
    header.extend(["workload", "op", "endpoint"]);
    if open {
        header.push("target/s");
    }
    header.extend([
        "ops/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "vs first",
    ]);
    let left = header.iter().position(|h| *h == "endpoint").unwrap_or(0) + 1;
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    let same = |a: &OpResult, b: &OpResult| {
        a.persistence == b.persistence && a.workload == b.workload && a.op == b.op
    };
    for r in results {
        let first = results
            .iter()
            .find(|f| same(f, r))
            .map_or(r.ops_per_sec, |f| f.ops_per_sec);
        let mut row = Vec::new();
        if persistence {
            row.push(r.persistence.clone().unwrap_or_default());
        }
        row.extend([r.workload.clone(), r.op.to_string(), r.label.clone()]);
        if open {
            row.push(
                r.target_ops_per_sec
                    .map_or("-".into(), |t| format!("{t:.0}")),
            );
        }
        row.extend([
            format!("{:.0}", r.ops_per_sec),
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.p999_ms),
            ms(r.max_ms),
            r.errors.to_string(),
            if first > 0.0 {
                format!("{:.2}x", r.ops_per_sec / first)
            } else {
                "-".into()
            },
        ]);
        rows.push(row);
    }
    let mut text = render(&rows, left);
    let bursts: Vec<&OpResult> = results.iter().filter(|r| r.burst.is_some()).collect();
    if !bursts.is_empty() {
        let mut rows = vec![
            [
                "bursts",
                "op",
                "endpoint",
                "in target/s",
                "in ops/s",
                "in p99 ms",
                "in p99.9 ms",
                "in errors",
                "out target/s",
                "out ops/s",
                "out p99 ms",
                "out p99.9 ms",
                "out errors",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for r in bursts {
            let b = r.burst.as_ref().expect("filtered on bursts");
            let mut row = vec![r.workload.clone(), r.op.to_string(), r.label.clone()];
            for w in [&b.inside, &b.outside] {
                row.extend([
                    format!("{:.0}", w.target_ops_per_sec),
                    format!("{:.0}", w.ops_per_sec),
                    ms(w.p99_ms),
                    ms(w.p999_ms),
                    w.errors.to_string(),
                ]);
            }
            rows.push(row);
        }
        text.push('\n');
        text.push_str(&render(&rows, 3));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::{BurstFigures, Labeled, Op, Window, Workload};
    use super::*;
    use crate::endpoint::Endpoint;

    fn result(label: &str, ops: f64) -> OpResult {
        OpResult {
            requests: 10,
            ops_per_sec: ops,
            mean_ms: 0.1,
            p50_ms: 0.1,
            p95_ms: 0.2,
            p99_ms: 0.3,
            p999_ms: 0.35,
            max_ms: 0.4,
            ..OpResult::new(
                &Labeled {
                    label: label.into(),
                    endpoint: Endpoint::parse(&format!("redis://{label}:6379")).unwrap(),
                    owned: None,
                },
                &Workload::Op(Op::Get),
                Op::Get,
            )
        }
    }

    #[test]
    fn tables_compare_with_the_first_endpoint() {
        let text = table(&[result("redis", 1000.0), result("valkey", 1500.0)]);
        assert_eq!(
            text,
            "\
workload  op   endpoint  ops/s  p50 ms  p95 ms  p99 ms  p99.9 ms  max ms  errors  vs first
get       get  redis      1000   0.100   0.200   0.300     0.350   0.400       0     1.00x
get       get  valkey     1500   0.100   0.200   0.300     0.350   0.400       0     1.50x
"
        );
    }

    #[test]
    fn open_loops_show_the_target_and_bursts_their_own_table() {
        let window = |target: f64, ops: f64, p99: f64| Window {
            seconds: 1.0,
            scheduled: target as u64,
            requests: ops as u64,
            errors: (target - ops) as u64,
            target_ops_per_sec: target,
            ops_per_sec: ops,
            p50_ms: 0.1,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            max_ms: p99 * 3.0,
        };
        let open = |label: &str, persistence: &str| OpResult {
            target_ops_per_sec: Some(1200.0),
            persistence: Some(persistence.into()),
            burst: Some(BurstFigures {
                extra_ops_per_sec: 2000.0,
                length_s: 1.0,
                every_s: 5.0,
                inside: window(3000.0, 2990.0, 1.5),
                outside: window(1000.0, 1000.0, 0.5),
            }),
            ..result(label, 1190.0)
        };
        let text = table(&[open("redis", "off"), open("valkey", "aof-always")]);
        assert_eq!(
            text,
            "\
persistence  workload  op   endpoint  target/s  ops/s  p50 ms  p95 ms  p99 ms  p99.9 ms  max ms  errors  vs first
off          get       get  redis         1200   1190   0.100   0.200   0.300     0.350   0.400       0     1.00x
aof-always   get       get  valkey        1200   1190   0.100   0.200   0.300     0.350   0.400       0     1.00x

bursts  op   endpoint  in target/s  in ops/s  in p99 ms  in p99.9 ms  in errors  out target/s  out ops/s  out p99 ms  out p99.9 ms  out errors
get     get  redis            3000      2990      1.500        3.000         10          1000       1000       0.500         1.000           0
get     get  valkey           3000      2990      1.500        3.000         10          1000       1000       0.500         1.000           0
"
        );
    }
}
