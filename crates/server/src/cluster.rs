//! A node of a cluster on a bucket (issue 21, docs/adr/0021): opening the bucket at start with
//! errors that say what to fix, and the node's state for `/ready`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tv_store::objects::{ObjectError, Remote, RemoteConfig, SharedObjects};

use crate::config::ClusterSettings;

/// How long a node's lease lasts without renewal (renewed every refresh interval).
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Opens the bucket and checks that it answers with these credentials (one signed request).
pub async fn open_bucket(c: &ClusterSettings) -> anyhow::Result<SharedObjects> {
    let mut rc = RemoteConfig::new(&c.url);
    rc.options = c.options.clone();
    rc.request_timeout = c.request_timeout;
    rc.deadline = c.request_timeout * 2;
    let remote = Remote::open(&rc)?;
    if remote.plain_http {
        tracing::warn!(
            url = %c.url,
            "INSECURE: the object store is reached over plain HTTP (AWS_ALLOW_HTTP), for a test server on this machine only; blocks are encrypted, but credentials and metadata are not protected in transit"
        );
    }
    let bucket: SharedObjects = Arc::new(remote);
    let probe = bucket.clone();
    let node = c.node.clone();
    // A listing (not a HEAD): its error answer names the cause (NoSuchBucket,
    // SignatureDoesNotMatch, AccessDenied, ...).
    let r = tokio::task::spawn_blocking(move || probe.list_dirs(&format!("nodes/{node}/"))).await?;
    match r {
        Ok(_) => {}
        Err(ObjectError::Denied { reason, .. }) => bail!(
            "object store {}: access refused ({reason}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the config's storage.object_store_options) and that the bucket exists",
            c.url
        ),
        Err(e) => bail!(
            "object store {} does not answer ({e}); check the endpoint (AWS_ENDPOINT_URL) and the network",
            c.url
        ),
    }
    tracing::info!(url = %c.url, node = %c.node, "cluster node on the object store");
    Ok(bucket)
}

/// The key that encrypts the cluster's shared state in the bucket (`keys/cluster-state.json`,
/// wrapped by the root key; the nodes share the keys directory or the KMS).
const STATE_KEY_FILE: &str = "cluster-state.json";
const STATE_KEY_CONTEXT: &[u8] = b"tracevault/v1/cluster-state-key";
const STATE_MAGIC: &[u8; 6] = b"TVCS1\0";

#[derive(serde::Serialize, serde::Deserialize)]
struct StateKeyFile {
    format: u32,
    wrapped: String,
}

/// Loads (or creates, on the cluster's first start) the cluster state key.
pub fn state_key(
    keys_dir: &std::path::Path,
    root: &dyn tv_crypto::RootKeySource,
) -> anyhow::Result<tv_crypto::SecretKey> {
    use anyhow::Context;
    let path = keys_dir.join(STATE_KEY_FILE);
    if !path.exists() {
        let k = tv_crypto::SecretKey::random();
        let f = StateKeyFile {
            format: 1,
            wrapped: hex::encode(root.wrap(STATE_KEY_CONTEXT, &k)?),
        };
        match tv_crypto::fsio::create_private_file(&path, &serde_json::to_vec(&f)?) {
            Ok(()) => return Ok(k),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
        }
    }
    let f: StateKeyFile = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a cluster state key file", path.display()))?;
    if f.format != 1 {
        bail!("{}: unsupported format {}", path.display(), f.format);
    }
    Ok(root.unwrap(STATE_KEY_CONTEXT, &hex::decode(&f.wrapped)?)?)
}

/// One document of cluster state in the bucket (`cluster/<name>`), encrypted and authenticated
/// under the cluster state key: `TVCS1\0 | generation u64 BE | salt 16 | AES-256-GCM(body)`, the
/// key derived per write (HKDF-SHA256 over the salt), the name and generation bound as associated
/// data. Each write increases the generation; a document older than one this node has read is
/// refused (an object rolled back in the bucket, e.g. an old token list without a revocation).
pub struct StateDoc {
    bucket: SharedObjects,
    name: String,
    key: tv_crypto::SecretKey,
    /// The highest generation this node has read or written.
    seen: std::sync::Mutex<u64>,
    /// Where the node remembers that generation across restarts and anchors what it writes.
    tracker: Option<Arc<StateTracker>>,
}

