//! Toolkit keys: the bearer credentials agents present to the resolution API.
//!
//! Invariants: a key is shown once, when created, and stored only as its SHA-256 hash
//! (see [`crate::token`]); a key belongs to exactly one toolkit and dies with it
//! (`ON DELETE CASCADE`); revocation is a timestamp, not a deletion, so the listing and the
//! audit log keep saying which key did what; a key may be restricted to client networks
//! (CIDRs), checked against the TCP peer address — never a forwarded header a client can
//! write itself.

use std::net::IpAddr;

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::catalog::MAX_ID_LEN;
use crate::database::{Database, NOW_SQL};
use crate::secret::Secret;
use crate::token::{self, TokenError};

/// Every toolkit key starts with this.
pub const KEY_PREFIX: &str = "tk_";

/// Most CIDRs one key may list: enough for any real allow-list, small enough that a
/// mistaken paste cannot make every request parse thousands of networks.
pub const MAX_CIDRS: usize = 64;

/// A key's metadata (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolkitKey {
    pub id: String,
    pub toolkit: String,
    pub label: Option<String>,
    /// Client networks allowed to use the key; empty means any.
    #[serde(serialize_with = "serialize_nets")]
    pub allowed_cidrs: Vec<IpNet>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn serialize_nets<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(|n| n.to_string()))
}

