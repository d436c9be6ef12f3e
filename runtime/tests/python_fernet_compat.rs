//! Byte compatibility with Python `cryptography`'s Fernet, in both directions, through the
//! real binary and the real database file: a token Python made is served by airlock, and a
//! token airlock stored opens in Python.

mod support;

use support::{Airlock, python, python_with_cryptography};

const KEY_SCRIPT: &str =
    "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())";
const ENCRYPT: &str = "import sys; from cryptography.fernet import Fernet; \
    print(Fernet(sys.argv[1].encode()).encrypt(sys.argv[2].encode()).decode())";
const DECRYPT: &str = "import sys; from cryptography.fernet import Fernet; \
    sys.stdout.write(Fernet(sys.argv[1].encode()).decrypt(sys.argv[2].encode()).decode())";

const VALUE: &str = "sk-live_Ünïcode-🔑-value with spaces";

#[test]
fn airlock_tokens_open_in_python() {
    if !python_with_cryptography() {
        return;
    }
    let key = python(KEY_SCRIPT, &[]).trim().to_owned();
    let al = Airlock::new().with_env("AIRLOCK_VAULT_KEY", &key);
    al.add_with_value("openai/prod", "api.openai.com", VALUE);
    let token: String = rusqlite::Connection::open(al.db_path())
        .unwrap()
        .query_row(
            "SELECT token FROM fernet_values WHERE credential_id = 'openai/prod'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        token.starts_with("gAAAAA") && token.len().is_multiple_of(4),
        "padded base64: {token}"
    );
    assert_eq!(python(DECRYPT, &[&key, &token]), VALUE);
}

#[test]
fn python_tokens_open_in_airlock() {
    if !python_with_cryptography() {
        return;
    }
    let key = python(KEY_SCRIPT, &[]).trim().to_owned();
    let al = Airlock::new().with_env("AIRLOCK_VAULT_KEY", &key);
    al.add_with_value("slack", "slack.com", "placeholder");
    let token = python(ENCRYPT, &[&key, VALUE]).trim().to_owned();
    rusqlite::Connection::open(al.db_path())
        .unwrap()
        .execute(
            "UPDATE fernet_values SET token = ?1 WHERE credential_id = 'slack'",
            [&token],
        )
        .unwrap();
    assert_eq!(al.reveal("slack"), VALUE);
}
