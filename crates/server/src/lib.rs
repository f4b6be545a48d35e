//! The tracevault server: OTLP receivers, the query API, TLS, metrics and the wiring between the
//! pure crates and the network.
//!
//! [`Server::bootstrap`] prepares everything a zero-config start needs (data and keys directories,
//! root key, local CA and server certificate, admin token, store) and binds the listeners;
//! [`Server::run`] serves until its shutdown future resolves, then stops accepting, lets in-flight
//! requests finish, flushes the WAL into blocks and returns.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod baseline_share;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod detection;
pub mod doctor;
pub mod error;
pub mod findings_index;
pub mod graph;
pub mod graph_share;
pub mod hints;
pub mod ingest;
pub mod kms;
pub mod logkeys;
pub mod mask;
pub mod metrics;
pub mod mtls;
pub mod net;
pub mod offline;
pub mod oidc_refresh;
pub mod params;
pub mod ratelimit;
pub mod redaction;
pub mod responses;
pub mod sinks;
pub mod stateseal;
pub mod tenantstate;
pub mod tls;
pub mod ui;
pub mod witness;
pub mod witness_client;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tv_access::{Role, TokenStore};
use tv_crypto::{FileRootKey, Keyring, RootKeySource, fsio};
use tv_model::Limits;
use tv_store::{Store, StoreConfig};

pub use config::{RawConfig, ServeConfig};

/// Shared state of every handler.
pub struct AppState {
    pub store: Arc<Store>,
    pub tokens: Arc<TokenStore>,
    pub limits: Limits,
    pub metrics: Arc<metrics::Metrics>,
    pub wal_zstd_level: i32,
    /// `GET /log/...` without a token.
    pub log_public: bool,
    /// The latest checkpoint with the witnesses' cosignatures added (when witnesses are set).
    pub cosigned: std::sync::Mutex<Option<Vec<u8>>>,
    /// The redaction rules in force and the tenants' pseudonym keys.
    pub redaction: Arc<redaction::Redaction>,
    /// The Cedar policies in force (swapped on SIGHUP).
    pub policy: std::sync::RwLock<Arc<tv_access::PolicyEngine>>,
    /// Token buckets per credential and per tenant.
    pub limiter: ratelimit::Limiter,
    /// JWT verification for people, when `[oidc]` is configured.
    pub oidc: Option<Arc<tv_access::OidcVerifier>>,
    /// Sensitivity classes of attributes (swapped on SIGHUP with the policies).
    pub field_classes: std::sync::RwLock<Arc<mask::FieldClasses>>,
    /// Registered workload identities and revoked client certificates.
    pub workloads: Arc<mtls::Workloads>,
    /// The listeners' TLS settings (reloaded on SIGHUP and when the files change); None in
    /// plaintext mode.
    pub tls: Option<Arc<tls::TlsSource>>,
    /// The built-in client CA, when it is the one trusted (`cert issue` signs with it).
    pub client_ca: Option<mtls::OwnClientCa>,
    /// The audit log (`DIR/audit/`).
    pub audit: Arc<audit::Audit>,
    /// Whether the KMS answers (transit root only).
    pub kms: Option<Arc<kms::KmsHealth>>,
    /// Tenant keys under the root.
    pub keyring: Arc<Keyring>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Signature rules and finding sinks.
    pub detection: Arc<detection::Detection>,
    /// Calls between services, kept as batches are committed.
    pub graph: Arc<graph::ServiceGraph>,
    /// In a cluster: this node's id and the tenants erased on any node.
    pub cluster: Option<(String, Arc<cluster::ClusterErasures>)>,
    /// In a cluster: where the UI's sessions, login codes and sign-ins are shared.
    pub shared_ui: Option<Arc<ui::shared::SharedUi>>,
    /// Memory of all ingest requests being read and decoded together.
    pub decode_budget: Arc<budget::Budget>,
    /// Seals the findings the server stores and recognizes them on reading.
    pub findings_seal: Arc<detection::FindingSeal>,
    /// The findings `/api/findings` answers from (see `findings_index`).
    pub findings_index: Arc<findings_index::FindingsIndex>,
    /// Seals the trusted files the log does not cover (credentials, registrations, ...).
    pub state_seal: Arc<stateseal::StateSeal>,
    /// Query API requests answered at once (each may decrypt and build a large trace).
    pub query_slots: Arc<tokio::sync::Semaphore>,
    /// Longest a request waits for a budget or a query slot before 503.
    pub budget_wait: std::time::Duration,
    /// The web UI's sessions and single-use login codes.
    pub sessions: Arc<ui::session::Sessions>,
    /// The security counters of the last day, a sample a minute.
    pub security_history: ui::security::SecurityHistory,
    /// Person lookups (pseudonym of a value, search by a user) per principal.
    pub person_lookups: api::person::Lookups,
    /// The configuration the server started with (`GET /api/doctor` grades it).
    pub serve_config: Arc<config::ServeConfig>,
}