impl StateDoc {
    pub fn new(bucket: SharedObjects, name: &str, key: tv_crypto::SecretKey) -> Self {
        StateDoc {
            bucket,
            name: name.to_owned(),
            key,
            seen: std::sync::Mutex::new(0),
            tracker: None,
        }
    }

    /// A document whose versions this node remembers (a restarted node refuses one older than
    /// it read before) and anchors in its transparency log (`verify --object-store` names a
    /// document older than, or different from, what the logs anchor).
    pub fn tracked(
        bucket: SharedObjects,
        name: &str,
        key: tv_crypto::SecretKey,
        tracker: Arc<StateTracker>,
    ) -> Self {
        let seen = tracker.seen(name);
        StateDoc {
            seen: std::sync::Mutex::new(seen),
            tracker: Some(tracker),
            ..StateDoc::new(bucket, name, key)
        }
    }

    fn object_key(&self) -> String {
        format!("cluster/{}", self.name)
    }

    fn aad(&self, generation: u64) -> Vec<u8> {
        format!("tracevault/v1/cluster-state|{}|{generation}", self.name).into_bytes()
    }

    fn data_key(&self, salt: &[u8; 16]) -> tv_crypto::DataKey {
        use aws_lc_rs::hkdf;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.key.expose());
        let info = [self.name.as_bytes()];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .expect("a 32-byte output is within HKDF's limit");
        let mut k = [0u8; 32];
        okm.fill(&mut k).expect("32 bytes");
        tv_crypto::DataKey::from_secret(tv_crypto::SecretKey::from_bytes(k))
    }

    fn seal(&self, generation: u64, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let salt = tv_crypto::random_bytes::<16>();
        let mut ct = body.to_vec();
        self.data_key(&salt)
            .seal(0, &self.aad(generation), &mut ct)?;
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(&generation.to_be_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, b: &[u8]) -> Result<(u64, Vec<u8>), String> {
        let bad = |why: &str| format!("{}: {why}", self.object_key());
        if b.len() < 6 + 8 + 16 + 16 || &b[..6] != STATE_MAGIC {
            return Err(bad("not a cluster state document"));
        }
        let generation = u64::from_be_bytes(b[6..14].try_into().expect("8 bytes"));
        let salt: [u8; 16] = b[14..30].try_into().expect("16 bytes");
        let mut ct = b[30..].to_vec();
        let body = self
            .data_key(&salt)
            .open(0, &self.aad(generation), &mut ct)
            .map_err(|_| {
                bad("fails authentication (altered, or not written with this cluster's keys)")
            })?
            .to_vec();
        Ok((generation, body))
    }
}

