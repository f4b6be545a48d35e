//! Detection quality on the development sets in ../shared/evaldata (issue 7): per-category recall
//! on CRS regression positives and PayloadsAllTheThings, false-positive rate on benign SQL and
//! libinjection's known false positives. Prints the tables; asserts the thresholds.
use std::path::PathBuf;

use tv_detect::Signatures;
use tv_detect::evalset;
use tv_detect::rules::RuleSet;

fn evaldata() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evaldata");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "../shared/evaldata is missing (required under CI=true)"
    );
    eprintln!("SKIPPED: ../shared/evaldata not found at {}", p.display());
    None
}

#[test]
fn signature_quality_on_the_development_sets() {
    let Some(root) = evaldata() else { return };
    let sig = Signatures::new(RuleSet::builtin());
    assert!(sig.rules.unsupported.is_empty(), "{:?}", sig.rules.unsupported);
    let mut cases =
        evalset::crs(&root.join("crs-regression/tests"), &["930", "931", "932", "941", "942"])
            .unwrap();
    let (patt, skipped) = evalset::patt(&root.join("payloadsallthethings")).unwrap();
    cases.extend(patt);
    cases.extend(evalset::libinjection_benign(&root.join("libinjection")).unwrap());
    cases.extend(evalset::sqlglot_benign(&root.join("sqlglot-benign-sql")).unwrap());
    let report = evalset::run(&sig, &cases);
    println!("{}", report.render(true));
    for s in &skipped {
        println!("skipped: {s}");
    }
    let mut failures = Vec::new();
    for ((set, class), c) in report.by_class() {
        if class == evalset::BENIGN {
            if c.rate() > 0.01 {
                failures.push(format!("{set} benign FP rate {:.2}% > 1%", 100.0 * c.rate()));
            }
        } else if c.rate() < 0.85 {
            failures.push(format!("{set} {class} recall {:.1}% < 85%", 100.0 * c.rate()));
        }
    }
    assert!(failures.is_empty(), "quality below the thresholds:\n{}", failures.join("\n"));
}
