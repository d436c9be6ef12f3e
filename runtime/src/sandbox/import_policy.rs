//! What a component may import, and what it must export.
//!
//! Invariant: a component is linked only if *every* import is an instance named in
//! [`AIRLOCK_INTERFACES`] (package `airlock:backend`, a version this host serves) or in
//! [`WASI_INTERFACES`] (WASI 0.2, served by wasmtime-wasi with a context that grants
//! nothing), and it exports `airlock:backend/backend` at a served version. Anything else —
//! `wasi:http/outgoing-handler`, an unknown package, an unversioned or bare function import —
//! is refused before instantiation, with an error naming the import. The check runs on the
//! component's declared type, so a component cannot reach a capability by not calling it at
//! start-up.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The package of airlock's own interfaces.
pub const AIRLOCK_PACKAGE: &str = "airlock:backend";
/// The version of `airlock:backend` this host implements (`wit/credential-backend.wit`).
pub const AIRLOCK_VERSION: (u64, u64, u64) = (0, 1, 0);
/// airlock's interfaces a component may import.
pub const AIRLOCK_INTERFACES: &[&str] = &["types", "http", "config", "log"];
/// The interface every backend must export.
pub const AIRLOCK_EXPORT: &str = "backend";

/// WASI 0.2 interfaces a component may import, with what each actually grants here.
/// Language runtimes import these whether or not they use them (Rust std: io and cli;
/// componentize-py: all of them), so they are linked, and the context makes them inert.
pub const WASI_INTERFACES: &[(&str, &str)] = &[
    ("wasi:io/error", "stream errors"),
    ("wasi:io/poll", "polling the host's own streams"),
    ("wasi:io/streams", "the streams below"),
    (
        "wasi:cli/environment",
        "empty environment and arguments, no initial directory",
    ),
    ("wasi:cli/exit", "exit ends the call with an error"),
    ("wasi:cli/stdin", "stdin closed"),
    ("wasi:cli/stdout", "stdout captured into the log, truncated"),
    ("wasi:cli/stderr", "stderr captured into the log, truncated"),
    ("wasi:cli/terminal-input", "no terminal"),
    ("wasi:cli/terminal-output", "no terminal"),
    ("wasi:cli/terminal-stdin", "no terminal"),
    ("wasi:cli/terminal-stdout", "no terminal"),
    ("wasi:cli/terminal-stderr", "no terminal"),
    ("wasi:clocks/monotonic-clock", "host monotonic clock"),
    ("wasi:clocks/wall-clock", "host wall clock"),
    ("wasi:filesystem/types", "no files: nothing is preopened"),
    ("wasi:filesystem/preopens", "no preopened directories"),
    ("wasi:random/random", "host randomness"),
    ("wasi:random/insecure", "host randomness"),
    ("wasi:random/insecure-seed", "host randomness"),
    ("wasi:sockets/network", "every address denied"),
    ("wasi:sockets/instance-network", "every address denied"),
    ("wasi:sockets/ip-name-lookup", "name lookup denied"),
    ("wasi:sockets/tcp", "TCP denied"),
    ("wasi:sockets/tcp-create-socket", "TCP denied"),
    ("wasi:sockets/udp", "UDP denied"),
    ("wasi:sockets/udp-create-socket", "UDP denied"),
];

/// The WASI minor version line served (0.2.x; wasmtime-wasi 48 implements 0.2.12 and
/// serves any 0.2 patch release through semver matching).
const WASI_VERSION_LINE: (u64, u64) = (0, 2);

/// What airlock does with one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportVerdict {
    /// One of airlock's interfaces.
    Airlock,
    /// A WASI interface, linked with a context that grants what the string says.
    Wasi(&'static str),
    /// Not provided; the component cannot be hosted. The string says why.
    Refused(String),
}

/// Split `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    }
}

/// (major, minor, patch) of a semver string, ignoring pre-release and build suffixes.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Whether `version` of `airlock:backend` is one this host serves: semver-compatible with
/// [`AIRLOCK_VERSION`] (for 0.x, the same minor).
fn airlock_version_served(version: Option<&str>) -> Result<(), String> {
    let (maj, min, patch) = AIRLOCK_VERSION;
    let served = format!("{AIRLOCK_PACKAGE}@{maj}.{min}.{patch}");
    let Some(version) = version else {
        return Err(format!(
            "it names no package version; airlock serves {served}"
        ));
    };
    match parse_version(version) {
        Some((m, n, _)) if m == maj && (maj > 0 || n == min) => Ok(()),
        Some(_) => Err(format!(
            "the component was built against {AIRLOCK_PACKAGE}@{version}; airlock serves {served}"
        )),
        None => Err(format!("`{version}` is not a semver version")),
    }
}

