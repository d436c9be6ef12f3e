//! The Fernet vault: airlock's native, default backend. Values are Fernet tokens in the
//! `fernet_values` table of the catalog's own SQLite file.
//!
//! Invariants: a value is encrypted before it reaches SQL and decrypted only on the way
//! out; a canary token proves the configured keys are the vault's keys before anything is
//! written, so a wrong key can never produce a database that mixes two keys; a rotation
//! re-encrypts every value in one transaction, so a crash leaves all values under the old
//! keys or all under the new one.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use crate::backend::{BackendError, CredentialBackend, CredentialRef};
use crate::database::{Database, NOW_SQL};
use crate::keyring::{KeyError, Keyring};
use crate::secret::Secret;

/// The backend name and kind of the native vault.
pub const FERNET: &str = "fernet";

/// The canary's plaintext. Not secret: it only proves which keys open the vault.
const CANARY: &[u8] = b"airlock fernet vault canary v1";

/// Vault failures beyond a single backend call.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "none of the {count} vault key(s) from {source_name} opens this vault (its canary \
         does not decrypt): wrong key? Set the key the vault was created with, or list it \
         after the new one"
    )]
    WrongKey { count: usize, source_name: String },
    #[error("credential '{id}': its stored value cannot be decrypted: {source}")]
    Undecryptable { id: String, source: KeyError },
    #[error("vault database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    pub values: usize,
}

/// The native backend.
pub struct FernetBackend {
    db: Database,
    keyring: Keyring,
    /// `Err` when the keys do not open this vault: every operation then refuses.
    key_check: Result<(), String>,
}

