//! Why a sandboxed backend could not be set up. (Why a *call* failed is a
//! [`crate::BackendError`]; a limit hit during a call is a [`super::limits::LimitHit`].)
//!
//! Messages name the file, the backend, the import or the limit involved, so an operator can
//! act on them; none carries a credential value or a configuration value.

use std::path::PathBuf;

/// A failure to load, check, link or configure a sandboxed component.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component {path} is {size} bytes, more than the {max}-byte limit")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("invalid sha256 pin {pin:?}: expected 64 hexadecimal digits")]
    InvalidPin { pin: String },
    #[error(
        "component {path} has SHA-256 {actual}, but the configuration pins {expected}: refusing to load it"
    )]
    PinMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("component {path} does not compile: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error("component {path} imports `{import}`, which airlock does not provide: {reason}")]
    RefusedImport {
        path: PathBuf,
        import: String,
        reason: String,
    },
    #[error("component {path} cannot be hosted: {reason}")]
    MissingExport { path: PathBuf, reason: String },
    #[error("component {path} cannot be linked: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("backend `{backend}`: {reason}")]
    InvalidConfig { backend: String, reason: String },
    #[error("sandbox engine: {0}")]
    Engine(String),
}

/// A wasmtime error with its causes, outermost first, on one line.
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in error.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
