//! The one database read behind a resolution: the presented toolkit key, whether the
//! credential is visible to the key's toolkit, the credential, and — for a Fernet
//! credential — its ciphertext.
//!
//! It is a single `SELECT`, so SQLite gives it one consistent snapshot and takes the WAL
//! read lock once, with no explicit transaction. (It replaced BEGIN, three lookups and
//! COMMIT: on the benchmark the transaction bookkeeping alone was a fifth of a Fernet
//! resolution's time in the handler.) The separate functions it stands for —
//! [`crate::toolkit_keys::verify_in`], [`crate::catalog::get_visible_credential_in`],
//! [`crate::fernet_vault::token_in`] — remain the reference; tests here check that the
//! two always agree.
//!
//! Invariant: the credential and token are returned only for a valid key (right secret,
//! not revoked); for anything else they are dropped unread by the caller's code.

use rusqlite::OptionalExtension;

use crate::catalog::{self, Credential, DEFAULT_TOOLKIT};
use crate::fernet_vault::FERNET;
use crate::token;
use crate::toolkit_keys::{self, KEY_PREFIX, Verified};

/// Key columns (as in `toolkit_keys::KEY_COLUMNS`), then the hash, then the credential
/// columns (as in `catalog::CREDENTIAL_COLUMNS`), then the Fernet token.
const SQL: &str = "SELECT k.id, k.toolkit_id, k.label, k.allowed_cidrs, k.created_at, k.revoked_at, \
     k.hash, \
     c.id, c.label, c.api_id, c.auth_type, c.identity, c.backend, c.locator, c.description, \
     c.attributes, c.created_at, c.updated_at, \
     v.token \
     FROM toolkit_keys k \
     LEFT JOIN credentials c ON c.id = ?2 AND (k.toolkit_id = ?3 OR EXISTS ( \
         SELECT 1 FROM toolkit_credentials b \
         WHERE b.toolkit_id = k.toolkit_id AND b.credential_id = ?2)) \
     LEFT JOIN fernet_values v ON v.credential_id = c.id AND c.backend = ?4 \
     WHERE k.id = ?1";
const KEY_AT: usize = 0;
const HASH_AT: usize = 6;
const CREDENTIAL_AT: usize = 7;
const TOKEN_AT: usize = 18;

/// What a valid key may use for one resolution (empty for any other key).
#[derive(Debug, Default)]
pub struct Visible {
    /// The credential, if it exists and is visible to the key's toolkit.
    pub credential: Option<Credential>,
    /// Its Fernet ciphertext, if it is a Fernet credential with a value.
    pub token: Option<String>,
}

