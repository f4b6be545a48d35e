//! Detectors for structured identifiers in free text: candidates are found by regular expressions,
//! then validated (Luhn and issuer prefixes for cards, ISO 13616 mod-97 and country lengths for
//! IBANs, the SSA's never-issued ranges for US SSNs, real address parsing for IPv4 and IPv6, RFC 5321
//! shape rules for email addresses). Offsets are byte offsets into the scanned text.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    CreditCard,
    Iban,
    UsSsn,
    IpAddress,
}

impl Kind {
    /// The name used in rules, reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::UsSsn => "us_ssn",
            Kind::IpAddress => "ip_address",
        }
    }

    pub const ALL: [Kind; 5] = [
        Kind::Email,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::IpAddress,
    ];
}

/// A validated match: `text[start..end]` is a `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

struct Patterns {
    email: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("detector patterns compile");
        Patterns {
            // Local part and domain per RFC 5321's common form; validated further below.
            email: re(r"(?i)[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"),
            // 12 to 19 digits, optionally grouped by single spaces or dashes.
            card: re(r"\d(?:[ -]?\d){11,18}"),
            // Country code, check digits, 11 to 30 alphanumerics, optionally grouped by spaces.
            iban: re(r"(?i)[a-z]{2}\d{2}(?: ?[a-z0-9]){11,30}"),
            ssn: re(r"\d{3}([- ]?)\d{2}([- ]?)\d{4}"),
            ipv4: re(r"\d{1,3}(?:\.\d{1,3}){3}"),
            ipv6: re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:(?::|\.)\d{1,3}(?:\.\d{1,3}){0,3})?"),
        }
    })
}

/// Whether the bytes just outside `start..end` continue a word (a match inside a longer token is
/// not an identifier of its own).
fn bounded(text: &str, start: usize, end: usize, extra: &[u8]) -> bool {
    let b = text.as_bytes();
    let joins = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || extra.contains(&c);
    (start == 0 || !joins(b[start - 1])) && (end == b.len() || !joins(b[end]))
}

/// The Luhn checksum over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Whether `digits` starts with a known issuer prefix and has a length that issuer uses.
pub fn card_issuer(digits: &[u8]) -> bool {
    let n = digits.len();
    let p = |k: usize| -> u32 {
        std::str::from_utf8(&digits[..k.min(n)])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let (p1, p2, p3, p4) = (p(1), p(2), p(3), p(4));
    match p1 {
        // Visa
        4 => matches!(n, 13 | 16 | 19),
        // Mastercard 51-55 and 2221-2720; JCB's 15-digit 2131
        5 if (51..=55).contains(&p2) => n == 16,
        2 if (2221..=2720).contains(&p4) => n == 16,
        2 if p4 == 2131 => n == 15,
        // Amex
        3 if p2 == 34 || p2 == 37 => n == 15,
        // Diners Club
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&n)
        }
        // JCB (3528-3589 assigned; generators and some issuers use all of 35xx)
        3 if p2 == 35 => (16..=19).contains(&n),
        1 if p4 == 1800 => n == 15,
        // Discover, UnionPay, Maestro
        6 if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) => (16..=19).contains(&n),
        6 if p2 == 62 => (16..=19).contains(&n),
        // Maestro: 50, 56-58, 639, 67 (ISO/IEC 7812 ranges in use), 12 to 19 digits
        5 if p2 == 50 || (56..=58).contains(&p2) => (12..=19).contains(&n),
        6 if p3 == 639 || p2 == 67 || p4 == 6304 => (12..=19).contains(&n),
        _ => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "BY" => 28,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IQ" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LC" => 32,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SC" => 31,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "ST" => 25,
        "SV" => 28,
        "TL" => 23,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VA" => 22,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// ISO 13616 / ISO 7064 mod-97-10 over an IBAN without separators, with the country's length.
pub fn iban_valid(compact: &str) -> bool {
    let up = compact.to_ascii_uppercase();
    if up.len() < 5 || !up.is_ascii() || iban_length(&up[..2]) != Some(up.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &up[4..], &up[..4]);
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US SSN outside the ranges the SSA never issues: area 000, 666 and 900-999, group 00,
/// serial 0000.
pub fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn email_valid(m: &str) -> bool {
    let Some((local, domain)) = m.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.len() <= 253
        && domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()))
}

