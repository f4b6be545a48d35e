//! `tracevault redact`: run redaction rules over OTLP JSON offline, so operators can see what a
//! rules file does before deploying it.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args)]
pub struct RedactArgs {
    /// OTLP JSON input (an ExportTraceServiceRequest, as `/v1/traces` takes it); `-` for stdin
    #[arg(default_value = "-")]
    input: String,
    /// Rules: a rules file, or a server config whose [redaction] table holds them
    /// [default: the built-in rules]
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Tenant whose policy applies
    #[arg(long, default_value = "default")]
    tenant: String,
    /// File with the 32-byte pseudonym key as 64 hex digits; without it a random key is used and
    /// `hmac:` pseudonyms differ from the server's
    #[arg(long)]
    pseudonym_key_file: Option<PathBuf>,
    /// Write the redacted OTLP JSON here instead of stdout
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the report (JSON: what fired where, never a value) here instead of stderr
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Reads rules from a rules file or from a server config's `[redaction]` table.
pub fn load_rules(path: &std::path::Path) -> anyhow::Result<tv_redact::Rules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    let value: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    let table = match value.get("redaction") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => bail!("{}: [redaction] must be a table", path.display()),
        None => value,
    };
    let cfg: tv_redact::RulesConfig = table
        .try_into()
        .with_context(|| format!("{}: invalid rules", path.display()))?;
    tv_redact::Rules::compile(&cfg).with_context(|| format!("{}", path.display()))
}

pub fn run(a: RedactArgs) -> anyhow::Result<()> {
    let rules = match &a.rules {
        Some(p) => load_rules(p)?,
        None => tv_redact::Rules::builtin(),
    };
    let tenant = tv_model::TenantId::parse(&a.tenant)
        .map_err(|e| anyhow::anyhow!("--tenant {:?}: {e}", a.tenant))?;
    let key = match &a.pseudonym_key_file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let bytes = hex::decode(text.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .with_context(|| format!("{}: expected 64 hex digits", p.display()))?;
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            tv_redact::PseudonymKey::new(&k)
        }
        None => tv_redact::PseudonymKey::new(&tv_crypto::random_bytes::<32>()),
    };
    let mut input = Vec::new();
    if a.input == "-" {
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
    } else {
        input = std::fs::read(&a.input).with_context(|| format!("reading {}", a.input))?;
    }
    let req = tv_model::decode::decode_json(&input)
        .map_err(|e| anyhow::anyhow!("{}: not OTLP JSON: {e}", a.input))?;
    let out = tv_redact::redact(&rules, tenant.as_str(), &key, req);
    let mut json = serde_json::to_vec_pretty(&out.request).context("encoding OTLP JSON")?;
    json.push(b'\n');
    match &a.out {
        Some(p) => std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(&json)?,
    }
    let mut report = out.report.to_json();
    report["policy_version"] = rules.version().into();
    let mut rj = serde_json::to_vec_pretty(&report)?;
    rj.push(b'\n');
    match &a.report {
        Some(p) => std::fs::write(p, &rj).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stderr().write_all(&rj)?,
    }
    Ok(())
}
