//! Reports: one JSON document per run against one server, and a Markdown table comparing runs with
//! Herald's figures as ratios to each peer's.

use serde::{Deserialize, Serialize};

use crate::phase::PhaseReport;

/// Everything measured in one run against one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    /// Label of the server, e.g. `prosody`, `herald-sqlite`.
    pub server: String,
    /// Where it listened.
    pub address: String,
    /// XMPP domain.
    pub domain: String,
    /// SASL mechanism used.
    pub mechanism: String,
    /// Phases in the order run.
    pub phases: Vec<PhaseReport>,
    /// Server memory after the last phase (its `peak_kib` is the peak over the whole run).
    #[serde(default)]
    pub memory_end: Option<crate::stats::MemorySample>,
}

impl RunReport {
    /// The phase called `name`, if it ran.
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// Whether a bigger figure is better, for reading ratios.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

struct Metric {
    label: &'static str,
    better: Better,
    value: fn(&RunReport) -> Option<f64>,
}

/// CPU milliseconds per successful operation of a phase.
fn cpu_ms_per_op(phase: &PhaseReport, cpu_s: Option<f64>) -> Option<f64> {
    (phase.succeeded > 0).then_some(())?;
    cpu_s.map(|s| s * 1000.0 / phase.succeeded as f64)
}

fn available(r: &RunReport, name: &str) -> Option<PhaseReport> {
    r.phase(name).filter(|p| p.available).cloned()
}

/// A named figure of an available phase.
fn figure(r: &RunReport, phase: &str, name: &str) -> Option<f64> {
    r.phase(phase)
        .filter(|p| p.available)
        .and_then(|p| p.figures.get(name).copied())
}

const METRICS: &[Metric] = &[
    Metric {
        label: "accounts: in-band registrations /s",
        better: Better::Higher,
        value: |r| available(r, "accounts").map(|p| p.rate_per_s),
    },
    Metric {
        label: "idle: sessions established",
        better: Better::Higher,
        value: |r| available(r, "idle").map(|p| p.succeeded as f64),
    },
    Metric {
        label: "idle: sessions set up /s",
        better: Better::Higher,
        value: |r| available(r, "idle").map(|p| p.rate_per_s),
    },
    Metric {
        label: "idle: server RSS per session (KiB)",
        better: Better::Lower,
        value: |r| available(r, "idle").and_then(|p| p.kib_per_session),
    },
    Metric {
        label: "idle: server RSS with all sessions (MiB)",
        better: Better::Lower,
        value: |r| {
            available(r, "idle")
                .and_then(|p| p.memory_loaded)
                .map(|m| m.rss_kib as f64 / 1024.0)
        },
    },
    Metric {
        label: "server peak RSS, VmHWM at the last sample (MiB)",
        better: Better::Lower,
        value: |r| {
            r.phases
                .iter()
                .filter_map(|p| p.memory_loaded.or(p.memory_before))
                .chain(r.memory_end)
                .map(|m| m.peak_kib as f64 / 1024.0)
                .reduce(f64::max)
        },
    },
    Metric {
        label: "idle: errors",
        better: Better::Lower,
        value: |r| available(r, "idle").map(|p| p.errors.total() as f64),
    },
    Metric {
        label: "login storm: logins /s",
        better: Better::Higher,
        value: |r| available(r, "login").map(|p| p.rate_per_s),
    },
    Metric {
        label: "login storm: login p50 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "login")
                .and_then(|p| p.latency)
                .map(|l| l.p50_ms)
        },
    },
    Metric {
        label: "login storm: login p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "login")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "login storm: errors",
        better: Better::Lower,
        value: |r| available(r, "login").map(|p| p.errors.total() as f64),
    },
    Metric {
        label: "login storm: server CPU ms per login",
        better: Better::Lower,
        value: |r| available(r, "login").and_then(|p| cpu_ms_per_op(&p, p.server_cpu_s)),
    },
    Metric {
        label: "login storm: load generator CPU ms per login",
        better: Better::Lower,
        value: |r| available(r, "login").and_then(|p| cpu_ms_per_op(&p, p.client_cpu_s)),
    },
    Metric {
        label: "chat: delivered msgs /s (best clean step; see notes)",
        better: Better::Higher,
        value: |r| available(r, "chat").map(|p| p.rate_per_s),
    },
    Metric {
        label: "chat: delivery p50 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "chat")
                .and_then(|p| p.latency)
                .map(|l| l.p50_ms)
        },
    },
    Metric {
        label: "chat: delivery p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "chat")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "chat: delivery max (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "chat")
                .and_then(|p| p.latency)
                .map(|l| l.max_ms)
        },
    },
    Metric {
        label: "chat: errors at the failing step",
        better: Better::Lower,
        value: |r| available(r, "chat").map(|p| p.errors.total() as f64),
    },
    Metric {
        label: "federation: delivered msgs /s across s2s (best clean step)",
        better: Better::Higher,
        value: |r| available(r, "federation").map(|p| p.rate_per_s),
    },
    Metric {
        label: "federation: delivery p50 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "federation")
                .and_then(|p| p.latency)
                .map(|l| l.p50_ms)
        },
    },
    Metric {
        label: "federation: delivery p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "federation")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "federation: errors at the failing step",
        better: Better::Lower,
        value: |r| available(r, "federation").map(|p| p.errors.total() as f64),
    },
    Metric {
        label: "push: offline users woken",
        better: Better::Higher,
        value: |r| available(r, "push").map(|p| p.succeeded as f64),
    },
    Metric {
        label: "push: send-to-provider p50 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "push")
                .and_then(|p| p.latency)
                .map(|l| l.p50_ms)
        },
    },
    Metric {
        label: "push: send-to-provider p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "push")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "push: send-to-provider max (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "push")
                .and_then(|p| p.latency)
                .map(|l| l.max_ms)
        },
    },
    Metric {
        label: "pep: publish-to-notification p50 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "pep")
                .and_then(|p| p.latency)
                .map(|l| l.p50_ms)
        },
    },
    Metric {
        label: "pep: publish-to-notification p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "pep")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "pep: publish-to-notification max (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "pep")
                .and_then(|p| p.latency)
                .map(|l| l.max_ms)
        },
    },
    Metric {
        label: "pep: publishes /s sustained",
        better: Better::Higher,
        value: |r| available(r, "pep").map(|p| p.rate_per_s),
    },
    Metric {
        label: "pep: notifications delivered /s",
        better: Better::Higher,
        value: |r| figure(r, "pep", "notifications_per_s"),
    },
    Metric {
        label: "pep: errors (missing notifications, refused publishes)",
        better: Better::Lower,
        value: |r| available(r, "pep").map(|p| p.errors.total() as f64),
    },
    Metric {
        label: "pep caps burst: all online, presence exchanged (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "pep-caps")
                .filter(|p| p.attempted > 0 && p.succeeded == p.attempted)
                .map(|p| p.seconds * 1000.0)
        },
    },
    Metric {
        label: "pep caps burst: per-contact p99 (ms)",
        better: Better::Lower,
        value: |r| {
            available(r, "pep-caps")
                .and_then(|p| p.latency)
                .map(|l| l.p99_ms)
        },
    },
    Metric {
        label: "pep caps burst: disco#info queries for one new hash",
        better: Better::Lower,
        value: |r| figure(r, "pep-caps", "disco_queries"),
    },
    Metric {
        label: "pep caps burst: errors",
        better: Better::Lower,
        value: |r| available(r, "pep-caps").map(|p| p.errors.total() as f64),
    },
];

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// A ratio with two decimals, or two significant digits below 0.1 (an archive page can be hundreds of
/// times faster on one server, and `0.00×` would say nothing).
fn fmt_ratio(x: f64) -> String {
    if x == 0.0 || x.abs() >= 0.1 {
        return format!("{x:.2}×");
    }
    let decimals = (1 - x.abs().log10().floor() as i32).max(2) as usize;
    format!("{x:.decimals$}×")
}

