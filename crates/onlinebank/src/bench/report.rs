//! Presenting a run three ways from one set of numbers: text for a person at a terminal, one
//! JSON document for scripts and tests (`--json`), and a self-contained HTML page with charts
//! over time (`--report`, inline SVG, no external URL), so the three never disagree.

use super::invariants::Findings;
use super::stats::OpSummary;
use super::target::Memory;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// What was run.
#[derive(Debug, Clone)]
pub struct Config {
    pub duration: Duration,
    pub concurrency: usize,
    pub accounts: usize,
    pub customers: usize,
    pub mix: String,
    pub ceiling_duration: Duration,
    pub opening: i64,
}

/// The bank the bench started itself.
#[derive(Debug, Clone)]
pub struct StartedBank {
    pub ready_in: Duration,
    pub idle_rss_kb: Option<u64>,
    pub memory: Memory,
    /// The data directory's files (name, bytes) when the workload began and after the check.
    pub files_before: Vec<(String, u64)>,
    pub files_after: Vec<(String, u64)>,
}

/// For a long run (a soak): throughput and RSS in the first and the last tenth of the workload,
/// so a drift shows at a glance. `None` for runs under 20 seconds.
fn drift(results: &Results) -> Option<String> {
    let seconds = results.elapsed.as_secs() as usize;
    if seconds < 20 {
        return None;
    }
    let tenth = seconds / 10;
    let rate = |range: std::ops::Range<usize>| -> f64 {
        let total: u64 = results
            .operations
            .iter()
            .flat_map(|op| op.timeline.iter())
            .filter(|point| range.contains(&point.second))
            .map(|point| point.ok)
            .sum();
        total as f64 / range.len().max(1) as f64
    };
    let mut line = format!(
        "drift: {:.0}/s in the first tenth, {:.0}/s in the last",
        rate(0..tenth),
        rate(seconds - tenth..seconds)
    );
    if let Some(bank) = &results.bank {
        let samples = &bank.memory.samples;
        let average = |from: f64, to: f64| -> Option<f64> {
            let inside: Vec<u64> = samples
                .iter()
                .filter(|(at, _)| *at >= from && *at < to)
                .map(|(_, kb)| *kb)
                .collect();
            (!inside.is_empty()).then(|| inside.iter().sum::<u64>() as f64 / inside.len() as f64)
        };
        let (t, n) = (tenth as f64, seconds as f64);
        if let (Some(first), Some(last)) = (average(0.0, t), average(n - t, n)) {
            line.push_str(&format!(
                "; RSS {:.1} MB then {:.1} MB",
                first / 1024.0,
                last / 1024.0
            ));
        }
    }
    Some(line)
}

/// CPU used during the mixed workload, in cores (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The self-started bank (`None` with `--url`).
    pub bank_cores: Option<f64>,
    /// The load generator itself: it shares the machine with the bank.
    pub bench_cores: Option<f64>,
}

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct Results {
    pub url: String,
    pub bank: Option<StartedBank>,
    pub config: Config,
    pub setup: Duration,
    /// `health_live` then `ping`; empty when skipped.
    pub ceilings: Vec<OpSummary>,
    pub operations: Vec<OpSummary>,
    pub elapsed: Duration,
    pub cpu: Cpu,
    pub findings: Findings,
}

impl Results {
    fn ceiling(&self, name: &str) -> Option<&OpSummary> {
        self.ceilings.iter().find(|ceiling| ceiling.name == name)
    }

    /// `op`'s throughput as a share of a ceiling's.
    fn ratio(&self, op: &OpSummary, ceiling: &str) -> Option<f64> {
        self.ceiling(ceiling)
            .filter(|ceiling| ceiling.per_second > 0.0)
            .map(|ceiling| op.per_second / ceiling.per_second)
    }

