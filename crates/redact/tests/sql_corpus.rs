//! SQL scrubbing on the benign development corpus `../shared/evaldata/sqlglot-benign-sql` (MIT,
//! sqlglot test fixtures; see its README): every statement keeps its keywords and identifiers in
//! order (readable), keeps no literal, and scrubbing twice changes nothing.

mod common;

use common::evaldata;
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use tv_redact::sql::scrub;

fn statements(dir: &std::path::Path) -> Vec<String> {
    let f = dir.join("sqlglot-benign-sql/tests/fixtures");
    let mut out: Vec<String> = std::fs::read_to_string(f.join("identity.sql"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for file in ["optimizer/tpc-h/tpc-h.sql", "optimizer/tpc-ds/tpc-ds.sql"] {
        let text = std::fs::read_to_string(f.join(file)).unwrap();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        out.extend(
            body.split(";\n")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    out
}

fn tokens(s: &str) -> Option<Vec<Token>> {
    Tokenizer::new(&GenericDialect {}, s).tokenize().ok()
}

fn words(ts: &[Token]) -> Vec<String> {
    ts.iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn benign_sql_stays_readable_and_keeps_no_literal() {
    let Some(dir) = evaldata() else { return };
    let all = statements(&dir);
    assert!(all.len() > 1000, "corpus has {} statements", all.len());
    let mut tokenized = 0;
    let mut with_literals = 0;
    let mut problems = Vec::new();
    for q in &all {
        let s = scrub(q);
        if scrub(&s.text).text != s.text {
            problems.push(format!("not idempotent: {q}"));
        }
        if !s.tokenized {
            // Conservative: no digit and no quote survives.
            if s.text.contains(['\'', '"']) {
                problems.push(format!("fallback kept a quote: {q}"));
            }
            continue;
        }
        tokenized += 1;
        let before = tokens(q).expect("it tokenized once");
        let after = match tokens(&s.text) {
            Some(t) => t,
            None => {
                problems.push(format!(
                    "scrubbed text does not tokenize: {q} -> {}",
                    s.text
                ));
                continue;
            }
        };
        if words(&before) != words(&after) {
            problems.push(format!(
                "keywords or identifiers changed: {q} -> {}",
                s.text
            ));
        }
        if s.replaced > 0 {
            with_literals += 1;
        }
        if let Some(t) = after.iter().find(|t| {
            matches!(
                t,
                Token::Number(..)
                    | Token::SingleQuotedString(_)
                    | Token::NationalStringLiteral(_)
                    | Token::EscapedStringLiteral(_)
                    | Token::HexStringLiteral(_)
                    | Token::DollarQuotedString(_)
            )
        }) {
            problems.push(format!("literal {t} survived: {q} -> {}", s.text));
        }
    }
    println!(
        "{} statements: {tokenized} tokenized ({:.1} %), {} by the conservative fallback, {with_literals} had literals or comments replaced",
        all.len(),
        tokenized as f64 * 100.0 / all.len() as f64,
        all.len() - tokenized
    );
    assert!(
        problems.is_empty(),
        "{} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert!(
        tokenized as f64 >= 0.95 * all.len() as f64,
        "only {tokenized} of {} statements tokenized",
        all.len()
    );
}
