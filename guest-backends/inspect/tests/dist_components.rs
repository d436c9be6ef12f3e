//! Checks every component `build.sh` put in `guest-backends/dist/`: imports only what the
//! sandbox provides, exports the backend interface. Without built components the test prints
//! `SKIP` (run `./build.sh` or `make guests` first), or fails when `AIRLOCK_REQUIRE_GUESTS=1`.

use std::path::PathBuf;

#[test]
fn built_components_import_only_what_the_sandbox_provides() {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        if std::env::var("AIRLOCK_REQUIRE_GUESTS").is_ok_and(|v| v == "1") {
            panic!(
                "no components in {} (AIRLOCK_REQUIRE_GUESTS=1): run guest-backends/build.sh",
                dist.display()
            );
        }
        println!("SKIP: no components in {}; run guest-backends/build.sh first", dist.display());
        return;
    }
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let surface = guest_inspect::inspect(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let problems = guest_inspect::violations(&surface);
        assert!(problems.is_empty(), "{}: {problems:?}", file.display());
        assert!(surface.imports.iter().any(|i| i.starts_with("airlock:backend/")), "{}", file.display());
        println!("{}: {} imports ok", file.display(), surface.imports.len());
    }
}