impl ToolkitKey {
    /// Whether a client at `ip` may use this key. IPv4-mapped IPv6 addresses count as
    /// IPv4, so `10.0.0.0/8` also matches `::ffff:10.1.2.3` (a dual-stack listener's view).
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        let Some(ip) = ip else { return false };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A key just created: its metadata and the key, which is never shown again.
pub struct CreatedKey {
    pub key: ToolkitKey,
    pub secret: Secret,
}

/// What a presented key turned out to be.
#[derive(Debug)]
pub enum Verified {
    Valid(ToolkitKey),
    Revoked(ToolkitKey),
    /// Not a key of ours (wrong shape, unknown id, or wrong secret — not distinguished).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolkitKeyError {
    #[error("toolkit '{0}' not found")]
    ToolkitNotFound(String),
    #[error("toolkit key '{0}' not found")]
    NotFound(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("toolkit key database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Parse one allowed network: a CIDR (`10.0.0.0/8`, `fd00::/8`) or a bare address (one
/// host). Host bits must be zero, so `10.1.2.3/8` — probably a typo — is refused.
pub fn parse_cidr(text: &str) -> Result<IpNet, ToolkitKeyError> {
    let invalid = |reason: String| ToolkitKeyError::Invalid {
        field: "allowed_cidrs",
        reason,
    };
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(invalid(format!(
                    "{text:?} is not a CIDR such as 10.0.0.0/8 or an IP address"
                )));
            }
        },
    };
    if net.trunc() != net {
        return Err(invalid(format!(
            "{text:?} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Access to the `toolkit_keys` table.
#[derive(Clone)]
pub struct ToolkitKeys {
    db: Database,
}

/// The key columns, in `key_from_row`'s order (a macro, so queries are constants).
macro_rules! key_columns {
    () => {
        "id, toolkit_id, label, allowed_cidrs, created_at, revoked_at"
    };
}

pub(crate) const KEY_COLUMNS: &str = key_columns!();

impl ToolkitKeys {
    pub fn new(db: Database) -> ToolkitKeys {
        ToolkitKeys { db }
    }

    /// Issue a key for `toolkit`, optionally restricted to client networks.
    pub fn create(
        &self,
        toolkit: &str,
        label: Option<&str>,
        cidrs: &[String],
    ) -> Result<CreatedKey, ToolkitKeyError> {
        if cidrs.len() > MAX_CIDRS {
            return Err(ToolkitKeyError::Invalid {
                field: "allowed_cidrs",
                reason: format!("{} entries, more than {MAX_CIDRS}", cidrs.len()),
            });
        }
        let nets = cidrs
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(label) = label
            && (label.trim().is_empty()
                || label.len() > MAX_ID_LEN
                || label.chars().any(char::is_control))
        {
            return Err(ToolkitKeyError::Invalid {
                field: "label",
                reason: format!(
                    "must be 1..={MAX_ID_LEN} bytes of text without control characters"
                ),
            });
        }
        let issued = token::issue(KEY_PREFIX)?;
        let nets_json = serde_json::Value::Array(
            nets.iter()
                .map(|n| serde_json::Value::String(n.to_string()))
                .collect(),
        )
        .to_string();
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM toolkits WHERE id = ?1")?
            .query_row([toolkit], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Err(ToolkitKeyError::ToolkitNotFound(toolkit.to_owned()));
        }
        tx.execute(
            &format!(
                "INSERT INTO toolkit_keys (id, toolkit_id, hash, label, allowed_cidrs, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, {NOW_SQL})"
            ),
            params![issued.id, toolkit, issued.hash.as_slice(), label, nets_json],
        )?;
        let key = get_in(&tx, &issued.id)?.ok_or_else(|| ToolkitKeyError::NotFound(issued.id))?;
        tx.commit()?;
        Ok(CreatedKey {
            key,
            secret: issued.token,
        })
    }

    /// Keys, newest first; optionally only one toolkit's (which must exist).
    pub fn list(&self, toolkit: Option<&str>) -> Result<Vec<ToolkitKey>, ToolkitKeyError> {
        let conn = self.db.lock();
        if let Some(t) = toolkit {
            let exists = conn
                .prepare_cached("SELECT 1 FROM toolkits WHERE id = ?1")?
                .query_row([t], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Err(ToolkitKeyError::ToolkitNotFound(t.to_owned()));
            }
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM toolkit_keys WHERE (?1 IS NULL OR toolkit_id = ?1)
             ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map([toolkit], key_from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    pub fn get(&self, id: &str) -> Result<ToolkitKey, ToolkitKeyError> {
        let conn = self.db.lock();
        get_in(&conn, id)?.ok_or_else(|| ToolkitKeyError::NotFound(id.to_owned()))
    }

    /// Revoke key `id`; revoking a revoked key changes nothing. Returns the key and
    /// whether this call revoked it.
    pub fn revoke(&self, id: &str) -> Result<(ToolkitKey, bool), ToolkitKeyError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            &format!(
                "UPDATE toolkit_keys SET revoked_at = {NOW_SQL}
                 WHERE id = ?1 AND revoked_at IS NULL"
            ),
            [id],
        )?;
        let key = get_in(&tx, id)?.ok_or_else(|| ToolkitKeyError::NotFound(id.to_owned()))?;
        tx.commit()?;
        Ok((key, n == 1))
    }

    /// Check a presented key: one indexed lookup by its public id, then a constant-time
    /// comparison of hashes. Reads the database every time, so a revocation made by any
    /// process (the CLI beside a running service) takes effect on the next request.
    pub fn verify(&self, presented: &str) -> Result<Verified, ToolkitKeyError> {
        if token::id_of(KEY_PREFIX, presented).is_none() {
            return Ok(Verified::Unknown);
        }
        verify_in(&self.db.lock(), presented)
    }
}

/// [`ToolkitKeys::verify`] on a connection the caller holds. (The service's resolutions
/// use [`crate::resolution_read`], which must agree with it; its tests check that.)
pub fn verify_in(
    conn: &rusqlite::Connection,
    presented: &str,
) -> Result<Verified, ToolkitKeyError> {
    let Some(id) = token::id_of(KEY_PREFIX, presented) else {
        return Ok(Verified::Unknown);
    };
    let row = conn
        .prepare_cached(concat!(
            "SELECT ",
            key_columns!(),
            ", hash FROM toolkit_keys WHERE id = ?1"
        ))?
        .query_row([id], |r| Ok((key_from_row(r)?, r.get::<_, Vec<u8>>(6)?)))
        .optional()?;
    Ok(judge(presented, row))
}

/// What `presented` is, given the stored key row (and its hash) its public id named:
/// the hash comparison is constant-time, and a wrong secret is `Unknown`, like an
/// unknown id.
pub(crate) fn judge(presented: &str, row: Option<(ToolkitKey, Vec<u8>)>) -> Verified {
    match row {
        Some((key, hash)) if token::hash_matches(presented, &hash) => {
            if key.is_revoked() {
                Verified::Revoked(key)
            } else {
                Verified::Valid(key)
            }
        }
        _ => Verified::Unknown,
    }
}

fn get_in(conn: &rusqlite::Connection, id: &str) -> Result<Option<ToolkitKey>, ToolkitKeyError> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            key_columns!(),
            " FROM toolkit_keys WHERE id = ?1"
        ))?
        .query_row([id], key_from_row)
        .optional()?)
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ToolkitKey> {
    key_from_row_at(r, 0)
}

/// A key from the [`KEY_COLUMNS`] of a row, starting at column `base`.
pub(crate) fn key_from_row_at(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<ToolkitKey> {
    let cidrs: String = r.get(base + 3)?;
    // Rows are written only by `create`, which validated every entry; a hand-edited
    // entry that no longer parses allows nothing rather than everything.
    let allowed_cidrs = match serde_json::from_str::<Vec<String>>(&cidrs) {
        Ok(list) => list
            .iter()
            .map(|c| parse_cidr(c).unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0]))))
            .collect(),
        Err(_) => vec![IpNet::from(IpAddr::from([0, 0, 0, 0]))],
    };
    Ok(ToolkitKey {
        id: r.get(base)?,
        toolkit: r.get(base + 1)?,
        label: r.get(base + 2)?,
        allowed_cidrs,
        created_at: r.get(base + 4)?,
        revoked_at: r.get(base + 5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn keys() -> (tempfile::TempDir, ToolkitKeys, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        (dir, ToolkitKeys::new(db.clone()), Catalog::new(db))
    }

    #[test]
    fn create_verify_revoke() {
        let (_d, keys, cat) = keys();
        cat.add_toolkit("agents", "Agents", None).unwrap();
        let created = keys.create("agents", Some("ci"), &[]).unwrap();
        let token = created.secret.expose().to_owned();
        assert!(token.starts_with("tk_"));
        assert!(
            matches!(keys.verify(&token).unwrap(), Verified::Valid(k) if k.toolkit == "agents")
        );
        // One character off: unknown, not revoked, not an error.
        let mut wrong = token.clone();
        let last = if wrong.ends_with('0') { '1' } else { '0' };
        wrong.pop();
        wrong.push(last);
        assert!(matches!(keys.verify(&wrong).unwrap(), Verified::Unknown));
        assert!(matches!(keys.verify("tk_nope").unwrap(), Verified::Unknown));
        let (k, newly) = keys.revoke(&created.key.id).unwrap();
        assert!(newly && k.is_revoked());
        assert!(!keys.revoke(&created.key.id).unwrap().1);
        assert!(matches!(keys.verify(&token).unwrap(), Verified::Revoked(_)));
        assert!(matches!(
            keys.revoke("nope"),
            Err(ToolkitKeyError::NotFound(_))
        ));
        assert_eq!(keys.list(Some("agents")).unwrap().len(), 1);
        assert!(keys.list(Some("nope")).is_err());
        assert!(matches!(
            keys.create("nope", None, &[]),
            Err(ToolkitKeyError::ToolkitNotFound(_))
        ));
        // The database holds the hash, never the key.
        let stored: Vec<u8> = keys
            .db
            .lock()
            .query_row("SELECT hash FROM toolkit_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, token::sha256(&token));
        // Removing the toolkit removes its keys.
        cat.remove_toolkit("agents").unwrap();
        assert!(keys.list(None).unwrap().is_empty());
    }

    #[test]
    fn cidrs_are_validated_and_matched() {
        let (_d, keys, cat) = keys();
        cat.add_toolkit("agents", "Agents", None).unwrap();
        let created = keys
            .create(
                "agents",
                None,
                &["10.0.0.0/8".into(), "127.0.0.1".into(), "fd00::/8".into()],
            )
            .unwrap();
        let k = created.key;
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(k.allows(ip("10.2.3.4")));
        assert!(k.allows(ip("::ffff:10.2.3.4")));
        assert!(k.allows(ip("127.0.0.1")));
        assert!(k.allows(ip("fd12::1")));
        assert!(!k.allows(ip("127.0.0.2")));
        assert!(!k.allows(ip("192.168.1.1")));
        assert!(!k.allows(None));
        for bad in ["10.1.2.3/8", "nonsense", "10.0.0.0/33"] {
            let err = keys.create("agents", None, &[bad.into()]).err().unwrap();
            assert!(err.to_string().contains("allowed_cidrs"), "{bad}: {err}");
        }
        let many: Vec<String> = (0..=MAX_CIDRS).map(|i| format!("10.0.{i}.0/24")).collect();
        assert!(keys.create("agents", None, &many).is_err());
    }
}
