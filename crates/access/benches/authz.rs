//! Authorization decisions per second with the built-in Cedar policies: cached (the path every
//! request takes once a credential has been seen) and uncached (a fresh Cedar evaluation).
//! `cargo bench -p tv-access`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tv_access::{Action, Credential, PolicyEngine, Principal, Role, TenantScope};
use tv_model::TenantId;

fn principal() -> Principal {
    Principal {
        name: "checkout-writer".into(),
        credential: Credential::ApiToken {
            id: "0011223344556677".into(),
        },
        role: Role::Ingest,
        tenants: TenantScope::Only(vec![TenantId::parse("acme").unwrap()]),
        services: vec!["checkout".into(), "cart".into()],
    }
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::new(&[]).unwrap();
    let p = principal();
    let tenant = TenantId::parse("acme").unwrap();
    let mut g = c.benchmark_group("authorize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cached_ingest", |b| {
        b.iter(|| engine.authorize(&p, Action::Ingest, &tenant, &["checkout"]))
    });
    let services = vec!["checkout".to_string()];
    g.bench_function("uncached_ingest", |b| {
        b.iter(|| engine.decide(&p, Action::Ingest, &tenant, &services))
    });
    g.bench_function("uncached_search_denied", |b| {
        b.iter(|| engine.decide(&p, Action::Search, &tenant, &[]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
