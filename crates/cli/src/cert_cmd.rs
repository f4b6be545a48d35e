//! `tracevault cert issue|register|list|revoke`: workload (mTLS) identities on a running server
//! (needs `admin_certs`). `issue` makes the key pair here and sends only a signing request; the
//! private key is written to `--out` and nowhere else.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::ConnFlags;
use crate::token_cmd::list;

/// What an identity is bound to.
#[derive(Args, Debug)]
pub struct Binding {
    /// Tenant the workload acts for
    #[arg(long)]
    tenant: String,
    /// Its role (ingest: write spans only)
    #[arg(long, default_value = "ingest")]
    role: String,
    /// A service it may write spans for (repeatable; default: any)
    #[arg(long = "service")]
    services: Vec<String>,
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Issue a client certificate from the server's built-in client CA and bind its SPIFFE ID.
    /// Writes DIR/client.pem, DIR/client.key (0600) and DIR/server-ca.pem (to trust the server).
    Issue {
        /// The workload's SPIFFE ID, e.g. spiffe://prod.example/ns/shop/sa/checkout
        #[arg(long)]
        spiffe_id: String,
        #[command(flatten)]
        binding: Binding,
        /// Lifetime in days (at most 397)
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Directory to write the certificate and key to
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Bind an identity whose certificates an outside CA issues (`[tls] client_ca`): a SPIFFE ID,
    /// or `subject:<DN>` (RFC 4514, as `cert list` shows it) for certificates without one.
    Register {
        /// spiffe://... or subject:CN=...
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        binding: Binding,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// List bound identities, issued certificates and revoked serials.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Revoke a certificate by serial, or an identity with every certificate issued to it; the
    /// server refuses them from the next request on, on every listener.
    Revoke {
        /// Serial number in hex (as `cert list` or `cert issue` shows it)
        #[arg(required_unless_present = "identity", conflicts_with = "identity")]
        serial: Option<String>,
        /// Remove this identity's binding and revoke its certificates
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn run(cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Issue {
            spiffe_id,
            binding,
            days,
            out,
            conn,
        } => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .context("generating the key pair")?;
            let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
                .serialize_request(&key)
                .context("making the signing request")?
                .pem()?;
            let v = conn
                .post_json(
                    "/api/admin/certs",
                    &serde_json::json!({
                        "identity": spiffe_id,
                        "tenant": binding.tenant,
                        "role": binding.role,
                        "services": binding.services,
                        "days": days,
                        "csr": csr,
                    }),
                )
                .await?;
            let cert = v["certificate"]
                .as_str()
                .context("no certificate in the response")?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            write_private(&out.join("client.key"), key.serialize_pem().as_bytes())?;
            std::fs::write(out.join("client.pem"), cert)
                .with_context(|| format!("writing {}", out.join("client.pem").display()))?;
            let ca_path = conn.ca_path()?;
            let server_ca = std::fs::read(&ca_path)
                .with_context(|| format!("reading {}", ca_path.display()))?;
            std::fs::write(out.join("server-ca.pem"), server_ca)?;
            let issued = &v["issued"];
            println!(
                "issued certificate {} for {} (tenant {}, role {}, services {}), valid until {}",
                issued["serial"].as_str().unwrap_or("?"),
                spiffe_id,
                v["workload"]["tenant"].as_str().unwrap_or("?"),
                v["workload"]["role"].as_str().unwrap_or("?"),
                list(&v["workload"]["services"], "any"),
                crate::when::local_secs(issued["not_after"].as_u64().unwrap_or(0)),
            );
            println!(
                "wrote {0}/client.pem, {0}/client.key (0600), {0}/server-ca.pem",
                out.display()
            );
            Ok(())
        }
        CertCmd::Register {
            identity,
            binding,
            conn,
        } => {
            let v = conn
                .post_json(
                    "/api/admin/certs",
                    &serde_json::json!({
                        "identity": identity,
                        "tenant": binding.tenant,
                        "role": binding.role,
                        "services": binding.services,
                    }),
                )
                .await?;
            println!(
                "registered {} (tenant {}, role {}, services {})",
                identity,
                v["workload"]["tenant"].as_str().unwrap_or("?"),
                v["workload"]["role"].as_str().unwrap_or("?"),
                list(&v["workload"]["services"], "any"),
            );
            Ok(())
        }
        CertCmd::List { json, conn } => {
            let v = conn.get_json("/api/admin/certs").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("identities:");
            for w in v["workloads"].as_array().into_iter().flatten() {
                println!(
                    "  {}  tenant={} role={} services={}",
                    w["identity"].as_str().unwrap_or(""),
                    w["tenant"].as_str().unwrap_or(""),
                    w["role"].as_str().unwrap_or(""),
                    list(&w["services"], "any"),
                );
            }
            println!("certificates:");
            for c in v["certificates"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {}  valid until {}  {}",
                    c["serial"].as_str().unwrap_or(""),
                    c["identity"].as_str().unwrap_or(""),
                    crate::when::local_secs(c["not_after"].as_u64().unwrap_or(0)),
                    if c["revoked_unix"].is_null() {
                        "valid"
                    } else {
                        "REVOKED"
                    }
                );
            }
            Ok(())
        }
        CertCmd::Revoke {
            serial,
            identity,
            conn,
        } => {
            let v = conn
                .post_json(
                    "/api/admin/certs/revoke",
                    &serde_json::json!({ "serial": serial, "identity": identity }),
                )
                .await?;
            match identity {
                Some(id) => println!(
                    "removed {id}; revoked certificates: {}",
                    list(&v["revoked"], "none")
                ),
                None => println!("revoked certificate {}", list(&v["revoked"], "?")),
            }
            Ok(())
        }
    }
}
