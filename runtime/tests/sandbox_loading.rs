//! Loading components: SHA-256 pins, the compiled-artifact cache, the import policy and
//! `inspect`.

mod sandbox_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock::CredentialBackend;
use airlock::sandbox::{
    EngineConfig, ImportVerdict, LoadSource, SandboxEngine, SandboxError, WasmBackend,
    WasmBackendConfig, inspect, sha256_hex,
};
use sandbox_support::{FakeStore, STORE_URL, cred, engine, guest};

fn config(path: &Path) -> WasmBackendConfig {
    let mut c = WasmBackendConfig::new("loader-test", path, FakeStore::with(&[("k", "v")]));
    c.config.insert("address".into(), STORE_URL.into());
    c
}

fn small_engine(cache: &Path) -> Arc<SandboxEngine> {
    SandboxEngine::new(EngineConfig {
        max_instances: 8,
        cache_dir: Some(cache.to_owned()),
        ..EngineConfig::default()
    })
    .unwrap()
}

/// Write a WAT component to a file and return its path.
fn wat_component(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(text).unwrap()).unwrap();
    path
}

#[test]
fn a_matching_pin_loads_and_a_mismatch_names_both_digests() {
    let Some(path) = guest("minimal") else { return };
    let actual = sha256_hex(&std::fs::read(&path).unwrap());

    let mut pinned = config(&path);
    pinned.sha256 = Some(actual.to_uppercase());
    let backend = WasmBackend::new(&engine(), pinned).unwrap();
    assert_eq!(backend.sha256(), actual);

    let wrong = "0".repeat(64);
    let mut mismatched = config(&path);
    mismatched.sha256 = Some(wrong.clone());
    let err = WasmBackend::new(&engine(), mismatched).unwrap_err();
    assert!(matches!(err, SandboxError::PinMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "component {} has SHA-256 {actual}, but the configuration pins {wrong}: refusing to load it",
            path.display()
        )
    );

    let mut invalid = config(&path);
    invalid.sha256 = Some("abc".into());
    assert_eq!(
        WasmBackend::new(&engine(), invalid)
            .unwrap_err()
            .to_string(),
        "invalid sha256 pin \"abc\": expected 64 hexadecimal digits"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_across_restarts_and_corrupt_entries_are_recompiled() {
    let Some(path) = guest("minimal") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache/components");

    let first = small_engine(&cache);
    let b = WasmBackend::new(&first, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Compiled);
    let b = WasmBackend::new(&first, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Cache);
    assert_eq!(b.get_value(&cred("k")).await.unwrap().expose(), "v");
    drop(b);
    drop(first);

    // A restart: a new engine with the same settings uses the entry.
    let second = small_engine(&cache);
    let b = WasmBackend::new(&second, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Cache);
    let entry = second.cache().entry_path(b.sha256()).unwrap();
    assert!(entry.exists());

    // Truncated: detected, recompiled, rewritten.
    let data = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &data[..data.len() / 2]).unwrap();
    let b = WasmBackend::new(&second, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Compiled);
    assert_eq!(std::fs::read(&entry).unwrap(), data);

    // One flipped byte in the machine code: detected too.
    let mut flipped = data.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&entry, &flipped).unwrap();
    let b = WasmBackend::new(&second, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Compiled);
    assert_eq!(b.get_value(&cred("k")).await.unwrap().expose(), "v");
    let b = WasmBackend::new(&second, config(&path)).unwrap();
    assert_eq!(b.load_source(), LoadSource::Cache);
}

fn refused(text: &str) -> SandboxError {
    let dir = tempfile::tempdir().unwrap();
    let path = wat_component(dir.path(), "c", text);
    WasmBackend::new(&engine(), config(&path)).unwrap_err()
}

#[test]
fn a_component_importing_wasi_http_is_refused_at_load() {
    let err = refused(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
        )"#,
    );
    match &err {
        SandboxError::RefusedImport { import, .. } => {
            assert_eq!(import, "wasi:http/outgoing-handler@0.2.0")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().ends_with(
            "imports `wasi:http/outgoing-handler@0.2.0`, which airlock does not provide: WASI HTTP is not provided: a backend reaches the network only through airlock:backend/http, which checks the operator's allow-list"
        ),
        "{err}"
    );
}

