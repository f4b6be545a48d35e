//! Development aid: libinjection SQLi fingerprints on benign inputs (libinjection's false
//! positives, ordinary query strings, prose) vs attack inputs.
use std::collections::BTreeMap;
use std::path::PathBuf;

use tv_detect::evalset;
use tv_detect::view::SpanView;

fn fps(c: &evalset::Case) -> Vec<String> {
    let rs = &c.req.resource_spans[0];
    let span = &rs.scope_spans[0].spans[0];
    let v = SpanView::new(rs.resource.as_ref(), span);
    v.inputs()
        .decoded
        .iter()
        .filter_map(|s| {
            let r = libinjectionrs::detect_sqli(s.as_bytes());
            r.is_injection()
                .then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
        })
        .collect()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evaldata");
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut benign = evalset::libinjection_benign(&root.join("libinjection")).unwrap();
    benign.extend(evalset::common_params_benign());
    benign.extend(evalset::presidio_benign(&root.join("presidio-research")).unwrap());
    for c in &benign {
        for f in fps(c) {
            table.entry(f).or_default().0 += 1;
        }
    }
    let mut pos = evalset::crs(&root.join("crs-regression/tests"), &["942"]).unwrap();
    pos.extend(
        evalset::patt(&root.join("payloadsallthethings"))
            .unwrap()
            .0
            .into_iter()
            .filter(|c| c.class == "sqli"),
    );
    for c in &pos {
        let mut f = fps(c);
        f.dedup();
        for f in f {
            table.entry(f).or_default().1 += 1;
        }
    }
    for (f, (b, p)) in table.iter().filter(|(_, (b, _))| *b > 0) {
        println!("{f:8} benign {b:4} attacks {p:5}");
    }
}
