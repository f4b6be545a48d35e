//! The redaction engine (issue 4), first part: detectors that find personal data and secrets in
//! text and validate what they find (checksums, ranges, parsing), so that a number that merely
//! looks like a card is not treated as one. Pure: no I/O, no server dependencies, so the edge agent
//! can use the same code.
#![forbid(unsafe_code)]

pub mod detect;
pub mod secrets;
pub mod sql;

pub use detect::{Finding, Kind, scan};