/// What the presented key is, and what it may use of `credential_id`.
pub fn read_in(
    conn: &rusqlite::Connection,
    presented: &str,
    credential_id: &str,
) -> Result<(Verified, Visible), rusqlite::Error> {
    let Some(key_id) = token::id_of(KEY_PREFIX, presented) else {
        return Ok((Verified::Unknown, Visible::default()));
    };
    let row = conn
        .prepare_cached(SQL)?
        .query_row(
            rusqlite::params![key_id, credential_id, DEFAULT_TOOLKIT, FERNET],
            |r| {
                let key = toolkit_keys::key_from_row_at(r, KEY_AT)?;
                let hash: Vec<u8> = r.get(HASH_AT)?;
                let credential = match r.get::<_, Option<String>>(CREDENTIAL_AT)? {
                    Some(_) => Some(catalog::credential_from_row_at(r, CREDENTIAL_AT)?),
                    None => None,
                };
                let token: Option<String> = r.get(TOKEN_AT)?;
                Ok((key, hash, credential, token))
            },
        )
        .optional()?;
    let Some((key, hash, credential, token)) = row else {
        return Ok((Verified::Unknown, Visible::default()));
    };
    Ok(match toolkit_keys::judge(presented, Some((key, hash))) {
        valid @ Verified::Valid(_) => (valid, Visible { credential, token }),
        other => (other, Visible::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, NewCredential};
    use crate::database::Database;
    use crate::fernet_vault;
    use crate::toolkit_keys::ToolkitKeys;

    #[test]
    fn the_column_lists_match_the_owning_modules() {
        let select = SQL
            .split(" FROM ")
            .next()
            .unwrap()
            .trim_start_matches("SELECT ");
        let cols: Vec<&str> = select.split(',').map(str::trim).collect();
        let bare = |prefix: &str, from: usize, to: usize| -> Vec<String> {
            cols[from..to]
                .iter()
                .map(|c| c.strip_prefix(prefix).unwrap().to_owned())
                .collect()
        };
        let split =
            |list: &str| -> Vec<String> { list.split(',').map(|c| c.trim().to_owned()).collect() };
        assert_eq!(
            bare("k.", KEY_AT, HASH_AT),
            split(toolkit_keys::KEY_COLUMNS)
        );
        assert_eq!(cols[HASH_AT], "k.hash");
        assert_eq!(
            bare("c.", CREDENTIAL_AT, TOKEN_AT),
            split(catalog::CREDENTIAL_COLUMNS)
        );
        assert_eq!(cols[TOKEN_AT], "v.token");
        assert_eq!(cols.len(), TOKEN_AT + 1);
    }

    /// The single read agrees with the three separate lookups in every case a caller
    /// can present: valid, wrong secret, revoked, unknown id, malformed; bound, unbound,
    /// missing credential; Fernet with and without a value; another backend; the
    /// `default` toolkit, which sees every credential.
    #[test]
    fn agrees_with_the_separate_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let catalog = Catalog::new(db.clone());
        let keys = ToolkitKeys::new(db.clone());
        let new = |id: &str, backend: &str| NewCredential {
            id: id.into(),
            label: id.into(),
            api_id: Some("api".into()),
            auth_type: "bearer".into(),
            identity: None,
            backend: backend.into(),
            locator: None,
            description: None,
            attributes: Default::default(),
        };
        for (id, backend) in [
            ("a/with.value", FERNET),
            ("a/no.value", FERNET),
            ("a/elsewhere", "vault"),
            ("b/theirs", FERNET),
        ] {
            catalog.add_credential(&new(id, backend)).unwrap();
        }
        {
            let conn = db.lock();
            for id in ["a/with.value", "b/theirs"] {
                conn.execute(
                    "INSERT INTO fernet_values (credential_id, token, updated_at) \
                     VALUES (?1, 'gAAAA-token-of-' || ?1, 'now')",
                    [id],
                )
                .unwrap();
            }
        }
        catalog.add_toolkit("a", "A", None).unwrap();
        catalog.add_toolkit("b", "B", None).unwrap();
        for id in ["a/with.value", "a/no.value", "a/elsewhere"] {
            catalog.bind("a", id).unwrap();
        }
        catalog.bind("b", "b/theirs").unwrap();
        let a_key = keys
            .create("a", None, &[])
            .unwrap()
            .secret
            .expose()
            .to_owned();
        let default_key = keys
            .create(DEFAULT_TOOLKIT, None, &[])
            .unwrap()
            .secret
            .expose()
            .to_owned();
        let revoked = keys.create("a", None, &[]).unwrap();
        keys.revoke(&revoked.key.id).unwrap();
        // The same length and public id as a valid key, one character of secret changed.
        let last = if a_key.ends_with('x') { "y" } else { "x" };
        let wrong_secret = format!("{}{last}", &a_key[..a_key.len() - 1]);
        let presented = [
            a_key.clone(),
            default_key.clone(),
            revoked.secret.expose().to_owned(),
            wrong_secret,
            "tk_nosuchkey_secret".into(),
            "not-a-key".into(),
        ];
        let ids = [
            "a/with.value",
            "a/no.value",
            "a/elsewhere",
            "b/theirs",
            "missing",
        ];
        let conn = db.lock();
        let mut valid_reads = 0;
        for key in &presented {
            for id in ids {
                let (verified, one) = read_in(&conn, key, id).unwrap();
                let expected = toolkit_keys::verify_in(&conn, key).unwrap();
                assert_eq!(
                    format!("{verified:?}"),
                    format!("{expected:?}"),
                    "{key} {id}"
                );
                let (cred, token) = match &expected {
                    Verified::Valid(k) => {
                        valid_reads += 1;
                        let cred =
                            catalog::get_visible_credential_in(&conn, &k.toolkit, id).unwrap();
                        let token = match &cred {
                            Some(c) if c.backend == FERNET => {
                                fernet_vault::token_in(&conn, &c.id).unwrap()
                            }
                            _ => None,
                        };
                        (cred, token)
                    }
                    _ => (None, None),
                };
                assert_eq!(one.credential, cred, "{key} {id}");
                assert_eq!(one.token, token, "{key} {id}");
            }
        }
        assert_eq!(valid_reads, 2 * ids.len(), "two of the keys are valid");
        // Spot checks of what the agreement covers.
        let (_, own) = read_in(&conn, &a_key, "a/with.value").unwrap();
        assert_eq!(own.token.as_deref(), Some("gAAAA-token-of-a/with.value"));
        assert!(
            read_in(&conn, &a_key, "b/theirs")
                .unwrap()
                .1
                .credential
                .is_none()
        );
        let (_, all) = read_in(&conn, &default_key, "b/theirs").unwrap();
        assert!(all.credential.is_some() && all.token.is_some());
    }
}