/// One table row: a label, which way is better, and the value of each run.
struct Row {
    label: String,
    better: Better,
    values: Vec<Option<f64>>,
}

/// The archive phase's rows: the fill rate, then p50 and p99 of every query kind any run timed (in the
/// order the first run that has it reports them).
fn archive_rows(runs: &[RunReport]) -> Vec<Row> {
    let phases: Vec<Option<PhaseReport>> = runs.iter().map(|r| available(r, "archive")).collect();
    let mut rows = vec![Row {
        label: "archive: fill, messages archived /s".into(),
        better: Better::Higher,
        values: phases
            .iter()
            .map(|p| p.as_ref().map(|p| p.rate_per_s))
            .collect(),
    }];
    let mut kinds: Vec<&str> = Vec::new();
    for p in phases.iter().flatten() {
        for q in &p.queries {
            if !kinds.contains(&q.name.as_str()) {
                kinds.push(&q.name);
            }
        }
    }
    let latency = |p: &Option<PhaseReport>, kind: &str| {
        p.as_ref()
            .and_then(|p| p.queries.iter().find(|q| q.name == kind))
            .and_then(|q| q.latency)
    };
    for kind in kinds {
        rows.push(Row {
            label: format!("archive: {kind} p50 (ms)"),
            better: Better::Lower,
            values: phases
                .iter()
                .map(|p| latency(p, kind).map(|l| l.p50_ms))
                .collect(),
        });
        rows.push(Row {
            label: format!("archive: {kind} p99 (ms)"),
            better: Better::Lower,
            values: phases
                .iter()
                .map(|p| latency(p, kind).map(|l| l.p99_ms))
                .collect(),
        });
    }
    rows.push(Row {
        label: "archive: errors".into(),
        better: Better::Lower,
        values: phases
            .iter()
            .map(|p| p.as_ref().map(|p| p.errors.total() as f64))
            .collect(),
    });
    rows
}

