//! URL scrubbing for `url.full`, `http.url` (absolute URLs, parsed by the `url` crate),
//! `http.target` (path, query, fragment) and `url.query` (a query string alone).
//!
//! - userinfo: a password becomes `REDACTED`; a user name that holds a token does too;
//! - query: a parameter whose name reads as a secret (`password`, `token`, `api_key`, `sig`, ...)
//!   has its value replaced; every other value is decoded and run through the detectors;
//! - path: each segment is decoded and run through the detectors; identifiers (numbers of two or
//!   more digits, UUIDs, long hex) become `{id}`;
//! - fragment: through the detectors.
//!
//! Unchanged parts keep their exact original text, so a clean URL comes out byte-identical.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

/// Which URL-shaped attribute a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlField {
    /// `url.full`, `http.url`: an absolute URL.
    Full,
    /// `http.target`: path, optional `?query`, optional `#fragment`.
    Target,
    /// `url.query`: a query string without the `?`.
    Query,
}

impl UrlField {
    pub fn of_key(key: &str) -> Option<UrlField> {
        match key {
            "url.full" | "http.url" => Some(UrlField::Full),
            "http.target" | "url.path" => Some(UrlField::Target),
            "url.query" => Some(UrlField::Query),
            _ => None,
        }
    }
}

/// What scrubbing needs from the engine.
pub trait UrlScrubber {
    /// Runs the detectors over decoded text; `Some` with the replacement when something was found.
    fn text(&mut self, s: &str) -> Option<String>;
    /// The replacement for the value of a secret-named parameter or a URL password.
    fn secret(&mut self, s: &str) -> String;
    /// Records that an identifier in a path was templated.
    fn templated(&mut self);
}

fn secret_param() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r"(?i)(?:passw|pwd|secret|api[_-]?key|apikey|access[_-]?key|signature|credential|session|client[_-]?secret)|^(?:sig|key|code|jwt|pass|auth|token)$",
        )
        .expect("pattern compiles")
    })
}

/// Whether a query parameter name reads as carrying a secret: by its words like every other name
/// (`apiKey`, `x-vendor-token`, not `author` or `tokenizer`), by the stems that are secrets in any
/// word (`*passw*`, `*secret*`, `*session*`), or as an OAuth-style one-time code (`code`,
/// `auth_code`, `verificationCode`).
pub fn secret_param_name(name: &str) -> bool {
    if secret_param().is_match(name) {
        return true;
    }
    let words = crate::names::words(name);
    crate::names::secret_words(&words).is_some()
        || match words.as_slice() {
            [.., q, last] if last == "code" => matches!(
                q.as_str(),
                "auth"
                    | "authorization"
                    | "oauth"
                    | "access"
                    | "verification"
                    | "verify"
                    | "reset"
                    | "confirmation"
                    | "confirm"
                    | "login"
                    | "magic"
                    | "mfa"
                    | "otp"
                    | "sms"
                    | "device"
            ),
            _ => false,
        }
}

/// Scrubs `input` as the given field. `None` when nothing changed.
pub fn scrub(input: &str, field: UrlField, s: &mut dyn UrlScrubber) -> Option<String> {
    match field {
        UrlField::Query => scrub_query(input, s),
        UrlField::Target => scrub_target(input, s),
        UrlField::Full => match url::Url::parse(input) {
            Ok(u) if u.has_host() => scrub_full(input, u, s),
            // Not an absolute URL with a host: scrub it as a target and let the detectors see it.
            _ => scrub_target(input, s),
        },
    }
}

