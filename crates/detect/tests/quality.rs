//! Detection quality on the development sets in ../shared/evaldata (issue 7): per-category recall
//! on CRS regression positives and PayloadsAllTheThings, false-positive rate on benign SQL and
//! libinjection's known false positives, plus ordinary prose (presidio's sentences, addresses
//! and questions typed into a search box) so that no rule lives off the shape of attack lists
//! alone. Prints the tables; asserts the thresholds.
use std::path::PathBuf;

use tv_detect::Signatures;
use tv_detect::evalset;
use tv_detect::rules::RuleSet;

fn evaldata() -> Option<PathBuf> {
    evalset::dev_data(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn signature_quality_on_the_development_sets() {
    let Some(root) = evaldata() else { return };
    let sig = Signatures::new(RuleSet::builtin());
    assert!(
        sig.rules.unsupported.is_empty(),
        "{:?}",
        sig.rules.unsupported
    );
    let mut cases = evalset::crs(
        &root.join("crs-regression/tests"),
        &["930", "931", "932", "941", "942"],
    )
    .unwrap();
    let (patt, skipped) = evalset::patt(&root.join("payloadsallthethings")).unwrap();
    cases.extend(patt);
    cases.extend(evalset::libinjection_benign(&root.join("libinjection")).unwrap());
    cases.extend(evalset::sqlglot_benign(&root.join("sqlglot-benign-sql")).unwrap());
    cases.extend(evalset::presidio_benign(&root.join("presidio-research")).unwrap());
    cases.extend(evalset::common_params_benign());
    cases.extend(evalset::ordinary_requests_benign());
    let report = evalset::run(&sig, &cases);
    println!("{}", report.render(true));
    for s in &skipped {
        println!("skipped: {s}");
    }
    let mut failures = Vec::new();
    for ((set, class), c) in report.by_class() {
        let rate = 100.0 * c.rate();
        if class == evalset::BENIGN {
            if rate > 1.0 {
                failures.push(format!("{set} benign FP rate {rate:.2}% > 1%"));
            }
            continue;
        }
        if rate < 85.0 {
            failures.push(format!("{set} {class} recall {rate:.1}% < 85%"));
        }
    }
    // PayloadsAllTheThings categories are its directories (Directory Traversal and File
    // Inclusion are both class lfi): each one on its own.
    for ((set, class, group), c) in &report.rows {
        if set == "patt" && class != evalset::BENIGN && 100.0 * c.rate() < 85.0 {
            failures.push(format!(
                "patt {group} recall {:.1}% < 85%",
                100.0 * c.rate()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "quality below the thresholds:\n{}",
        failures.join("\n")
    );
}