/// A Markdown table: one row per metric some run has a figure for, one column per run, then one ratio
/// column for every (Herald run, peer run) pair. Runs whose label starts with `herald` are Herald; the
/// others peers.
pub fn comparison_table(runs: &[RunReport]) -> String {
    let heralds: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].server.starts_with("herald"))
        .collect();
    let peers: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].server.starts_with("herald"))
        .collect();
    let mut header = vec!["metric".to_owned()];
    header.extend(runs.iter().map(|r| r.server.clone()));
    for &h in &heralds {
        for &p in &peers {
            header.push(format!("{} / {}", runs[h].server, runs[p].server));
        }
    }
    let rows = METRICS
        .iter()
        .map(|m| Row {
            label: m.label.to_owned(),
            better: m.better,
            values: runs.iter().map(|r| (m.value)(r)).collect(),
        })
        .chain(archive_rows(runs))
        // A phase no run ran gives nothing to read.
        .filter(|row| row.values.iter().any(Option::is_some));
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        let arrow = match row.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let mut cells = vec![format!("{} {arrow}", row.label)];
        cells.extend(row.values.iter().map(|v| fmt(*v)));
        for &h in &heralds {
            for &p in &peers {
                let ratio = match (row.values[h], row.values[p]) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                cells.push(ratio.map_or("n/a".into(), fmt_ratio));
            }
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str("\n↑ higher is better, ↓ lower is better; ratios are Herald ÷ peer.\n");
    for r in runs {
        for p in &r.phases {
            if !p.note.is_empty() {
                out.push_str(&format!("\n- {} / {}: {}", r.server, p.name, p.note));
            }
            if p.errors.total() > 0 {
                let kinds: Vec<String> =
                    p.errors.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!(" (errors: {})", kinds.join(", ")));
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    fn run(server: &str, logins: f64) -> RunReport {
        RunReport {
            server: server.into(),
            phases: vec![PhaseReport {
                name: "login".into(),
                available: true,
                rate_per_s: logins,
                latency: Latency::from_micros(vec![1000, 3000]),
                ..PhaseReport::default()
            }],
            ..RunReport::default()
        }
    }

    #[test]
    fn ratios_are_herald_over_peer_and_missing_is_na() {
        let t = comparison_table(&[run("herald-sqlite", 300.0), run("prosody", 100.0)]);
        assert!(
            t.contains("| metric | herald-sqlite | prosody | herald-sqlite / prosody |"),
            "{t}"
        );
        assert!(
            t.contains("| login storm: logins /s ↑ | 300 | 100 | 3.00× |"),
            "{t}"
        );
        assert!(
            !t.contains("idle: sessions established"),
            "no run has it: {t}"
        );
    }

    #[test]
    fn pep_rows_read_the_figures_and_an_unavailable_phase_is_na() {
        let pep = |server: &str, available: bool, disco: f64| RunReport {
            server: server.into(),
            phases: vec![
                PhaseReport {
                    name: "pep".into(),
                    available,
                    rate_per_s: 49.5,
                    latency: Latency::from_micros(vec![2000, 4000]),
                    ..PhaseReport::default()
                },
                PhaseReport {
                    name: "pep-caps".into(),
                    available,
                    attempted: 100,
                    succeeded: 100,
                    seconds: 1.25,
                    figures: [("disco_queries".to_string(), disco)].into(),
                    ..PhaseReport::default()
                },
            ],
            ..RunReport::default()
        };
        let t = comparison_table(&[pep("herald-sqlite", true, 1.0), pep("prosody", true, 200.0)]);
        assert!(
            t.contains(
                "| pep caps burst: disco#info queries for one new hash ↓ | 1 | 200 | 0.0050× |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| pep caps burst: all online, presence exchanged (ms) ↓ | 1250 | 1250 | 1.00× |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| pep: publishes /s sustained ↑ | 49.5 | 49.5 | 1.00× |"),
            "{t}"
        );
        let t = comparison_table(&[
            pep("herald-sqlite", false, 0.0),
            pep("prosody", true, 200.0),
        ]);
        assert!(
            t.contains(
                "| pep caps burst: disco#info queries for one new hash ↓ | n/a | 200 | n/a |"
            ),
            "{t}"
        );
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(fmt_ratio(3.0), "3.00×");
        assert_eq!(fmt_ratio(0.13), "0.13×");
        assert_eq!(fmt_ratio(0.0033), "0.0033×");
        assert_eq!(fmt_ratio(0.05), "0.050×");
        assert_eq!(fmt_ratio(0.0), "0.00×");
    }

    #[test]
    fn archive_rows_follow_the_query_kinds_and_a_missing_figure_is_na() {
        let archive = |server: &str, p50: Option<u64>| RunReport {
            server: server.into(),
            phases: vec![PhaseReport {
                name: "archive".into(),
                available: true,
                rate_per_s: 500.0,
                queries: vec![
                    crate::phase::NamedLatency {
                        name: "first page".into(),
                        latency: p50.and_then(|us| Latency::from_micros(vec![us])),
                    },
                    crate::phase::NamedLatency {
                        name: "last page".into(),
                        latency: Latency::from_micros(vec![4500]),
                    },
                ],
                ..PhaseReport::default()
            }],
            ..RunReport::default()
        };
        let t = comparison_table(&[
            archive("herald-sqlite", Some(1500)),
            archive("prosody", None),
        ]);
        assert!(
            t.contains("| archive: first page p50 (ms) ↓ | 1.50 | n/a | n/a |"),
            "{t}"
        );
        assert!(
            t.contains("| archive: last page p99 (ms) ↓ | 4.50 | 4.50 | 1.00× |"),
            "{t}"
        );
        assert!(!t.contains("login storm"), "{t}");
        let first = t.find("first page p50").expect("first");
        let last = t.find("last page p50").expect("last");
        assert!(first < last, "kinds in the order reported: {t}");
    }
}
