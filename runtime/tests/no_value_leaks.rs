//! No value ever appears where it should not: in `Debug` output, in logs at the most
//! verbose level, in error messages, or in any command's output except
//! `get-value --reveal`'s stdout.

mod support;

use airlock::config::{Config, Overrides};
use airlock::{Runtime, Secret};
use support::Airlock;

const VALUE: &str = "LEAKCANARY-7f3a9c-do-not-print";

#[test]
fn cli_output_and_trace_logs_never_contain_the_value() {
    let key = fernet::Fernet::generate_key();
    let al = Airlock::new().with_env("AIRLOCK_VAULT_KEY", &key);
    let mut seen = String::new();
    let mut record = |run: support::Run| {
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    };
    record(al.run(&[
        "credentials",
        "add",
        "--id",
        "svc/prod.key",
        "--label",
        "Svc",
        "--api-id",
        "api.svc.example",
        "--auth-type",
        "bearer",
    ]));
    record(al.run_with_stdin(
        &["credentials", "set-value", "svc/prod.key"],
        VALUE.as_bytes(),
    ));
    record(al.run(&["credentials", "get-value", "svc/prod.key"]));
    record(al.run(&["credentials", "list"]));
    record(al.run(&["credentials", "list", "--json"]));
    record(al.run(&["credentials", "show", "svc/prod.key", "--json"]));
    record(al.run(&["toolkits", "add", "--id", "tk"]));
    record(al.run(&["toolkits", "bind", "tk", "svc/prod.key"]));
    record(al.run(&["status"]));
    record(al.run(&["keys", "rotate"]));
    // A failing write with the value on stdin (duplicate -> then not-found id).
    record(al.run_with_stdin(&["credentials", "set-value", "nope"], VALUE.as_bytes()));
    // A value rejected for being non-UTF-8 after the canary text.
    let mut bad = VALUE.as_bytes().to_vec();
    bad.push(0xff);
    record(al.run_with_stdin(&["credentials", "set-value", "svc/prod.key"], &bad));
    // The wrong key: errors about the vault name the key's source, never a value.
    let wrong = Airlock {
        dir: tempfile::tempdir().unwrap(),
        env: vec![("AIRLOCK_VAULT_KEY".into(), fernet::Fernet::generate_key())],
    };
    std::fs::create_dir_all(wrong.data_dir()).unwrap();
    std::fs::copy(al.db_path(), wrong.db_path()).unwrap();
    let _ = std::fs::copy(
        al.data_dir().join("airlock.db-wal"),
        wrong.data_dir().join("airlock.db-wal"),
    );
    record(wrong.run(&["credentials", "get-value", "svc/prod.key", "--reveal"]));
    let reveal = al
        .run(&["credentials", "get-value", "svc/prod.key", "--reveal"])
        .ok();
    assert_eq!(reveal.stdout, format!("{VALUE}\n"));
    seen.push_str(&reveal.stderr);
    assert!(
        seen.contains("TRACE") || seen.contains("DEBUG") || seen.contains("INFO"),
        "logging was on at trace level"
    );
    assert!(!seen.contains(VALUE), "a value leaked:\n{seen}");
    assert!(!seen.contains(&key), "the vault key leaked:\n{seen}");
    // Nor in the database in clear text.
    let raw = std::fs::read(al.db_path()).unwrap();
    let wal = std::fs::read(al.data_dir().join("airlock.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()));
    }
}

#[tokio::test]
async fn debug_output_of_runtime_results_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(
        &Overrides {
            config: None,
            data_dir: Some(dir.path().join("data")),
        },
        &|_| None,
    )
    .unwrap();
    let rt = Runtime::open(&config, &|_| None).unwrap();
    for id in ["a", "b", "c"] {
        rt.add_credential(&airlock::catalog::NewCredential {
            id: id.into(),
            label: id.into(),
            api_id: Some("api".into()),
            auth_type: "bearer".into(),
            identity: None,
            backend: "fernet".into(),
            locator: None,
            description: None,
            attributes: Default::default(),
        })
        .unwrap();
    }
    rt.catalog().add_toolkit("agents", "Agents", None).unwrap();
    rt.catalog().bind("agents", "a").unwrap();
    rt.catalog().bind("agents", "c").unwrap();
    rt.store_value("a", &Secret::new(VALUE.into()).unwrap())
        .await
        .unwrap();
    rt.store_value("b", &Secret::new(format!("{VALUE}-b")).unwrap())
        .await
        .unwrap();
    // `c` has no value yet.

    let got = rt.get_values_for_api("agents", "api").await.unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"], "toolkit sees only its bindings");
    assert_eq!(got[0].value.as_ref().unwrap().expose(), VALUE);
    assert!(
        got[1].value.is_err(),
        "a missing value is reported per credential"
    );
    let all = rt.get_values_for_api("default", "api").await.unwrap();
    assert_eq!(all.len(), 3, "the default toolkit sees every credential");
    assert!(rt.get_values_for_api("nope", "api").await.is_err());
    assert!(
        rt.get_values_for_api("agents", "other-api")
            .await
            .unwrap()
            .is_empty()
    );

    let debug = format!("{got:?} {all:?} {:?}", rt.get_value("a").await);
    assert!(!debug.contains(VALUE), "{debug}");
    assert!(debug.contains("[REDACTED]"));
    let json =
        serde_json::to_string(&all.iter().map(|r| (&r.id, &r.label)).collect::<Vec<_>>()).unwrap();
    assert!(!json.contains(VALUE));
}
