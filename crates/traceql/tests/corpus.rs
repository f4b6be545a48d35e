//! The TraceQL corpus (`tests/corpus.txt`, written from Tempo's documentation): valid queries
//! parse, check and print to text that parses back to the same tree; the others are refused
//! with the kind of error their group names, a message holding the expected fragment and, for
//! parse errors, a line:column. Prints a per-group table.

use std::collections::BTreeMap;

use tv_traceql::{Error, parse, parse_only};

#[test]
fn the_corpus_gets_the_expected_answer() {
    let text = include_str!("corpus.txt");
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (group, rest) = line
            .split_once(": ")
            .unwrap_or((line.trim_end_matches(':'), ""));
        let (query, fragment) = match rest.rsplit_once(" => ") {
            Some((q, f)) => (q, f.trim()),
            None => (rest, ""),
        };
        let got = parse(query);
        let ok = match (group, &got) {
            ("valid", Ok(q)) => {
                let printed = q.to_string();
                match parse_only(&printed) {
                    Ok(again) if &again == q => true,
                    other => {
                        failures.push(format!(
                            "line {}: {query:?} printed as {printed:?}, which parses to {other:?}",
                            n + 1
                        ));
                        false
                    }
                }
            }
            ("parse", Err(e @ Error::Parse { pos, .. })) => {
                pos.line >= 1 && e.to_string().contains(fragment)
            }
            ("invalid", Err(e @ Error::Invalid { .. })) => e.to_string().contains(fragment),
            ("unsupported", Err(e @ Error::Unsupported { .. })) => e.to_string().contains(fragment),
            _ => false,
        };
        let c = counts.entry(group).or_default();
        c.0 += 1;
        if ok {
            c.1 += 1;
        } else if !failures
            .iter()
            .any(|f| f.starts_with(&format!("line {}:", n + 1)))
        {
            failures.push(format!(
                "line {}: {group} {query:?} (expected {fragment:?}) got {:?}",
                n + 1,
                got.map(|q| q.to_string()).map_err(|e| e.to_string())
            ));
        }
    }
    println!(
        "TraceQL corpus (tests/corpus.txt)\n{:<10} {:>6} {:>6}",
        "group", "cases", "as expected"
    );
    for (g, (total, ok)) in &counts {
        println!("{g:<10} {total:>6} {ok:>6}");
    }
    let total: usize = counts.values().map(|c| c.0).sum();
    assert!(
        total >= 200,
        "the corpus holds {total} queries; at least 200 are wanted"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
