//! The abuse report as a Markdown table (what bench/abuse.sh prints and writes into BENCHMARKS.md).

use std::fmt::Write as _;

use super::{AbuseReport, Outcomes};
use crate::stats::Latency;

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

fn counts(outcomes: &Outcomes) -> String {
    if outcomes.0.is_empty() {
        return "none".into();
    }
    outcomes
        .0
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn latency(l: &Option<Latency>) -> String {
    l.map_or("-".into(), |l| {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )
    })
}

fn lifetime(l: &Option<Latency>) -> String {
    l.map_or("-".into(), |l| {
        format!(
            "p50 {:.1} s, max {:.1} s",
            l.p50_ms / 1000.0,
            l.max_ms / 1000.0
        )
    })
}

/// The report as a two-column Markdown table.
pub fn render(r: &AbuseReport) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
    let n = &r.normal;
    row(
        "run",
        format!(
            "{} for {:.1} s{}",
            r.server,
            r.seconds,
            r.stopped_early
                .as_ref()
                .map_or(String::new(), |s| format!(" (STOPPED EARLY: {s})"))
        ),
    );
    row(
        "normal users",
        format!("{} of {} logged in; {}", n.logged_in, n.users, n.note),
    );
    row(
        "normal messages",
        format!("sent {}, received {}, lost {}", n.sent, n.received, n.lost),
    );
    row("normal errors", counts(&n.errors));
    row("normal latency", latency(&n.latency));
    row(
        "probe logins",
        format!(
            "{} of {} ok; errors: {}; {}",
            n.probe_logins_ok,
            n.probe_logins,
            counts(&n.probe_errors),
            latency(&n.probe_latency)
        ),
    );
    let u = &r.unauth;
    row(
        "unauthenticated connections",
        format!(
            "{} started, {} connected, {} sent every byte; header {} B ({} attributes), stanza {} B ({} empty children)",
            u.attempted,
            u.connected,
            u.fully_sent,
            u.header_bytes,
            u.header_attributes,
            u.stanza_bytes,
            u.children
        ),
    );
    row("unauthenticated endings", counts(&u.outcomes));
    row(
        "unauthenticated ended by server after",
        lifetime(&u.ended_after),
    );
    let t = &r.tls_holds;
    row(
        "held TLS handshakes",
        format!(
            "{} started, {} connected, {} ClientHellos; {}",
            t.attempted, t.connected, t.hellos_sent, t.note
        ),
    );
    row("held TLS endings", counts(&t.outcomes));
    row("held TLS ended by server after", lifetime(&t.ended_after));
    let f = &r.relay_flood;
    if f.available {
        row(
            "relay flood",
            format!(
                "{} posts sent, {} answered ({:.0}/s); {}",
                f.sent, f.answered, f.answered_per_s, f.note
            ),
        );
        row("relay flood statuses", counts(&f.statuses));
        row(
            "relay flood errors",
            format!(
                "{}; error answers without a JSON body: {}",
                counts(&f.errors),
                f.non_json_error_bodies
            ),
        );
        row("relay flood latency", latency(&f.latency));
    } else {
        row("relay flood", f.note.clone());
    }
    let s = &r.server_figures;
    row(
        "server RSS",
        format!(
            "before {}, max {}, at the stop {}, after closing {}, peak (VmHWM) {}",
            mib(s.rss_before_kib),
            mib(s.rss_max_kib),
            mib(s.rss_loaded_kib),
            mib(s.rss_after_kib),
            mib(s.hwm_kib)
        ),
    );
    row(
        "CPU",
        format!(
            "server {}, load generator {}",
            s.cpu_s.map_or("-".into(), |c| format!("{c:.1} s")),
            r.client_cpu_s.map_or("-".into(), |c| format!("{c:.1} s"))
        ),
    );
    let mut out = String::from("| abuse run | figure |\n|---|---|\n");
    for (k, v) in rows {
        // Pipes would break the table.
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "/"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_every_part_and_flags_an_early_stop() {
        let mut r = AbuseReport {
            server: "herald".into(),
            stopped_early: Some("guard".into()),
            ..AbuseReport::default()
        };
        r.unauth.outcomes.add("open@held");
        r.server_figures.rss_max_kib = Some(2048);
        let t = render(&r);
        assert!(t.contains("STOPPED EARLY: guard"), "{t}");
        assert!(t.contains("open@held 1"), "{t}");
        assert!(t.contains("max 2 MiB"), "{t}");
        assert!(t.contains("| relay flood |"), "{t}");
    }
}
