//! Objects in an S3-compatible bucket (or GCS, or Azure Blob Storage), through the
//! `object_store` crate: create-only puts are `If-None-Match: *`, pointer updates `If-Match`.
//!
//! The seam is synchronous (the store's threads are plain threads, queries run on blocking
//! threads); this side owns a small runtime and waits on it with a channel, so it may be called
//! from any thread, and bounds every operation by a deadline of its own besides the HTTP
//! client's timeouts (a stopped server accepts connections and answers nothing).

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutOptions, PutPayload};

use super::{ObjectError, ObjectMeta, Objects, PutMode, check_key};

/// How to reach a bucket: its URL and the settings `object_store` reads (the environment's
/// `AWS_*`, `GOOGLE_*`, `AZURE_*` variables first, then these, by `object_store`'s own names).
#[derive(Clone, Default)]
pub struct RemoteConfig {
    /// `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`.
    pub url: String,
    /// Extra settings (e.g. `aws_endpoint_url`, `aws_region`), after the environment's.
    pub options: Vec<(String, String)>,
    /// One HTTP request's limit (connect, send, answer).
    pub request_timeout: Duration,
    /// One operation's limit, retries included.
    pub deadline: Duration,
    /// Whether to read `AWS_*` (etc.) from the process environment.
    pub from_env: bool,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold credentials: only their names are shown.
        let names: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("options", &names)
            .field("request_timeout", &self.request_timeout)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl RemoteConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            options: Vec::new(),
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            from_env: true,
        }
    }
}

/// A bucket behind the seam. Keys are placed under the URL's prefix.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    deadline: Duration,
    /// Taken out on drop, which must not block (it may happen on an async thread).
    rt: Option<tokio::runtime::Runtime>,
    /// Whether requests go over plain HTTP (a loopback test server only).
    pub plain_http: bool,
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// Why a bucket URL or its settings were refused.
#[derive(Debug, thiserror::Error)]
#[error("object store {url}: {why}")]
pub struct RemoteConfigError {
    pub url: String,
    pub why: String,
}

fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Whether an endpoint URL names this machine.
fn is_loopback_endpoint(endpoint: &str) -> bool {
    match url::Url::parse(endpoint) {
        Ok(u) => match u.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        Err(_) => false,
    }
}

