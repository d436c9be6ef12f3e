//! The four shipped backends, as the operator sees them: `airlock backends inspect` on each
//! component in `guest-backends/dist/` says it can be hosted, and every import it lists is
//! airlock's world or the WASI subset the sandbox provides — no `wasi:http`, no sockets or
//! files beyond the denied stubs a language runtime links.

mod support;

use support::{Airlock, repo_root};

/// Inspecting compiles the component, which takes about a minute per backend in a debug
/// build; one is inspected here through the CLI, and `guest-backends/inspect`'s test checks
/// the imports of all four without compiling them.
const BACKENDS: [&str; 1] = ["hashicorp-vault"];

/// What a Rust std guest may import: airlock's world, wasi:io and wasi:cli (DESIGN.md:
/// "Facts measured on this machine"). Anything else in a shipped backend is a regression.
const ALLOWED_PREFIXES: [&str; 3] = ["airlock:backend/", "wasi:io/", "wasi:cli/"];

#[test]
fn every_shipped_backend_is_hostable_and_imports_only_the_provided_subset() {
    let dist = repo_root().join("guest-backends/dist");
    let required = std::env::var("AIRLOCK_REQUIRE_GUESTS").is_ok_and(|v| v == "1");
    let al = Airlock::new();
    for name in BACKENDS {
        let file = dist.join(format!("{name}.wasm"));
        if !file.exists() {
            assert!(
                !required,
                "{} missing: run guest-backends/build.sh",
                file.display()
            );
            eprintln!("SKIP: {} missing; run `make guests`", file.display());
            return;
        }
        let out = al
            .run(&["backends", "inspect", file.to_str().unwrap()])
            .ok();
        assert!(
            out.stdout.contains("hostable:  yes"),
            "{name}: {}",
            out.stdout
        );
        let section: Vec<&str> = out
            .stdout
            .split("imports:\n")
            .nth(1)
            .and_then(|rest| rest.split("exports:\n").next())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
            .map(|l| l.trim().split(' ').next().unwrap_or_default())
            .collect();
        assert!(!section.is_empty(), "{name}: no imports listed");
        for import in &section {
            assert!(
                ALLOWED_PREFIXES.iter().any(|p| import.starts_with(p)),
                "{name} imports {import}, outside what shipped backends may use"
            );
        }
        assert!(
            section
                .iter()
                .any(|i| i.starts_with("airlock:backend/http@0.1")),
            "{name}: uses the http import"
        );
        assert!(
            out.stdout.contains("airlock:backend/backend@0.1.0"),
            "{name}: exports the backend interface"
        );
    }
}
