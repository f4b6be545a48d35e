//! `tracevault query`: read traces from a running server.

use std::collections::HashMap;

use anyhow::Context;
use clap::Subcommand;
use prost::Message;
use tv_model::otlp::{Span, TracesData};

use crate::client::ServerFlags;

#[derive(Subcommand)]
pub enum QueryCmd {
    /// Print one trace as a tree (or JSON with --json).
    Trace {
        /// Trace id (hex)
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Search traces (Tempo's /api/search).
    Search {
        /// logfmt tags, e.g. 'service.name=checkout http.response.status_code=500'
        #[arg(long)]
        tags: Option<String>,
        /// e.g. 100ms
        #[arg(long)]
        min_duration: Option<String>,
        #[arg(long)]
        max_duration: Option<String>,
        /// unix seconds
        #[arg(long)]
        start: Option<u64>,
        /// unix seconds
        #[arg(long)]
        end: Option<u64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerFlags,
    },
}

pub async fn run(cmd: QueryCmd) -> anyhow::Result<()> {
    match cmd {
        QueryCmd::Trace { id, json, server } => trace(&server, &id, json).await,
        QueryCmd::Search {
            tags,
            min_duration,
            max_duration,
            start,
            end,
            limit,
            json,
            server,
        } => {
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
            if let Some(v) = start {
                params.push(("start", v.to_string()));
            }
            if let Some(v) = end {
                params.push(("end", v.to_string()));
            }
            search(&server, &params, json).await
        }
    }
}

async fn get(
    server: &ServerFlags,
    path: &str,
    params: &[(&str, String)],
    accept: &str,
) -> anyhow::Result<reqwest::Response> {
    let client = server.client()?;
    let url = server.url(path);
    let resp = client
        .get(&url)
        .query(params)
        .bearer_auth(server.token()?)
        .header("X-Scope-OrgID", &server.tenant)
        .header("Accept", accept)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        return Err(crate::client::ConnFlags::fail(resp).await);
    }
    Ok(resp)
}

async fn trace(server: &ServerFlags, id: &str, json: bool) -> anyhow::Result<()> {
    if json {
        let body = get(
            server,
            &format!("/api/traces/{id}"),
            &[],
            "application/json",
        )
        .await?
        .text()
        .await?;
        println!("{body}");
        return Ok(());
    }
    let bytes = get(
        server,
        &format!("/api/traces/{id}"),
        &[],
        "application/protobuf",
    )
    .await?
    .bytes()
    .await?;
    let data = TracesData::decode(bytes.as_ref()).context("decoding the trace")?;
    print!("{}", render_tree(&data));
    Ok(())
}

/// Renders a trace as an indented tree of `service: name [duration]`.
pub fn render_tree(data: &TracesData) -> String {
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
    let start = spans
        .iter()
        .map(|(_, s)| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .map(|(_, s)| s.end_time_unix_nano)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if let Some((_, s)) = spans.first() {
        out.push_str(&format!(
            "trace {} ({} spans, {:.3} ms)\n",
            hex::encode(&s.trace_id),
            spans.len(),
            end.saturating_sub(start) as f64 / 1e6
        ));
    }
    fn walk(
        out: &mut String,
        spans: &[(String, &Span)],
        children: &HashMap<&[u8], Vec<usize>>,
        i: usize,
        prefix: &str,
        last: bool,
        depth: usize,
    ) {
        let (svc, s) = &spans[i];
        let dur = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
        let status = match s.status.as_ref().map(|st| st.code) {
            Some(2) => " ERROR",
            _ => "",
        };
        out.push_str(&format!(
            "{prefix}{}{svc}: {} [{dur:.3} ms]{status}\n",
            if last { "└─ " } else { "├─ " },
            s.name
        ));
        if depth > 256 {
            return;
        }
        let next = format!("{prefix}{}", if last { "   " } else { "│  " });
        if let Some(kids) = children.get(s.span_id.as_slice()) {
            for (k, &c) in kids.iter().enumerate() {
                walk(
                    out,
                    spans,
                    children,
                    c,
                    &next,
                    k + 1 == kids.len(),
                    depth + 1,
                );
            }
        }
    }
    for (k, &r) in roots.iter().enumerate() {
        walk(&mut out, &spans, &children, r, "", k + 1 == roots.len(), 0);
    }
    out
}

async fn search(server: &ServerFlags, params: &[(&str, String)], json: bool) -> anyhow::Result<()> {
    let v: serde_json::Value = get(server, "/api/search", params, "application/json")
        .await?
        .json()
        .await
        .context("decoding search results")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<32}  {:>10}  {:<20}  NAME",
        "TRACE ID", "DURATION", "SERVICE"
    );
    for t in &traces {
        println!(
            "{:<32}  {:>8}ms  {:<20}  {}",
            t["traceID"].as_str().unwrap_or(""),
            t["durationMs"].as_u64().unwrap_or(0),
            t["rootServiceName"].as_str().unwrap_or(""),
            t["rootTraceName"].as_str().unwrap_or("")
        );
    }
    println!("{} traces", traces.len());
    Ok(())
}
