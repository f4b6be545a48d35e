//! Detectors for structured identifiers in free text: candidates are found by regular expressions,
//! then validated (Luhn and issuer prefixes for cards, ISO 13616 mod-97 and country lengths for
//! IBANs, the SSA's never-issued ranges for US SSNs, real address parsing for IPv4 and IPv6, RFC 5321
//! shape rules for email addresses). Offsets are byte offsets into the scanned text.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

/// What a finding is. The first group is personal data, the second secrets and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    CreditCard,
    Iban,
    UsSsn,
    IpAddress,
    Phone,
    /// A JSON Web Token (header and payload decode to JSON objects).
    Jwt,
    /// The credential of a `Bearer`/`Basic`/`Token` authorization value.
    AuthHeader,
    /// The password (or token) in a URL: userinfo or a secret-named query parameter.
    UrlCredential,
    /// tracevault's own API token (`tvk_<16 hex>_<64 hex>`).
    TracevaultToken,
    AwsAccessKeyId,
    AwsSecretKey,
    GcpApiKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    PrivateKey,
    /// A token with a vendor's documented prefix (OpenAI, Hugging Face, npm, Vault, ...).
    VendorToken,
    /// A crypt(3)-style password hash (`$2a$...`, `$6$...`).
    PasswordHash,
    /// A value assigned to a secret-looking name in free text (`password=...`, `api_key: ...`).
    SecretAssignment,
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
            Kind::Phone => "phone",
            Kind::Jwt => "jwt",
            Kind::AuthHeader => "auth_header",
            Kind::UrlCredential => "url_credential",
            Kind::TracevaultToken => "tracevault_token",
            Kind::AwsAccessKeyId => "aws_access_key_id",
            Kind::AwsSecretKey => "aws_secret_key",
            Kind::GcpApiKey => "gcp_api_key",
            Kind::GithubToken => "github_token",
            Kind::GitlabToken => "gitlab_token",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::PrivateKey => "private_key",
            Kind::VendorToken => "vendor_token",
            Kind::PasswordHash => "password_hash",
            Kind::SecretAssignment => "secret_assignment",
        }
    }

    /// Whether this is a secret or credential (as opposed to personal data).
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            Kind::Email
                | Kind::CreditCard
                | Kind::Iban
                | Kind::UsSsn
                | Kind::IpAddress
                | Kind::Phone
        )
    }

    /// Parses a rule's detector name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub const ALL: [Kind; 21] = [
        Kind::Email,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::IpAddress,
        Kind::Phone,
        Kind::Jwt,
        Kind::AuthHeader,
        Kind::UrlCredential,
        Kind::TracevaultToken,
        Kind::AwsAccessKeyId,
        Kind::AwsSecretKey,
        Kind::GcpApiKey,
        Kind::GithubToken,
        Kind::GitlabToken,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::PrivateKey,
        Kind::VendorToken,
        Kind::PasswordHash,
        Kind::SecretAssignment,
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
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("detector patterns compile");
        Patterns {
            // Local part and domain per RFC 5321's common form; validated further below.
            // `/`, `=`, `?` and `&` are legal in a local part but in traces they are URL syntax
            // (`/users/jane@x.com`, `?ref=jane@x.com`); leaving them out keeps the path.
            email: re(r"(?i)[a-z0-9!#$%'*+^_`{|}~.-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"),
            // 12 to 19 digits, optionally grouped by single spaces or dashes.
            // Runs of digits grouped by single spaces or dashes; `cards_in_run` finds the cards.
            card: re(r"\d(?:[ ./-]?\d){11,}"),
            // Country code, check digits, 11 to 30 alphanumerics, optionally grouped by spaces.
            iban: re(r"(?i)[a-z]{2}\d{2}(?: ?[a-z0-9]){11,30}"),
            ssn: re(r"\d{3}[- ]?\d{2}[- ]?\d{4}"),
            ipv4: re(r"\d{1,3}(?:\.\d{1,3}){3}"),
            ipv6: re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:(?::|\.)\d{1,3}(?:\.\d{1,3}){0,3})?"),
            // Optional +country code, optional (area) or (0), groups of 2 to 5 digits separated by
            // single spaces, dots or dashes, optional extension; validated by `phone_valid`.
            phone: re(r"(?i)(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,8}){0,4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?"),
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
    sum.is_multiple_of(10)
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
        // Mir (2200-2204)
        2 if (2200..=2204).contains(&p4) => (16..=19).contains(&n),
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