fn scrub_full(input: &str, mut u: url::Url, s: &mut dyn UrlScrubber) -> Option<String> {
    let mut changed = false;
    if let Some(p) = u.password().filter(|p| !p.is_empty()) {
        let p = percent_decode(p).into_owned();
        let rep = s.secret(&p);
        let _ = u.set_password(Some(&rep));
        changed = true;
    }
    if !u.username().is_empty() {
        let user = percent_decode(u.username()).into_owned();
        if let Some(rep) = s.text(&user) {
            let _ = u.set_username(&rep);
            changed = true;
        }
    }
    // A host that is an address says whose machine it is: the detectors decide, as in text.
    let host = match u.host() {
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => u
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned())
            .and_then(|h| s.text(&h)),
        _ => None,
    };
    changed |= host.is_some();
    let path = scrub_path(u.path(), s);
    let query = u.query().and_then(|q| scrub_query(q, s));
    let fragment = u
        .fragment()
        .and_then(|f| s.text(&percent_decode(f)).map(|r| encode_component(&r)));
    if !changed && path.is_none() && query.is_none() && fragment.is_none() {
        // Keep the exact input (the parser normalizes case, default ports, ...).
        return None;
    }
    let mut out = String::with_capacity(input.len());
    match &host {
        Some(h) => {
            out.push_str(&u[..url::Position::BeforeHost]);
            out.push_str(h);
            out.push_str(&u[url::Position::AfterHost..url::Position::BeforePath]);
        }
        None => out.push_str(&u[..url::Position::BeforePath]),
    }
    out.push_str(path.as_deref().unwrap_or(u.path()));
    if let Some(q) = u.query() {
        out.push('?');
        out.push_str(query.as_deref().unwrap_or(q));
    }
    if let Some(f) = u.fragment() {
        out.push('#');
        out.push_str(fragment.as_deref().unwrap_or(f));
    }
    Some(out)
}

fn scrub_target(input: &str, s: &mut dyn UrlScrubber) -> Option<String> {
    let (rest, fragment) = match input.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (input, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let new_path = scrub_path(path, s);
    let new_query = query.and_then(|q| scrub_query(q, s));
    let new_fragment =
        fragment.and_then(|f| s.text(&percent_decode(f)).map(|r| encode_component(&r)));
    if new_path.is_none() && new_query.is_none() && new_fragment.is_none() {
        return None;
    }
    let mut out = new_path.unwrap_or_else(|| path.to_string());
    if let Some(q) = query {
        out.push('?');
        out.push_str(new_query.as_deref().unwrap_or(q));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(new_fragment.as_deref().unwrap_or(f));
    }
    Some(out)
}

fn scrub_path(path: &str, s: &mut dyn UrlScrubber) -> Option<String> {
    let mut changed = false;
    let segs: Vec<Cow<'_, str>> = path
        .split('/')
        .map(|seg| {
            if seg.is_empty() {
                return Cow::Borrowed(seg);
            }
            let decoded = percent_decode(seg);
            if let Some(rep) = s.text(&decoded) {
                changed = true;
                return Cow::Owned(encode_component(&rep));
            }
            if identifier(&decoded) {
                changed = true;
                s.templated();
                return Cow::Borrowed("{id}");
            }
            Cow::Borrowed(seg)
        })
        .collect();
    changed.then(|| segs.join("/"))
}

fn scrub_query(q: &str, s: &mut dyn UrlScrubber) -> Option<String> {
    let mut changed = false;
    let parts: Vec<Cow<'_, str>> = q
        .split(['&', ';'])
        .map(|pair| {
            let Some((name, value)) = pair.split_once('=') else {
                // A bare token (`?abc123`): the detectors decide.
                let d = form_decode(pair);
                return match s.text(&d) {
                    Some(rep) => {
                        changed = true;
                        Cow::Owned(form_encode(&rep))
                    }
                    None => Cow::Borrowed(pair),
                };
            };
            let dname = form_decode(name);
            let dvalue = form_decode(value);
            // Names are data too when a client builds them from input.
            let new_name = s.text(&dname).map(|n| form_encode(&n));
            // The name is judged without earlier redaction output in it (the label
            // `[REDACTED:aws_access_key_id]` names nothing); an empty value hides nothing.
            let rep = if secret_param_name(&crate::detect::without_redactions(&dname))
                && !dvalue.trim().is_empty()
            {
                Some(s.secret(&dvalue))
            } else {
                s.text(&dvalue)
            };
            if new_name.is_none() && rep.is_none() {
                return Cow::Borrowed(pair);
            }
            changed = true;
            let value = rep.map(|r| form_encode(&r));
            Cow::Owned(format!(
                "{}={}",
                new_name.as_deref().unwrap_or(name),
                value.as_deref().unwrap_or(value_raw(pair))
            ))
        })
        .collect();
    // `;` separators are rare; rebuilding with `&` only happens when something changed.
    changed.then(|| parts.join("&"))
}

/// Numbers of two or more digits, UUIDs, hex runs of 16+ (with a digit), and long random
/// tokens (reset links, share links): resource ids and credentials, not route words.
pub fn identifier(seg: &str) -> bool {
    let b = seg.as_bytes();
    random_token(seg)
        || (b.len() >= 2 && b.iter().all(u8::is_ascii_digit))
        || (b.len() == 36
            && b.iter().enumerate().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    *c == b'-'
                } else {
                    c.is_ascii_hexdigit()
                }
            }))
        || (b.len() >= 16
            && b.iter().all(u8::is_ascii_hexdigit)
            && b.iter().any(u8::is_ascii_digit))
}

