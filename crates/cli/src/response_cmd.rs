//! `tracevault response list|release`: automated responses (quarantined and throttled
//! credentials) on a running server (admin).

use clap::Subcommand;

use crate::client::ConnFlags;

#[derive(Subcommand)]
pub enum ResponseCmd {
    /// List the responses taken (active and released).
    List {
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Lift a quarantine or throttle: the credential ingests again at once (audited).
    Release {
        id: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

fn ms(v: &serde_json::Value) -> String {
    v.as_u64()
        .map(|m| crate::when::local_nanos(m.saturating_mul(1_000_000)))
        .unwrap_or_else(|| "-".into())
}

pub async fn run(cmd: ResponseCmd) -> anyhow::Result<()> {
    match cmd {
        ResponseCmd::List { json, conn } => {
            let v = conn.get_json("/api/admin/responses").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let list = v["responses"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no automated responses");
            }
            for r in list {
                let state = if !r["released_unix_ms"].is_null() {
                    format!(
                        "released {} by {}",
                        ms(&r["released_unix_ms"]),
                        r["released_by"].as_str().unwrap_or("?")
                    )
                } else if r["expires_unix_ms"].is_null() {
                    "active until released".to_owned()
                } else {
                    format!("active until {}", ms(&r["expires_unix_ms"]))
                };
                println!(
                    "{}  {:<10} {}  tenant {}  rule {}  since {}  {}",
                    r["id"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap_or(""),
                    r["principal"].as_str().unwrap_or(""),
                    r["tenant"].as_str().unwrap_or(""),
                    r["rule"].as_str().unwrap_or(""),
                    ms(&r["created_unix_ms"]),
                    state
                );
            }
            Ok(())
        }
        ResponseCmd::Release { id, conn } => {
            let v = conn
                .post_json(
                    "/api/admin/responses/release",
                    &serde_json::json!({ "id": id }),
                )
                .await?;
            println!(
                "released {} ({} of {})",
                v["released"]["id"].as_str().unwrap_or(&id),
                v["released"]["action"].as_str().unwrap_or(""),
                v["released"]["principal"].as_str().unwrap_or("")
            );
            Ok(())
        }
    }
}
