//! `tracevault query`: read traces, findings and tags from a running server, and find a
//! person's traces by a known identity value.

use std::collections::HashMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use prost::Message;
use tv_model::otlp::{Span, TracesData};

use crate::client::ServerFlags;
use crate::when;

/// The time window of a query: `--since`, or `--start`/`--end`.
#[derive(Args, Clone, Debug, Default)]
pub struct Window {
    /// Only what happened in this long before now (15m, 1h, 2d, 1h30m)
    #[arg(long, conflicts_with = "start")]
    pub since: Option<String>,
    /// From: RFC 3339, a local "2026-12-07 09:00", a duration ago (1h), now, or unix seconds
    #[arg(long)]
    pub start: Option<String>,
    /// Until (same forms as --start) [default: now]
    #[arg(long)]
    pub end: Option<String>,
}

impl Window {
    /// `(start, end)` in unix seconds, each when given.
    pub fn secs(&self) -> anyhow::Result<(Option<u64>, Option<u64>)> {
        let now = jiff::Timestamp::now();
        let secs = |t: jiff::Timestamp| t.as_second().max(0) as u64;
        let start = match (&self.since, &self.start) {
            (Some(s), _) => Some(secs(when::since(s, now)?)),
            (None, Some(s)) => Some(secs(
                when::parse_at(s, now).with_context(|| format!("--start {s:?}"))?,
            )),
            (None, None) => None,
        };
        let end = match &self.end {
            Some(e) => Some(secs(
                when::parse_end(e, now).with_context(|| format!("--end {e:?}"))?,
            )),
            None => None,
        };
        if let (Some(s), Some(e)) = (start, end)
            && s > e
        {
            anyhow::bail!(
                "the window starts ({}) after it ends ({})",
                when::local_secs(s),
                when::local_secs(e)
            );
        }
        Ok((start, end))
    }

    /// [`Window::secs`] as the query parameters `start` and `end` (unix seconds).
    pub fn params(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let (start, end) = self.secs()?;
        Ok([("start", start), ("end", end)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_string())))
            .collect())
    }
}