#[test]
fn unknown_packages_other_versions_and_bare_functions_are_refused() {
    let err = refused(r#"(component (import "evil:pkg/thing@1.0.0" (instance)))"#);
    assert!(
        err.to_string().contains(
            "imports `evil:pkg/thing@1.0.0`, which airlock does not provide: unknown interface"
        ),
        "{err}"
    );
    let err = refused(r#"(component (import "airlock:backend/http@0.2.0" (instance)))"#);
    assert!(
        err.to_string().ends_with(
            "the component was built against airlock:backend@0.2.0; airlock serves airlock:backend@0.1.0"
        ),
        "{err}"
    );
    let err = refused(r#"(component (import "exfiltrate" (func)))"#);
    assert!(err.to_string().contains("imports `exfiltrate`"), "{err}");
}

#[test]
fn a_component_without_the_backend_export_is_refused() {
    let err = refused("(component)");
    assert!(matches!(err, SandboxError::MissingExport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("it does not export airlock:backend/backend@0.1.0"),
        "{err}"
    );
}

#[test]
fn invalid_backend_settings_are_refused_naming_the_field() {
    let Some(path) = guest("minimal") else { return };
    let mut c = config(&path);
    c.pool_size = 0;
    assert_eq!(
        WasmBackend::new(&engine(), c).unwrap_err().to_string(),
        "backend `loader-test`: pool_size must be at least 1"
    );
    let mut c = config(&path);
    c.limits.max_memory_bytes = 1 << 30;
    assert_eq!(
        WasmBackend::new(&engine(), c).unwrap_err().to_string(),
        "backend `loader-test`: limits: max_memory_bytes 1073741824 exceeds the engine's max_memory_bytes 268435456"
    );
    let c = WasmBackendConfig::new("loader-test", "/nonexistent/x.wasm", FakeStore::with(&[]));
    assert!(
        WasmBackend::new(&engine(), c)
            .unwrap_err()
            .to_string()
            .starts_with("cannot read component /nonexistent/x.wasm:")
    );
}

#[test]
fn inspect_reports_imports_exports_and_whether_airlock_can_host_it() {
    let Some(path) = guest("minimal") else { return };
    let report = inspect(&engine(), &path).unwrap();
    assert!(report.hostable(), "{report}");
    assert_eq!(report.sha256, sha256_hex(&std::fs::read(&path).unwrap()));
    let http = report
        .imports
        .iter()
        .find(|i| i.item.name == "airlock:backend/http@0.1.0")
        .expect("imports http");
    assert_eq!(http.verdict, ImportVerdict::Airlock);
    assert_eq!(http.item.members, vec!["send"]);
    assert!(
        report
            .imports
            .iter()
            .filter(|i| i.item.name.starts_with("wasi:"))
            .all(|i| matches!(i.verdict, ImportVerdict::Wasi(_)))
    );
    let backend = report
        .exports
        .iter()
        .find(|e| e.name == "airlock:backend/backend@0.1.0")
        .expect("exports backend");
    assert_eq!(
        backend.members,
        vec![
            "delete-value",
            "get-value",
            "get-values",
            "health",
            "init",
            "store-value"
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains("airlock:backend/http@0.1.0 (instance) — provided by airlock"),
        "{text}"
    );
    assert!(text.ends_with("hostable:  yes\n"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = wat_component(
        dir.path(),
        "bad",
        r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
    );
    let report = inspect(&engine(), &bad).unwrap();
    assert!(!report.hostable());
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(
        report.problems[0].starts_with("import `wasi:http/outgoing-handler@0.2.0` is not provided")
    );
    assert_eq!(
        report.problems[1],
        "it does not export airlock:backend/backend@0.1.0"
    );
    println!("{report}");
}

#[test]
fn the_hostile_guest_uses_filesystem_and_sockets_and_is_still_hostable() {
    let Some(path) = guest("hostile") else { return };
    let report = inspect(&engine(), &path).unwrap();
    println!("{report}");
    assert!(report.hostable(), "{report}");
    for iface in [
        "wasi:filesystem/types",
        "wasi:sockets/tcp",
        "wasi:sockets/ip-name-lookup",
    ] {
        let import = report
            .imports
            .iter()
            .find(|i| i.item.name.starts_with(&format!("{iface}@0.2.")))
            .unwrap_or_else(|| panic!("hostile imports {iface}: {report}"));
        assert!(matches!(import.verdict, ImportVerdict::Wasi(_)));
    }
}