impl FernetBackend {
    /// Open the vault in `db` with `keyring`. Never fails: a wrong key is remembered and
    /// reported by each operation, so metadata commands keep working without the key.
    pub fn new(db: Database, keyring: Keyring) -> FernetBackend {
        let key_check = check_canary(&db, &keyring).map_err(|e| e.to_string());
        if let Err(e) = &key_check {
            tracing::error!(error = %e, "fernet vault keys rejected");
        }
        FernetBackend {
            db,
            keyring,
            key_check,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The vault's key problem, if any.
    pub fn key_problem(&self) -> Option<&str> {
        self.key_check.as_ref().err().map(String::as_str)
    }

    fn ready(&self) -> Result<(), BackendError> {
        self.key_check.clone().map_err(BackendError::InvalidConfig)
    }

    /// Number of stored values.
    pub fn count(&self) -> Result<usize, VaultError> {
        let n: i64 = self
            .db
            .lock()
            .query_row("SELECT count(*) FROM fernet_values", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Re-encrypt every value (and the canary) under the newest key of `keyring`, in one
    /// transaction. Every value must decrypt with `keyring`; if one does not, nothing is
    /// changed and the error names it.
    pub fn reencrypt_all(db: &Database, keyring: &Keyring) -> Result<RotationReport, VaultError> {
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        let rows: Vec<(String, String)> = {
            let mut stmt =
                tx.prepare("SELECT credential_id, token FROM fernet_values ORDER BY 1")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        {
            let mut update = tx.prepare(&format!(
                "UPDATE fernet_values SET token = ?2, updated_at = {NOW_SQL}
                 WHERE credential_id = ?1"
            ))?;
            for (id, token) in &rows {
                let value = keyring
                    .decrypt(token)
                    .map_err(|source| VaultError::Undecryptable {
                        id: id.clone(),
                        source,
                    })?;
                update.execute(params![id, keyring.encrypt(&value)])?;
            }
        }
        tx.execute(
            "INSERT INTO fernet_canary (id, token) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET token = excluded.token",
            [keyring.encrypt_bytes(CANARY)],
        )?;
        tx.commit()?;
        Ok(RotationReport { values: rows.len() })
    }

    fn token_of(&self, id: &str) -> Result<Option<String>, BackendError> {
        token_in(&self.db.lock(), id)
    }

    /// The value for a token read with [`token_in`] (`None`: no value stored), checking
    /// the vault's keys first exactly as `get_value` does.
    pub fn value_from_token(&self, id: &str, token: Option<&str>) -> Result<Secret, BackendError> {
        self.ready()?;
        self.open(id, token.ok_or(BackendError::NotFound)?)
    }

    fn open(&self, id: &str, token: &str) -> Result<Secret, BackendError> {
        self.keyring.decrypt(token).map_err(|e| {
            BackendError::Internal(format!("credential '{id}': stored value unreadable: {e}"))
        })
    }
}

/// Checks the canary; on a vault that has none yet (new, or made before canaries), writes
/// one — but only after proving the keys open an existing value, if there is any.
fn check_canary(db: &Database, keyring: &Keyring) -> Result<(), VaultError> {
    let wrong = || VaultError::WrongKey {
        count: keyring.len(),
        source_name: keyring.source().to_string(),
    };
    let conn = db.lock();
    let canary: Option<String> = conn
        .query_row("SELECT token FROM fernet_canary WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match canary {
        Some(token) => match keyring.decrypt_bytes(&token) {
            Some(plain) if plain.as_slice() == CANARY => Ok(()),
            _ => Err(wrong()),
        },
        None => {
            let sample: Option<String> = conn
                .query_row("SELECT token FROM fernet_values LIMIT 1", [], |r| r.get(0))
                .optional()?;
            if let Some(token) = sample
                && keyring.decrypt_bytes(&token).is_none()
            {
                return Err(wrong());
            }
            conn.execute(
                "INSERT OR IGNORE INTO fernet_canary (id, token) VALUES (1, ?1)",
                [keyring.encrypt_bytes(CANARY)],
            )?;
            Ok(())
        }
    }
}

/// The stored token of credential `id`, on a connection the caller holds. (The service's
/// resolutions read it with the key and the binding in [`crate::resolution_read`].)
pub fn token_in(conn: &rusqlite::Connection, id: &str) -> Result<Option<String>, BackendError> {
    conn.prepare_cached("SELECT token FROM fernet_values WHERE credential_id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql_error)
}

fn sql_error(e: rusqlite::Error) -> BackendError {
    BackendError::Unavailable(format!("vault database: {e}"))
}

#[async_trait]
impl CredentialBackend for FernetBackend {
    fn name(&self) -> &str {
        FERNET
    }

    fn kind(&self) -> &'static str {
        FERNET
    }

    async fn init(&self) -> Result<(), BackendError> {
        self.ready()
    }

    async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError> {
        self.ready()?;
        let token = self.token_of(&cred.id)?.ok_or(BackendError::NotFound)?;
        self.open(&cred.id, &token)
    }

    async fn get_values(&self, creds: &[CredentialRef]) -> Vec<Result<Secret, BackendError>> {
        if let Err(e) = self.ready() {
            return creds.iter().map(|_| Err(e.clone())).collect();
        }
        creds
            .iter()
            .map(|c| match self.token_of(&c.id) {
                Ok(Some(token)) => self.open(&c.id, &token),
                Ok(None) => Err(BackendError::NotFound),
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn store_value(&self, cred: &CredentialRef, value: &Secret) -> Result<(), BackendError> {
        self.ready()?;
        let token = self.keyring.encrypt(value);
        let conn = self.db.lock();
        conn.prepare_cached(&format!(
            "INSERT INTO fernet_values (credential_id, token, updated_at)
             VALUES (?1, ?2, {NOW_SQL})
             ON CONFLICT (credential_id) DO UPDATE
             SET token = excluded.token, updated_at = excluded.updated_at"
        ))
        .and_then(|mut s| s.execute(params![cred.id, token]))
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                BackendError::InvalidConfig(format!(
                    "credential '{}' is not in the catalog",
                    cred.id
                ))
            }
            other => sql_error(other),
        })?;
        Ok(())
    }

    async fn delete_value(&self, cred: &CredentialRef) -> Result<(), BackendError> {
        let n = self
            .db
            .lock()
            .execute(
                "DELETE FROM fernet_values WHERE credential_id = ?1",
                [&cred.id],
            )
            .map_err(sql_error)?;
        if n == 0 {
            Err(BackendError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn health(&self) -> Result<String, BackendError> {
        self.ready()?;
        let n = self
            .count()
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(format!(
            "{n} value(s); {} key(s) from {}",
            self.keyring.len(),
            self.keyring.source()
        ))
    }
}