/// Whether a phone-number candidate has the shape of one: 7 to 15 digits (ITU E.164) without the
/// extension, and either an international prefix, an area code in parentheses, or grouping that
/// numbering plans use (three or more groups, or a 3+4 local number). Dates (2024-11-24,
/// 24.11.2024) and bare digit runs (ids, timestamps) are not phone numbers.
fn phone_valid(m: &str) -> bool {
    let lower = m.to_ascii_lowercase();
    let main = match lower.find(['x', 'e']) {
        Some(i) => &m[..i],
        None => m,
    }
    .trim_end();
    let digits = main.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let international = main.starts_with('+');
    let paren = main.contains('(');
    let groups: Vec<&str> = main
        .split([' ', '.', '-', '(', ')', '+'])
        .filter(|g| !g.is_empty())
        .collect();
    if groups.len() == 3 {
        let l: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        // The US SSN's shape, valid or not, is not a phone number.
        if l == [3, 2, 4] && !international && !paren {
            return false;
        }
        let date_sep = main.contains(['-', '.', '/']) && !main.contains(' ');
        if date_sep && (l == [4, 2, 2] || l == [2, 2, 4]) {
            return false;
        }
    }
    // A one-digit first group: a country's area code after its prefix (`+33 1 ...`), or the
    // North American trunk prefix (`1-800-555-0199`).
    if groups.first().is_some_and(|g| g.len() == 1)
        && !international
        && !(groups[0] == "1" && main.contains('-') && groups.len() == 4)
    {
        return false;
    }
    international
        || paren
        || groups.len() >= 3
        || (groups.len() == 2 && groups[0].len() == 3 && groups[1].len() == 4)
        // A trunk prefix and area code, then the subscriber number (`030 1234567`,
        // `07700 900123`, `06-12345678`).
        || (groups.len() == 2
            && groups[0].starts_with('0')
            && (2..=5).contains(&groups[0].len())
            && (9..=12).contains(&digits))
}

/// Finds every validated identifier and secret in `text`, in order of position; overlapping
/// findings keep the first (longest at equal starts, then the more specific kind).
pub fn scan(text: &str) -> Vec<Finding> {
    // Output of an earlier redaction is blanked out (same length, so offsets hold): a label like
    // `[REDACTED:aws_access_key_id]` must not read as a secret's name, which keeps redaction
    // idempotent.
    if may_hold_redaction_output(text) {
        let spans = redaction_spans(text);
        if !spans.is_empty() {
            let mut blank = text.as_bytes().to_vec();
            for (s, e) in spans {
                blank[s..e].fill(b' ');
            }
            let blank = String::from_utf8(blank).expect("ASCII spans blanked in UTF-8 text");
            return scan_undisguised(&blank);
        }
    }
    scan_undisguised(text)
}

/// What the detectors find in `text` as written, in its plain form (percent escapes and
/// entities decoded, invisible characters dropped, compatibility forms folded: each finding
/// mapped back to the original characters), and in its long base64 or hex tokens.
fn scan_undisguised(text: &str) -> Vec<Finding> {
    let mut out = scan_text(text);
    let mut more = false;
    if crate::disguise::may_be_disguised(text) {
        let u = crate::disguise::unmask(text);
        if u.text != text {
            let mut found = scan_text(&u.text);
            // Layers: a base64 or hex token that was itself percent-encoded or entity-escaped
            // (`%4E%44%45...` is base64 of a card number).
            if u.text.len() >= 16 {
                found.extend(crate::disguise::encoded(&u.text, &scan_text));
            }
            for f in found {
                let (start, end) = u.original(f.start, f.end);
                out.push(Finding {
                    kind: f.kind,
                    start,
                    end,
                });
                more = true;
            }
        }
    }
    if text.len() >= 16 {
        let encoded = crate::disguise::encoded(text, &scan_text);
        more |= !encoded.is_empty();
        out.extend(encoded);
    }
    if more { resolve(out) } else { out }
}

