//! The rule set decides which rules may fire from rules whose regex items read per-field
//! `RegexSet` answers (issue 22), then runs those rules as written. That must never miss a rule:
//! on every case of the development sets (attacks and benign traffic), the rules that fire and
//! their evidence are the same as when every rule is run as written.
use tv_detect::evalset;
use tv_detect::rules::RuleSet;
use tv_detect::view::SpanView;

#[test]
fn the_regex_index_finds_what_the_rules_as_written_find() {
    let Some(root) = evalset::dev_data(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let rules = RuleSet::builtin();
    let mut cases = evalset::crs(
        &root.join("crs-regression/tests"),
        &[
            "930", "931", "932", "933", "934", "941", "942", "943", "944",
        ],
    )
    .unwrap();
    cases.extend(evalset::patt(&root.join("payloadsallthethings")).unwrap().0);
    cases.extend(evalset::libinjection_benign(&root.join("libinjection")).unwrap());
    cases.extend(evalset::sqlglot_benign(&root.join("sqlglot-benign-sql")).unwrap());
    cases.extend(evalset::presidio_benign(&root.join("presidio-research")).unwrap());
    cases.extend(evalset::common_params_benign());
    cases.extend(evalset::ordinary_requests_benign());
    let (mut spans, mut fired) = (0, 0);
    for c in &cases {
        for rs in &c.req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let fast = SpanView::with_regexes(rs.resource.as_ref(), span, rules.regexes());
                    let all = SpanView::new(rs.resource.as_ref(), span);
                    let a: Vec<String> = rules
                        .evaluate(&fast)
                        .iter()
                        .map(|h| format!("{} {:?}", h.rule.id, h.evidence))
                        .collect();
                    let b: Vec<String> = rules
                        .evaluate(&all)
                        .iter()
                        .map(|h| format!("{} {:?}", h.rule.id, h.evidence))
                        .collect();
                    assert_eq!(a, b, "{} {}", c.set, c.group);
                    spans += 1;
                    fired += usize::from(!a.is_empty());
                }
            }
        }
    }
    println!("{spans} spans, {fired} with a rule firing: the same with and without the index");
    assert!(spans > 1000 && fired > 500, "{spans} {fired}");
}