    fn total(&self) -> (u64, u64, f64) {
        let ok: u64 = self.operations.iter().map(|op| op.ok).sum();
        let errors: u64 = self.operations.iter().map(OpSummary::error_count).sum();
        (ok, errors, ok as f64 / self.elapsed.as_secs_f64().max(1e-9))
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

fn op_json(op: &OpSummary) -> Value {
    let latency = op.latency.map(|latency| {
        json!({
            "p50": round(latency.p50, 3),
            "p90": round(latency.p90, 3),
            "p99": round(latency.p99, 3),
            "max": round(latency.max, 3),
        })
    });
    let timeline: Vec<Value> = op
        .timeline
        .iter()
        .map(|point| {
            json!({
                "second": point.second,
                "completed": point.ok,
                "errors": point.errors,
                "perSecond": round(point.rate, 1),
                "p50Ms": point.p50_ms.map(|v| round(v, 3)),
                "p99Ms": point.p99_ms.map(|v| round(v, 3)),
            })
        })
        .collect();
    json!({
        "completed": op.ok,
        "perSecond": round(op.per_second, 1),
        "latencyMs": latency,
        "errors": op.errors,
        "timeline": timeline,
    })
}

/// The `--json` document.
pub fn to_json(results: &Results) -> Value {
    let mut ceilings = Map::new();
    for ceiling in &results.ceilings {
        ceilings.insert(camel(&ceiling.name), op_json(ceiling));
    }
    let mut operations = Map::new();
    for op in &results.operations {
        let mut value = op_json(op);
        value["ratioToHealthLive"] = json!(results.ratio(op, "health_live").map(|r| round(r, 4)));
        value["ratioToPing"] = json!(results.ratio(op, "ping").map(|r| round(r, 4)));
        operations.insert(op.name.clone(), value);
    }
    let (ok, errors, per_second) = results.total();
    let bank = results.bank.as_ref().map(|bank| {
        json!({
            "readyMs": round(bank.ready_in.as_secs_f64() * 1000.0, 1),
            "idleRssMb": bank.idle_rss_kb.map(|kb| round(mb(kb), 1)),
            "peakRssMb": bank.memory.high_water_kb.map(|kb| round(mb(kb), 1)),
            "peakRssSampledMb": bank.memory.peak_sampled_kb.map(|kb| round(mb(kb), 1)),
            "peakRssWorkloadMb": bank.memory.peak_workload_kb.map(|kb| round(mb(kb), 1)),
            "filesBytesBefore": bank.files_before.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "filesBytesAfter": bank.files_after.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    });
    let findings = &results.findings;
    json!({
        "url": results.url,
        "selfStarted": results.bank.is_some(),
        "bank": bank,
        "config": {
            "durationSeconds": results.config.duration.as_secs_f64(),
            "concurrency": results.config.concurrency,
            "accounts": results.config.accounts,
            "customers": results.config.customers,
            "mix": results.config.mix,
            "ceilingSeconds": results.config.ceiling_duration.as_secs_f64(),
            "openingAmount": results.config.opening,
        },
        "setupSeconds": round(results.setup.as_secs_f64(), 3),
        "ceilings": ceilings,
        "elapsedSeconds": round(results.elapsed.as_secs_f64(), 3),
        "operations": operations,
        "total": {"completed": ok, "errors": errors, "perSecond": round(per_second, 1)},
        "cpuCores": {
            "bank": results.cpu.bank_cores.map(|c| round(c, 2)),
            "bench": results.cpu.bench_cores.map(|c| round(c, 2)),
        },
        "bankCpuMsPerOperation": results
            .cpu
            .bank_cores
            .filter(|_| per_second > 0.0)
            .map(|cores| round(cores / per_second * 1000.0, 3)),
        "invariants": {
            "ok": findings.ok(),
            "accounts": findings.accounts,
            "unknownOutcomes": {
                "count": findings.resolution.unknown,
                "applied": findings.resolution.applied,
                "refused": findings.resolution.refused,
                "unresolved": findings.resolution.unresolved,
            },
            "readSideCaughtUpMs": findings.drained_in.map(|d| round(d.as_secs_f64() * 1000.0, 1)),
            "violations": findings.violations,
        },
    })
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn errors_text(op: &OpSummary) -> String {
    if op.errors.is_empty() {
        return "-".to_owned();
    }
    op.errors
        .iter()
        .map(|(code, count)| format!("{code}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn latency_cells(op: &OpSummary) -> String {
    match op.latency {
        Some(l) => format!(
            "{:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            l.p50, l.p90, l.p99, l.max
        ),
        None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
    }
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}x"))
}

/// The text report.
pub fn to_text(results: &Results) -> String {
    let mut out = String::new();
    text_setup(&mut out, results);
    text_operations(&mut out, results);
    text_cpu(&mut out, results);
    if let Some(line) = drift(results) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(bank) = &results.bank {
        text_bank(&mut out, bank);
    }
    text_findings(&mut out, &results.findings);
    out
}

/// The target and the setup.
fn text_setup(out: &mut String, results: &Results) {
    let c = &results.config;
    let _ = write!(out, "onlinebank bench -> {}", results.url);
    match &results.bank {
        Some(bank) => {
            let _ = write!(
                out,
                " (self-started: ready in {:.0} ms",
                bank.ready_in.as_secs_f64() * 1000.0
            );
            if let Some(kb) = bank.idle_rss_kb {
                let _ = write!(out, ", idle RSS {:.1} MB", mb(kb));
            }
            out.push_str(")\n");
        }
        None => out.push('\n'),
    }
    let _ = writeln!(
        out,
        "setup: {} customers, {} accounts opened with {} won each in {:.2} s",
        c.customers,
        c.accounts,
        c.opening,
        results.setup.as_secs_f64()
    );
}

/// The ceilings and the workload's operations, one row each, and the total.
fn text_operations(out: &mut String, results: &Results) {
    let c = &results.config;
    let header = format!(
        "  {:<12} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "", "done/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    if !results.ceilings.is_empty() {
        let _ = writeln!(
            out,
            "ceilings: {} clients, {:.1} s each",
            c.concurrency,
            c.ceiling_duration.as_secs_f64()
        );
        let _ = writeln!(out, "{header}   errors");
        for ceiling in &results.ceilings {
            let _ = writeln!(
                out,
                "  {:<12} {:>10.1} {}   {}",
                ceiling.name,
                ceiling.per_second,
                latency_cells(ceiling),
                errors_text(ceiling)
            );
        }
    }
    let _ = writeln!(
        out,
        "workload: {:.1} s, {} clients, {} accounts, mix {}",
        results.elapsed.as_secs_f64(),
        c.concurrency,
        c.accounts,
        c.mix
    );
    let _ = writeln!(out, "{header} {:>9} {:>9}   errors", "vs live", "vs ping");
    // Operations left out of the mix (nothing succeeded, nothing failed) get no row.
    let active = results
        .operations
        .iter()
        .filter(|op| op.ok > 0 || !op.errors.is_empty());
    for op in active {
        let _ = writeln!(
            out,
            "  {:<12} {:>10.1} {} {:>9} {:>9}   {}",
            op.name,
            op.per_second,
            latency_cells(op),
            ratio_cell(results.ratio(op, "health_live")),
            ratio_cell(results.ratio(op, "ping")),
            errors_text(op)
        );
    }
    let (ok, errors, per_second) = results.total();
    let _ = writeln!(
        out,
        "  {:<12} {:>10.1}   ({ok} completed, {errors} errors)",
        "total", per_second
    );
}

/// CPU during the workload, and the bank's per operation.
fn text_cpu(out: &mut String, results: &Results) {
    if let Some(bench) = results.cpu.bench_cores {
        let _ = write!(out, "cpu during the workload: bench {bench:.2} cores");
        if let Some(bank) = results.cpu.bank_cores {
            let _ = write!(out, ", bank {bank:.2} cores");
        }
        let _ = writeln!(
            out,
            " (of {})",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
    }
    if let (Some(bank), (ok, _, per_second)) = (results.cpu.bank_cores, results.total()) {
        if ok > 0 && per_second > 0.0 {
            let _ = writeln!(
                out,
                "cpu per operation: {:.3} ms of the bank's CPU (bank cores / operations per second)",
                bank / per_second * 1000.0
            );
        }
    }
}

/// A self-started bank's files and memory.
fn text_bank(out: &mut String, bank: &StartedBank) {
    if !bank.files_after.is_empty() {
        let before: std::collections::BTreeMap<&str, u64> = bank
            .files_before
            .iter()
            .map(|(name, bytes)| (name.as_str(), *bytes))
            .collect();
        let files: Vec<String> = bank
            .files_after
            .iter()
            .map(|(name, bytes)| {
                format!(
                    "{name} {:.2}->{:.2}",
                    mb(before.get(name.as_str()).copied().unwrap_or(0) / 1024),
                    mb(bytes / 1024)
                )
            })
            .collect();
        let _ = writeln!(out, "files (MB, workload start->end): {}", files.join(", "));
    }
    if let Some(kb) = bank.memory.high_water_kb {
        let _ = write!(
            out,
            "memory: peak RSS {:.1} MB (VmHWM, setup included)",
            mb(kb)
        );
        if let Some(sampled) = bank.memory.peak_workload_kb {
            let _ = write!(out, ", {:.1} MB during the workload", mb(sampled));
        }
        out.push('\n');
    }
}

/// The unknown outcomes, the read side, and the invariants.
fn text_findings(out: &mut String, findings: &Findings) {
    let r = &findings.resolution;
    let _ = writeln!(
        out,
        "unknown outcomes: {} (applied {}, refused {}, unresolved {})",
        r.unknown, r.applied, r.refused, r.unresolved
    );
    match findings.drained_in {
        Some(d) => {
            let _ = writeln!(out, "read side caught up in {:.2} s", d.as_secs_f64());
        }
        None => {
            let _ = writeln!(out, "read side did not catch up in time");
        }
    }
    if findings.ok() {
        let _ = writeln!(out, "invariants: ok ({} accounts)", findings.accounts);
    } else {
        let _ = writeln!(
            out,
            "invariants: FAILED ({} violations over {} accounts)",
            findings.violations.len(),
            findings.accounts
        );
        for violation in findings.violations.iter().take(50) {
            let _ = writeln!(out, "  {violation}");
        }
        if findings.violations.len() > 50 {
            let _ = writeln!(out, "  ... and {} more", findings.violations.len() - 50);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTML

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Line<'a> {
    name: String,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// A step of 1, 2 or 5 times a power of ten giving about `count` ticks up to `max`.
fn nice_step(max: f64, count: f64) -> f64 {
    let raw = (max / count).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A tick's label with as many decimals as the step needs.
fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{value:.0}")
    } else if step >= 0.1 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Where a chart's plot sits in the picture, and what its axes span.
struct Frame {
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        self.left + v / self.x_max * self.plot_w
    }

    fn y(&self, v: f64) -> f64 {
        self.top + self.plot_h - v / self.y_max * self.plot_h
    }
}

/// An SVG line chart: x in seconds, y from 0.
fn chart(title: &str, unit: &str, x_max: f64, lines: &[Line]) -> String {
    let (width, height) = (760.0, 280.0);
    let (left, right, top, bottom) = (64.0, 150.0, 32.0, 36.0);
    let y_data = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, y)| *y))
        .fold(0.0f64, f64::max);
    let y_step = nice_step(if y_data > 0.0 { y_data } else { 1.0 }, 5.0);
    let frame = Frame {
        left,
        top,
        plot_w: width - left - right,
        plot_h: height - top - bottom,
        x_max: x_max.max(1.0),
        y_max: ((y_data / y_step).ceil() * y_step).max(y_step),
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    chart_axes(&mut svg, &frame, y_step, height, unit);
    chart_lines(&mut svg, &frame, lines);
    svg.push_str("</svg>");
    svg
}

/// The grid with its tick labels, the axis names and the plot's border.
fn chart_axes(svg: &mut String, frame: &Frame, y_step: f64, height: f64, unit: &str) {
    let Frame {
        left,
        top,
        plot_w,
        plot_h,
        x_max,
        y_max,
    } = *frame;
    let mut tick = 0.0;
    while tick <= y_max + y_step / 2.0 {
        let ty = frame.y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            ty + 4.0,
            tick_label(tick, y_step)
        );
        tick += y_step;
    }
    let x_step = nice_step(x_max, 10.0).max(1.0);
    let mut tick = 0.0;
    while tick <= x_max + 1e-9 {
        let tx = frame.x(tick);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 14.0,
            tick_label(tick, x_step)
        );
        tick += x_step;
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">seconds</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"##,
        left + plot_w / 2.0,
        height - 4.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(unit)
    );
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
    );
}

/// Each line, and its entry in the legend on the right.
fn chart_lines(svg: &mut String, frame: &Frame, lines: &[Line]) {
    for (index, line) in lines.iter().enumerate() {
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        if !line.points.is_empty() {
            let points: Vec<String> = line
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", frame.x(*px), frame.y(*py)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"/>"#,
                line.color,
                points.join(" ")
            );
        }
        let ly = frame.top + 10.0 + index as f64 * 18.0;
        let lx = frame.left + frame.plot_w + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            line.color,
            lx + 28.0,
            ly + 4.0,
            escape(&line.name)
        );
    }
}

fn table(results: &Results) -> String {
    let mut html = String::from(
        "<table><tr><th>operation</th><th>completed</th><th>completed/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>vs /health/live</th><th>vs /api/v1/ping</th><th>errors</th></tr>",
    );
    let rows = results
        .ceilings
        .iter()
        .map(|op| (op, true))
        .chain(results.operations.iter().map(|op| (op, false)));
    for (op, is_ceiling) in rows {
        let (p50, p90, p99, max) = match op.latency {
            Some(l) => (
                format!("{:.2}", l.p50),
                format!("{:.2}", l.p90),
                format!("{:.2}", l.p99),
                format!("{:.2}", l.max),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let (live, ping) = if is_ceiling {
            ("".to_owned(), "".to_owned())
        } else {
            (
                ratio_cell(results.ratio(op, "health_live")),
                ratio_cell(results.ratio(op, "ping")),
            )
        };
        let name = if is_ceiling {
            format!("<i>ceiling: {}</i>", escape(&op.name))
        } else {
            escape(&op.name)
        };
        let _ = write!(
            html,
            "<tr><td>{name}</td><td>{}</td><td>{:.1}</td><td>{p50}</td><td>{p90}</td><td>{p99}</td><td>{max}</td><td>{live}</td><td>{ping}</td><td>{}</td></tr>",
            op.ok,
            op.per_second,
            escape(&errors_text(op))
        );
    }
    html.push_str("</table>");
    html
}

/// The charts: completed operations per second, each operation's latency, the bank's memory.
fn charts(results: &Results) -> Vec<String> {
    let x_max = results.elapsed.as_secs_f64();
    let throughput: Vec<Line> = results
        .operations
        .iter()
        .enumerate()
        .map(|(index, op)| Line {
            name: op.name.clone(),
            color: COLORS[index % COLORS.len()],
            dashed: false,
            points: op
                .timeline
                .iter()
                .map(|p| (p.second as f64 + 0.5, p.rate))
                .collect(),
        })
        .collect();
    let mut charts = vec![chart(
        "Completed operations per second",
        "completed/s",
        x_max,
        &throughput,
    )];
    for (index, op) in results.operations.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let pick = |f: fn(&super::stats::SecondPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            op.timeline
                .iter()
                .filter_map(|p| f(p).map(|v| (p.second as f64 + 0.5, v)))
                .collect()
        };
        let lines = [
            Line {
                name: "p50".into(),
                color,
                dashed: false,
                points: pick(|p| p.p50_ms),
            },
            Line {
                name: "p99".into(),
                color,
                dashed: true,
                points: pick(|p| p.p99_ms),
            },
        ];
        charts.push(chart(
            &format!("{} latency per second (p50, p99)", op.name),
            "ms",
            x_max,
            &lines,
        ));
    }
    if let Some(bank) = &results.bank {
        if !bank.memory.samples.is_empty() {
            let line = Line {
                name: "RSS".into(),
                color: COLORS[5],
                dashed: false,
                points: bank
                    .memory
                    .samples
                    .iter()
                    .filter(|(t, _)| *t <= x_max)
                    .map(|(t, kb)| (*t, mb(*kb)))
                    .collect(),
            };
            charts.push(chart("Bank resident memory", "MB", x_max, &[line]));
        }
    }
    charts
}

/// The `--report` page.
pub fn to_html(results: &Results) -> String {
    let charts = charts(results);
    let verdict = if results.findings.ok() {
        format!(
            r#"<p class="ok">invariants: ok ({} accounts)</p>"#,
            results.findings.accounts
        )
    } else {
        let items: String = results
            .findings
            .violations
            .iter()
            .take(200)
            .map(|v| format!("<li>{}</li>", escape(v)))
            .collect();
        format!(
            r#"<p class="bad">invariants: FAILED ({} violations)</p><ul>{items}</ul>"#,
            results.findings.violations.len()
        )
    };
    let text = escape(&to_text(results));
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>onlinebank bench</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child, td:last-child {{ text-align: left; }}
.ok {{ color: #1a7f37; font-weight: bold; }} .bad {{ color: #c62828; font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 12px; }}
svg {{ display: block; margin: 12px 0; }}
</style></head><body>
<h1>onlinebank bench</h1>
<p>{url}: {concurrency} clients for {secs:.1} s, {accounts} accounts, mix {mix}</p>
{table}
{verdict}
{charts}
<h2>Text report</h2>
<pre>{text}</pre>
</body></html>
"#,
        url = escape(&results.url),
        concurrency = results.config.concurrency,
        secs = results.elapsed.as_secs_f64(),
        accounts = results.config.accounts,
        mix = escape(&results.config.mix),
        table = table(results),
        charts = charts.join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_numbers() {
        assert!((nice_step(100.0, 5.0) - 20.0).abs() < 1e-9);
        assert!((nice_step(7.0, 5.0) - 2.0).abs() < 1e-9);
        assert!((nice_step(0.3, 5.0) - 0.1).abs() < 1e-9);
        assert_eq!(camel("health_live"), "healthLive");
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