impl Remote {
    /// Connects (lazily: no request is made here) to the bucket `cfg.url` names.
    pub fn open(cfg: &RemoteConfig) -> Result<Remote, RemoteConfigError> {
        let fail = |why: String| RemoteConfigError {
            url: cfg.url.clone(),
            why,
        };
        let url = url::Url::parse(&cfg.url).map_err(|e| {
            fail(format!(
                "not a URL ({e}); expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
            ))
        })?;
        let (scheme, path) =
            ObjectStoreScheme::parse(&url).map_err(|e| fail(format!("unrecognised URL: {e}")))?;
        // Settings: the environment's, then the config's (later ones win), as object_store names
        // them; our timeouts unless the operator set theirs.
        let mut settings: Vec<(String, String)> = Vec::new();
        if cfg.from_env {
            for (k, v) in std::env::vars() {
                let lk = k.to_ascii_lowercase();
                if ["aws_", "google_", "azure_"]
                    .iter()
                    .any(|p| lk.starts_with(p))
                {
                    settings.push((lk, v));
                }
            }
        }
        settings.extend(
            cfg.options
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        let has = |settings: &[(String, String)], names: &[&str]| {
            settings.iter().any(|(k, _)| names.contains(&k.as_str()))
        };
        if !has(
            &settings,
            &["timeout", "aws_timeout", "google_timeout", "azure_timeout"],
        ) {
            settings.push((
                "timeout".into(),
                format!("{}ms", cfg.request_timeout.as_millis()),
            ));
        }
        if !has(&settings, &["connect_timeout", "aws_connect_timeout"]) {
            settings.push(("connect_timeout".into(), "5s".into()));
        }
        let get = |names: &[&str]| {
            settings
                .iter()
                .rev()
                .find(|(k, _)| names.contains(&k.as_str()))
                .map(|(_, v)| v.clone())
        };
        let allow_http = get(&[
            "aws_allow_http",
            "allow_http",
            "google_allow_http",
            "azure_allow_http",
        ])
        .is_some_and(|v| is_true(&v));
        let endpoint = get(&[
            "aws_endpoint_url",
            "aws_endpoint",
            "endpoint_url",
            "endpoint",
            "aws_endpoint_url_s3",
        ]);
        let plain_http = allow_http
            && endpoint
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
        if plain_http && !endpoint.as_deref().is_some_and(is_loopback_endpoint) {
            return Err(fail(
                "AWS_ALLOW_HTTP is for a test server on this machine only: the endpoint must be \
                 https://, or http:// on 127.0.0.1, ::1 or localhost"
                    .into(),
            ));
        }
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: cfg.deadline,
            ..Default::default()
        };
        macro_rules! build {
            ($builder:ty) => {{
                let mut b = <$builder>::new().with_url(url.to_string());
                for (k, v) in &settings {
                    if let Ok(key) = k.parse() {
                        b = b.with_config(key, v.clone());
                    }
                }
                let s: Arc<dyn ObjectStore> = Arc::new(
                    b.with_retry(retry)
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                );
                s
            }};
        }
        let store = match scheme {
            ObjectStoreScheme::AmazonS3 => build!(object_store::aws::AmazonS3Builder),
            ObjectStoreScheme::GoogleCloudStorage => {
                build!(object_store::gcp::GoogleCloudStorageBuilder)
            }
            ObjectStoreScheme::MicrosoftAzure => build!(object_store::azure::MicrosoftAzureBuilder),
            other => {
                return Err(fail(format!(
                    "{other:?} is not an object store tracevault writes to; use s3://, gs:// or az://"
                )));
            }
        };
        let prefix = path.as_ref().trim_matches('/').to_owned();
        if !prefix.is_empty() {
            check_key(&prefix).map_err(|e| fail(format!("prefix: {e}")))?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tv-objects")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the object store's runtime: {e}")))?;
        Ok(Remote {
            store,
            prefix,
            url: cfg.url.clone(),
            deadline: cfg.deadline,
            rt: Some(rt),
            plain_http,
        })
    }

    /// The bucket URL this reaches.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Result<StorePath, ObjectError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.prefix))
        })
    }

    /// The store path of directory `dir` (checked, possibly empty) under the prefix; `None`
    /// for the bucket's root.
    fn dir_path(&self, dir: &str) -> Option<StorePath> {
        match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(StorePath::from(dir)),
            (false, true) => Some(StorePath::from(self.prefix.as_str())),
            (false, false) => Some(StorePath::from(format!("{}/{dir}", self.prefix))),
        }
    }

    fn key_of(&self, p: &StorePath) -> String {
        let s = p.as_ref();
        if self.prefix.is_empty() {
            s.to_owned()
        } else {
            s.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(s)
                .to_owned()
        }
    }

    /// Runs `fut` on the runtime and waits for it (from any thread), within the deadline.
    fn run<T: Send + 'static>(
        &self,
        key: &str,
        fut: impl Future<Output = Result<T, object_store::Error>> + Send + 'static,
    ) -> Result<T, ObjectError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let deadline = self.deadline;
        let rt = self.rt.as_ref().expect("runtime present until drop");
        rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(deadline, fut).await);
        });
        match rx.recv() {
            Ok(Ok(r)) => r.map_err(|e| map_err(key, e)),
            Ok(Err(_)) => Err(ObjectError::Unavailable {
                key: key.to_owned(),
                reason: format!("no answer within {} s", deadline.as_secs()),
            }),
            Err(_) => Err(ObjectError::Unavailable {
                key: key.to_owned(),
                reason: "the object store's runtime stopped".into(),
            }),
        }
    }

    /// Whether the object under `key` holds exactly `data` (resolving a write whose answer was
    /// lost: a retried create-only put that finds its own first attempt).
    fn holds(&self, key: &str, data: &[u8]) -> Option<ObjectMeta> {
        match self.get(key) {
            Ok((cur, meta)) if cur == data => Some(meta),
            _ => None,
        }
    }
}

fn map_err(key: &str, e: object_store::Error) -> ObjectError {
    let key = key.to_owned();
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound(key),
        object_store::Error::AlreadyExists { .. } => ObjectError::AlreadyExists(key),
        object_store::Error::Precondition { .. } => ObjectError::Conflict {
            key,
            expected: String::new(),
        },
        e @ (object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }) => ObjectError::Denied {
            key,
            reason: e.to_string(),
        },
        e => {
            let reason = e.to_string();
            if reason.contains("NoSuchBucket") {
                ObjectError::Denied {
                    key,
                    reason: "the bucket does not exist (NoSuchBucket)".into(),
                }
            } else if reason.contains("InvalidAccessKeyId")
                || reason.contains("SignatureDoesNotMatch")
                || reason.contains("AccessDenied")
            {
                ObjectError::Denied { key, reason }
            } else {
                ObjectError::Unavailable { key, reason }
            }
        }
    }
}