impl AppState {
    /// The policies in force.
    pub fn policy(&self) -> Arc<tv_access::PolicyEngine> {
        self.policy.read().expect("policy lock").clone()
    }

    /// The field classes in force.
    pub fn field_classes(&self) -> Arc<mask::FieldClasses> {
        self.field_classes.read().expect("classes lock").clone()
    }

    /// Counts a request against its credential's rate; refuses it (429) when over.
    pub fn admit(&self, caller: &auth::Caller) -> Result<(), error::ApiError> {
        self.limiter
            .charge(
                ratelimit::Kind::Requests,
                &caller.principal.id(),
                1.0,
                &self.metrics,
            )
            .map_err(error::ApiError::from)
    }

    /// Asks the policies in force whether `caller` may do `action`.
    pub fn authorize(
        &self,
        caller: &auth::Caller,
        action: tv_access::Action,
    ) -> Result<auth::Authorized, error::ApiError> {
        auth::authorize(&self.policy(), caller, action)
    }

    /// Asks the policies in force whether `caller` may do `action` on `tenant` (a tenant the
    /// request names other than by `X-Scope-OrgID`: in its body or a stored object's owner).
    pub fn authorize_on(
        &self,
        caller: &auth::Caller,
        action: tv_access::Action,
        tenant: tv_model::TenantId,
    ) -> Result<auth::Authorized, error::ApiError> {
        auth::authorize_on(&self.policy(), &caller.principal, action, tenant)
    }

    /// Whether `caller` may do `action` on `tenant`, without a refusal (for filtering lists).
    pub fn may(&self, caller: &auth::Caller, action: tv_access::Action, tenant: &str) -> bool {
        tv_model::TenantId::parse(tenant).is_ok_and(|t| {
            self.policy()
                .authorize(&caller.principal, action, &t, &[])
                .allowed
        })
    }

    /// Asks the policies in force whether `caller` may do `action` on every tenant the server
    /// holds (keys, data or the default tenant); `what` names the action in a refusal.
    pub fn authorize_every(
        &self,
        caller: &auth::Caller,
        action: tv_access::Action,
        what: &str,
    ) -> Result<auth::Authorized, error::ApiError> {
        let mut known = self.keyring.tenants().unwrap_or_default();
        known.push(tv_model::TenantId::default_tenant());
        auth::authorize_every(&self.policy(), caller, action, &known, what)
    }
}

/// Addresses actually bound (useful with port 0).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundAddrs {
    /// `None` on a query node, which opens no OTLP listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_grpc: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_http: Option<SocketAddr>,
    pub api: SocketAddr,
    /// Whether the listeners speak TLS (the CLI picks `https://` from it, never from guessing).
    pub tls: bool,
}

/// A bootstrapped server, listeners bound, not yet serving.
pub struct Server {
    cfg: ServeConfig,
    state: Arc<AppState>,
    listeners: Vec<(&'static str, TcpListener)>,
    pub addrs: BoundAddrs,
    pub admin_token_path: PathBuf,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({:?})", self.addrs)
    }
}

