//! The contract in `wit/` parses and has the shape every backend and the host rely on.

use wit_parser::{Resolve, WorldItem};

#[test]
fn credential_backend_world_has_the_documented_shape() {
    let mut resolve = Resolve::default();
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let (pkg, _) = resolve.push_dir(&wit).expect("wit/ parses");
    let package = &resolve.packages[pkg];
    assert_eq!(package.name.to_string(), "airlock:backend@0.1.0");
    let world = resolve
        .select_world(&[pkg], Some("credential-backend"))
        .unwrap();
    let world = &resolve.worlds[world];
    let name_of = |item: &WorldItem| match item {
        WorldItem::Interface { id, .. } => resolve.interfaces[*id].name.clone().unwrap(),
        other => panic!("unexpected world item {other:?}"),
    };
    let mut imports: Vec<String> = world.imports.values().map(name_of).collect();
    imports.sort();
    // `types` is pulled in by `backend`'s `use`.
    assert_eq!(imports, ["config", "http", "log", "types"]);
    let exports: Vec<String> = world.exports.values().map(name_of).collect();
    assert_eq!(exports, ["backend"]);
    let backend = package.interfaces["backend"];
    let mut funcs: Vec<&str> = resolve.interfaces[backend]
        .functions
        .keys()
        .map(String::as_str)
        .collect();
    funcs.sort();
    assert_eq!(
        funcs,
        [
            "delete-value",
            "get-value",
            "get-values",
            "health",
            "init",
            "store-value"
        ]
    );
    let types = package.interfaces["types"];
    let error = resolve.interfaces[types].types["backend-error"];
    let wit_parser::TypeDefKind::Variant(v) = &resolve.types[error].kind else {
        panic!("backend-error is a variant");
    };
    let cases: Vec<&str> = v.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cases,
        [
            "not-found",
            "denied",
            "unavailable",
            "invalid-config",
            "unsupported",
            "internal"
        ]
    );
    // Every item is documented.
    for (_, iface) in resolve.interfaces.iter() {
        assert!(
            iface.docs.contents.is_some(),
            "interface {:?} undocumented",
            iface.name
        );
        for (name, f) in &iface.functions {
            assert!(f.docs.contents.is_some(), "function {name} undocumented");
        }
    }
}
