//! The priority of the store's background threads. A test binary of its own: the threads are
//! found by name in this process, so no other test's store may start or stop threads meanwhile.

mod common;
use common::*;

use tv_store::Store;

/// The nice value of each of this process's threads named `name`.
fn nice_of_threads(name: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(t.join("comm")) else {
            continue;
        };
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.join("stat")).unwrap();
        // Fields after the `(comm)`: state is field 3, nice field 19 (proc(5)).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        out.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    out
}

/// Sealing and compaction run at a lower priority (nice 10), so they take the CPU that ingest
/// leaves instead of delaying acknowledgements; the WAL writer, on the acknowledgement path, does
/// not.
#[tokio::test]
async fn background_work_runs_at_a_lower_priority() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    store
        .append(batch("a", request("svc", [9; 16], 3, "nice")))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(count(&store, "a", [9; 16]), 3, "sealed at low priority");
    for name in ["tv-sealer", "tv-compaction"] {
        let nice = nice_of_threads(name);
        assert!(!nice.is_empty(), "a {name} thread runs");
        assert!(nice.iter().all(|n| *n == 10), "{name}: {nice:?}");
    }
    let writer = nice_of_threads("tv-wal-writer");
    assert!(
        !writer.is_empty() && writer.iter().all(|n| *n == 0),
        "{writer:?}"
    );

    // `background_nice = 0` keeps the server's own priority.
    let d2 = tempfile::tempdir().unwrap();
    let mut c = cfg(d2.path());
    c.background_nice = 0;
    let other = Store::open(c, keyring(d2.path())).unwrap();
    other
        .append(batch("a", request("svc", [8; 16], 2, "nice 0")))
        .await
        .unwrap();
    other.flush().await.unwrap();
    assert_eq!(count(&other, "a", [8; 16]), 2);
    let mut nice = nice_of_threads("tv-sealer");
    nice.sort_unstable();
    assert_eq!(nice, [0, 10], "one sealer per store");
}