/// Where earlier redaction output sits in `text`: each match of [`redaction_output`] that ends
/// at a word boundary (so `****` followed by a card's digits is not taken as a keep-last mask).
pub(crate) fn redaction_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    redaction_output()
        .find_iter(text)
        .filter(|m| b.get(m.end()).is_none_or(|c| !c.is_ascii_alphanumeric()))
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// `s` with earlier redaction output cut out.
pub(crate) fn without_redactions(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in redaction_spans(s) {
        out.push_str(&s[at..start]);
        at = end;
    }
    out.push_str(&s[at..]);
    out
}

/// What redaction writes: masks, pseudonyms, keep-last masks.
pub(crate) fn redaction_output() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"\[REDACTED:[a-z_]+\]|hmac:[0-9a-f]{16,64}|\*{4}[^\s*]{0,8}")
            .expect("pattern compiles")
    })
}

/// Cheap check before [`redaction_output`].
pub(crate) fn may_hold_redaction_output(text: &str) -> bool {
    text.contains("[REDACTED:") || text.contains("hmac:") || text.contains("****")
}

fn scan_text(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    scan_pii(text, &mut out);
    let pii = out.len();
    crate::secrets::scan_secrets(text, &mut out);
    // `user:pass@host` also reads as the address `pass@host`; the credential is what it is.
    let creds: Vec<(usize, usize)> = out[pii..]
        .iter()
        .filter(|f| f.kind == Kind::UrlCredential)
        .map(|f| (f.start, f.end))
        .collect();
    if !creds.is_empty() {
        out.retain(|f| {
            f.kind != Kind::Email || !creds.iter().any(|&(s, e)| f.start < e && s < f.end)
        });
    }
    resolve(out)
}

/// Merges overlapping findings into one covering both, so that everything any detector found is
/// redacted. The merged finding keeps a secret kind over personal data (a token in URL userinfo
/// also reads as an email address), else the kind of the longer match, else the kind listed first
/// in [`Kind`].
pub(crate) fn resolve(mut out: Vec<Finding>) -> Vec<Finding> {
    out.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end), f.kind));
    let mut kept: Vec<(Finding, usize)> = Vec::with_capacity(out.len());
    for f in out {
        match kept.last_mut() {
            Some((k, len)) if f.start < k.end => {
                let flen = f.end - f.start;
                if (f.kind.is_secret() && !k.kind.is_secret())
                    || (f.kind.is_secret() == k.kind.is_secret() && flen > *len)
                {
                    k.kind = f.kind;
                    *len = flen;
                }
                k.end = k.end.max(f.end);
            }
            _ => {
                let len = f.end - f.start;
                kept.push((f, len));
            }
        }
    }
    kept.into_iter().map(|(f, _)| f).collect()
}

/// Cards inside a run of digit groups (`4111 1111 1111 1111 4111 1111 1111 1111` is two cards):
/// from each group start, the longest span of whole groups with 12 to 19 digits that passes
/// Luhn and the issuer check; a run without separators is one candidate.
fn cards_in_run(text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
    let run = &text.as_bytes()[start..end];
    // (offset, len) of each digit group
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < run.len() {
        let g = i;
        while i < run.len() && run[i].is_ascii_digit() {
            i += 1;
        }
        groups.push((g, i - g));
        i += 1; // separator
    }
    let mut gi = 0;
    while gi < groups.len() {
        let mut found = None;
        let mut ends = Vec::new();
        let mut n = 0;
        for (gj, g) in groups.iter().enumerate().skip(gi) {
            n += g.1;
            if n > 19 {
                break;
            }
            if n >= 12 {
                ends.push(gj);
            }
        }
        for &gj in ends.iter().rev() {
            let (s, e) = (start + groups[gi].0, start + groups[gj].0 + groups[gj].1);
            let digits: Vec<u8> = text.as_bytes()[s..e]
                .iter()
                .copied()
                .filter(u8::is_ascii_digit)
                .collect();
            if bounded(text, s, e, b"") && luhn(&digits) && card_issuer(&digits) {
                found = Some((gj, s, e));
                break;
            }
        }
        match found {
            Some((gj, s, e)) => {
                out.push(Finding {
                    kind: Kind::CreditCard,
                    start: s,
                    end: e,
                });
                gi = gj + 1;
            }
            None => gi += 1,
        }
    }
}