impl tv_access::SharedDoc for StateDoc {
    fn load(&self) -> Result<Option<(Vec<u8>, String)>, String> {
        let (b, meta) = match self.bucket.get(&self.object_key()) {
            Ok(r) => r,
            Err(ObjectError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let (generation, body) = self.open(&b)?;
        let mut seen = self.seen.lock().expect("state lock poisoned");
        if generation < *seen {
            return Err(format!(
                "{} is at generation {generation}, older than the {} this node has read: it was rolled back in the bucket, and is refused (put the newest version back, e.g. from the bucket's versioning; `verify --object-store` names what the nodes' logs anchor)",
                self.object_key(),
                *seen
            ));
        }
        *seen = generation;
        if let Some(t) = &self.tracker {
            t.saw(&self.name, generation);
            t.reanchor(&self.name, generation, &b);
        }
        Ok(Some((body, meta.version)))
    }

    fn store(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, Option<String>> {
        let generation = *self.seen.lock().expect("state lock poisoned") + 1;
        let sealed = self
            .seal(generation, bytes)
            .map_err(|e| Some(e.to_string()))?;
        let mode = match expected {
            Some(v) => tv_store::objects::PutMode::IfMatch(v.to_owned()),
            None => tv_store::objects::PutMode::Create,
        };
        match self.bucket.put(&self.object_key(), &sealed, mode) {
            Ok(m) => {
                let mut seen = self.seen.lock().expect("state lock poisoned");
                *seen = (*seen).max(generation);
                if let Some(t) = &self.tracker {
                    t.saw(&self.name, generation);
                    t.anchor(&self.name, generation, &sealed);
                }
                Ok(m.version)
            }
            Err(ObjectError::Conflict { .. } | ObjectError::AlreadyExists(_)) => Err(None),
            Err(e) => Err(Some(e.to_string())),
        }
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.bucket.describe(), self.object_key())
    }
}

/// The tenants erased anywhere in the cluster (`cluster/erasures`, a [`StateDoc`]): a tenant
/// erased on one node is erased on every node, each deleting its own blocks and destroying
/// what it holds of the keys, at its next refresh (or when it starts, if it was down).
pub struct ClusterErasures {
    doc: Arc<StateDoc>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ErasureList {
    /// tenant -> (the node that erased it first, unix seconds)
    tenants: std::collections::BTreeMap<String, (String, u64)>,
}

impl ClusterErasures {
    pub fn new(doc: Arc<StateDoc>) -> Self {
        ClusterErasures { doc }
    }

    fn parse(&self, b: &[u8]) -> anyhow::Result<ErasureList> {
        use tv_access::SharedDoc;
        serde_json::from_slice(b)
            .map_err(|e| anyhow::anyhow!("{}: not an erasure list ({e})", self.doc.describe()))
    }

    fn read(&self) -> anyhow::Result<ErasureList> {
        use tv_access::SharedDoc;
        match self.doc.load().map_err(anyhow::Error::msg)? {
            None => Ok(ErasureList::default()),
            Some((b, _)) => self.parse(&b),
        }
    }

    /// Records that `tenant` is erased (before this node erases it: a node that stops half-way
    /// finishes when it starts again, as every other node does).
    pub fn record(&self, tenant: &tv_model::TenantId, node: &str) -> anyhow::Result<()> {
        use tv_access::SharedDoc;
        if self.read()?.tenants.contains_key(tenant.as_str()) {
            return Ok(());
        }
        let at = self.doc.describe();
        tv_access::update_shared(
            self.doc.as_ref(),
            &tv_access::DocFormat {
                parse: &|b| self.parse(b),
                empty: &ErasureList::default,
                encode: &|l| Ok(serde_json::to_vec(l)?),
                fail: &|why| anyhow::anyhow!("{at}: {why}"),
            },
            |list| {
                list.tenants
                    .entry(tenant.to_string())
                    .or_insert_with(|| (node.to_owned(), tv_access::now_unix()));
            },
        )?;
        Ok(())
    }

    /// Every tenant erased in the cluster.
    pub fn tenants(&self) -> anyhow::Result<Vec<tv_model::TenantId>> {
        Ok(self
            .read()?
            .tenants
            .keys()
            .filter_map(|t| tv_model::TenantId::parse(t).ok())
            .collect())
    }
}

/// The versions of the cluster state documents this node has read or written
/// (`DIR/cluster-state-seen.json`, so a restarted node still refuses an older one), and the log
/// they are anchored in: every write of a document appends a state leaf (name digest,
/// generation, SHA-256 of the object) to the node's transparency log.
pub struct StateTracker {
    path: std::path::PathBuf,
    seen: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// What this process last anchored of each document: (generation, when, log size then).
    anchored: std::sync::Mutex<HashMap<String, (u64, std::time::Instant, u64)>>,
    log: std::sync::OnceLock<Arc<tv_store::txlog::TxLog>>,
    /// Leaves of writes made before the log was open (the first admin token at start).
    pending: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// The cluster state documents whose versions are anchored in the nodes' logs.
pub const STATE_DOCS: [&str; 3] = ["tokens", "workloads", "erasures"];

/// A node anchors the version of each state document it holds at least this often (entries of
/// its log)...
pub const REANCHOR_ENTRIES: u64 = 4096;
/// ...and at least this often.
pub const REANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The file a node remembers state generations in.
pub const SEEN_FILE: &str = "cluster-state-seen.json";

impl StateTracker {
    pub fn open(data_dir: &std::path::Path) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let path = data_dir.join(SEEN_FILE);
        let seen = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not a list of generations", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Arc::new(StateTracker {
            path,
            seen: std::sync::Mutex::new(seen),
            anchored: std::sync::Mutex::new(HashMap::new()),
            log: std::sync::OnceLock::new(),
            pending: std::sync::Mutex::new(Vec::new()),
        }))
    }