/// Finds every validated identifier in `text`, in order of position; overlapping findings keep
/// the first (longest at equal starts).
pub fn scan(text: &str) -> Vec<Finding> {
    let p = patterns();
    let mut out = Vec::new();
    for m in p.email.find_iter(text) {
        // Trim trailing dots a sentence adds ("write to a@b.com.").
        let s = m.as_str().trim_end_matches('.');
        let (start, end) = (m.start(), m.start() + s.len());
        if email_valid(s) && bounded(text, start, end, b"@") {
            out.push(Finding {
                kind: Kind::Email,
                start,
                end,
            });
        }
    }
    for m in p.card.find_iter(text) {
        let digits: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
        if bounded(text, m.start(), m.end(), b"") && luhn(&digits) && card_issuer(&digits) {
            out.push(Finding {
                kind: Kind::CreditCard,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    for m in p.iban.find_iter(text) {
        // The regex is greedy over grouped characters; try the longest valid prefix.
        let s = m.as_str();
        let mut best = None;
        let mut compact = String::new();
        for (i, c) in s.char_indices() {
            if c != ' ' {
                compact.push(c);
                if iban_valid(&compact) {
                    best = Some(i + c.len_utf8());
                }
            }
        }
        if let Some(len) = best
            && bounded(text, m.start(), m.start() + len, b"")
        {
            out.push(Finding {
                kind: Kind::Iban,
                start: m.start(),
                end: m.start() + len,
            });
        }
    }
    for c in p.ssn.captures_iter(text) {
        let m = c.get(0).expect("whole match");
        // Both separators the same (none, dash or space).
        if c.get(1).map(|x| x.as_str()) != c.get(2).map(|x| x.as_str()) {
            continue;
        }
        let d: Vec<u32> = m
            .as_str()
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| (b - b'0') as u32)
            .collect();
        let area = d[0] * 100 + d[1] * 10 + d[2];
        let group = d[3] * 10 + d[4];
        let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
        if ssn_valid(area, group, serial) && bounded(text, m.start(), m.end(), b"-.") {
            out.push(Finding {
                kind: Kind::UsSsn,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    for m in p.ipv4.find_iter(text) {
        if m.as_str().parse::<Ipv4Addr>().is_ok() && bounded(text, m.start(), m.end(), b".") {
            out.push(Finding {
                kind: Kind::IpAddress,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    for m in p.ipv6.find_iter(text) {
        let s = m.as_str();
        if s.matches(':').count() >= 2
            && s.parse::<Ipv6Addr>().is_ok()
            && bounded(text, m.start(), m.end(), b":")
        {
            out.push(Finding {
                kind: Kind::IpAddress,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    out.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut kept: Vec<Finding> = Vec::with_capacity(out.len());
    for f in out {
        if kept.last().is_none_or(|k| f.start >= k.end) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        scan(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn validators_follow_their_standards() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(card_issuer(b"4111111111111111"));
        assert!(card_issuer(b"378282246310005"));
        assert!(!card_issuer(b"9111111111111111"));
        // ISO 13616's own example, and one digit off.
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("gb82west12345698765432"));
        assert!(!iban_valid("GB82WEST12345698765433"));
        assert!(!iban_valid("GB82WEST1234569876543"));
        assert!(ssn_valid(123, 45, 6789));
        for (a, g, s) in [
            (0, 45, 6789),
            (666, 45, 6789),
            (900, 45, 6789),
            (123, 0, 6789),
            (123, 45, 0),
        ] {
            assert!(!ssn_valid(a, g, s));
        }
    }

    #[test]
    fn finds_validated_identifiers_in_text() {
        let t = "card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32, ssn 123-45-6789, \
                 mail jane.doe@example.co.uk, from 10.1.2.3 and 2001:db8::8a2e:370:7334.";
        assert_eq!(
            kinds(t),
            vec![
                (Kind::CreditCard, "4111 1111 1111 1111"),
                (Kind::Iban, "GB82 WEST 1234 5698 7654 32"),
                (Kind::UsSsn, "123-45-6789"),
                (Kind::Email, "jane.doe@example.co.uk"),
                (Kind::IpAddress, "10.1.2.3"),
                (Kind::IpAddress, "2001:db8::8a2e:370:7334"),
            ]
        );
    }

    #[test]
    fn look_alikes_are_not_findings() {
        for t in [
            "order 4111111111111112 shipped",         // Luhn fails
            "version 1.2.3.4.5",                      // not an address
            "999.1.1.1",                              // octet out of range
            "ssn 666-12-3456",                        // never issued
            "12:30:45 elapsed",                       // a time, not IPv6
            "trace 4bf92f3577b34da6a3ce929d0e0e4736", // hex id
            "user@localhost",                         // no TLD
            "GB82WEST12345698765433",                 // mod-97 fails
            "123-45 6789",                            // mixed separators
        ] {
            assert!(scan(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }
}
