//! `airlock keys rotate`: after it, the new key alone opens every value; if it is
//! interrupted — by a value that will not decrypt, or by SIGKILL at an arbitrary moment —
//! every value stays readable with the keys on disk and none is lost.

mod support;

use std::time::Duration;

use airlock::keyring::{KeySource, Keyring};
use airlock::secret::Secret;
use support::Airlock;

fn tokens(al: &Airlock) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(al.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT credential_id, token FROM fernet_values ORDER BY 1")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key_file_keys(al: &Airlock) -> Vec<String> {
    std::fs::read_to_string(al.data_dir().join("vault.key"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

fn ring(keys: &[&str]) -> Keyring {
    Keyring::from_texts(keys.iter().copied(), KeySource::Env("TEST"), "key").unwrap()
}

#[test]
fn after_rotation_the_new_key_alone_opens_everything() {
    let al = Airlock::new();
    for i in 0..5 {
        al.add_with_value(&format!("c{i}"), "api", &format!("value-{i}"));
    }
    let old_keys = key_file_keys(&al);
    assert_eq!(old_keys.len(), 1);
    let out = al.run(&["keys", "rotate"]).ok();
    assert!(
        out.stdout.contains("re-encrypted 5 value(s)"),
        "{}",
        out.stdout
    );
    let keys = key_file_keys(&al);
    assert_eq!(keys.len(), 2, "the old key stays listed until --drop-old");
    assert_eq!(keys[1], old_keys[0]);
    let new_only = ring(&[&keys[0]]);
    for (id, token) in tokens(&al) {
        let i = &id[1..];
        assert_eq!(
            new_only.decrypt(&token).unwrap().expose(),
            format!("value-{i}")
        );
        assert!(ring(&[&old_keys[0]]).decrypt(&token).is_err());
    }
    // The binary with only the new key reads every value.
    let al = al.with_env("AIRLOCK_VAULT_KEY", &keys[0]);
    assert_eq!(al.reveal("c3"), "value-3");

    let after = Airlock {
        dir: al.dir,
        env: Vec::new(),
    };
    after.run(&["keys", "rotate", "--drop-old"]).ok();
    let keys = key_file_keys(&after);
    assert_eq!(keys.len(), 1);
    for (_, token) in tokens(&after) {
        assert!(ring(&[&keys[0]]).decrypt(&token).is_ok());
    }
    assert_eq!(after.reveal("c4"), "value-4");
}

#[test]
fn rotation_with_environment_keys_uses_the_newest_listed() {
    let old = fernet::Fernet::generate_key();
    let new = fernet::Fernet::generate_key();
    let al = Airlock::new().with_env("AIRLOCK_VAULT_KEY", &old);
    al.add_with_value("a", "api", "alpha");
    let al = Airlock {
        dir: al.dir,
        env: vec![("AIRLOCK_VAULT_KEYS".into(), format!("{new},{old}"))],
    };
    al.run(&["keys", "rotate"]).ok();
    assert!(!al.data_dir().join("vault.key").exists());
    let al = Airlock {
        dir: al.dir,
        env: vec![("AIRLOCK_VAULT_KEY".into(), new.clone())],
    };
    assert_eq!(al.reveal("a"), "alpha");
}

#[test]
fn a_value_that_will_not_decrypt_aborts_the_rotation_and_loses_nothing() {
    let al = Airlock::new();
    for i in 0..4 {
        al.add_with_value(&format!("c{i}"), "api", &format!("value-{i}"));
    }
    // Damage one stored token (as disk corruption or a foreign write would).
    rusqlite::Connection::open(al.db_path())
        .unwrap()
        .execute(
            "UPDATE fernet_values SET token = 'gAAAAAB-damaged' WHERE credential_id = 'c2'",
            [],
        )
        .unwrap();
    let before = tokens(&al);
    al.run(&["keys", "rotate"])
        .fails_with("credential 'c2': its stored value cannot be decrypted");
    assert_eq!(tokens(&al), before, "no value was re-encrypted");
    for i in [0, 1, 3] {
        assert_eq!(al.reveal(&format!("c{i}")), format!("value-{i}"));
    }
}

#[test]
fn sigkill_at_any_moment_of_a_rotation_loses_nothing() {
    let al = Airlock::new();
    al.add_with_value("seed", "api", "seed-value");
    // Many values, written directly for speed, so a rotation takes long enough to be
    // interrupted in the middle.
    let keys = key_file_keys(&al);
    let ring0 = ring(&[&keys[0]]);
    {
        let mut conn = rusqlite::Connection::open(al.db_path()).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..4000 {
            let id = format!("bulk-{i:04}");
            tx.execute(
                "INSERT INTO credentials (id, label, auth_type, backend, created_at, updated_at)
                 VALUES (?1, ?1, 'bearer', 'fernet', 'now', 'now')",
                [&id],
            )
            .unwrap();
            let token = ring0.encrypt(&Secret::new(format!("v-{i}")).unwrap());
            tx.execute(
                "INSERT INTO fernet_values (credential_id, token, updated_at) VALUES (?1, ?2, 'now')",
                [&id, &token],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut interrupted = 0;
    for delay_ms in [5u64, 15, 30, 60, 120, 250] {
        let mut child = al
            .command(&["keys", "rotate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Every value opens with the keys now in the file, and all share one key: the
        // transaction either committed whole or not at all.
        let keys = key_file_keys(&al);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let all = ring(&refs);
        let toks = tokens(&al);
        assert_eq!(toks.len(), 4001);
        let mut opened_by = std::collections::BTreeSet::new();
        for (id, token) in &toks {
            let value = all.decrypt(token).unwrap_or_else(|e| panic!("{id}: {e}"));
            if let Some(i) = id.strip_prefix("bulk-") {
                assert_eq!(value.expose(), format!("v-{}", i.parse::<u32>().unwrap()));
            }
            let which = keys.iter().position(|k| ring(&[k]).decrypt(token).is_ok());
            opened_by.insert(which.unwrap());
        }
        assert_eq!(
            opened_by.len(),
            1,
            "values split across keys after a kill at {delay_ms} ms"
        );
    }
    eprintln!("{interrupted} of 6 rotations killed while running");
    assert!(
        interrupted > 0,
        "no rotation was interrupted; the test proves nothing"
    );
    assert_eq!(al.reveal("seed"), "seed-value");
}