    fn seen(&self, name: &str) -> u64 {
        self.seen
            .lock()
            .expect("seen lock poisoned")
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    fn saw(&self, name: &str, generation: u64) {
        let mut seen = self.seen.lock().expect("seen lock poisoned");
        let g = seen.entry(name.to_owned()).or_insert(0);
        if generation <= *g {
            return;
        }
        *g = generation;
        let r = serde_json::to_vec(&*seen)
            .map_err(std::io::Error::other)
            .and_then(|b| tv_crypto::fsio::atomic_write(&self.path, &b, 0o600));
        if let Err(e) = r {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record the cluster state generation this node read; after a restart it would accept an older one");
        }
    }

    /// A node that has never read the state documents (a new node, or one whose data directory
    /// was replaced) learns the newest generations the nodes' logs anchor (each node anchors the
    /// version it holds at least every [`REANCHOR_ENTRIES`] entries of its log and every hour,
    /// so the newest entries of each log are read), so it too refuses a rolled-back document.
    /// Only checkpoints signed with the cluster's log keys under the node's origin are read;
    /// `node_keys` gives those keys for a node.
    pub fn learn(
        &self,
        bucket: &SharedObjects,
        node_keys: &dyn Fn(&str) -> Option<tv_tlog::policy::LogKeys>,
    ) {
        let missing: Vec<&str> = STATE_DOCS
            .iter()
            .copied()
            .filter(|d| self.seen(d) == 0)
            .collect();
        if missing.is_empty() {
            return;
        }
        let wanted: HashMap<[u8; 32], &str> = missing
            .iter()
            .map(|d| (tv_tlog::leaf::state_name_digest(d), *d))
            .collect();
        let mut newest: HashMap<&str, u64> = HashMap::new();
        let nodes = match bucket.list_dirs("nodes/") {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the cluster's nodes to learn the newest state versions");
                return;
            }
        };
        for node in nodes {
            let Some(keys) = node_keys(&node) else {
                continue;
            };
            let peer = tv_store::cluster::node_objects(bucket, &node)
                .and_then(|o| tv_store::txlog::PeerLog::open(o, "log/"));
            let peer = match peer {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "no log to learn state versions from");
                    continue;
                }
            };
            if let Err(e) = tv_tlog::policy::verify_checkpoint(
                peer.note(),
                &keys,
                tv_tlog::policy::Policy::Both,
            ) {
                tracing::warn!(node = %node, error = %e, "a node's checkpoint does not verify under the cluster's keys; its state anchors are not used");
                continue;
            }
            let mut found: HashMap<&str, u64> = HashMap::new();
            peer.scan_back(REANCHOR_ENTRIES * 2, &mut |_, e| {
                if let Ok(tv_tlog::leaf::Leaf::State(st)) = tv_tlog::leaf::Leaf::parse(e)
                    && let Some(d) = wanted.get(&st.name_digest)
                {
                    let g = found.entry(d).or_insert(0);
                    *g = (*g).max(st.generation);
                }
                found.len() < wanted.len()
            });
            for (d, g) in found {
                let n = newest.entry(d).or_insert(0);
                *n = (*n).max(g);
            }
        }
        if !newest.is_empty() {
            tracing::info!(generations = ?newest, "this node has not read the cluster's state documents before: it holds them to the newest versions the nodes' logs anchor");
        }
        for (d, g) in newest {
            self.saw(d, g);
        }
    }

    /// Anchors a document this node read, when it has not anchored that version lately (see
    /// [`Self::learn`]).
    fn reanchor(&self, name: &str, generation: u64, sealed: &[u8]) {
        let len = self.log.get().map_or(0, |l| l.len());
        let due = match self
            .anchored
            .lock()
            .expect("anchored lock poisoned")
            .get(name)
        {
            None => true,
            Some((g, at, at_len)) => {
                *g < generation
                    || at.elapsed() >= REANCHOR_EVERY
                    || len.saturating_sub(*at_len) >= REANCHOR_ENTRIES
            }
        };
        if due {
            self.anchor(name, generation, sealed);
        }
    }

    fn anchor(&self, name: &str, generation: u64, sealed: &[u8]) {
        self.anchored
            .lock()
            .expect("anchored lock poisoned")
            .insert(
                name.to_owned(),
                (
                    generation,
                    std::time::Instant::now(),
                    self.log.get().map_or(0, |l| l.len()),
                ),
            );
        let leaf = tv_tlog::leaf::Leaf::State(tv_tlog::leaf::StateLeaf {
            written_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            name_digest: tv_tlog::leaf::state_name_digest(name),
            generation,
            object_sha256: tv_tlog::commit::sha256(sealed),
        })
        .encode();
        // Under the pending lock, so a leaf is either queued before the log is attached (and
        // pushed by `attach`) or pushed after.
        let mut pending = self.pending.lock().expect("pending lock poisoned");
        match self.log.get() {
            Some(log) => {
                drop(pending);
                log.push(leaf);
            }
            None => pending.push(leaf),
        }
    }

    /// Anchors from now on in `log` (the node's transparency log), first what waited for it.
    pub fn attach(&self, log: Arc<tv_store::txlog::TxLog>) {
        let mut pending = self.pending.lock().expect("pending lock poisoned");
        for leaf in std::mem::take(&mut *pending) {
            log.push(leaf);
        }
        let _ = self.log.set(log);
    }
}