/// How often the TLS files are checked for changes.
const TLS_POLL: std::time::Duration = std::time::Duration::from_secs(10);
/// One round of the cluster's shared state on this node: erasures recorded by any node are
/// carried out here; workload identities registered or revoked on other nodes hold here; key
/// versions other nodes rotated become current here; UI sessions ended on other nodes end here.
/// What cannot be read is warned about once per failing stretch (the bucket's state is on
/// `/ready` too).
async fn cluster_state_round(
    st: &Arc<AppState>,
    erasures: &Arc<cluster::ClusterErasures>,
    round: &mut StateRound,
) {
    round.rounds += 1;
    let warned = &mut round.warned;
    let mut failures: Vec<String> = Vec::new();
    let (e, dir) = (erasures.clone(), st.data_dir.clone());
    let todo = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<tv_model::TenantId>> {
        let mut out = Vec::new();
        for t in e.tenants()? {
            if !tv_store::erase::is_erased(&dir, &t)? {
                out.push(t);
            }
        }
        Ok(out)
    })
    .await;
    match todo {
        Ok(Ok(tenants)) => {
            for t in tenants {
                match api::admin::keys::erase_here(st, &t).await {
                    Ok(rec) => {
                        tracing::warn!(tenant = %t, blocks = rec.blocks, spans = rec.spans, "tenant erased on another node of the cluster: erased here too");
                        st.audit.system(
                            "tenant.erase",
                            api::admin::keys::erase_resource(&t, &rec),
                            &t,
                        );
                    }
                    Err(tv_store::StoreError::Erased(_)) => {}
                    Err(e) => {
                        tracing::error!(tenant = %t, error = %e, "tenant erased on another node of the cluster, but erasing it here failed; retrying at the next refresh")
                    }
                }
            }
        }
        Ok(Err(e)) => failures.push(format!("the cluster's erasures: {e:#}")),
        Err(e) => failures.push(format!("the cluster's erasures: {e}")),
    }
    let w = st.workloads.clone();
    match tokio::task::spawn_blocking(move || w.refresh()).await {
        Ok(Ok(true)) => tracing::debug!("read the cluster's workload identities again"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => failures.push(format!(
            "the cluster's workload identities (the ones read last stay in force): {e:#}"
        )),
        Err(e) => failures.push(format!("the cluster's workload identities: {e}")),
    }
    if let Some(sh) = round.ui.clone() {
        // Sessions that ended on another node (logout, timeout, revoked credential); every
        // hundred rounds, what has ended is removed from the bucket.
        let (s, sweep) = (st.sessions.clone(), round.rounds % 100 == 1);
        let ui = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let at = std::time::Instant::now();
            let listed = sh.list(ui::shared::Kind::Session)?;
            s.prune_shared(&listed, at);
            if sweep {
                let settings = s.settings();
                let n = sh.sweep(settings.session_idle, settings.session_max);
                if n > 0 {
                    tracing::debug!(
                        removed = n,
                        "removed ended UI sessions and used links from the bucket"
                    );
                }
            }
            Ok(())
        })
        .await;
        match ui {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("the cluster's UI sessions: {e}")),
            Err(e) => failures.push(format!("the cluster's UI sessions: {e}")),
        }
    }
    let kr = st.keyring.clone();
    match tokio::task::spawn_blocking(move || kr.reload_current()).await {
        Ok(Ok(changed)) => {
            for (t, v) in changed {
                tracing::info!(tenant = %t, version = v, "tenant key rotated on another node of the cluster: new data keys are wrapped under it here too");
            }
        }
        Ok(Err(e)) => failures.push(format!("the tenant key versions: {e}")),
        Err(e) => failures.push(format!("the tenant key versions: {e}")),
    }
    if failures.is_empty() {
        if std::mem::take(warned) {
            tracing::info!("the cluster's shared state is read again");
        }
    } else if !std::mem::replace(warned, true) {
        for f in failures {
            tracing::warn!(what = %f, "cannot read the cluster's shared state; retrying every refresh");
        }
    }
}

/// What [`cluster_state_round`] keeps between rounds.
#[derive(Default)]
struct StateRound {
    warned: bool,
    rounds: u64,
    /// The UI's shared sessions (the bucket side).
    ui: Option<Arc<ui::shared::SharedUi>>,
}

/// How often the service graph is saved.
const GRAPH_SAVE: std::time::Duration = std::time::Duration::from_secs(60);

const INSECURE_WARNING: &str = "INSECURE: --insecure-plaintext is set: listeners speak plaintext, so bearer tokens and trace data cross the network unencrypted; use only on a trusted loopback";

const NO_REDACTION_WARNING: &str = "INSECURE: --no-redaction is set: spans are stored as sent, with whatever personal data, tokens and SQL literals they carry; the log records the empty redaction policy";

