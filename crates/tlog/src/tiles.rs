//! C2SP tlog-tiles resource names and entry bundles (c2sp.org/tlog-tiles, "Merkle Tree" and
//! "Log entries"): `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`, tiles of 256 hashes, and
//! bundles of big-endian uint16 length-prefixed entries.

/// Hashes in a full tile (tile height 8).
pub const TILE_WIDTH: u64 = 256;
/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Encodes a tile index as zero-padded 3-digit path elements, all but the last prefixed with
/// `x`: 1234067 -> `x001/x234/067`.
pub fn index_path(n: u64) -> String {
    let mut groups = vec![n % 1000];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    groups.reverse();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g:03}")
            } else {
                format!("{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn width_suffix(width: u64) -> String {
    if width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

/// The path of the Merkle tile at `level`, index `n`, with `width` hashes (256 = full).
pub fn tile_path(level: u8, n: u64, width: u64) -> String {
    format!("tile/{level}/{}{}", index_path(n), width_suffix(width))
}

/// The path of entry bundle `n` with `width` entries (256 = full).
pub fn entries_path(n: u64, width: u64) -> String {
    format!("tile/entries/{}{}", index_path(n), width_suffix(width))
}

/// A parsed tile resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileRef {
    Hashes { level: u8, n: u64, width: u64 },
    Entries { n: u64, width: u64 },
}

/// Parses a tile or entry-bundle path (without any URL prefix), strictly: canonical paths only.
pub fn parse_path(path: &str) -> Option<TileRef> {
    let rest = path.strip_prefix("tile/")?;
    let (kind, rest) = rest.split_once('/')?;
    let (index, width) = match rest.split_once(".p/") {
        Some((i, w)) => {
            if w.is_empty() || w.starts_with('0') || !w.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let w: u64 = w.parse().ok()?;
            if !(1..TILE_WIDTH).contains(&w) {
                return None;
            }
            (i, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let parts: Vec<&str> = index.split('/').collect();
    let mut n: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            p.strip_prefix('x')?
        } else {
            p
        };
        if digits.len() != 3 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        n = n
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    // Canonical form only (no superfluous leading groups such as x000/).
    if index_path(n) != index {
        return None;
    }
    if kind == "entries" {
        return Some(TileRef::Entries { n, width });
    }
    if kind.is_empty()
        || (kind.len() > 1 && kind.starts_with('0'))
        || !kind.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let level: u8 = kind.parse().ok()?;
    (level <= 63).then_some(TileRef::Hashes { level, n, width })
}

/// Appends one entry to a bundle.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), usize> {
    if entry.len() > MAX_ENTRY_LEN {
        return Err(entry.len());
    }
    bundle.extend_from_slice(&(entry.len() as u16).to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits a bundle into its entries; `None` if it is not a well-formed bundle.
pub fn split_bundle(bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let end = 2usize.checked_add(len)?;
        if rest.len() < end {
            return None;
        }
        out.push(&rest[2..end]);
        rest = &rest[end..];
    }
    Some(out)
}

/// Width of the partial tile at `level` for a tree of `size` leaves (0 = none).
pub fn partial_width(level: u8, size: u64) -> u64 {
    let span = TILE_WIDTH.checked_pow(level as u32).unwrap_or(u64::MAX);
    (size / span) % TILE_WIDTH
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples() {
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(tile_path(0, 1234067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, 17), "tile/1/005.p/17");
        assert_eq!(entries_path(3, 112), "tile/entries/003.p/112");
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
        // 17, and one partial level 2 tile of width 1."
        assert_eq!(70_000 / 256, 273);
        assert_eq!(partial_width(0, 70_000), 112);
        assert_eq!(partial_width(1, 70_000), 17);
        assert_eq!(partial_width(2, 70_000), 1);
        assert_eq!(partial_width(0, 256), 0);
        assert_eq!(partial_width(1, 256), 1);
    }

    #[test]
    fn strict_parsing() {
        assert_eq!(
            parse_path("tile/0/x001/x234/067"),
            Some(TileRef::Hashes {
                level: 0,
                n: 1234067,
                width: 256
            })
        );
        assert_eq!(
            parse_path("tile/entries/003.p/112"),
            Some(TileRef::Entries { n: 3, width: 112 })
        );
        for bad in [
            "tile/0/1234067",
            "tile/0/x000/067",
            "tile/00/067",
            "tile/64/000",
            "tile/0/067.p/0",
            "tile/0/067.p/256",
            "tile/0/067.p/012",
            "tile/0/x1/067",
            "tile/0/067/",
            "tile/a/000",
            "checkpoint",
            "tile/entries/x001",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn bundles_roundtrip_and_reject_truncation() {
        let mut b = Vec::new();
        for e in [b"".as_slice(), b"a", &[7u8; 300]] {
            push_entry(&mut b, e).unwrap();
        }
        let parts = split_bundle(&b).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 300);
        assert!(split_bundle(&b[..b.len() - 1]).is_none());
        assert!(push_entry(&mut b, &vec![0u8; 70_000]).is_err());
    }

    proptest! {
        #[test]
        fn paths_roundtrip(level in 0u8..64, n in any::<u64>(), w in 1u64..=256) {
            let p = tile_path(level, n, w);
            prop_assert_eq!(parse_path(&p), Some(TileRef::Hashes { level, n, width: w }));
            let e = entries_path(n, w);
            prop_assert_eq!(parse_path(&e), Some(TileRef::Entries { n, width: w }));
        }
    }
}
