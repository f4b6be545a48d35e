//! "Security at a glance" (`GET /api/security/overview`): the security counters of `/metrics`
//! (values redacted by detector, spans rejected by reason, rate-limited and unauthenticated
//! requests, findings by severity, TLS key-exchange groups), sampled every minute and kept for a
//! day in memory, so the UI can draw them over time. Server-wide, like `/metrics`: the
//! `read_metrics` action (a credential of every tenant). Counter values only: no label carries a
//! raw attribute value or a secret (the rule, reason, kind, severity and group names are the
//! server's own).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// One minute a sample, for a day.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const KEEP: usize = 24 * 60;

/// The counter families shown, and the label that names each series.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("redacted", "tracevault_redactions_total", "rule"),
    ("rejected", "tracevault_spans_rejected_total", "reason"),
    ("rate_limited", "tracevault_rate_limited_total", "kind"),
    (
        "unauthenticated",
        "tracevault_audit_unauthenticated_total",
        "",
    ),
    ("findings", "tracevault_findings_total", "severity"),
    ("tls_groups", "tracevault_tls_handshakes_total", "group"),
];

/// Cumulative counter values at one time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub time_unix: u64,
    /// family → series → value (series summed over other labels).
    pub counters: BTreeMap<&'static str, BTreeMap<String, f64>>,
}

/// The samples of the last day.
#[derive(Debug, Default)]
pub struct SecurityHistory {
    samples: Mutex<VecDeque<Sample>>,
}

/// The value of `label` in a `{k="v",...}` label set.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        if k.trim_start_matches(',') == name {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    None
}

/// The families above from a text exposition.
pub fn sample(metrics_text: &str, time_unix: u64) -> Sample {
    let mut counters: BTreeMap<&'static str, BTreeMap<String, f64>> = BTreeMap::new();
    for (family, _, _) in FAMILIES {
        counters.insert(family, BTreeMap::new());
    }
    for line in metrics_text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        for (family, metric, by) in FAMILIES {
            if name == *metric {
                let key = if by.is_empty() {
                    "total".to_string()
                } else {
                    label(labels, by).unwrap_or("").to_string()
                };
                *counters
                    .get_mut(family)
                    .expect("every family")
                    .entry(key)
                    .or_default() += v;
            }
        }
    }
    Sample {
        time_unix,
        counters,
    }
}

impl SecurityHistory {
    /// Records a sample (oldest dropped beyond a day).
    pub fn record(&self, s: Sample) {
        let mut q = self.samples.lock().expect("history lock");
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// The kept samples, then `now`.
    pub fn with_now(&self, now: Sample) -> Vec<Sample> {
        let q = self.samples.lock().expect("history lock");
        q.iter().cloned().chain(std::iter::once(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_read_by_their_label_and_summed_over_the_others() {
        let text = "# HELP x\n\
            tracevault_findings_total{stage=\"signature\",severity=\"high\"} 5\n\
            tracevault_findings_total{stage=\"behavioural\",severity=\"high\"} 1\n\
            tracevault_redactions_total{rule=\"detector:email\",action=\"hash\"} 60\n\
            tracevault_tls_handshakes_total{group=\"X25519MLKEM768\"} 7\n\
            tracevault_audit_unauthenticated_total 3\n\
            tracevault_spans_accepted_total 100\n";
        let s = sample(text, 9);
        assert_eq!(s.counters["findings"]["high"], 6.0);
        assert_eq!(s.counters["redacted"]["detector:email"], 60.0);
        assert_eq!(s.counters["tls_groups"]["X25519MLKEM768"], 7.0);
        assert_eq!(s.counters["unauthenticated"]["total"], 3.0);
        assert!(s.counters["rejected"].is_empty());
        assert!(!s.counters.values().any(|m| m.contains_key("100")));
    }
}
