//! The admin token: the bearer credential of the management API.
//!
//! Two modes. With `AIRLOCK_ADMIN_TOKEN` set, that token (at least
//! [`MIN_ENV_TOKEN_LEN`] characters) is the only one accepted; it is kept in memory as a
//! hash and never written anywhere. Otherwise the service uses the tokens in the
//! `admin_tokens` table: on first start it generates one (`at_…`), stores its SHA-256 hash
//! and hands the token to the caller to print once; `airlock admin-token rotate` replaces
//! it. Comparison is constant-time (see [`crate::token`]).

use rusqlite::{OptionalExtension, params};

use crate::database::{Database, NOW_SQL};
use crate::secret::Secret;
use crate::token::{self, TokenError};

/// Environment variable holding an operator-chosen admin token.
pub const ENV_ADMIN_TOKEN: &str = "AIRLOCK_ADMIN_TOKEN";

/// Every generated admin token starts with this.
pub const ADMIN_PREFIX: &str = "at_";

/// Shortest admin token accepted from the environment: 32 characters of even a lower-case
/// alphabet are ~150 bits, beyond online guessing; shorter ones are refused at start.
pub const MIN_ENV_TOKEN_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "${ENV_ADMIN_TOKEN} is {len} characters; use at least {MIN_ENV_TOKEN_LEN} (e.g. the \
         output of `openssl rand -hex 32`)"
    )]
    TooShort { len: usize },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("admin token database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// How the admin token was set up at start.
pub enum Bootstrap {
    /// From `AIRLOCK_ADMIN_TOKEN`.
    FromEnv,
    /// A token stored earlier is in force.
    Existing,
    /// A token was generated now: print it once, it cannot be recovered.
    Generated(Secret),
}

enum Mode {
    Env { hash: [u8; 32] },
    Stored,
}

/// Verifies admin tokens.
pub struct AdminTokens {
    mode: Mode,
    db: Database,
}

/// Who a verified admin token is, for the audit log.
pub const ENV_TOKEN_ID: &str = "env";

impl AdminTokens {
    /// Set up from `env_token` (the value of `AIRLOCK_ADMIN_TOKEN`, if set) or the
    /// database, generating a token if there is none.
    pub fn bootstrap(
        db: Database,
        env_token: Option<Secret>,
    ) -> Result<(AdminTokens, Bootstrap), AdminTokenError> {
        if let Some(tok) = env_token {
            let trimmed = tok.expose().trim();
            if trimmed.chars().count() < MIN_ENV_TOKEN_LEN {
                return Err(AdminTokenError::TooShort {
                    len: trimmed.chars().count(),
                });
            }
            let hash = token::sha256(trimmed);
            return Ok((
                AdminTokens {
                    mode: Mode::Env { hash },
                    db,
                },
                Bootstrap::FromEnv,
            ));
        }
        let active: i64 = db.lock().query_row(
            "SELECT count(*) FROM admin_tokens WHERE revoked_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        let bootstrap = if active > 0 {
            Bootstrap::Existing
        } else {
            Bootstrap::Generated(issue(&db, false)?)
        };
        Ok((
            AdminTokens {
                mode: Mode::Stored,
                db,
            },
            bootstrap,
        ))
    }

    /// Revoke every stored admin token and issue a new one (returned, to print once).
    pub fn rotate(db: &Database) -> Result<Secret, AdminTokenError> {
        issue(db, true)
    }

    /// The id of the admin token `presented` is, or `None`.
    pub fn verify(&self, presented: &str) -> Result<Option<String>, AdminTokenError> {
        match &self.mode {
            Mode::Env { hash } => {
                Ok(token::hash_matches(presented, hash).then(|| ENV_TOKEN_ID.to_owned()))
            }
            Mode::Stored => {
                let Some(id) = token::id_of(ADMIN_PREFIX, presented) else {
                    return Ok(None);
                };
                let hash: Option<Vec<u8>> = self
                    .db
                    .lock()
                    .prepare_cached(
                        "SELECT hash FROM admin_tokens WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                Ok(hash
                    .filter(|h| token::hash_matches(presented, h))
                    .map(|_| id.to_owned()))
            }
        }
    }
}

fn issue(db: &Database, revoke_others: bool) -> Result<Secret, AdminTokenError> {
    let issued = token::issue(ADMIN_PREFIX)?;
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    if revoke_others {
        tx.execute(
            &format!("UPDATE admin_tokens SET revoked_at = {NOW_SQL} WHERE revoked_at IS NULL"),
            [],
        )?;
    }
    tx.execute(
        &format!("INSERT INTO admin_tokens (id, hash, created_at) VALUES (?1, ?2, {NOW_SQL})"),
        params![issued.id, issued.hash.as_slice()],
    )?;
    tx.commit()?;
    Ok(issued.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_existing_then_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let (admin, boot) = AdminTokens::bootstrap(db.clone(), None).unwrap();
        let Bootstrap::Generated(tok) = boot else {
            panic!("first start generates")
        };
        assert!(tok.expose().starts_with("at_"));
        assert!(admin.verify(tok.expose()).unwrap().is_some());
        assert!(admin.verify("at_wrong").unwrap().is_none());
        let (_, boot) = AdminTokens::bootstrap(db.clone(), None).unwrap();
        assert!(matches!(boot, Bootstrap::Existing));
        let new = AdminTokens::rotate(&db).unwrap();
        assert!(admin.verify(tok.expose()).unwrap().is_none(), "old revoked");
        assert!(admin.verify(new.expose()).unwrap().is_some());
    }

    #[test]
    fn env_token_wins_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let short = Secret::new("short".into()).unwrap();
        assert!(matches!(
            AdminTokens::bootstrap(db.clone(), Some(short)),
            Err(AdminTokenError::TooShort { len: 5 })
        ));
        let env = "e".repeat(40);
        let (admin, boot) =
            AdminTokens::bootstrap(db.clone(), Some(Secret::new(env.clone()).unwrap())).unwrap();
        assert!(matches!(boot, Bootstrap::FromEnv));
        assert_eq!(admin.verify(&env).unwrap().as_deref(), Some(ENV_TOKEN_ID));
        assert!(admin.verify(&"e".repeat(39)).unwrap().is_none());
        // Nothing was stored.
        let n: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM admin_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
