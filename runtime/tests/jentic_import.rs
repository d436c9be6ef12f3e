//! `airlock import jentic-mini` against a database built the way Jentic Mini builds it
//! (tests/fixtures/make_jentic_mini_db.py replays Jentic's migrations and encrypts values
//! with Python's Fernet).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Airlock, python_with_cryptography, repo_root};

/// Build a Jentic Mini database in `dir`; returns its path and the generator's description.
fn jentic_db(dir: &Path, extra: &[&str]) -> (PathBuf, Value) {
    let db = dir.join("jentic").join("jentic-mini.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(repo_root().join("tests/fixtures/make_jentic_mini_db.py"))
        .arg(&db)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (db, serde_json::from_slice(&out.stdout).unwrap())
}

fn show(al: &Airlock, id: &str) -> Value {
    let out = al.run(&["credentials", "show", id, "--json"]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn listed_ids(al: &Airlock, toolkit: &str) -> Vec<String> {
    let out = al
        .run(&["credentials", "list", "--toolkit", toolkit, "--json"])
        .ok();
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    list.iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn imports_everything_and_a_second_run_changes_nothing() {
    if !python_with_cryptography() {
        return;
    }
    let al = Airlock::new();
    let (db, expected) = jentic_db(al.dir.path(), &[]);
    let db = db.to_str().unwrap();
    let out = al.run(&["import", "jentic-mini", "--db", db]).ok();
    assert!(out.stdout.contains("6 new"), "{}", out.stdout);

    let creds = expected["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 6);
    for c in creds {
        let id = c["id"].as_str().unwrap();
        let got = show(&al, id);
        assert_eq!(got["label"], c["label"], "{id}");
        assert_eq!(got["api_id"], c["api_id"], "{id}");
        let auth = c["auth_type"].as_str().unwrap_or("none");
        assert_eq!(got["auth_type"], auth, "{id}");
        assert_eq!(got["identity"], c["identity"], "{id}");
        assert_eq!(got["description"], c["description"], "{id}");
        assert_eq!(got["backend"], "fernet");
        let attrs = &got["attributes"];
        for key in ["scheme", "server_variables"] {
            if c[key].is_null() {
                assert!(attrs.get(key).is_none(), "{id} {key}");
            } else {
                assert_eq!(attrs[key], c[key], "{id} {key}");
            }
        }
        let routes: Vec<(String, String)> = c["route_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
            .collect();
        let got_routes: Vec<(String, String)> = attrs
            .get("routes")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        (
                            r["host"].as_str().unwrap().into(),
                            r["path_prefix"].as_str().unwrap().into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut routes_sorted = routes.clone();
        routes_sorted.sort();
        assert_eq!(got_routes, routes_sorted, "{id} routes");
        assert_eq!(al.reveal(id), c["value"].as_str().unwrap(), "{id} value");
    }

    // Toolkits and bindings (the default toolkit's explicit rows are implicit here).
    for tk in expected["toolkits"].as_array().unwrap() {
        let id = tk["id"].as_str().unwrap();
        let mut want: Vec<String> = expected["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b[0] == id)
            .map(|b| b[1].as_str().unwrap().to_owned())
            .collect();
        want.sort();
        if id == "default" {
            assert_eq!(listed_ids(&al, id).len(), 6);
        } else {
            assert!(!want.is_empty(), "fixture binds something to {id}");
            assert_eq!(listed_ids(&al, id), want, "bindings of {id}");
        }
    }

    let before = al.snapshot();
    let again = al.run(&["import", "jentic-mini", "--db", db]).ok();
    assert!(again.stdout.contains("6 unchanged"), "{}", again.stdout);
    assert_eq!(al.snapshot(), before, "a second import must change nothing");
}

#[test]
fn a_corrupted_token_is_reported_and_the_rest_import() {
    if !python_with_cryptography() {
        return;
    }
    let al = Airlock::new();
    let (db, expected) = jentic_db(al.dir.path(), &["--corrupt", "api.groq.com/openai-prod"]);
    let out = al
        .run(&["import", "jentic-mini", "--db", db.to_str().unwrap()])
        .fails_with("credential 'api.groq.com/openai-prod' not imported: value does not decrypt");
    assert!(out.stdout.contains("5 new"), "{}", out.stdout);
    al.run(&["credentials", "show", "api.groq.com/openai-prod"])
        .fails_with("credential 'api.groq.com/openai-prod' not found");
    for c in expected["credentials"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if id != "api.groq.com/openai-prod" {
            assert_eq!(al.reveal(id), c["value"].as_str().unwrap());
        }
    }
}

#[test]
fn dry_run_writes_nothing() {
    if !python_with_cryptography() {
        return;
    }
    let al = Airlock::new();
    let (db, _) = jentic_db(al.dir.path(), &[]);
    let db = db.to_str().unwrap();
    let out = al
        .run(&["import", "jentic-mini", "--db", db, "--dry-run"])
        .ok();
    assert!(out.stdout.starts_with("would import"), "{}", out.stdout);
    assert!(out.stdout.contains("6 new"), "{}", out.stdout);
    assert!(
        !al.data_dir().exists(),
        "a dry run must not create the data directory"
    );

    al.add_with_value("already-here", "x", "v");
    let before = al.snapshot();
    al.run(&["import", "jentic-mini", "--db", db, "--dry-run"])
        .ok();
    assert_eq!(al.snapshot(), before);
}

#[test]
fn key_from_env_or_explicit_file() {
    if !python_with_cryptography() {
        return;
    }
    let al = Airlock::new();
    let (db, expected) = jentic_db(al.dir.path(), &["--no-key-file"]);
    let db = db.to_str().unwrap();
    // No vault.key beside the DB and no env key: a clear error naming the file.
    al.run(&["import", "jentic-mini", "--db", db])
        .fails_with("vault.key");
    let key = expected["key"].as_str().unwrap();
    let key_file = al.dir.path().join("elsewhere.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    al.run(&[
        "import",
        "jentic-mini",
        "--db",
        db,
        "--key-file",
        key_file.to_str().unwrap(),
        "--dry-run",
    ])
    .ok();
    // JENTIC_VAULT_KEY is also airlock's own key when no AIRLOCK_VAULT_KEY(S) is set.
    let al = al.with_env("JENTIC_VAULT_KEY", key);
    al.run(&["import", "jentic-mini", "--db", db]).ok();
    let first = &expected["credentials"][0];
    assert_eq!(
        al.reveal(first["id"].as_str().unwrap()),
        first["value"].as_str().unwrap()
    );
}

#[test]
fn not_a_jentic_database_is_a_clear_error() {
    let al = Airlock::new();
    let bogus = al.dir.path().join("other.db");
    rusqlite::Connection::open(&bogus)
        .unwrap()
        .execute_batch("CREATE TABLE things (x)")
        .unwrap();
    std::fs::write(al.dir.path().join("vault.key"), "x").unwrap();
    al.run(&["import", "jentic-mini", "--db", bogus.to_str().unwrap()])
        .fails_with("is not a Jentic Mini database: it has no `credentials` table");
    al.run(&["import", "jentic-mini", "--db", "/nonexistent/jm.db"])
        .fails_with("cannot open Jentic Mini database");
}
