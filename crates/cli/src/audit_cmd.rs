//! `tracevault audit tail|search`: read the audit log of a running server (needs `read_audit`:
//! the auditor or admin role). `tracevault verify` checks the log itself offline.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::ServerFlags;

#[derive(Args, Debug)]
pub struct Output {
    /// Print the records as JSON lines
    #[arg(long)]
    json: bool,
    /// Every tenant's records and anonymous refusals (a credential of every tenant only)
    #[arg(long)]
    all_tenants: bool,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// The latest records, oldest first; with --follow, keep printing new ones (the follow polls
    /// are audited like every read, but successful audit reads are not printed while following).
    Tail {
        /// How many records
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Poll for new records every second until interrupted
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Records matching every filter given, newest first.
    Search {
        /// Principal id (token:<id>, oidc:<iss>:<sub>, mtls:<identity>, anonymous) or name
        #[arg(long)]
        principal: Option<String>,
        /// read_trace, search, read_receipt, admin_tokens, admin_certs, read_audit, ingest, ...
        #[arg(long)]
        action: Option<String>,
        /// allow, deny or throttled
        #[arg(long)]
        decision: Option<String>,
        /// Only records newer than this: a duration (1h, 30m) or unix seconds
        #[arg(long)]
        since: Option<String>,
        /// At most this many records (1..1000)
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        server: ServerFlags,
    },
}

async fn fetch(
    server: &ServerFlags,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let resp = server
        .tenant_get("/api/audit", params, "application/json")
        .await?;
    let v: serde_json::Value = resp.json().await.context("reading the response")?;
    Ok(v["records"].as_array().cloned().unwrap_or_default())
}

fn print(r: &serde_json::Value, json: bool) {
    if json {
        println!("{r}");
        return;
    }
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let mut line = format!(
        "{}  #{:<6} {:<9} {}  {} ({})  {}  {}",
        s("time"),
        r["index"].as_u64().unwrap_or(0),
        s("decision"),
        r["status"].as_u64().unwrap_or(0),
        s("principal"),
        if s("role").is_empty() {
            "-".into()
        } else {
            s("role")
        },
        s("action"),
        s("resource"),
    );
    if let Some(n) = r["results"].as_u64() {
        line.push_str(&format!("  results={n}"));
    }
    if !s("tenant").is_empty() {
        line.push_str(&format!("  tenant={}", s("tenant")));
    }
    line.push_str(&format!("  from={} via {}", s("from"), s("listener")));
    if let Some(n) = r["unsampled_before"].as_u64() {
        line.push_str(&format!("  (+{n} like it unrecorded)"));
    }
    if let Some(why) = r["reason"].as_str() {
        line.push_str(&format!("  reason: {why}"));
    }
    println!("{line}");
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Tail {
            lines,
            follow,
            out,
            server,
        } => {
            let mut base: Vec<(&str, String)> = Vec::new();
            if out.all_tenants {
                base.push(("all_tenants", "true".into()));
            }
            let mut params = base.clone();
            params.push(("limit", lines.clamp(1, 1000).to_string()));
            let mut recs = fetch(&server, &params).await?;
            recs.reverse();
            let mut last = None;
            for r in &recs {
                print(r, out.json);
                last = r["index"].as_u64();
            }
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut params = base.clone();
                params.push(("limit", "1000".into()));
                if let Some(l) = last {
                    params.push(("after", l.to_string()));
                }
                let mut recs = fetch(&server, &params).await?;
                recs.reverse();
                for r in &recs {
                    last = r["index"].as_u64().or(last);
                    if r["action"] == "read_audit" && r["decision"] == "allow" {
                        continue;
                    }
                    print(r, out.json);
                }
            }
        }
        AuditCmd::Search {
            principal,
            action,
            decision,
            since,
            limit,
            out,
            server,
        } => {
            let mut params: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("principal", principal),
                ("action", action),
                ("decision", decision),
                ("since", since),
            ] {
                if let Some(v) = v {
                    params.push((k, v));
                }
            }
            if out.all_tenants {
                params.push(("all_tenants", "true".into()));
            }
            for r in fetch(&server, &params).await? {
                print(&r, out.json);
            }
            Ok(())
        }
    }
}
