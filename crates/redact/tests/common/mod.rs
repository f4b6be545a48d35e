//! Shared by the quality tests: where the development sets are.

use std::path::PathBuf;

/// `../shared/evaldata` next to the repository root; `None` (with a message) when it is absent
/// outside CI, a failure under `CI=true`.
pub fn evaldata() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evaldata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing; CI needs the evaluation data", dir.display());
    }
    eprintln!("SKIPPED: {} is absent (outside CI)", dir.display());
    None
}
