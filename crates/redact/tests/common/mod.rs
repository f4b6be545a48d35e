//! Shared by the quality tests: where the development sets are.

use std::path::PathBuf;

/// `../shared/evaldata` next to the repository root; `None` (with a message) when it is absent
/// outside CI, a failure under `CI=true`.
pub fn evaldata() -> Option<PathBuf> {
    // The manifest dir at run time (cargo sets it): a test binary built in another checkout that
    // shares the target directory must still look next to this one.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = PathBuf::from(manifest).join("../../../shared/evaldata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing; CI needs the evaluation data", dir.display());
    }
    eprintln!("SKIPPED: {} is absent (outside CI)", dir.display());
    None
}