/// The verdict for an import named `name` whose item is an instance (`is_instance`).
pub fn classify_import(name: &str, is_instance: bool) -> ImportVerdict {
    if !is_instance {
        return ImportVerdict::Refused(
            "only interface (instance) imports are provided, not bare functions, types, modules or components".into(),
        );
    }
    let (path, version) = split_version(name);
    if let Some(iface) = path
        .strip_prefix(AIRLOCK_PACKAGE)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        if !AIRLOCK_INTERFACES.contains(&iface) {
            return ImportVerdict::Refused(format!(
                "{AIRLOCK_PACKAGE} has no importable interface `{iface}` (it has {})",
                AIRLOCK_INTERFACES.join(", ")
            ));
        }
        return match airlock_version_served(version) {
            Ok(()) => ImportVerdict::Airlock,
            Err(reason) => ImportVerdict::Refused(reason),
        };
    }
    if let Some((_, grants)) = WASI_INTERFACES.iter().find(|(iface, _)| *iface == path) {
        let (maj, min) = WASI_VERSION_LINE;
        return match version.and_then(parse_version) {
            Some((m, n, _)) if (m, n) == (maj, min) => ImportVerdict::Wasi(grants),
            _ => ImportVerdict::Refused(format!(
                "airlock serves {path} only at version {maj}.{min}.x, not {}",
                version.unwrap_or("(none)")
            )),
        };
    }
    if path.starts_with("wasi:http/") {
        return ImportVerdict::Refused(
            "WASI HTTP is not provided: a backend reaches the network only through airlock:backend/http, which checks the operator's allow-list".into(),
        );
    }
    if path.starts_with("wasi:") {
        return ImportVerdict::Refused("this WASI interface is not provided".into());
    }
    ImportVerdict::Refused(
        "unknown interface: airlock provides only airlock:backend and a WASI 0.2 subset".into(),
    )
}

/// Whether an export named `name` is airlock's `backend` interface at a served version.
pub fn is_backend_export(name: &str) -> Result<bool, String> {
    let (path, version) = split_version(name);
    if path != format!("{AIRLOCK_PACKAGE}/{AIRLOCK_EXPORT}") {
        return Ok(false);
    }
    airlock_version_served(version).map(|()| true)
}

/// The first refused import of `component`, as (name, reason).
pub fn first_refused_import(engine: &Engine, component: &Component) -> Option<(String, String)> {
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        let is_instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
        if let ImportVerdict::Refused(reason) = classify_import(name, is_instance) {
            return Some((name.to_owned(), reason));
        }
    }
    None
}

/// Why `component` does not export airlock's `backend` interface, if it does not.
pub fn missing_backend_export(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let mut version_problem = None;
    for (name, item) in ty.exports(engine) {
        match is_backend_export(name) {
            Ok(true) if matches!(item.ty, ComponentItem::ComponentInstance(_)) => return None,
            Ok(_) => {}
            Err(reason) => version_problem = Some(reason),
        }
    }
    let (maj, min, patch) = AIRLOCK_VERSION;
    Some(version_problem.unwrap_or_else(|| {
        format!("it does not export {AIRLOCK_PACKAGE}/{AIRLOCK_EXPORT}@{maj}.{min}.{patch}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airlock_and_wasi_imports_are_provided() {
        assert_eq!(
            classify_import("airlock:backend/http@0.1.0", true),
            ImportVerdict::Airlock
        );
        assert_eq!(
            classify_import("airlock:backend/log@0.1.3", true),
            ImportVerdict::Airlock
        );
        assert!(matches!(
            classify_import("wasi:cli/environment@0.2.6", true),
            ImportVerdict::Wasi(_)
        ));
        assert!(matches!(
            classify_import("wasi:sockets/tcp@0.2.9", true),
            ImportVerdict::Wasi(_)
        ));
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let refused = |name: &str| match classify_import(name, true) {
            ImportVerdict::Refused(reason) => reason,
            other => panic!("{name} was {other:?}"),
        };
        assert!(refused("wasi:http/outgoing-handler@0.2.0").contains("airlock:backend/http"));
        assert!(refused("evil:pkg/thing@1.0.0").contains("unknown interface"));
        assert_eq!(
            refused("airlock:backend/http@0.2.0"),
            "the component was built against airlock:backend@0.2.0; airlock serves airlock:backend@0.1.0"
        );
        assert!(refused("airlock:backend/http").contains("no package version"));
        assert!(refused("airlock:backend/secrets@0.1.0").contains("no importable interface"));
        assert!(refused("wasi:cli/environment@0.3.0").contains("0.2.x"));
        assert!(refused("wasi:clocks/timezone@0.2.6").contains("not provided"));
        assert!(matches!(
            classify_import("airlock:backend/http@0.1.0", false),
            ImportVerdict::Refused(_)
        ));
    }

    #[test]
    fn backend_export_versions() {
        assert_eq!(is_backend_export("airlock:backend/backend@0.1.0"), Ok(true));
        assert_eq!(is_backend_export("wasi:cli/run@0.2.0"), Ok(false));
        assert!(is_backend_export("airlock:backend/backend@1.0.0").is_err());
    }
}
