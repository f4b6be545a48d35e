//! Times as people write and read them: `--since 1h`, `--start 2026-12-07T09:00:00Z`,
//! `--start "2026-12-07 09:00"` (local), `--end now`; tables print local times with the zone.

use anyhow::bail;
use jiff::{Timestamp, Zoned, civil, tz::TimeZone};

/// What a time flag accepts, for error messages and `--help`.
pub const FORMS: &str = "RFC 3339 (2026-12-07T09:00:00Z), a local date and time (2026-12-07 09:00, 2026-12-07), a duration ago (90s, 15m, 1h, 2d, 1h30m), now, or unix seconds";

/// Parses a point in time relative to `now`.
pub fn parse_at(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let t = s.trim();
    if t.is_empty() {
        bail!("an empty time: give {FORMS}");
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        if t.len() < 9 {
            bail!(
                "{t:?} as unix seconds is before 1973: for a date write it as 2026-12-07; give {FORMS}"
            );
        }
        let secs: i64 = t
            .parse()
            .map_err(|_| anyhow::anyhow!("{t:?} is too large"))?;
        return Timestamp::from_second(secs)
            .map_err(|e| anyhow::anyhow!("{t:?} as unix seconds: {e}"));
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Some(ago) = duration(t.strip_suffix(" ago").unwrap_or(t).trim_start_matches('-')) {
        return now
            .checked_sub(ago)
            .map_err(|e| anyhow::anyhow!("{t:?} ago: {e}"));
    }
    let local = TimeZone::system();
    if let Ok(dt) = t.replacen(' ', "T", 1).parse::<civil::DateTime>() {
        return Ok(dt.to_zoned(local)?.timestamp());
    }
    if let Ok(d) = t.parse::<civil::Date>() {
        return Ok(d.to_zoned(local)?.timestamp());
    }
    bail!("{t:?} is not a time: give {FORMS}")
}

/// A duration as `90s`, `15m`, `1h`, `2d`, `1h30m` (or jiff's friendly forms: `1 hour`).
pub fn duration(s: &str) -> Option<jiff::SignedDuration> {
    let t = s.trim();
    if t.is_empty() || !t.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    // Days are 24 hours here: "the last 2d" is a length of time, not a calendar span.
    let span: jiff::Span = t.parse().ok()?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    (!d.is_negative()).then_some(d)
}

/// [`parse_at`] for the end of a window: a date alone means the end of that day (so
/// `--start 2026-12-07 --end 2026-12-07` is that whole day).
pub fn parse_end(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(d) = s.trim().parse::<civil::Date>() {
        let next = d.tomorrow()?.to_zoned(TimeZone::system())?.timestamp();
        return Ok(next.checked_sub(jiff::SignedDuration::from_secs(1))?);
    }
    parse_at(s, now)
}

/// Parses `--since D` (a duration ago: `1h`, `1h ago`) into the start of the window.
pub fn since(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let t = s.trim();
    let Some(d) = duration(t.strip_suffix(" ago").unwrap_or(t).trim_start_matches('-')) else {
        bail!("--since {s:?}: give a duration such as 15m, 1h, 2d or 1h30m");
    };
    now.checked_sub(d)
        .map_err(|e| anyhow::anyhow!("--since {s:?}: {e}"))
}

/// A time for a table: local date and time with the zone's abbreviation (`2026-12-07
/// 09:30:12 CET`).
pub fn local(ts: Timestamp) -> String {
    in_zone(ts, TimeZone::system())
}

fn in_zone(ts: Timestamp, tz: TimeZone) -> String {
    Zoned::new(ts, tz)
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// [`local`] of Unix nanoseconds (0: `-`).
pub fn local_nanos(n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    match Timestamp::from_nanosecond(n as i128) {
        Ok(ts) => local(ts),
        Err(_) => n.to_string(),
    }
}

/// [`local`] of Unix seconds.
pub fn local_secs(s: u64) -> String {
    match Timestamp::from_second(s as i64) {
        Ok(ts) => local(ts),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn at(s: &str) -> String {
        parse_at(s, now()).unwrap().to_string()
    }

    #[test]
    fn rfc3339_unix_seconds_and_now() {
        assert_eq!(at("2026-12-07T09:30:00Z"), "2026-12-07T09:30:00Z");
        assert_eq!(at("2026-12-07T09:30:00+01:00"), "2026-12-07T08:30:00Z");
        assert_eq!(at("1796644800"), "2026-12-07T12:00:00Z");
        assert_eq!(at("now"), "2026-12-07T12:00:00Z");
    }

    #[test]
    fn durations_ago() {
        assert_eq!(at("1h"), "2026-12-07T11:00:00Z");
        assert_eq!(at("-90s"), "2026-12-07T11:58:30Z");
        assert_eq!(at("2d"), "2026-12-05T12:00:00Z");
        assert_eq!(at("1h30m"), "2026-12-07T10:30:00Z");
        assert_eq!(at("15m ago"), "2026-12-07T11:45:00Z");
        assert_eq!(
            since("1h", now()).unwrap().to_string(),
            "2026-12-07T11:00:00Z"
        );
        assert_eq!(
            since("30m ago", now()).unwrap().to_string(),
            "2026-12-07T11:30:00Z"
        );
    }

    #[test]
    fn local_dates_take_the_system_zone() {
        let t = parse_at("2026-12-07 09:30", now()).unwrap();
        let expected = civil::date(2026, 12, 7)
            .at(9, 30, 0, 0)
            .to_zoned(TimeZone::system())
            .unwrap()
            .timestamp();
        assert_eq!(t, expected);
        assert!(parse_at("2026-12-07", now()).is_ok());
    }

    #[test]
    fn a_date_alone_ends_at_the_end_of_its_day() {
        let end = parse_end("2026-12-07", now()).unwrap();
        let start = parse_at("2026-12-07", now()).unwrap();
        assert_eq!(end.as_second() - start.as_second(), 86_399);
        assert_eq!(
            parse_end("1h", now()).unwrap(),
            parse_at("1h", now()).unwrap()
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_forms_accepted() {
        for bad in ["yesterday", "", "1 fortnight", "12:00", "-1x", "20261207"] {
            let e = parse_at(bad, now()).unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{bad:?}: {e}");
        }
        let e = since("2026-12-07", now()).unwrap_err().to_string();
        assert!(e.contains("15m"), "{e}");
    }

    #[test]
    fn tables_show_the_zone() {
        let ts: Timestamp = "2026-12-07T09:30:12Z".parse().unwrap();
        assert_eq!(in_zone(ts, TimeZone::UTC), "2026-12-07 09:30:12 UTC");
        let cet = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(in_zone(ts, cet), "2026-12-07 10:30:12 CET");
    }
}