#[derive(Subcommand)]
pub enum QueryCmd {
    /// Print one trace as a tree (-v: with attributes, events and findings; --json: OTLP JSON).
    Trace {
        /// Trace id (hex)
        id: String,
        /// Show each span's attributes, events and status message
        #[arg(short, long)]
        verbose: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Search traces by tags, duration and time, or a person's traces with --user.
    Search {
        /// logfmt tags, e.g. 'service.name=checkout http.response.status_code=500'
        #[arg(long)]
        tags: Option<String>,
        /// A person's traces: the value of an identity attribute redaction pseudonymizes
        /// (enduser.id, user.email, user.id, ...), matched by its pseudonym; the raw value is
        /// never stored (investigator or admin; rate-limited and audited). `-` reads it from
        /// standard input, out of the shell's history
        #[arg(long, conflicts_with_all = ["tags", "min_duration", "max_duration"])]
        user: Option<String>,
        /// e.g. 100ms
        #[arg(long)]
        min_duration: Option<String>,
        #[arg(long)]
        max_duration: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Threat-detection findings, newest first (investigator or admin).
    Findings {
        /// Lowest severity shown: informational, low, medium, high, critical
        #[arg(long)]
        min_severity: Option<String>,
        /// Only findings of this rule or detector id (tv-sqli-syntax, ...)
        #[arg(long)]
        rule: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// A trace's span receipts (JSON), to check offline with `tracevault verify-receipt`.
    Receipt {
        /// Trace id (hex)
        id: String,
        /// Withhold these fields from the receipts too (comma-separated, e.g. user.email), to
        /// share them without those values
        #[arg(long)]
        withhold: Option<String>,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Attribute names searchable by tags and TraceQL; with NAME, the values seen for it.
    Tags {
        /// An attribute (e.g. http.route, or span.http.route); lists its values
        name: Option<String>,
        /// Only this scope's names: span, resource, event, link, intrinsic
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
}

/// `tracevault pseudonym VALUE`: the tenant's pseudonym of a value.
#[derive(Args)]
pub struct PseudonymArgs {
    /// The identity value (an email, a user id); read from standard input when `-`
    value: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerFlags,
}

pub async fn run(cmd: QueryCmd) -> anyhow::Result<()> {
    match cmd {
        QueryCmd::Trace {
            id,
            verbose,
            json,
            server,
        } => trace(&server, &id, verbose, json).await,
        QueryCmd::Search {
            tags,
            user,
            min_duration,
            max_duration,
            window,
            limit,
            json,
            server,
        } => {
            if let Some(user) = user {
                let (start, end) = window.secs()?;
                let user = value_or_stdin(user)?;
                let mut body = serde_json::json!({ "user": user, "limit": limit });
                if let Some(s) = start {
                    body["start"] = s.into();
                }
                if let Some(e) = end {
                    body["end"] = e.into();
                }
                let v = server.tenant_post("/api/search/user", &body).await?;
                return print_search(&v, json);
            }
            let mut params: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(t) = tags {
                params.push(("tags", t));
            }
            if let Some(v) = min_duration {
                params.push(("minDuration", v));
            }
            if let Some(v) = max_duration {
                params.push(("maxDuration", v));
            }
            params.extend(window.params()?);
            let v: serde_json::Value = server
                .tenant_get("/api/search", &params, "application/json")
                .await?
                .json()
                .await
                .context("decoding search results")?;
            print_search(&v, json)
        }
        QueryCmd::Findings {
            min_severity,
            rule,
            window,
            limit,
            json,
            server,
        } => {
            let mut params: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [("min_severity", min_severity), ("rule", rule)] {
                if let Some(v) = v {
                    params.push((k, v));
                }
            }
            params.extend(window.params()?);
            let v: serde_json::Value = server
                .tenant_get("/api/findings", &params, "application/json")
                .await?
                .json()
                .await
                .context("decoding findings")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", findings_table(&v));
            }
            Ok(())
        }
        QueryCmd::Receipt {
            id,
            withhold,
            server,
        } => {
            let params: Vec<(&str, String)> =
                withhold.map(|w| ("withhold", w)).into_iter().collect();
            let body = server
                .tenant_get(
                    &format!("/api/traces/{}/receipt", percent(&id)),
                    &params,
                    "application/json",
                )
                .await?
                .text()
                .await?;
            println!("{body}");
            Ok(())
        }
        QueryCmd::Tags {
            name,
            scope,
            window,
            json,
            server,
        } => {
            let mut params: Vec<(&str, String)> = window.params()?;
            if let Some(s) = scope {
                params.push(("scope", s));
            }
            let path = match &name {
                Some(n) => format!("/api/v2/search/tag/{}/values", percent(n)),
                None => "/api/v2/search/tags".into(),
            };
            let v: serde_json::Value = server
                .tenant_get(&path, &params, "application/json")
                .await?
                .json()
                .await
                .context("decoding tags")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if name.is_some() {
                for t in v["tagValues"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}",
                        clean(t["value"].as_str().unwrap_or("")),
                        clean(t["type"].as_str().unwrap_or(""))
                    );
                }
            } else {
                for s in v["scopes"].as_array().into_iter().flatten() {
                    let scope = clean(s["name"].as_str().unwrap_or(""));
                    for t in s["tags"].as_array().into_iter().flatten() {
                        println!("{scope}\t{}", clean(t.as_str().unwrap_or("")));
                    }
                }
            }
            Ok(())
        }
    }
}

/// `tracevault pseudonym`.
pub async fn pseudonym(a: PseudonymArgs) -> anyhow::Result<()> {
    let value = value_or_stdin(a.value)?;
    let v = a
        .server
        .tenant_post("/api/pseudonym", &serde_json::json!({ "value": value }))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v["pseudonym"].as_str().unwrap_or(""));
    }
    Ok(())
}

