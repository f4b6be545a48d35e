//! Learned baselines shared across the nodes of a cluster: a node that merges what another node
//! learned knows the tenant's services and edges (no finding for what the cluster already saw,
//! and a finding for what it never saw, even on a node that joined after the learning window),
//! and merging is idempotent, so nodes merging each other's merged states count nothing twice.
use tv_detect::behaviour::{BatchInfo, Behaviour, BehaviourConfig, Ewma, Learned, facts};
use tv_detect::evalset::{self, NezhaSpan};
use tv_detect::finding::Finding;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;

fn config() -> BehaviourConfig {
    BehaviourConfig {
        learning_secs: 60,
        ..Default::default()
    }
}

/// One call `caller` -> `callee` at `at` (event time), in trace `n`.
fn call(b: &mut Behaviour, n: u8, caller: &str, callee: &str, at: u64) -> Vec<Finding> {
    let parent = NezhaSpan {
        trace_id: [n; 16],
        span_id: [n, 1, 0, 0, 0, 0, 0, 0],
        parent: None,
        service: caller.into(),
        pod: format!("{caller}-1"),
        operation: "GET /".into(),
        start: at,
        end: at + S / 10,
    };
    let child = NezhaSpan {
        span_id: [n, 2, 0, 0, 0, 0, 0, 0],
        parent: Some(parent.span_id),
        service: callee.into(),
        pod: format!("{callee}-1"),
        operation: "handle".into(),
        start: at + S / 100,
        end: at + S / 20,
        ..parent.clone()
    };
    let req = evalset::nezha_request(&[parent, child], 0);
    b.observe(
        BatchInfo {
            tenant: "shop",
            principal: Some("token:ingest"),
            received_unix_nano: at + S,
        },
        &facts(&req),
    )
}

fn uids(f: &[Finding]) -> Vec<&str> {
    let mut v: Vec<&str> = f.iter().map(|f| f.analytic_uid.as_str()).collect();
    v.sort();
    v
}

#[test]
fn a_node_that_merged_another_nodes_baselines_knows_what_the_cluster_learned() {
    // Node A learns the tenant during its learning window.
    let mut a = Behaviour::new(config());
    assert!(call(&mut a, 1, "frontend", "backend", T0).is_empty());
    assert!(call(&mut a, 2, "backend", "db", T0 + 10 * S).is_empty());
    let learned = a.tenants["shop"].learned.clone();

    // Node B joins after the window and has seen nothing of the tenant.
    let after = T0 + 120 * S;
    let mut b = Behaviour::new(config());
    b.tenants
        .entry("shop".into())
        .or_default()
        .learned
        .merge(&learned, 10_000);
    // What the cluster learned raises nothing on B...
    assert!(uids(&call(&mut b, 3, "frontend", "backend", after)).is_empty());
    // ...and what it never saw is flagged on B at once.
    let f = call(&mut b, 4, "frontend", "payments", after + S);
    assert_eq!(
        uids(&f),
        ["tv-behaviour-new-edge", "tv-integrity-unknown-service"],
        "{f:?}"
    );

    // Without the merge, B would still be learning (its own first span starts its window): the
    // same call raises nothing.
    let mut alone = Behaviour::new(config());
    assert!(call(&mut alone, 3, "frontend", "backend", after).is_empty());
    assert!(call(&mut alone, 4, "frontend", "payments", after + S).is_empty());
}

#[test]
fn merging_is_idempotent_and_keeps_the_better_informed_baseline() {
    let mut a = Learned {
        first_seen: 50,
        max_event: 70,
        ..Default::default()
    };
    a.services.insert("frontend".into());
    a.edges
        .entry("frontend".into())
        .or_default()
        .insert("backend".into());
    a.statement_shapes.insert("backend".into(), 1);
    a.latency.insert(
        "backend\u{1f}q".into(),
        Ewma {
            mean: 3.0,
            dev: 0.5,
            n: 40,
        },
    );
    let mut b = Learned {
        first_seen: 20,
        max_event: 60,
        ..Default::default()
    };
    b.services.insert("db".into());
    b.statement_shapes.insert("backend".into(), 2);
    b.latency.insert(
        "backend\u{1f}q".into(),
        Ewma {
            mean: 9.0,
            dev: 1.0,
            n: 5,
        },
    );
    b.errors.insert(
        "db\u{1f}x".into(),
        Ewma {
            mean: 0.1,
            dev: 0.0,
            n: 3,
        },
    );
    let mut m = a.clone();
    m.merge(&b, 10_000);
    assert_eq!(m.first_seen, 20, "the earlier learning start");
    assert_eq!(m.max_event, 70);
    assert_eq!(m.services.len(), 2);
    assert!(m.edges["frontend"].contains("backend"));
    assert_eq!(m.statement_shapes["backend"], 3, "both nodes' shapes");
    assert_eq!(
        m.latency["backend\u{1f}q"].n, 40,
        "the baseline of more windows"
    );
    assert_eq!(m.latency["backend\u{1f}q"].mean, 3.0);
    assert_eq!(
        m.errors["db\u{1f}x"].n, 3,
        "a baseline only the other node has"
    );
    // Again, and the other way round: nothing changes, nothing is counted twice.
    let once = format!("{:?}", sorted(&m));
    m.merge(&b, 10_000);
    m.merge(&a, 10_000);
    assert_eq!(format!("{:?}", sorted(&m)), once);
    let mut n = b.clone();
    n.merge(&m, 10_000);
    assert_eq!(format!("{:?}", sorted(&n)), once, "both nodes converge");
    // The cap holds.
    let mut capped = Learned::default();
    capped.merge(&m, 1);
    assert_eq!(capped.services.len(), 1);
}

/// A Learned with its maps in a stable order, for comparing.
fn sorted(l: &Learned) -> Vec<String> {
    let mut v = vec![format!("{} {}", l.first_seen, l.max_event)];
    v.extend(l.services.iter().map(|s| format!("s {s}")));
    for (c, cs) in &l.edges {
        v.extend(cs.iter().map(|x| format!("e {c} {x}")));
    }
    v.extend(l.statement_shapes.iter().map(|(k, x)| format!("q {k} {x}")));
    for (name, m) in [("l", &l.latency), ("r", &l.errors), ("f", &l.fanout)] {
        v.extend(m.iter().map(|(k, e)| format!("{name} {k} {e:?}")));
    }
    v.sort();
    v
}
