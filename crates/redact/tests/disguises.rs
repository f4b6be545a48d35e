//! Disguised values (issue 17: at least 80% redacted). Personal data and secrets, each hidden the
//! ways smuggling hides them (base64, hex, percent-encoding, HTML entities, zero-width characters
//! inside, full-width digits and letters, and a few combinations), are put in a sentence and run
//! through the engine as attribute values. A case counts when neither the plain value nor its
//! disguised form survives. Prints recall per disguise and per kind.

use std::collections::BTreeMap;

use base64::Engine as _;

mod generate;
use generate::{kv, redact_attributes};

/// (kind, plain value): documentation and test values, none real.
const VALUES: &[(&str, &str)] = &[
    ("email", "jane.doe@example.com"),
    ("email", "ops-team+alerts@example.org"),
    ("card", "4111111111111111"),
    ("card", "5555555555554444"),
    ("phone", "+14155550132"),
    ("ssn", "SSN 123-45-6789"),
    ("iban", "GB82WEST12345698765432"),
    ("ip", "203.0.113.77"),
    ("secret", "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"),
    ("secret", "password=Tr0ub4dor&3xyz"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
];

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
fn entities(s: &str) -> String {
    s.chars().map(|c| format!("&#{};", c as u32)).collect()
}
fn zero_width(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && i % 3 == 0 {
            out.push('\u{200b}');
        }
        out.push(c);
    }
    out
}
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// (disguise name, function).
type Disguise = (&'static str, fn(&str) -> String);

const DISGUISES: &[Disguise] = &[
    ("base64", |s| {
        base64::engine::general_purpose::STANDARD.encode(s)
    }),
    ("base64url", |s| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }),
    ("hex", |s| hex::encode(s)),
    ("percent", percent),
    ("html entities", entities),
    ("zero-width", zero_width),
    ("full-width", full_width),
    ("soft hyphens", |s| {
        s.chars()
            .flat_map(|c| [c, '\u{ad}'])
            .collect::<String>()
            .trim_end_matches('\u{ad}')
            .to_string()
    }),
    ("percent of base64", |s| {
        percent(&base64::engine::general_purpose::STANDARD.encode(s))
    }),
];

#[test]
fn disguised_values_are_redacted() {
    let mut cases = Vec::new();
    for (name, f) in DISGUISES {
        for (kind, plain) in VALUES {
            cases.push((*name, *kind, *plain, f(plain)));
        }
    }
    let attrs = redact_attributes(
        "uploads",
        cases
            .iter()
            .map(|(_, _, _, d)| kv("app.note", &format!("payload {d} attached")))
            .collect(),
    );
    let mut by_disguise: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    let mut by_kind: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    let mut missed = Vec::new();
    for (i, (name, kind, plain, disguised)) in cases.iter().enumerate() {
        let after = tv_model::any_value_to_string(attrs[i].value.as_ref().unwrap());
        let ok = !after.contains(disguised.as_str()) && !after.contains(plain);
        for (m, k) in [(&mut by_disguise, *name), (&mut by_kind, *kind)] {
            let e = m.entry(k).or_default();
            e[0] += 1;
            e[1] += ok as usize;
        }
        if !ok {
            missed.push(format!("{name} {kind} {plain}: {after}"));
        }
    }
    let total = cases.len();
    let hit = total - missed.len();
    for (title, m) in [("disguise", &by_disguise), ("kind", &by_kind)] {
        println!("{title:<20} {:>6} {:>8}", "cases", "recall");
        for (k, [n, h]) in m.iter() {
            println!("{k:<20} {n:>6} {:>7.1}%", *h as f64 * 100.0 / *n as f64);
        }
    }
    let recall = hit as f64 / total as f64;
    println!(
        "DISGUISED values redacted {hit}/{total} = {:.1}%",
        recall * 100.0
    );
    println!("missed: {missed:#?}");
    assert!(recall >= 0.80, "{:.1}% < 80%: {missed:#?}", recall * 100.0);
}