/// The root key source the config names (a file root is created on first use).
pub fn open_root(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn RootKeySource>> {
    Ok(match &cfg.root {
        config::RootSource::File => {
            let (root, created) = FileRootKey::load_or_create(&cfg.keys_dir.join("root.key"))?;
            if created {
                tracing::info!(path = %cfg.keys_dir.join("root.key").display(), "created root key; back it up apart from the data directory");
            }
            Arc::new(root)
        }
        config::RootSource::Transit(t) => {
            let r = kms::TransitRootKey::connect((**t).clone())
                .context("connecting to the KMS ([keys.transit])")?;
            tracing::info!(root = %r.describe(), "root of the key hierarchy in the KMS");
            Arc::new(r)
        }
    })
}

/// Refuses to start on trusted files changed, deleted or planted outside the server
/// (credentials, registrations, responses, the client CA); detector state that does not match
/// is reported, left to be relearned, and sealed as it is now.
fn check_sealed_state(seal: &stateseal::StateSeal) -> anyhow::Result<()> {
    let mut refuse = Vec::new();
    for m in seal.check() {
        match m.trust {
            stateseal::Trust::Security => refuse.push(format!("{}: {}", m.path, m.what)),
            stateseal::Trust::Detector => {
                tracing::warn!(file = %m.path, problem = m.what, "behavioural detector state does not match its seal; it is relearned");
                if m.what.starts_with("changed") {
                    let _ = std::fs::remove_file(seal_path(seal, &m.path));
                }
                seal.seal(&m.path)?;
            }
        }
    }
    if !refuse.is_empty() {
        anyhow::bail!(
            "trusted files do not match their seals (DIR/state-seal.json): {}. Restore them from a backup, or, when the change is yours, accept it with `tracevault state reseal` while the server is stopped",
            refuse.join("; ")
        );
    }
    Ok(())
}

fn seal_path(seal: &stateseal::StateSeal, rel: &str) -> PathBuf {
    seal.data_dir().join(rel)
}

/// Opens the store with its transparency log signed by `log` (recovery runs here).
pub(crate) async fn open_store(
    mut scfg: StoreConfig,
    log: logkeys::LogSigners,
    checkpoint_interval: std::time::Duration,
    keyring: Arc<Keyring>,
) -> anyhow::Result<Store> {
    scfg.log = Some(tv_store::LogConfig {
        origin: log.origin.clone(),
        signers: vec![Arc::new(log.ed25519), Arc::new(log.mldsa)],
        checkpoint_interval,
    });
    tokio::task::spawn_blocking(move || Store::open(scfg, keyring))
        .await
        .context("store recovery task")?
        .context("opening the store")
}

impl Server {
    /// Creates what a first start needs and binds the listeners.
    pub async fn bootstrap(cfg: ServeConfig) -> anyhow::Result<Self> {
        let data_dir = cfg.data_dir.clone();
        fsio::create_private_dir(&data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        // One process per data directory, before anything in it is opened for writing.
        let lock = Arc::new(tv_store::lock_data_dir(&data_dir)?);
        if let Ok(mode) = fsio::mode_of(&data_dir)
            && mode & 0o077 != 0
        {
            tracing::warn!(dir = %data_dir.display(), mode = format!("{mode:o}"), "data directory is accessible to group or others; chmod 700 it");
        }
        fsio::create_private_dir(&cfg.keys_dir)
            .with_context(|| format!("creating keys directory {}", cfg.keys_dir.display()))?;
        // Key material readable by group or others is refused, whatever the file.
        let open = fsio::open_to_others(&cfg.keys_dir)
            .with_context(|| format!("checking {}", cfg.keys_dir.display()))?;
        if let Some((p, mode)) = open.first() {
            anyhow::bail!(
                "{} is accessible to group or others (mode {mode:o}){}; key material must be private: run `chmod -R go-rwx {}`",
                p.display(),
                if open.len() > 1 {
                    format!(" and {} more", open.len() - 1)
                } else {
                    String::new()
                },
                cfg.keys_dir.display()
            );
        }
        let root = open_root(&cfg)?;
        let keyring = Arc::new(Keyring::open(&cfg.keys_dir, root.clone())?);
        let kms_health = match &cfg.root {
            config::RootSource::Transit(t) => {
                let max_stale = std::time::Duration::from_secs_f64(t.max_stale_secs);
                keyring.set_max_stale(Some(max_stale));
                Some((
                    Arc::new(kms::KmsHealth::new(max_stale)),
                    std::time::Duration::from_secs_f64(t.refresh_secs),
                ))
            }
            config::RootSource::File => None,
        };

        // The files the server trusts are checked against their seals before any is read.
        let state_seal = Arc::new(stateseal::StateSeal::open(
            &data_dir,
            &cfg.keys_dir,
            root.as_ref(),
        )?);
        check_sealed_state(&state_seal)?;
        // A node of a cluster: the bucket must answer before anything starts.
        let bucket = match &cfg.cluster {
            Some(c) => Some(cluster::open_bucket(c).await?),
            None => None,
        };
        // The versions of the cluster's state documents this node read or wrote (kept across
        // restarts; anchored in its log once the store opens it), and the key every shared
        // state object is sealed under (unwrapped once).
        let (tracker, state_key) = match &bucket {
            Some(_) => (
                Some(cluster::StateTracker::open(&data_dir)?),
                Some(cluster::state_key(&cfg.keys_dir, root.as_ref())?),
            ),
            None => (None, None),
        };
        if let (Some(t), Some(b)) = (&tracker, &bucket) {
            // A node that never read the state documents holds them to what the logs anchor.
            let base = logkeys::load_or_create(&cfg.keys_dir, root.as_ref())?;
            let vkeys = [base.ed25519.vkey(), base.mldsa.vkey()];
            t.learn(b, &|node| {
                let keys: Vec<String> = vkeys
                    .iter()
                    .map(|k| logkeys::node_vkey(k, node))
                    .collect::<anyhow::Result<_>>()
                    .ok()?;
                tv_tlog::policy::LogKeys::from_vkeys(&keys).ok()
            });
        }
        let state_doc = |b: &tv_store::objects::SharedObjects, name: &str| {
            Arc::new(cluster::StateDoc::tracked(
                b.clone(),
                name,
                state_key.clone().expect("a state key with a bucket"),
                tracker.clone().expect("a tracker with a bucket"),
            ))
        };
        // Workload identities: in a cluster one encrypted document in the bucket, registered and
        // revoked on any node for every node.
        let workloads = Arc::new(match &bucket {
            Some(b) => mtls::Workloads::open_shared(state_doc(b, "workloads"))?,
            None => mtls::Workloads::open(&data_dir.join("workloads.json"))?,
        });
        workloads.seal_with(state_seal.clone());
        let (tls, client_ca) = if cfg.insecure_plaintext {
            tracing::warn!("{INSECURE_WARNING}");
            (None, None)
        } else {
            let (client_ca, own) = match &cfg.client_ca {
                Some(p) => (p.clone(), None),
                None => {
                    let cert = mtls::ensure_client_ca(&data_dir, &cfg.keys_dir)?;
                    state_seal.seal("tls/client-ca.pem")?;
                    let own = mtls::OwnClientCa {
                        cert: cert.clone(),
                        keys_dir: cfg.keys_dir.clone(),
                    };
                    (cert, Some(own))
                }
            };
            let params = tls::TlsParams {
                files: cfg.tls_cert.as_ref().map(|(cert, key)| tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                data_dir: data_dir.clone(),
                keys_dir: cfg.keys_dir.clone(),
                client_ca,
                policy: cfg.tls_policy,
            };
            if cfg.tls_policy.tls12 {
                tracing::warn!(
                    "WEAKENED: [tls] min_version = \"1.2\": TLS 1.2 is accepted (its handshake is not encrypted and has no post-quantum key exchange); set \"1.3\" once old clients are gone"
                );
            }
            if !cfg.tls_policy.post_quantum {
                tracing::warn!(
                    "WEAKENED: [tls] post_quantum = false: key exchange is classical only (X25519, P-256, P-384); recorded traffic could be decrypted by a future quantum computer"
                );
            }
            (
                Some(Arc::new(tls::TlsSource::new(params, workloads.clone())?)),
                own,
            )
        };

        // The transparency log's checkpoint signing keys exist from the first start.
        let log = logkeys::load_or_create(&cfg.keys_dir, root.as_ref())?;
        // A node of a cluster: the node's log has its own origin under the cluster's.
        let base_origin = log.origin.clone();
        let log = match &cfg.cluster {
            Some(c) => log.for_node(&c.node)?,
            None => log,
        };
        tracing::info!(origin = %log.origin, "log signing keys ready");
        witness_client::check(&cfg.witnesses)?;
        if cfg.log_public {
            tracing::warn!(
                "the transparency log (GET /log/...) is public: anyone who can reach the API sees ingest volume and timing"
            );
        }

        let cluster_state = match (&bucket, &cfg.cluster) {
            (Some(b), Some(c)) => Some((
                c.node.clone(),
                Arc::new(cluster::ClusterErasures::new(state_doc(b, "erasures"))),
            )),
            _ => None,
        };
        if let Some(b) = &bucket {
            // Tenant key files (wrapped by the root) are created once in the bucket: nodes
            // with their own keys directories agree on every tenant's keys.
            keyring.share_with(Arc::new(cluster::BucketKeys::new(b.clone())));
            // Not the files of tenants erased while this node was away (it erases them next).
            let (kr, erasures) = (keyring.clone(), cluster_state.as_ref().map(|c| c.1.clone()));
            let (added, differ) = tokio::task::spawn_blocking(move || {
                let erased = match erasures {
                    Some(e) => e.tenants()?,
                    None => Vec::new(),
                };
                anyhow::Ok(kr.publish_local(&erased)?)
            })
            .await??;
            if added > 0 {
                tracing::info!(
                    files = added,
                    "put this node's tenant key files into the cluster's bucket"
                );
            }
            if !differ.is_empty() {
                anyhow::bail!(
                    "tenant key files in {} differ from the cluster's ({}): two keys were made for one version; data under this directory's keys would not be readable by the other nodes. Start with the cluster's keys directory",
                    cfg.keys_dir.display(),
                    differ.join(", ")
                );
            }
        }
        let shared_ui = bucket.as_ref().map(|b| {
            Arc::new(ui::shared::SharedUi::new(
                b.clone(),
                state_key.clone().expect("a state key with a bucket"),
            ))
        });
        // In a cluster the registry is one encrypted document in the bucket: a token made on any
        // node works on every node, and only the cluster's first node makes an admin token.
        let tokens = Arc::new(match &bucket {
            Some(b) => {
                TokenStore::open_shared(state_doc(b, "tokens"), &cfg.keys_dir, root.as_ref())?
            }
            None => TokenStore::open(&data_dir.join("tokens.json"), &cfg.keys_dir, root.as_ref())?,
        });
        let admin_token_path = data_dir.join("admin.token");
        let first_admin = if tokens.is_shared() {
            tokens.create_first_admin("bootstrap-admin")?
        } else if tokens.is_empty() {
            Some(
                tokens
                    .create("bootstrap-admin", Role::Admin, vec![], None)?
                    .0,
            )
        } else {
            None
        };
        if tokens.is_shared() && first_admin.is_none() {
            tracing::info!(
                "joined a cluster whose tokens exist: no admin token is made here (the cluster's first node made it)"
            );
        }
        if let Some(text) = first_admin {
            let mut line = text.to_string();
            line.push('\n');
            fsio::atomic_write(&admin_token_path, line.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", admin_token_path.display()))?;
            zeroize::Zeroize::zeroize(&mut line);
            tracing::info!(path = %admin_token_path.display(), "created admin API token (the file holds the token; it is not logged)");
            if !tokens.is_shared() {
                state_seal.seal("tokens.json")?;
            }
        }
        if !state_seal.existed {
            // A first start, or a data directory from before sealing: what is there now is
            // what the server vouches for from here on.
            let n = state_seal.seal_all()?;
            tracing::info!(
                files = n,
                "sealed the trusted state files (credentials, registrations, responses, detector state)"
            );
        }

        let metrics = Arc::new(metrics::Metrics::new());
        let mut scfg = StoreConfig::new(&data_dir);
        scfg.segment_max_bytes = cfg.segment_max_bytes;
        scfg.segment_max_age = cfg.seal_interval;
        scfg.block_zstd_level = cfg.block_zstd_level;
        scfg.background_nice = cfg.background_nice;
        scfg.chunk_target_bytes = cfg.chunk_target_bytes;
        scfg.max_pending_bytes = cfg.max_pending_bytes;
        scfg.observer = Some(metrics.clone());
        scfg.retention = cfg.retention;
        scfg.tenant_retention = cfg.tenant_retention.clone();
        scfg.destroy_unused_keys = cfg.destroy_unused_keys;
        scfg.unused_key_grace = cfg.unused_key_grace;
        scfg.retention_interval = cfg.retention_interval;
        scfg.compaction = cfg.compaction.clone();
        scfg.lock = Some(lock);
        scfg.wal_dir = cfg.wal_dir.clone();
        if let (Some(c), Some(bucket)) = (&cfg.cluster, &bucket) {
            // The WAL rides out a bucket outage: up to sixteen closed segments (64 MiB at the
            // default size) wait to be sealed before ingest answers 503 (held in memory too).
            scfg.max_unsealed_segments = 16;
            // Block ranges read from the bucket are kept on local disk (as stored: ciphertext).
            let cached: tv_store::objects::SharedObjects = if c.cache_bytes > 0 {
                let dir = data_dir.join("cache");
                Arc::new(
                    tv_store::objects::RangeCache::new(bucket.clone(), dir.clone(), c.cache_bytes)
                        .with_context(|| format!("creating the block cache {}", dir.display()))?,
                )
            } else {
                bucket.clone()
            };
            scfg.cluster = Some(tv_store::cluster::ClusterConfig {
                bucket: cached,
                node: c.node.clone(),
                refresh: c.refresh,
                lease_ttl: cluster::LEASE_TTL,
            });
        }
        let store =
            Arc::new(open_store(scfg, log, cfg.checkpoint_interval, keyring.clone()).await?);
        if let (Some(t), Some(log)) = (&tracker, store.log()) {
            t.attach(log.clone());
        }
        let audit = audit::Audit::open(
            &data_dir,
            // A cluster node's audit log is in its prefix of the bucket, written under its lease
            // (so it is opened after the store took the lease).
            cfg.cluster.as_ref().map(|_| store.objects().clone()),
            &cfg.keys_dir,
            root.clone(),
            &base_origin,
            cfg.cluster.as_ref().map(|c| c.node.as_str()),
            cfg.checkpoint_interval,
            metrics.clone(),
        )?;
        tracing::info!(origin = %audit.origin(), "audit log ready");
        let findings_seal = Arc::new(detection::FindingSeal::new(keyring.clone()));
        let findings_index = Arc::new(findings_index::FindingsIndex::default());
        let detection = Arc::new(detection::Detection::start(
            &cfg.detection,
            Some(detection::WorkerDeps {
                store: store.clone(),
                metrics: metrics.clone(),
                keyring: keyring.clone(),
                limits: cfg.limits.clone(),
                data_dir: cfg.data_dir.clone(),
                runtime: tokio::runtime::Handle::current(),
                audit: Some(audit.clone()),
                seal: findings_seal.clone(),
                findings_index: findings_index.clone(),
                state_seal: state_seal.clone(),
                // A query node receives no spans: it neither learns nor detects.
                share_every: cfg
                    .cluster
                    .as_ref()
                    .filter(|_| cfg.role != config::NodeRole::Query)
                    .map(|c| c.refresh),
            }),
        )?);
        // The service graph as saved at the last shutdown (or minute).
        let graph = Arc::new(graph::ServiceGraph::default());
        graph.load(&cfg.data_dir, &keyring);
        if cfg.cluster.is_some() {
            graph.share();
        }
        let state = Arc::new(AppState {
            sessions: {
                let s = ui::session::Sessions::new(cfg.ui);
                if let Some(sh) = &shared_ui {
                    s.share(sh.clone());
                }
                Arc::new(s)
            },
            shared_ui,
            security_history: ui::security::SecurityHistory::default(),
            person_lookups: api::person::Lookups::default(),
            serve_config: Arc::new(cfg.clone()),
            detection,
            graph,
            cluster: cluster_state,
            store,
            tokens,
            limits: cfg.limits.clone(),
            metrics,
            wal_zstd_level: 1,
            log_public: cfg.log_public,
            cosigned: std::sync::Mutex::new(None),
            redaction: Arc::new(redaction::Redaction::new(
                cfg.redaction.clone(),
                keyring.clone(),
            )),
            policy: std::sync::RwLock::new(cfg.policy.clone()),
            limiter: ratelimit::Limiter::new(cfg.rates),
            oidc: cfg.oidc.clone(),
            field_classes: std::sync::RwLock::new(cfg.field_classes.clone()),
            workloads,
            tls,
            client_ca,
            audit,
            kms: kms_health.as_ref().map(|(h, _)| h.clone()),
            keyring: keyring.clone(),
            data_dir: data_dir.clone(),
            decode_budget: budget::Budget::new(
                "request decoding",
                cfg.decode_budget_bytes,
                cfg.budget_wait,
            ),
            findings_seal,
            findings_index,
            state_seal,
            query_slots: Arc::new(tokio::sync::Semaphore::new(cfg.query_concurrency)),
            budget_wait: cfg.budget_wait,
        });
        api::admin::keys::audit_restore(&state);
        stateseal::audit_reseal(&data_dir, &state.audit);
        if let Some(max_age) = cfg.rotate_after {
            tokio::spawn(api::admin::keys::rotate_by_age(state.clone(), max_age));
        }
        if let Some((h, refresh)) = kms_health {
            tokio::spawn(kms::watch(
                keyring.clone(),
                h,
                refresh,
                state.metrics.clone(),
            ));
        }
        tracing::info!(
            operator_policies = cfg.policy.operator_policies,
            "access policies loaded (Cedar; built-in roles plus operator files)"
        );
        match &cfg.redaction {
            Some(r) => tracing::info!(policy_version = %r.version(), "redaction on"),
            None => tracing::warn!("{NO_REDACTION_WARNING}"),
        }

        if let Some(v) = &cfg.oidc {
            oidc_refresh::start(v.clone()).await?;
        }

        if !cfg.witnesses.is_empty() {
            tokio::spawn(witness_client::run(
                state.clone(),
                cfg.witnesses.clone(),
                data_dir.clone(),
            ));
        }

        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the {what} listener on {addr}"))
        };
        let mut listeners = Vec::new();
        if cfg.role == config::NodeRole::Query {
            tracing::info!(
                "query node: no OTLP listeners (the --otlp-grpc and --otlp-http settings are not used)"
            );
        } else {
            listeners.push(("otlp-grpc", bind(cfg.otlp_grpc, "OTLP gRPC").await?));
            listeners.push(("otlp-http", bind(cfg.otlp_http, "OTLP HTTP").await?));
        }
        listeners.push(("api", bind(cfg.api, "query API").await?));
        let addr_of = |n: &str| {
            listeners
                .iter()
                .find(|(name, _)| *name == n)
                .and_then(|(_, l)| l.local_addr().ok())
        };
        let addrs = BoundAddrs {
            otlp_grpc: addr_of("otlp-grpc"),
            otlp_http: addr_of("otlp-http"),
            api: addr_of("api").context("the API listener's address")?,
            tls: !cfg.insecure_plaintext,
        };
        for (name, a) in [
            ("otlp-grpc", addrs.otlp_grpc),
            ("otlp-http", addrs.otlp_http),
            ("api", Some(addrs.api)),
        ] {
            let Some(a) = a else { continue };
            if !a.ip().is_loopback() {
                tracing::warn!(listener = name, addr = %a, "listening beyond loopback");
            }
        }
        fsio::atomic_write(
            &data_dir.join("listen.json"),
            serde_json::to_string_pretty(&addrs)?.as_bytes(),
            0o644,
        )?;
        Ok(Self {
            cfg,
            state,
            listeners,
            addrs,
            admin_token_path,
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` resolves; then drains, seals the WAL and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (tx, rx) = watch::channel(false);
        let shared = net::Shared::new(
            self.cfg.connections.clone(),
            self.cfg.response_budget_bytes,
            self.state.metrics.clone(),
        );
        let tls = self.state.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        if tls.is_none() {
            tracing::warn!("{INSECURE_WARNING}");
        }
        if let Some(t) = tls.clone() {
            // Certificates replaced on disk (cert-manager, a renewal) are picked up within
            // TLS_POLL without a restart; SIGHUP reloads at once.
            let mut stop = rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TLS_POLL) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    match t.reload_if_changed() {
                        Ok(true) => tracing::info!("TLS certificates reloaded (files changed)"),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "TLS files changed but do not load; the running certificates stay")
                        }
                    }
                }
            });
        }
        {
            // The security counters, sampled every minute for the UI's overview.
            let mut stop = rx.clone();
            let st = self.state.clone();
            tokio::spawn(async move {
                loop {
                    let now = tv_access::now_unix();
                    st.security_history
                        .record(ui::security::sample(&st.metrics.render(), now));
                    tokio::select! {
                        _ = tokio::time::sleep(ui::security::SAMPLE_EVERY) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            });
        }
        {
            // The service graph is saved every minute (and at shutdown, below).
            let mut stop = rx.clone();
            let st = self.state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(GRAPH_SAVE) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    let st = st.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        st.graph.save(&st.data_dir, &st.keyring, &st.state_seal)
                    })
                    .await;
                }
            });
        }
        if let (Some(c), Some((_, erasures))) = (&self.cfg.cluster, self.state.cluster.clone()) {
            // Tenants erased on other nodes are erased here too (at once on start: a node that
            // was down catches up), and key versions rotated on other nodes become current here.
            let mut stop = rx.clone();
            let st = self.state.clone();
            let every = c.refresh;
            tokio::spawn(async move {
                let mut round = StateRound {
                    ui: st.shared_ui.clone(),
                    ..Default::default()
                };
                loop {
                    cluster_state_round(&st, &erasures, &mut round).await;
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            });
        }
        if let Some(c) = &self.cfg.cluster {
            // The service graph across nodes: calls whose parent and child reached different
            // nodes, and every node's edges, through the bucket (graph_share).
            let mut stop = rx.clone();
            let st = self.state.clone();
            let every = c.refresh;
            let share = Arc::new(std::sync::Mutex::new(graph_share::GraphShare::new(
                st.store.objects().clone(),
            )));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    let (st, share) = (st.clone(), share.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        share.lock().expect("graph share lock").round(
                            &st.graph,
                            &st.store,
                            &st.keyring,
                        )
                    })
                    .await;
                }
            });
        }
        if let Some(c) = &self.cfg.cluster {
            // Tokens made and revoked on other nodes reach this one within the refresh interval.
            let mut stop = rx.clone();
            let st = self.state.clone();
            let every = c.refresh;
            tokio::spawn(async move {
                // Warned once per failing stretch (the bucket's state is on /ready too).
                let mut failing = false;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    let t = st.tokens.clone();
                    match tokio::task::spawn_blocking(move || t.refresh()).await {
                        Ok(Ok(changed)) => {
                            if changed {
                                tracing::debug!(
                                    "read the cluster's tokens again (changed on another node)"
                                );
                            }
                            if std::mem::take(&mut failing) {
                                tracing::info!("the cluster's tokens are read again");
                            }
                        }
                        Ok(Err(e)) => {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(error = %e, "cannot read the cluster's tokens; the ones read last stay in force");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "token refresh task"),
                    }
                }
            });
        }
        let mut tasks = Vec::new();
        let hints = Arc::new(hints::Listeners {
            otlp_grpc: self.addrs.otlp_grpc,
            otlp_http: self.addrs.otlp_http,
            api: self.addrs.api,
            tls: tls.is_some(),
        });
        for (name, listener) in self.listeners {
            let app = match name {
                "otlp-grpc" => ingest::grpc_router(self.state.clone()),
                "otlp-http" => axum::Router::new()
                    .route("/v1/traces", axum::routing::post(ingest::http_export))
                    .with_state(self.state.clone()),
                _ => api::router(self.state.clone()),
            };
            // OTLP handlers enforce the configured request limit themselves (counting into the
            // decode budget); the API's bodies are small JSON documents, read only up to a
            // limit, whatever the caller is allowed to do.
            let app = if name == "api" {
                app.layer(axum::extract::DefaultBodyLimit::max(error::API_BODY_LIMIT))
            } else {
                app.layer(axum::extract::DefaultBodyLimit::disable())
            };
            // Requests meant for another listener are told which one (before authentication).
            let app = app.layer(axum::middleware::from_fn_with_state(
                Arc::new(hints::Guard {
                    listener: name,
                    listeners: hints.clone(),
                }),
                hints::wrong_port,
            ));
            tracing::info!(listener = name, addr = %listener.local_addr()?, scheme, "listening");
            tasks.push(tokio::spawn(net::serve(
                name,
                listener,
                tls.clone().map(net::Tls::Reloading),
                app,
                rx.clone(),
                shared.clone(),
            )));
        }
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let store = self.state.store.clone();
        let audit = self.state.audit.clone();
        let detection = self.state.detection.clone();
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || {
            st.graph.save(&st.data_dir, &st.keyring, &st.state_seal);
            // The behavioural stage stores its last findings before the store closes.
            detection.shutdown();
            // The audit log flushes first: in a cluster the store's stop gives up the lease
            // under which both are written.
            audit.shutdown();
            store.shutdown();
        })
        .await
        .context("flushing the store and the audit log")?;
        tracing::info!("store flushed; bye");
        Ok(())
    }
}