/// 20+ letters and digits (and `-`/`_`) that read as random: mixed case with digits, or
/// lowercase with several digits and high entropy; never a slug of words.
fn random_token(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() < 20
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    // A slug: words joined by dashes (`my-first-post-2024`).
    let wordy = seg
        .split(['-', '_'])
        .filter(|w| w.len() >= 3 && w.bytes().all(|c| c.is_ascii_lowercase()))
        .count()
        >= 2;
    let e = crate::secrets::entropy(seg);
    !wordy
        && digits >= 2
        && ((upper && lower && e >= 3.5) || (lower && !upper && digits >= 4 && e >= 3.8))
}

/// The raw value part of `name=value`.
fn value_raw(pair: &str) -> &str {
    pair.split_once('=').map(|(_, v)| v).unwrap_or("")
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Query values: what must be escaped inside a query, and nothing else (redaction output like
/// `[REDACTED:email]` stays readable).
fn form_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'+')
        .add(b'=')
        .add(b';')
        .add(b'<')
        .add(b'>')
        .add(b'`');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Path segments and fragments: keep what redaction outputs readable (`[`, `]`, `:`).
fn encode_component(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T;
    impl UrlScrubber for T {
        fn text(&mut self, s: &str) -> Option<String> {
            let f = crate::scan(s);
            if f.is_empty() {
                return None;
            }
            let mut out = String::new();
            let mut at = 0;
            for x in f {
                out.push_str(&s[at..x.start]);
                out.push_str(&format!("[{}]", x.kind.name()));
                at = x.end;
            }
            out.push_str(&s[at..]);
            Some(out)
        }
        fn secret(&mut self, _: &str) -> String {
            "REDACTED".into()
        }
        fn templated(&mut self) {}
    }

    #[test]
    fn urls_lose_credentials_ids_and_detected_values() {
        let cases = [
            (
                UrlField::Full,
                "https://bob:hunter2@api.example.com/users/12345/orders?token=abc&email=jane%40example.com&page=2#x",
                "https://bob:REDACTED@api.example.com/users/{id}/orders?token=REDACTED&email=[email]&page=2#x",
            ),
            (
                UrlField::Target,
                "/v1/users/jane.doe@example.com/cards?api_key=s3cr3t",
                "/v1/users/[email]/cards?api_key=REDACTED",
            ),
            (
                UrlField::Query,
                "q=call+me+at+4111+1111+1111+1111&sort=asc",
                "q=call%20me%20at%20[credit_card]&sort=asc",
            ),
            (
                UrlField::Target,
                "/items/3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "/items/{id}",
            ),
        ];
        for (field, input, want) in cases {
            assert_eq!(
                scrub(input, field, &mut T).as_deref(),
                Some(want),
                "{input}"
            );
        }
    }

    #[test]
    fn clean_urls_are_untouched() {
        for (field, u) in [
            (
                UrlField::Full,
                "https://Example.com:443/a/b?page=2&sort=asc",
            ),
            (UrlField::Target, "/v2/search?q=shoes"),
            (UrlField::Query, "a=1&b=x"),
        ] {
            assert_eq!(scrub(u, field, &mut T), None, "{u}");
        }
    }
}
