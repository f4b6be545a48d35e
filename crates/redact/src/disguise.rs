//! Values written so a detector does not see them: percent-encoded (`jane%40example.com`), HTML
//! entities (`jane&#64;example.com`), invisible characters inside (`4111\u{200B}1111...`),
//! full-width or other compatibility forms (`４１１１…`), or base64 / hex of the whole value.
//!
//! [`unmask`] builds the plain text with, for every byte of it, the range of the original text
//! it came from, so a finding on the plain text redacts exactly the original characters.
//! [`encoded`] decodes long base64 and hex tokens and reports a token whose content holds
//! something a detector finds. Both are cheap to skip: [`may_be_disguised`] and the token length
//! decide in one pass whether there is anything to undo.

use base64::Engine;
use unicode_normalization::UnicodeNormalization;

use crate::detect::{Finding, Kind};
use crate::normalize::is_invisible;

/// Whether `text` has anything [`unmask`] would change: a `%`, a `&`, or non-ASCII.
pub fn may_be_disguised(text: &str) -> bool {
    text.bytes().any(|b| b == b'%' || b == b'&' || b >= 0x80)
}

/// Plain text and, per byte of it, the original byte range it stands for.
pub struct Unmasked {
    pub text: String,
    map: Vec<(usize, usize)>,
}

