//! What a guest component asks of its host: its top-level imports and exports, read with
//! `wasmparser`, and the check `build.sh` and the tests apply to every built guest.
//!
//! The rule (DESIGN.md, "The sandbox"): a guest may import only airlock's own interfaces
//! (`airlock:backend/*`) and the WASI subset the sandbox gives a language runtime to start:
//! `wasi:io/{error,poll,streams}` and the `wasi:cli` environment, exit, stdio and terminal
//! interfaces (which every Rust `wasm32-wasip2` std guest declares, calling none of them), plus
//! `wasi:clocks` and `wasi:random` (a guest that signs requests needs the time), any 0.2.x
//! version. Anything else — `wasi:http`, `wasi:sockets`, `wasi:filesystem` — is a way around
//! the host's outbound policy or a file the sandbox never grants, so the build fails first,
//! naming it. A guest must export `airlock:backend/backend@0.1.0`.
//!
//! [`beyond_minimal`] names the clocks/random imports separately: a guest without them also
//! instantiates against a linker that defines every WASI import as a trap.

use std::fmt;

use wasmparser::{Encoding, Parser, Payload};

/// The interface every backend must export.
pub const REQUIRED_EXPORT: &str = "airlock:backend/backend@0.1.0";

/// The WASI interfaces (without version) a guest may import.
pub const ALLOWED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The allowed imports that a Rust std guest does not declare by itself: clocks and random.
pub fn beyond_minimal(surface: &Surface) -> Vec<&str> {
    surface
        .imports
        .iter()
        .map(String::as_str)
        .filter(|i| i.starts_with("wasi:clocks/") || i.starts_with("wasi:random/"))
        .collect()
}

/// A component's top-level imports and exports, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Why a file could not be inspected.
#[derive(Debug)]
pub struct InspectError(pub String);

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InspectError {}

/// Reads the top-level imports and exports of a component. Core modules (not components)
/// are refused: the host loads components only. Nested modules and components are skipped:
/// their imports are satisfied inside the component, not by the host.
pub fn inspect(bytes: &[u8]) -> Result<Surface, InspectError> {
    let mut surface = Surface::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError(format!("not a valid WebAssembly file: {e}")))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                return Err(InspectError("a core module, not a component".into()));
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| InspectError(format!("bad import section: {e}")))?;
                    surface.imports.push(import.name.full_name().into_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| InspectError(format!("bad export section: {e}")))?;
                    surface.exports.push(export.name.full_name().into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(surface)
}

/// Whether `import` (e.g. `wasi:io/streams@0.2.6`) is one the sandbox provides.
pub fn import_allowed(import: &str) -> bool {
    let (name, version) = match import.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (import, None),
    };
    if name.starts_with("airlock:backend/") {
        return true;
    }
    ALLOWED_WASI.contains(&name) && version.is_some_and(|v| v.starts_with("0.2."))
}

/// Every rule `surface` breaks, as messages naming the offending import or missing export;
/// empty when the component is acceptable.
pub fn violations(surface: &Surface) -> Vec<String> {
    let mut out: Vec<String> = surface
        .imports
        .iter()
        .filter(|i| !import_allowed(i))
        .map(|i| format!("imports `{i}`, which the sandbox does not provide"))
        .collect();
    if !surface.exports.iter().any(|e| e == REQUIRED_EXPORT) {
        out.push(format!("does not export `{REQUIRED_EXPORT}`"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_imports() {
        for ok in [
            "airlock:backend/http@0.1.0",
            "airlock:backend/types@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/terminal-stdout@0.2.9",
        ] {
            assert!(import_allowed(ok), "{ok}");
        }
        for bad in [
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:clocks/timezone@0.2.6",
            "wasi:io/streams@0.3.0",
            "wasi:io/streams",
            "env",
        ] {
            assert!(!import_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn violations_name_the_problem() {
        let s = Surface { imports: vec!["wasi:sockets/tcp@0.2.6".into()], exports: vec![] };
        assert_eq!(
            violations(&s),
            vec![
                "imports `wasi:sockets/tcp@0.2.6`, which the sandbox does not provide",
                "does not export `airlock:backend/backend@0.1.0`"
            ]
        );
        let ok = Surface {
            imports: vec!["airlock:backend/log@0.1.0".into()],
            exports: vec![REQUIRED_EXPORT.into()],
        };
        assert!(violations(&ok).is_empty());
    }

    #[test]
    fn refuses_core_modules_and_garbage() {
        assert!(inspect(b"\0asm\x01\0\0\0").is_err(), "a core module");
        assert!(inspect(b"not wasm").is_err());
    }
}
