//! Loading components from disk: SHA-256 pinning, compilation, and the on-disk cache of
//! compiled artifacts.
//!
//! Invariants:
//! - The component file is read once, hashed, and checked against the pin *before* any of
//!   its bytes reach the compiler; a mismatch refuses to load and names both digests.
//! - A cache entry is keyed by the component's SHA-256 and the engine's
//!   `precompile_compatibility_hash` (wasmtime version, target, every setting that changes
//!   generated code), so a restart with the same engine reuses it and anything else misses.
//! - `Component::deserialize` trusts its input (it maps machine code and runs it), so an
//!   entry is used only after its header, its length and the SHA-256 of the artifact stored
//!   in the header all check out, and the header names the same component digest. A
//!   truncated, corrupted or mismatched entry is logged, recompiled and rewritten, never
//!   trusted. The digest detects accidents (partial writes, disk errors, a copied file); it
//!   cannot stop someone who can write to the cache directory from writing a consistent
//!   entry, so the directory must be writable only by airlock, like its data directory.
//! - Entries are written to a temporary file and renamed into place, so readers never see
//!   a half-written entry, and concurrent loads of the same component are harmless.
//! - Failing to write the cache is logged and otherwise ignored: a read-only data directory
//!   costs compile time, never availability.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::{SandboxError, error_chain};

/// Largest component file accepted, in bytes. The largest real guests seen are ≈ 18 MB
/// (componentize-py); the cap stops a misconfigured path (a disk image, `/dev/zero`) from
/// being read into memory whole.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// First bytes of every cache entry: names the format and its version.
const MAGIC: &[u8; 16] = b"airlock-cwasm\x00\x00\x01";
/// Magic, SHA-256 of the source component, SHA-256 of the artifact.
const HEADER_LEN: usize = 16 + 32 + 32;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now (no cache, a miss, or a rejected entry).
    Compiled,
    /// Deserialized from a verified cache entry.
    Cache,
}

/// A component ready to link, with what is known about its origin.
#[derive(Clone)]
pub struct LoadedComponent {
    pub component: Component,
    /// Lower-case hex SHA-256 of the component file.
    pub sha256: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub source: LoadSource,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("size_bytes", &self.size_bytes)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The on-disk cache of compiled components.
#[derive(Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash becomes a digest
/// that is stable across processes (std's `DefaultHasher` promises no such thing).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Normalise a configured pin: 64 hex digits, either case, optional `sha256:` prefix.
pub fn parse_pin(pin: &str) -> Result<String, SandboxError> {
    let trimmed = pin.trim();
    let digits = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    if digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_lowercase())
    } else {
        Err(SandboxError::InvalidPin {
            pin: pin.to_owned(),
        })
    }
}

/// Read a component file, refusing oversized ones.
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>, SandboxError> {
    let read_err = |source| SandboxError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_COMPONENT_BYTES {
        return Err(SandboxError::TooLarge {
            path: path.to_owned(),
            size,
            max: MAX_COMPONENT_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_COMPONENT_BYTES + 1),
        &mut bytes,
    )
    .map_err(read_err)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(SandboxError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            max: MAX_COMPONENT_BYTES,
        });
    }
    Ok(bytes)
}