/// `v`, or standard input's first line when `v` is `-` (a value kept out of argv and history).
fn value_or_stdin(v: String) -> anyhow::Result<String> {
    if v != "-" {
        return Ok(v);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .context("reading the value from standard input")?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

/// Text from the server (span names, attribute keys, messages: what instrumented services and
/// attackers wrote) made safe for a terminal: control characters (ANSI and OSC sequences
/// included) escaped.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Percent-encodes a path segment.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn trace(server: &ServerFlags, id: &str, verbose: bool, json: bool) -> anyhow::Result<()> {
    if json {
        let body = server
            .tenant_get(&format!("/api/traces/{id}"), &[], "application/json")
            .await?
            .text()
            .await?;
        println!("{body}");
        return Ok(());
    }
    let bytes = server
        .tenant_get(&format!("/api/traces/{id}"), &[], "application/protobuf")
        .await?
        .bytes()
        .await?;
    let data = TracesData::decode(bytes.as_ref()).context("decoding the trace")?;
    // The trace's findings, by span (a credential that may not read findings sees none).
    let (first, last) = bounds(&data);
    let params = [
        ("limit", "1000".to_owned()),
        ("start", (first / 1_000_000_000).to_string()),
        ("end", (last / 1_000_000_000 + 1).to_string()),
    ];
    let mut marks: HashMap<String, Vec<String>> = HashMap::new();
    let mut note = None;
    match server
        .tenant_get("/api/findings", &params, "application/json")
        .await
    {
        Ok(r) => {
            let v: serde_json::Value = r.json().await.context("decoding findings")?;
            for f in v["findings"].as_array().into_iter().flatten() {
                if f["unmapped"]["trace_id"].as_str() == Some(&id.to_ascii_lowercase()) {
                    marks
                        .entry(f["unmapped"]["span_id"].as_str().unwrap_or("").to_owned())
                        .or_default()
                        .push(clean(&format!(
                            "{} {}: {}",
                            f["severity"].as_str().unwrap_or("?").to_ascii_uppercase(),
                            f["finding_info"]["analytic"]["uid"].as_str().unwrap_or("?"),
                            f["finding_info"]["title"].as_str().unwrap_or("")
                        )));
                }
            }
        }
        Err(e) => note = Some(format!("(findings not shown: {e:#})")),
    }
    print!("{}", render(&data, verbose, &marks));
    if let Some(n) = note.filter(|_| verbose) {
        println!("{n}");
    }
    Ok(())
}

fn bounds(data: &TracesData) -> (u64, u64) {
    let spans = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    let first = spans
        .clone()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let last = spans.map(|s| s.end_time_unix_nano).max().unwrap_or(0);
    (first, last)
}

/// Renders a trace as an indented tree of `service: name [duration]`, with each span's attributes, events and status message when `verbose`,
/// and the findings on a span (`marks`, by hex span id) under it.
fn render(data: &TracesData, verbose: bool, marks: &HashMap<String, Vec<String>>) -> String {
    let mut spans: Vec<(String, &Span)> = Vec::new();
    for rs in &data.resource_spans {
        let svc = tv_model::service_name(rs.resource.as_ref())
            .unwrap_or("<unknown service>")
            .to_owned();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                spans.push((svc.clone(), s));
            }
        }
    }
    spans.sort_by_key(|(_, s)| s.start_time_unix_nano);
    let ids: std::collections::HashSet<&[u8]> =
        spans.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, (_, s)) in spans.iter().enumerate() {
        if s.parent_span_id.is_empty() || !ids.contains(s.parent_span_id.as_slice()) {
            roots.push(i);
        } else {
            children
                .entry(s.parent_span_id.as_slice())
                .or_default()
                .push(i);
        }
    }
    let (start, end) = bounds(data);
    let mut out = String::new();
    if let Some((_, s)) = spans.first() {
        out.push_str(&format!(
            "trace {} ({} spans, {:.3} ms, started {})\n",
            hex::encode(&s.trace_id),
            spans.len(),
            end.saturating_sub(start) as f64 / 1e6,
            when::local_nanos(start)
        ));
    }
    struct Tree<'a> {
        spans: &'a [(String, &'a Span)],
        children: &'a HashMap<&'a [u8], Vec<usize>>,
        verbose: bool,
        marks: &'a HashMap<String, Vec<String>>,
    }
    fn walk(out: &mut String, t: &Tree<'_>, i: usize, prefix: &str, last: bool, depth: usize) {
        let (svc, s) = &t.spans[i];
        let dur = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
        let status = match s.status.as_ref().map(|st| st.code) {
            Some(2) => " ERROR",
            _ => "",
        };
        let found = t.marks.get(&hex::encode(&s.span_id));
        out.push_str(&format!(
            "{prefix}{}{}: {} [{dur:.3} ms]{status}{}\n",
            if last { "└─ " } else { "├─ " },
            clean(svc),
            clean(&s.name),
            if found.is_some() { " ⚠" } else { "" }
        ));
        let next = format!("{prefix}{}", if last { "   " } else { "│  " });
        let kids = t.children.get(s.span_id.as_slice());
        let detail = format!("{next}{}", if kids.is_some() { "│  " } else { "   " });
        for f in found.into_iter().flatten() {
            out.push_str(&format!("{detail}⚠ finding {f}\n"));
        }
        if t.verbose {
            out.push_str(&format!("{detail}span {}\n", hex::encode(&s.span_id)));
            for kv in &s.attributes {
                out.push_str(&format!(
                    "{detail}{} = {}\n",
                    clean(&kv.key),
                    show(kv.value.as_ref())
                ));
            }
            if let Some(st) = s.status.as_ref().filter(|st| !st.message.is_empty()) {
                out.push_str(&format!("{detail}status: {}\n", clean(&st.message)));
            }
            for e in &s.events {
                let at = e.time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
                out.push_str(&format!("{detail}event {} (+{at:.3} ms)\n", clean(&e.name)));
                for kv in &e.attributes {
                    out.push_str(&format!(
                        "{detail}  {} = {}\n",
                        clean(&kv.key),
                        show(kv.value.as_ref())
                    ));
                }
            }
        }
        if depth > 256 {
            return;
        }
        if let Some(kids) = kids {
            for (k, &c) in kids.iter().enumerate() {
                walk(out, t, c, &next, k + 1 == kids.len(), depth + 1);
            }
        }
    }
    let tree = Tree {
        spans: &spans,
        children: &children,
        verbose,
        marks,
    };
    for (k, &r) in roots.iter().enumerate() {
        walk(&mut out, &tree, r, "", k + 1 == roots.len(), 0);
    }
    out
}