impl Unmasked {
    /// The original range of the plain text's `start..end`.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        (self.map[start].0, self.map[end - 1].1)
    }

    fn push(&mut self, c: char, from: usize, to: usize) {
        let mut buf = [0u8; 4];
        let n = c.encode_utf8(&mut buf).len();
        self.text.push(c);
        for _ in 0..n {
            self.map.push((from, to));
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The entity at `text[i..]` (`&#64;`, `&#x40;`, `&commat;`, ...): its character and length.
fn entity(text: &str, i: usize) -> Option<(char, usize)> {
    let rest = &text[i + 1..];
    let end = rest.find(';').filter(|e| *e > 0 && *e <= 10)?;
    let name = &rest[..end];
    let c = if let Some(num) = name.strip_prefix('#') {
        let v = match num.strip_prefix(['x', 'X']) {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        char::from_u32(v)?
    } else {
        match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => ' ',
            "commat" => '@',
            "period" => '.',
            "colon" => ':',
            "sol" => '/',
            "hyphen" | "dash" => '-',
            "plus" => '+',
            "num" => '#',
            _ => return None,
        }
    };
    Some((c, end + 2))
}

/// `text` with percent escapes and HTML entities decoded, invisible characters removed and
/// compatibility forms folded (NFKC), with the map back to `text`.
pub fn unmask(text: &str) -> Unmasked {
    let mut u = Unmasked {
        text: String::with_capacity(text.len()),
        map: Vec::with_capacity(text.len()),
    };
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // A run of percent escapes, decoded as UTF-8 (one character may span several).
        if b[i] == b'%' && i + 2 < b.len() {
            let mut bytes = Vec::new();
            let mut j = i;
            while j + 2 < b.len()
                && b[j] == b'%'
                && let (Some(h), Some(l)) = (hex_val(b[j + 1]), hex_val(b[j + 2]))
            {
                bytes.push(h * 16 + l);
                j += 3;
            }
            if let Ok(s) = std::str::from_utf8(&bytes)
                && !bytes.is_empty()
            {
                let mut at = i;
                for c in s.chars() {
                    let n = c.len_utf8() * 3;
                    u.push(c, at, at + n);
                    at += n;
                }
                i = j;
                continue;
            }
        }
        if b[i] == b'&'
            && let Some((c, n)) = entity(text, i)
        {
            u.push(c, i, i + n);
            i += n;
            continue;
        }
        let c = text[i..].chars().next().expect("at a char boundary");
        let n = c.len_utf8();
        if is_invisible(c) {
            i += n;
            continue;
        }
        if c.is_ascii() {
            u.push(c, i, i + n);
        } else {
            for f in std::iter::once(c).nfkc() {
                u.push(f, i, i + n);
            }
        }
        i += n;
    }
    u
}

/// The shortest base64 or hex token decoded (8 bytes of content or more).
const MIN_TOKEN: usize = 16;

/// Long base64 or hex tokens of `text` whose decoded content holds something `scan` finds:
/// each reported as a finding over the whole token (a JWT payload segment on its own, a
/// base64 of an email, the hex of a card number).
pub fn encoded(text: &str, scan: &dyn Fn(&str) -> Vec<Finding>) -> Vec<Finding> {
    let b = text.as_bytes();
    let token = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-');
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !token(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && token(b[i]) {
            i += 1;
        }
        // Base64 padding belongs to the token.
        let mut pad = 0;
        while pad < 2 && i < b.len() && b[i] == b'=' {
            i += 1;
            pad += 1;
        }
        let t = &text[start..i];
        if t.len() < MIN_TOKEN {
            continue;
        }
        let Some(plain) = decode(t) else { continue };
        let kind = if plain.starts_with('{')
            && ["\"sub\"", "\"iss\"", "\"exp\"", "\"email\""]
                .iter()
                .any(|c| plain.contains(c))
        {
            // A token's claims on their own (a JWT without its header).
            Some(Kind::Jwt)
        } else {
            scan(&plain).first().map(|f| f.kind)
        };
        if let Some(kind) = kind {
            out.push(Finding {
                kind,
                start,
                end: i,
            });
        }
    }
    out
}

/// `t` decoded when it is one long base64 or hex token whose content is text.
pub fn decode_token(t: &str) -> Option<String> {
    let ok = t.len() >= MIN_TOKEN
        && t.trim_end_matches('=')
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-'));
    if ok { decode(t) } else { None }
}

/// `t` decoded as hex or base64 (standard or URL-safe, padded or not), when that gives text.
fn decode(t: &str) -> Option<String> {
    let bytes = if t.len().is_multiple_of(2) && t.bytes().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(t).ok()?
    } else {
        let trimmed = t.trim_end_matches('=');
        let engines = [
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|e| e.decode(trimmed).ok())?
    };
    let s = String::from_utf8(bytes).ok()?;
    // Text, not bytes that happen to be valid UTF-8.
    let printable = s.chars().filter(|c| !c.is_control() || *c == '\n').count();
    (s.len() >= 8 && printable * 10 >= s.chars().count() * 9).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::scan;

    fn kinds(text: &str) -> Vec<(Kind, String)> {
        scan(text)
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn disguised_values_are_found_where_they_stand() {
        assert_eq!(
            kinds("mail jane%40example.com now"),
            vec![(Kind::Email, "jane%40example.com".into())]
        );
        assert_eq!(
            kinds("mail jane&#64;example&period;com now"),
            vec![(Kind::Email, "jane&#64;example&period;com".into())]
        );
        assert_eq!(
            kinds("card 4111\u{200B}1111\u{200B}1111\u{200B}1111 ok"),
            vec![(
                Kind::CreditCard,
                "4111\u{200B}1111\u{200B}1111\u{200B}1111".into()
            )]
        );
        assert_eq!(
            kinds("card ４１１１１１１１１１１１１１１１ ok"),
            vec![(Kind::CreditCard, "４１１１１１１１１１１１１１１１".into())]
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("jane.doe@example.com");
        assert_eq!(kinds(&format!("u={b64}")), vec![(Kind::Email, b64.clone())]);
        let hexed = hex::encode("4111111111111111");
        assert_eq!(
            kinds(&format!("x {hexed}")),
            vec![(Kind::CreditCard, hexed.clone())]
        );
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"1234567890","name":"Jane"}"#);
        assert_eq!(kinds(&claims), vec![(Kind::Jwt, claims.clone())]);
    }

    #[test]
    fn ordinary_encoded_text_stays() {
        for t in [
            "q=red%20running%20shoes",
            "Tom &amp; Jerry",
            "caf\u{e9} cr\u{e8}me",
            "550e8400e29b41d4a716446655440000",
            "dGhpcyBpcyBqdXN0IHRleHQ=",
            "a%2",
        ] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }

    #[test]
    fn the_map_points_back_at_the_original() {
        let t = "a%40b &#64; ｃ\u{200B}d";
        let u = unmask(t);
        assert_eq!(u.text, "a@b @ cd");
        let at = u.text.find('@').unwrap();
        assert_eq!(u.original(at, at + 1), (1, 4));
        let c = u.text.find('c').unwrap();
        assert_eq!(
            &t[u.original(c, c + 2).0..u.original(c, c + 2).1],
            "ｃ\u{200B}d"
        );
    }
}
