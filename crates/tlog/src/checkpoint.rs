//! C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint, "Note text"): origin, tree size, root hash,
//! optional extension lines.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tlog_tiles::Hash;

/// A checkpoint body.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

/// Why a checkpoint body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
}

impl Checkpoint {
    /// Parses the note text of a checkpoint (including its final newline).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::Malformed;
        let body = text
            .strip_suffix('\n')
            .ok_or(bad("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(bad("empty origin"))?;
        let size_s = lines.next().ok_or(bad("missing tree size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|c| c.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad("tree size must be decimal without leading zeros"));
        }
        let size = size_s
            .parse::<u64>()
            .map_err(|_| bad("tree size out of range"))?;
        let hash_s = lines.next().ok_or(bad("missing root hash"))?;
        let raw = B64
            .decode(hash_s)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("root hash must be 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("extension lines must be non-empty"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root: Hash(root),
            extensions,
        })
    }

    /// The note text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses_and_roundtrips() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(text).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(c.to_text(), text);
        let ext = "test\n123\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\nExtendo\n";
        assert_eq!(Checkpoint::parse(ext).unwrap().extensions, vec!["Extendo"]);
        assert_eq!(Checkpoint::parse(ext).unwrap().to_text(), ext);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let h = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            format!("o\n1\n{h}"),
            format!("\n1\n{h}\n"),
            format!("o\n01\n{h}\n"),
            format!("o\n-1\n{h}\n"),
            format!("o\n1\n{h}x\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{h}\n\n"),
            "o\n1\n".to_string(),
            format!("o\n99999999999999999999\n{h}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{h}\n")).unwrap().size, 0);
    }
}
