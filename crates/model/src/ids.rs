//! Trace and span identifiers (W3C trace context sizes: 16 and 8 bytes, never all zero).

use std::fmt;

/// A 16-byte trace id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} must not be all zeros")]
    Zero { what: &'static str },
    #[error("{what} must be {expected} lowercase or uppercase hex characters")]
    Hex { what: &'static str, expected: usize },
}

impl TraceId {
    pub fn from_bytes(b: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 16] = b.try_into().map_err(|_| IdError::Length {
            what: "trace id",
            expected: 16,
            got: b.len(),
        })?;
        if arr == [0; 16] {
            return Err(IdError::Zero { what: "trace id" });
        }
        Ok(Self(arr))
    }

    /// Parses 32 hex characters. Shorter ids (as some clients print) are left-padded with zeros,
    /// as Tempo does.
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        let err = IdError::Hex {
            what: "trace id",
            expected: 32,
        };
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err);
        }
        let padded = format!("{s:0>32}");
        let bytes = hex::decode(padded).map_err(|_| err)?;
        Self::from_bytes(&bytes)
    }

    /// The first 8 bytes as a big-endian integer, used by block indexes.
    pub fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(p)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl SpanId {
    pub fn from_bytes(b: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 8] = b.try_into().map_err(|_| IdError::Length {
            what: "span id",
            expected: 8,
            got: b.len(),
        })?;
        if arr == [0; 8] {
            return Err(IdError::Zero { what: "span id" });
        }
        Ok(Self(arr))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_rules() {
        assert!(TraceId::from_bytes(&[1; 16]).is_ok());
        assert_eq!(
            TraceId::from_bytes(&[1; 15]).unwrap_err().to_string(),
            "trace id must be 16 bytes, got 15"
        );
        assert!(matches!(
            TraceId::from_bytes(&[0; 16]),
            Err(IdError::Zero { .. })
        ));
        let t = TraceId::from_hex("abc").unwrap();
        assert_eq!(t.to_hex(), format!("{:0>32}", "abc"));
        assert!(TraceId::from_hex("xyz").is_err());
        assert!(TraceId::from_hex(&"1".repeat(33)).is_err());
    }

    #[test]
    fn span_id_rules() {
        assert!(SpanId::from_bytes(&[7; 8]).is_ok());
        assert!(SpanId::from_bytes(&[0; 8]).is_err());
        assert!(SpanId::from_bytes(&[1; 9]).is_err());
    }
}