/// A state document as stored: its generation (None: not one).
pub fn state_generation(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 14 || &bytes[..6] != STATE_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(bytes[6..14].try_into().ok()?))
}

/// The tenant key files in the bucket (`cluster/keys/tenants/<tenant>/<file>`), as on disk:
/// wrapped by the root, so the bucket holds no usable key. Each is created once; a node that
/// made one second takes the first (see `Keyring::share_with`).
pub struct BucketKeys {
    bucket: SharedObjects,
}

impl BucketKeys {
    pub fn new(bucket: SharedObjects) -> Self {
        BucketKeys { bucket }
    }

    fn key(rel: &str) -> String {
        format!("cluster/keys/tenants/{rel}")
    }
}

impl tv_crypto::KeyShare for BucketKeys {
    fn create(&self, rel: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let key = Self::key(rel);
        match self
            .bucket
            .put(&key, bytes, tv_store::objects::PutMode::Create)
        {
            Ok(_) => Ok(bytes.to_vec()),
            Err(ObjectError::AlreadyExists(_)) => self
                .bucket
                .get(&key)
                .map(|(b, _)| b)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, String> {
        match self.bucket.get(&Self::key(rel)) {
            Ok((b, _)) => Ok(Some(b)),
            Err(ObjectError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn list(&self, tenant: &str) -> Result<Vec<String>, String> {
        let prefix = Self::key(&format!("{tenant}/"));
        Ok(self
            .bucket
            .list(&prefix)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    fn remove(&self, tenant: &str) -> Result<(), String> {
        let prefix = Self::key(&format!("{tenant}/"));
        for o in self.bucket.list(&prefix).map_err(|e| e.to_string())? {
            self.bucket.delete(&o.key).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn replace(&self, rel: &str, expected: &[u8], bytes: &[u8]) -> Result<bool, String> {
        let key = Self::key(rel);
        let (held, meta) = match self.bucket.get(&key) {
            Ok(r) => r,
            Err(ObjectError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        if held != expected {
            return Ok(false);
        }
        match self.bucket.put(
            &key,
            bytes,
            tv_store::objects::PutMode::IfMatch(meta.version),
        ) {
            Ok(_) => Ok(true),
            Err(ObjectError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn describe(&self) -> String {
        format!("{}/cluster/keys", self.bucket.describe())
    }
}
