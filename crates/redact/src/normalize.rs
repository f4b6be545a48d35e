//! What a value is before it becomes a pseudonym: one normalization, so the same person, address
//! or account gets the same pseudonym however it was written (`Jane.Doe@Example.com` and
//! `jane.doe@example.com`, a full-width `ｊａｎｅ`, `::FFFF:10.0.0.1` and `10.0.0.1`).
//!
//! Every pseudonym the engine writes goes through [`pseudonym_input`]; a later feature that looks
//! a known value up by its pseudonym (finding a data subject's traces) must use it too.

use std::borrow::Cow;
use std::net::IpAddr;

use unicode_normalization::UnicodeNormalization;

use crate::detect::Kind;

/// The plain form of a value a detector found: its disguises undone (percent escapes and HTML
/// entities decoded, invisible characters dropped, compatibility forms folded; a whole base64 or
/// hex token decoded), so `jane%40example.com` and its base64 are `jane@example.com`.
pub fn plain(v: &str) -> Cow<'_, str> {
    let mut s: Cow<'_, str> = if crate::disguise::may_be_disguised(v) {
        Cow::Owned(crate::disguise::unmask(v).text)
    } else {
        Cow::Borrowed(v)
    };
    if let Some(d) = crate::disguise::decode_token(&s) {
        s = Cow::Owned(d);
    }
    s
}

/// `v` as it is keyed into a pseudonym: its [`plain`] form in Unicode NFKC (full-width and
/// compatibility forms folded) without invisible characters, trimmed; emails lowercased whole;
/// IP addresses in their canonical text (an IPv4-mapped IPv6 address as its IPv4 address).
pub fn pseudonym_input(kind: Option<Kind>, v: &str) -> Cow<'_, str> {
    let v = plain(v);
    let folded: Cow<'_, str> = if v.is_ascii() {
        Cow::Owned(v.trim().to_owned())
    } else {
        Cow::Owned(
            v.nfkc()
                .filter(|c| !is_invisible(*c))
                .collect::<String>()
                .trim()
                .to_owned(),
        )
    };
    match kind {
        Some(Kind::Email) => Cow::Owned(folded.to_lowercase()),
        Some(Kind::IpAddress) => match folded.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => Cow::Owned(match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }),
            Ok(ip) => Cow::Owned(ip.to_string()),
            Err(_) => Cow::Owned(folded.to_lowercase()),
        },
        _ => folded,
    }
}

/// Characters that render as nothing: zero-width spaces and joiners, the soft hyphen, the BOM.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_one_input() {
        let e = |s| pseudonym_input(Some(Kind::Email), s).into_owned();
        assert_eq!(e("Jane.Doe@Example.COM"), "jane.doe@example.com");
        assert_eq!(e("ｊａｎｅ@example.com"), "jane@example.com");
        assert_eq!(e("ja\u{200B}ne@example.com"), "jane@example.com");
        let ip = |s| pseudonym_input(Some(Kind::IpAddress), s).into_owned();
        assert_eq!(ip("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(ip("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
        assert_eq!(ip("10.0.0.1"), "10.0.0.1");
        // Anything else keeps its case: user ids are case-sensitive.
        assert_eq!(pseudonym_input(None, "User-42"), "User-42");
    }
}