/// An attribute value on one line (strings quoted, control characters escaped).
fn show(v: Option<&tv_model::otlp::AnyValue>) -> String {
    use tv_model::otlp::any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => format!("{s:?}"),
        Some(_) => v
            .map(tv_model::any_value_to_string)
            .unwrap_or_default()
            .escape_debug()
            .to_string(),
        None => "(empty)".into(),
    }
}

fn print_search(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<32}  {:<23}  {:>10}  {:<20}  NAME",
        "TRACE ID", "START", "DURATION", "SERVICE"
    );
    for t in &traces {
        let start = t["startTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        println!(
            "{:<32}  {:<23}  {:>8}ms  {:<20}  {}",
            clean(t["traceID"].as_str().unwrap_or("")),
            when::local_nanos(start),
            t["durationMs"].as_u64().unwrap_or(0),
            clean(t["rootServiceName"].as_str().unwrap_or("")),
            clean(t["rootTraceName"].as_str().unwrap_or(""))
        );
    }
    println!("{} traces", traces.len());
    Ok(())
}

/// The findings as a table, newest first, with the page that explains each rule.
fn findings_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<23}  {:<8}  {:<26}  {:<16}  {:<32}  MESSAGE\n",
        "TIME", "SEVERITY", "RULE", "SERVICE", "TRACE ID"
    );
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    let mut rules = std::collections::BTreeSet::new();
    for f in &findings {
        let rule = f["finding_info"]["analytic"]["uid"].as_str().unwrap_or("");
        if let Some(doc) = f["remediation"]["references"][0].as_str() {
            rules.insert((rule.to_owned(), doc.to_owned()));
        }
        let ms = f["time"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{:<23}  {:<8}  {:<26}  {:<16}  {:<32}  {}\n",
            when::local_nanos(ms.saturating_mul(1_000_000)),
            f["severity"].as_str().unwrap_or(""),
            clean(rule),
            clean(f["resources"][0]["name"].as_str().unwrap_or("")),
            clean(f["unmapped"]["trace_id"].as_str().unwrap_or("")),
            clean(f["message"].as_str().unwrap_or(""))
        ));
    }
    out.push_str(&format!("{} findings", findings.len()));
    if v["next"].is_string() {
        out.push_str(" (more: raise --limit or narrow the window)");
    }
    out.push('\n');
    for (rule, doc) in rules {
        out.push_str(&format!(
            "{}: what it means and what to do: {}\n",
            clean(&rule),
            clean(&doc)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tv_model::otlp::{AnyValue, KeyValue, ResourceSpans, ScopeSpans, any_value::Value};

    #[test]
    fn what_services_and_attackers_wrote_cannot_drive_the_terminal() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /\u{1b}]52;c;ZXZpbA==\u{7}".into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![KeyValue {
                key: "user_agent.original\u{1b}[2J".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("curl\u{1b}[31m".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let data = TracesData {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = render(&data, true, &HashMap::new());
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(out.contains("\\u{1b}]52"), "{out}");
        assert_eq!(clean("plain café"), "plain café");
    }
}
