//! Parsers for Tempo's search parameters: logfmt `tags` and Go-style durations.

/// Parses logfmt pairs (`service.name=x http.status_code=500 name="GET /a b"`).
pub fn parse_logfmt(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return Err("tags: expected key=value".into());
        }
        if chars.peek() != Some(&'=') {
            return Err(format!(
                "tags: key {key:?} has no value (expected key=value)"
            ));
        }
        chars.next();
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => val.push('\n'),
                        Some('t') => val.push('\t'),
                        Some(o) => val.push(o),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    o => val.push(o),
                }
            }
            if !closed {
                return Err(format!("tags: unterminated quoted value for {key:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key, val));
    }
    Ok(out)
}

/// Parses a Go duration (`300ms`, `1.5s`, `2m`, `1h30m`, `250us`, `10ns`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<u64, String> {
    let err = || format!("invalid duration {s:?}: use forms like 100ms, 1.5s, 2m, 1h30m");
    if s.is_empty() {
        return Err(err());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_pairs() {
        assert_eq!(
            parse_logfmt(r#"service.name=checkout  name="GET /a b" x=\"#).unwrap(),
            vec![
                ("service.name".into(), "checkout".into()),
                ("name".into(), "GET /a b".into()),
                ("x".into(), "\\".into())
            ]
        );
        assert!(parse_logfmt("novalue").is_err());
        assert!(parse_logfmt(r#"a="open"#).is_err());
        assert_eq!(parse_logfmt("   ").unwrap(), vec![]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("100ms").unwrap(), 100_000_000);
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("250us").unwrap(), 250_000);
        assert!(parse_go_duration("5 parsecs").is_err());
        assert!(parse_go_duration("ms").is_err());
    }
}