fn scan_pii(text: &str, out: &mut Vec<Finding>) {
    let p = patterns();
    // Cheap facts first: each detector needs a minimum of digits, an `@`, dots or colons.
    let (mut digits, mut dots, mut colons, mut at) = (0usize, 0usize, 0usize, false);
    // Longest run of digits joined by single spaces or dashes (a card needs 12, an SSN 9), and
    // joined by up to two of ` .-()+/` (a phone number needs 7).
    let (mut run, mut card_run, mut prev_digit) = (0usize, 0usize, false);
    let (mut prun, mut phone_run, mut gap) = (0usize, 0usize, 0usize);
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            prun += 1;
            phone_run = phone_run.max(prun);
            gap = 0;
        } else if matches!(c, b' ' | b'.' | b'-' | b'(' | b')' | b'+' | b'/') && gap < 2 {
            gap += 1;
        } else {
            prun = 0;
            gap = 0;
        }
        match c {
            b'0'..=b'9' => {
                digits += 1;
                run += 1;
                card_run = card_run.max(run);
                prev_digit = true;
                continue;
            }
            b' ' | b'-' | b'.' | b'/'
                if prev_digit && b.get(i + 1).is_some_and(u8::is_ascii_digit) =>
            {
                // A dot between digits also counts toward an IPv4 address.
                dots += usize::from(c == b'.');
                prev_digit = false;
                continue;
            }
            b'.' => dots += 1,
            b':' => colons += 1,
            b'@' => at = true,
            _ => {}
        }
        run = 0;
        prev_digit = false;
    }
    if at {
        scan_emails(text, p, out);
    }
    if card_run >= 12 {
        for m in p.card.find_iter(text) {
            cards_in_run(text, m.start(), m.end(), out);
        }
    }
    if digits >= 2 && text.len() >= 15 && iban_candidate(b) {
        scan_ibans(text, p, out);
    }
    if card_run >= 9 {
        scan_ssns(text, p, out);
    }
    if digits >= 4 && dots >= 3 {
        for m in p.ipv4.find_iter(text) {
            if m.as_str().parse::<Ipv4Addr>().is_ok()
                && bounded(text, m.start(), m.end(), b".")
                && !version_context(text, m.start())
            {
                out.push(Finding {
                    kind: Kind::IpAddress,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
    if colons >= 2 {
        scan_ipv6(text, p, out);
    }
    if phone_run >= 7 {
        scan_phones(text, p, out);
    }
    // Compact E.164 (`+14155550132`) and `tel:` URIs, which the grouped pattern does not take.
    if phone_run >= 8 && (text.contains('+') || text.contains("tel:")) {
        for m in e164().find_iter(text) {
            if bounded(text, m.start(), m.end(), b"") {
                out.push(Finding {
                    kind: Kind::Phone,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
}

fn e164() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"(?i)tel:\+?[0-9][0-9().-]{6,20}[0-9]|\+[1-9][0-9]{7,14}")
            .expect("phone pattern compiles")
    })
}

fn scan_emails(text: &str, p: &Patterns, out: &mut Vec<Finding>) {
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
}

/// Whether `b` has a country code followed by two digits somewhere (where an IBAN starts).
fn iban_candidate(b: &[u8]) -> bool {
    b.windows(4).any(|w| {
        w[0].is_ascii_alphabetic()
            && w[1].is_ascii_alphabetic()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
            && iban_length(
                &[
                    w[0].to_ascii_uppercase() as char,
                    w[1].to_ascii_uppercase() as char,
                ]
                .iter()
                .collect::<String>(),
            )
            .is_some()
    })
}

fn scan_ibans(text: &str, p: &Patterns, out: &mut Vec<Finding>) {
    // The regex is greedy over grouped characters. The country fixes the length, so one prefix
    // per candidate is checked; then the search goes on right after it (the rest of the match may
    // hold the next IBAN).
    let mut pos = 0;
    while let Some(m) = p.iban.find_at(text, pos) {
        let s = m.as_str();
        let country = s[..2].to_ascii_uppercase();
        let mut found = None;
        if let Some(len) = iban_length(&country) {
            let mut compact = String::with_capacity(len);
            for (i, c) in s.char_indices() {
                if c != ' ' {
                    compact.push(c);
                    if compact.len() == len {
                        if iban_valid(&compact) {
                            found = Some(i + c.len_utf8());
                        }
                        break;
                    }
                }
            }
        }
        match found {
            Some(len) if bounded(text, m.start(), m.start() + len, b"") => {
                out.push(Finding {
                    kind: Kind::Iban,
                    start: m.start(),
                    end: m.start() + len,
                });
                pos = m.start() + len;
            }
            // The match starts with two ASCII letters, so +1 stays on a char boundary.
            _ => pos = m.start() + 1,
        }
    }
}

/// Whether the dotted quad at `start` is a version number: right after a product token's `/`
/// (`Chrome/120.0.0.0`), or after the word `v`, `version`, `ver`, `build` or `release`
/// (`v1.2.3.4`, `app-v1.2.3.4`, `build: 10.0.19045.1`).
fn version_context(text: &str, start: usize) -> bool {
    let b = text.as_bytes();
    if start >= 2 && b[start - 1] == b'/' && b[start - 2].is_ascii_alphanumeric() {
        return true;
    }
    let word = last_word(preceding(text, start, 16).trim_end_matches([' ', ':', '=']));
    ["v", "version", "ver", "build", "release"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// Words that say the digits after them are a product, order or document code, not a phone
/// number (`SKU 123-456-789`, `PN 7068-212-513`, `order 415 555 0132`).
pub(crate) const CODE_WORDS: &[&str] = &[
    "sku",
    "pn",
    "part",
    "item",
    "model",
    "serial",
    "sn",
    "order",
    "invoice",
    "inv",
    "ref",
    "reference",
    "lot",
    "batch",
    "ticket",
    "isbn",
    "ean",
    "upc",
    "gtin",
    "asin",
    "case",
    "tracking",
    "shipment",
    "build",
    "version",
    "product",
    "article",
    "catalog",
    "id",
];

/// Whether the word just before `start` (past spaces and `:`, `=`, `#`, `-`, `.`, `No`) names a
/// code (see [`CODE_WORDS`]).
fn code_context(text: &str, start: usize) -> bool {
    let mut pre = preceding(text, start, 24).trim_end_matches([' ', ':', '=', '#', '-', '.']);
    for no in ["no", "nr", "num"] {
        if pre.len() > no.len()
            && pre
                .get(pre.len() - no.len()..)
                .is_some_and(|t| t.eq_ignore_ascii_case(no))
            && !pre.as_bytes()[pre.len() - no.len() - 1].is_ascii_alphabetic()
        {
            pre = pre[..pre.len() - no.len()].trim_end_matches([' ', ':', '=', '#', '-', '.']);
        }
    }
    let word = last_word(pre);
    CODE_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w))
}

/// Up to `n` bytes of `text` before `start`, cut on a character boundary.
fn preceding(text: &str, start: usize, n: usize) -> &str {
    let mut from = start.saturating_sub(n);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..start]
}

/// The run of ASCII letters `s` ends with.
fn last_word(s: &str) -> &str {
    s.rsplit(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

/// Words before a number that say it is a phone number (within 24 bytes).
fn phone_context(text: &str, start: usize) -> bool {
    let t = preceding(text, start, 24).to_ascii_lowercase();
    [
        "phone",
        "mobile",
        "tel",
        "cell",
        "fax",
        "desk",
        "call",
        "contact",
        "whatsapp",
        "sms",
        "dial",
        "reach",
        "answering",
        "registered",
        "ring",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A date with the hour after it (`2000-04-16 11` of `2000-04-16 11:34:35`).
fn date_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b"01".contains(&b[5]))
}

/// A local-looking number (up to five digits, then up to four) that is an address's unit or
/// postal code and house number: a capitalised street name follows (`370 3911 Fourth Avenue`,
/// `Suite 541 6343 Skogstien`, `03262 2437 Main St`).
fn street_number(s: &str, after: &str) -> bool {
    let groups: Vec<&str> = s.split(' ').filter(|g| !g.is_empty()).collect();
    groups.len() == 2
        && groups[0].len() <= 5
        && groups[1].len() <= 4
        && after.starts_with(' ')
        && after[1..].starts_with(|c: char| c.is_uppercase())
}

/// Whether the 40 bytes before `start` name an SSN.
fn ssn_context(text: &str, start: usize) -> bool {
    let t = preceding(text, start, 40).to_ascii_lowercase();
    t.contains("ssn") || t.contains("social security") || t.contains("social sec")
}

fn scan_ssns(text: &str, p: &Patterns, out: &mut Vec<Finding>) {
    for m in p.ssn.find_iter(text) {
        let b = m.as_str().as_bytes();
        // Both separators the same (none, dash or space): `123-45-6789`, `123 45 6789`, `123456789`.
        let (s1, s2) = match b.len() {
            9 => (None, None),
            11 => (Some(b[3]), Some(b[6])),
            _ => continue,
        };
        if s1 != s2 {
            continue;
        }
        let d: Vec<u32> = b
            .iter()
            .filter(|c| c.is_ascii_digit())
            .map(|c| (c - b'0') as u32)
            .collect();
        if d.len() != 9 {
            continue;
        }
        let area = d[0] * 100 + d[1] * 10 + d[2];
        let group = d[3] * 10 + d[4];
        let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
        // Nine bare digits are an order id, an account or a count far more often than an
        // SSN: without separators, only where the text says it is one.
        let context = s1.is_some() || ssn_context(text, m.start());
        if context && ssn_valid(area, group, serial) && bounded(text, m.start(), m.end(), b"-.") {
            out.push(Finding {
                kind: Kind::UsSsn,
                start: m.start(),
                end: m.end(),
            });
        }
    }
}

fn scan_ipv6(text: &str, p: &Patterns, out: &mut Vec<Finding>) {
    for m in p.ipv6.find_iter(text) {
        let s = m.as_str();
        // `::` (no address at all) is syntax, not someone's address.
        if s.matches(':').count() >= 2
            && s.parse::<Ipv6Addr>().is_ok_and(|a| !a.is_unspecified())
            && bounded(text, m.start(), m.end(), b":")
        {
            out.push(Finding {
                kind: Kind::IpAddress,
                start: m.start(),
                end: m.end(),
            });
        }
    }
}

fn scan_phones(text: &str, p: &Patterns, out: &mut Vec<Finding>) {
    for m in p.phone.find_iter(text) {
        // A sentence's full stop or a label after a dash (`555-0132.`, `082 490 1693-Office`)
        // ends the number; a digit after them continues it (`10.0.0.1`, `2024-11-24`).
        let b = text.as_bytes();
        let continues = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        let joined_after = |end: usize| {
            b.get(end).is_some_and(|&c| {
                c.is_ascii_alphanumeric()
                    || c == b'_'
                    || (matches!(c, b'.' | b'-') && continues(end + 1))
            })
        };
        // A candidate whose last group is the first of what follows (`192.168.10.20 123-45-6789`)
        // is tried again without it, so what it holds is judged the same with or without its
        // neighbour (redacting that neighbour first must not change the verdict).
        let mut s = m.as_str().trim_end();
        while joined_after(m.start() + s.len()) {
            match s.rfind(' ') {
                Some(i) if i > 0 => s = s[..i].trim_end(),
                _ => break,
            }
        }
        let end = m.start() + s.len();
        if joined_after(end)
            || m.start()
                .checked_sub(1)
                .is_some_and(|i| b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'-'))
            || code_context(text, m.start())
            || date_time(s)
            || street_number(s, &text[end..])
        {
            continue;
        }
        // A number a label or a verb introduces (`Mobile: 0341 8387176`, `call me on 9472 7916`)
        // may have any grouping, or none.
        let valid = phone_valid(s)
            || (phone_context(text, m.start()) && {
                let n = s.bytes().filter(u8::is_ascii_digit).count();
                (7..=15).contains(&n)
            });
        if valid {
            out.push(Finding {
                kind: Kind::Phone,
                start: m.start(),
                end: m.start() + s.len(),
            });
        }
    }
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
    fn national_and_international_phone_formats_are_found() {
        for p in [
            "+44 20 7946 0958",
            "020 7946 0958",
            "030 1234567",
            "+33 1 23 45 67 89",
            "01 23 45 67 89",
            "+91 98765 43210",
            "03-1234-5678",
            "(11) 91234-5678",
            "0412 345 678",
            "+86 138 0013 8000",
            "06-12345678",
            "1-800-555-0199",
            "07700 900123",
            "+61 2 9876 5432",
            "+353 1 234 5678",
            "+7 495 123-45-67",
        ] {
            let t = format!("call {p} today");
            assert_eq!(kinds(&t), vec![(Kind::Phone, p)], "{t}");
        }
        // Not phones: a date with its hour, an address's postal code and house number.
        for t in ["When: 2000-04-16 11:34:35", "03262 2437 Main St Suite 442"] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }

    #[test]
    fn a_number_is_judged_the_same_with_or_without_the_number_after_it() {
        // Found by the engine's idempotence property: the dotted number ran into the SSN after
        // it and was skipped, then found once the SSN had been redacted.
        let joined = kinds("v 192.168.10.20 123-45-6789");
        let alone = kinds("v 192.168.10.20 [REDACTED:us_ssn]");
        assert!(joined.contains(&(Kind::UsSsn, "123-45-6789")), "{joined:?}");
        let dotted = |k: &Vec<(Kind, &str)>| {
            k.iter()
                .filter(|(_, v)| *v == "192.168.10.20")
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
        };
        assert_eq!(dotted(&joined), dotted(&alone));
        assert!(!dotted(&alone).is_empty(), "{alone:?}");
    }

    #[test]
    fn digit_groups_after_a_code_word_are_codes_not_phones() {
        for t in [
            "PN 7068-212-513",
            "SKU: 415-555-0132",
            "order no. 415 555 0132",
            "ticket #212-555-0199",
        ] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
        // Text before the number in any script (a slice inside a character panicked once).
        for t in [
            "Domoszlóno 415-555-0132",
            "Ünő 415-555-0132",
            "é415-555-0132",
        ] {
            let _ = kinds(t);
        }
        for (t, phone) in [
            ("call 415-555-0132 today", "415-555-0132"),
            ("phone number: (415) 555-0132", "(415) 555-0132"),
        ] {
            assert_eq!(kinds(t), vec![(Kind::Phone, phone)], "{t}");
        }
    }

    #[test]
    fn versions_are_not_addresses_and_bare_nine_digits_need_ssn_context() {
        let ua =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36";
        assert!(kinds(ua).is_empty(), "{:?}", kinds(ua));
        for v in [
            "v1.2.3.4",
            "app-v10.1.2.3",
            "build: 10.0.19045.1",
            "version 4.3.2.1",
        ] {
            assert!(kinds(v).is_empty(), "{v}: {:?}", kinds(v));
        }
        assert_eq!(
            kinds("connect to 10.0.0.1 now"),
            vec![(Kind::IpAddress, "10.0.0.1")]
        );
        assert_eq!(
            kinds("http://10.0.0.1/x"),
            vec![(Kind::IpAddress, "10.0.0.1")]
        );
        assert_eq!(kinds("dev 10.0.0.12"), vec![(Kind::IpAddress, "10.0.0.12")]);
        assert!(kinds("order 123456789 shipped").is_empty());
        assert_eq!(
            kinds("my SSN is 123456789"),
            vec![(Kind::UsSsn, "123456789")]
        );
        assert_eq!(
            kinds("order 123-45-6789"),
            vec![(Kind::UsSsn, "123-45-6789")]
        );
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

    proptest::proptest! {
        /// Every detector takes any text: digits, separators, words that give context, and
        /// characters of any width next to them (byte offsets must stay on character
        /// boundaries), and every finding lies inside the text on boundaries.
        #[test]
        fn any_text_scans_without_panicking(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9]{1,8}",
                    "[ .:=#/()+-]{1,2}",
                    proptest::strategy::Just("Phone: ".to_string()),
                    proptest::strategy::Just("SKU no. ".to_string()),
                    proptest::strategy::Just("ssn ".to_string()),
                    proptest::strategy::Just("password=".to_string()),
                    proptest::strategy::Just("api key ".to_string()),
                    "[a-zA-Z]{1,6}",
                    "[\\u{e9}\\u{151}\\u{4e2d}\\u{1f600}\\u{200b}]{1,3}",
                ],
                0..24,
            )
        ) {
            let text: String = parts.concat();
            for f in scan(&text) {
                proptest::prop_assert!(f.start <= f.end && f.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            }
        }
    }
}