fn meta_of(key: String, m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        key,
        size: m.size,
        version: m.e_tag.clone().unwrap_or_default(),
    }
}

impl Objects for Remote {
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta, ObjectError> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode: match &mode {
                PutMode::Create => object_store::PutMode::Create,
                PutMode::IfMatch(v) => object_store::PutMode::Update(object_store::UpdateVersion {
                    e_tag: Some(v.clone()),
                    version: None,
                }),
            },
            ..Default::default()
        };
        let store = self.store.clone();
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        let r = self.run(
            key,
            async move { store.put_opts(&path, payload, opts).await },
        );
        match r {
            Ok(res) => Ok(ObjectMeta {
                key: key.to_owned(),
                size: data.len() as u64,
                version: res.e_tag.unwrap_or_default(),
            }),
            // A retry after a lost answer finds the first attempt's object: ours if it holds
            // exactly these bytes (blocks and pointers carry nonces or generations, so another
            // writer's object never does).
            Err(ObjectError::AlreadyExists(k)) => {
                self.holds(key, data).ok_or(ObjectError::AlreadyExists(k))
            }
            Err(ObjectError::Conflict { key: k, .. }) => match self.holds(key, data) {
                Some(m) => Ok(m),
                None => match self.head(key)? {
                    None => Err(ObjectError::NotFound(k)),
                    Some(_) => Err(ObjectError::Conflict {
                        key: k,
                        expected: match mode {
                            PutMode::IfMatch(v) => v,
                            PutMode::Create => String::new(),
                        },
                    }),
                },
            },
            Err(e) => Err(e),
        }
    }

    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let (data, meta) = self.run(key, async move {
            let r = store.get(&path).await?;
            let meta = r.meta.clone();
            let data = r.bytes().await?;
            Ok((data, meta))
        })?;
        Ok((data.to_vec(), meta_of(key.to_owned(), &meta)))
    }

    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let path = self.path(key)?;
        if range.start > range.end {
            return Err(ObjectError::Range {
                key: key.to_owned(),
                start: range.start,
                end: range.end,
                size: 0,
            });
        }
        if range.start == range.end {
            // S3 has no empty range; the object must still exist and be long enough.
            let meta = self
                .head(key)?
                .ok_or(ObjectError::NotFound(key.to_owned()))?;
            if range.end > meta.size {
                return Err(ObjectError::Range {
                    key: key.to_owned(),
                    start: range.start,
                    end: range.end,
                    size: meta.size,
                });
            }
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        let r = range.clone();
        let data = self.run(key, async move { store.get_range(&path, r).await })?;
        if data.len() as u64 != range.end - range.start {
            // S3 answers a range past the end with what there is: the seam refuses it.
            let size = self.head(key)?.map_or(0, |m| m.size);
            return Err(ObjectError::Range {
                key: key.to_owned(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        Ok(data.to_vec())
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        match self.run(key, async move { store.head(&path).await }) {
            Ok(m) => Ok(Some(meta_of(key.to_owned(), &m))),
            Err(ObjectError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        // object_store lists by whole path segments: list the directory the prefix's complete
        // segments name, then keep the keys that start with the prefix.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !dir_part.is_empty() {
            check_key(dir_part)?;
        }
        let full = self.dir_path(dir_part);
        let store = self.store.clone();
        let metas: Vec<object_store::ObjectMeta> = self.run(prefix, async move {
            store.list(full.as_ref()).try_collect().await
        })?;
        let mut out: Vec<ObjectMeta> = metas
            .iter()
            .map(|m| meta_of(self.key_of(&m.location), m))
            .filter(|m| m.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let dir = prefix.trim_end_matches('/');
        if !dir.is_empty() {
            check_key(dir)?;
        }
        let full = self.dir_path(dir);
        let store = self.store.clone();
        let r = self.run(prefix, async move {
            store.list_with_delimiter(full.as_ref()).await
        })?;
        let mut out: Vec<String> = r
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        match self.run(key, async move { store.delete(&path).await }) {
            Ok(()) | Err(ObjectError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