impl ComponentCache {
    /// A cache in `dir` (created on first write) for components compiled by `engine`;
    /// `None` disables caching.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..16]);
        ComponentCache { dir, engine_key }
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where the entry for a component with digest `sha256` lives.
    pub fn entry_path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// Read `path`, check it against `pin` (if any), and return it compiled, from the cache
    /// when a verified entry exists.
    pub fn load(
        &self,
        engine: &Engine,
        path: &Path,
        pin: Option<&str>,
    ) -> Result<LoadedComponent, SandboxError> {
        let expected = pin.map(parse_pin).transpose()?;
        let bytes = read_component(path)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let sha256 = hex(&digest);
        if let Some(expected) = expected
            && expected != sha256
        {
            return Err(SandboxError::PinMismatch {
                path: path.to_owned(),
                expected,
                actual: sha256,
            });
        }
        let size_bytes = bytes.len() as u64;
        let loaded = |component, source| LoadedComponent {
            component,
            sha256: sha256.clone(),
            path: path.to_owned(),
            size_bytes,
            source,
        };

        let entry = self.entry_path(&sha256);
        if let Some(entry) = &entry
            && let Some(component) = self.try_cached(engine, entry, &digest)
        {
            return Ok(loaded(component, LoadSource::Cache));
        }

        let component = Component::new(engine, &bytes).map_err(|e| SandboxError::Compile {
            path: path.to_owned(),
            reason: error_chain(&e),
        })?;
        if let Some(entry) = &entry {
            match component.serialize() {
                Ok(artifact) => {
                    if let Err(e) = write_entry(entry, &digest, &artifact) {
                        tracing::warn!(entry = %entry.display(), error = %e,
                            "cannot write the component cache; the component will be compiled again next start");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot serialize a compiled component")
                }
            }
        }
        Ok(loaded(component, LoadSource::Compiled))
    }

    /// The component in `entry`, if the entry exists and verifies.
    fn try_cached(&self, engine: &Engine, entry: &Path, source: &[u8; 32]) -> Option<Component> {
        let data = match std::fs::read(entry) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(entry = %entry.display(), error = %e, "cannot read a component cache entry; recompiling");
                return None;
            }
        };
        let artifact = match verify_entry(&data, source) {
            Ok(artifact) => artifact,
            Err(reason) => {
                tracing::warn!(entry = %entry.display(), reason,
                    "component cache entry rejected; recompiling");
                return None;
            }
        };
        // SAFETY: `artifact` is exactly the bytes that `Component::serialize` produced for
        // this component with an engine of the same compatibility hash: its SHA-256 and the
        // source digest recorded beside it were verified above. The remaining risk, an
        // attacker with write access to the cache directory, is outside what the cache
        // defends against (see the module documentation).
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %entry.display(), error = %error_chain(&e),
                    "component cache entry does not deserialize; recompiling");
                None
            }
        }
    }
}

/// The artifact inside a cache entry, if the entry is well-formed, complete and for the
/// component with digest `source`.
fn verify_entry<'a>(data: &'a [u8], source: &[u8; 32]) -> Result<&'a [u8], &'static str> {
    if data.len() < HEADER_LEN {
        return Err("shorter than its header (truncated)");
    }
    let (header, artifact) = data.split_at(HEADER_LEN);
    if &header[..16] != MAGIC {
        return Err("unknown format");
    }
    if &header[16..48] != source {
        return Err("made from a different component");
    }
    if header[48..80] != Sha256::digest(artifact)[..] {
        return Err("artifact digest mismatch (corrupt or truncated)");
    }
    Ok(artifact)
}

/// Write `artifact` with its header to `entry`, atomically.
fn write_entry(entry: &Path, source: &[u8; 32], artifact: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = entry.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(source)?;
        file.write_all(&Sha256::digest(artifact))?;
        file.write_all(artifact)?;
        file.sync_all()?;
        std::fs::rename(&tmp, entry)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_normalised_and_validated() {
        let upper = "A".repeat(64);
        assert_eq!(parse_pin(&upper).unwrap(), "a".repeat(64));
        assert_eq!(
            parse_pin(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            "0".repeat(64)
        );
        assert!(matches!(
            parse_pin("abc"),
            Err(SandboxError::InvalidPin { .. })
        ));
        assert!(parse_pin(&"g".repeat(64)).is_err());
    }

    #[test]
    fn entries_verify_only_when_intact() {
        let source: [u8; 32] = Sha256::digest(b"component").into();
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("x.cwasm");
        write_entry(&entry, &source, b"artifact bytes").unwrap();
        let data = std::fs::read(&entry).unwrap();
        assert_eq!(verify_entry(&data, &source), Ok(&b"artifact bytes"[..]));

        let truncated = &data[..data.len() - 3];
        assert!(
            verify_entry(truncated, &source)
                .unwrap_err()
                .contains("digest")
        );
        assert!(
            verify_entry(&data[..10], &source)
                .unwrap_err()
                .contains("truncated")
        );
        let mut flipped = data.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(verify_entry(&flipped, &source).is_err());
        let other: [u8; 32] = Sha256::digest(b"other").into();
        assert_eq!(
            verify_entry(&data, &other),
            Err("made from a different component")
        );
    }
}
