//! The credential catalog: metadata about credentials, toolkits and which toolkit may use
//! which credential. Values are not here — they live in backends.
//!
//! Invariants: every write is one transaction; ids are validated before they reach SQL;
//! the `default` toolkit exists, cannot be removed, and sees every credential without
//! bindings (as in Jentic Mini).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::database::{Database, NOW_SQL};

/// The toolkit that sees every credential.
pub const DEFAULT_TOOLKIT: &str = "default";

/// Longest id, label or other short text field accepted. Ids appear in URLs and logs; the
/// cap keeps a mistaken paste (or a hostile import) from bloating both.
pub const MAX_ID_LEN: usize = 256;

/// Longest description or attributes document accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// A credential's metadata as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credential {
    pub id: String,
    pub label: String,
    pub api_id: Option<String>,
    pub auth_type: String,
    /// A non-secret username or account (e.g. the user half of basic auth).
    pub identity: Option<String>,
    /// The name of the backend that holds the value.
    pub backend: String,
    /// Where the value lives in that backend, in its own syntax.
    pub locator: Option<String>,
    pub description: Option<String>,
    /// Broker-facing extras (injection scheme, server variables, routes): a JSON object.
    pub attributes: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// The fields a caller sets when creating or replacing a credential.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    pub id: String,
    pub label: String,
    pub api_id: Option<String>,
    pub auth_type: String,
    pub identity: Option<String>,
    pub backend: String,
    pub locator: Option<String>,
    pub description: Option<String>,
    pub attributes: Map<String, Value>,
}

/// A toolkit: a group of agents that sees the credentials bound to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Toolkit {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Credentials bound to it (for `default`: every credential).
    pub credential_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// What an idempotent write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Inserted,
    Updated,
    Unchanged,
}

/// Catalog failures. Messages name the object and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} '{id}' already exists")]
    Duplicate { kind: &'static str, id: String },
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("catalog database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Access to the catalog tables of a [`Database`].
#[derive(Clone)]
pub struct Catalog {
    db: Database,
}

/// The credential columns, in `credential_from_row`'s order; a macro so hot-path queries
/// can be `concat!`-ed into constants instead of formatted on every call.
macro_rules! credential_columns {
    () => {
        "id, label, api_id, auth_type, identity, backend, locator, description, attributes, \
         created_at, updated_at"
    };
}

pub(crate) const CREDENTIAL_COLUMNS: &str = credential_columns!();

impl Catalog {
    pub fn new(db: Database) -> Catalog {
        Catalog { db }
    }

    /// Create a credential. Fails with `Duplicate` if the id is taken.
    pub fn add_credential(&self, new: &NewCredential) -> Result<Credential, CatalogError> {
        validate_credential(new)?;
        let attributes = attributes_json(&new.attributes)?;
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM credentials WHERE id = ?1", [&new.id], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(CatalogError::Duplicate {
                kind: "credential",
                id: new.id.clone(),
            });
        }
        tx.execute(
            &format!(
                "INSERT INTO credentials ({CREDENTIAL_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, {NOW_SQL}, {NOW_SQL})"
            ),
            params![
                new.id,
                new.label,
                new.api_id,
                new.auth_type,
                new.identity,
                new.backend,
                new.locator,
                new.description,
                attributes
            ],
        )?;
        let created = get_credential_in(&tx, &new.id)?.ok_or_else(|| CatalogError::NotFound {
            kind: "credential",
            id: new.id.clone(),
        })?;
        tx.commit()?;
        Ok(created)
    }

    /// Insert the credential, or bring an existing one with the same id to exactly these
    /// fields. Writes nothing (and keeps `updated_at`) when nothing differs, so repeating
    /// an import changes nothing.
    pub fn upsert_credential(&self, new: &NewCredential) -> Result<WriteOutcome, CatalogError> {
        validate_credential(new)?;
        let attributes = attributes_json(&new.attributes)?;
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let outcome = match get_credential_in(&tx, &new.id)? {
            None => {
                tx.execute(
                    &format!(
                        "INSERT INTO credentials ({CREDENTIAL_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, {NOW_SQL}, {NOW_SQL})"
                    ),
                    params![
                        new.id,
                        new.label,
                        new.api_id,
                        new.auth_type,
                        new.identity,
                        new.backend,
                        new.locator,
                        new.description,
                        attributes
                    ],
                )?;
                WriteOutcome::Inserted
            }
            Some(old) if same_fields(&old, new) => WriteOutcome::Unchanged,
            Some(_) => {
                tx.execute(
                    &format!(
                        "UPDATE credentials SET label = ?2, api_id = ?3, auth_type = ?4,
                         identity = ?5, backend = ?6, locator = ?7, description = ?8,
                         attributes = ?9, updated_at = {NOW_SQL} WHERE id = ?1"
                    ),
                    params![
                        new.id,
                        new.label,
                        new.api_id,
                        new.auth_type,
                        new.identity,
                        new.backend,
                        new.locator,
                        new.description,
                        attributes
                    ],
                )?;
                WriteOutcome::Updated
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// One credential's metadata.
    pub fn get_credential(&self, id: &str) -> Result<Credential, CatalogError> {
        let conn = self.db.lock();
        get_credential_in(&conn, id)?.ok_or_else(|| CatalogError::NotFound {
            kind: "credential",
            id: id.to_owned(),
        })
    }

    /// Every credential, ordered by id; optionally only those for one API and/or visible
    /// to one toolkit.
    pub fn list_credentials(
        &self,
        api_id: Option<&str>,
        toolkit: Option<&str>,
    ) -> Result<Vec<Credential>, CatalogError> {
        let conn = self.db.lock();
        if let Some(toolkit) = toolkit {
            require_toolkit(&conn, toolkit)?;
        }
        let toolkit = toolkit.filter(|t| *t != DEFAULT_TOOLKIT);
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials c
             WHERE (?1 IS NULL OR c.api_id = ?1)
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM toolkit_credentials b
                                          WHERE b.toolkit_id = ?2 AND b.credential_id = c.id))
             ORDER BY c.id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![api_id, toolkit], credential_from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Credentials visible to `toolkit` for `api_id`: what `get_values_for_api` resolves.
    pub fn credentials_for_api(
        &self,
        toolkit: &str,
        api_id: &str,
    ) -> Result<Vec<Credential>, CatalogError> {
        self.list_credentials(Some(api_id), Some(toolkit))
    }

    /// Whether `toolkit` may use credential `id` (always true for `default`).
    pub fn is_visible(&self, toolkit: &str, id: &str) -> Result<bool, CatalogError> {
        if toolkit == DEFAULT_TOOLKIT {
            return Ok(true);
        }
        let conn = self.db.lock();
        let found = conn
            .prepare_cached(
                "SELECT 1 FROM toolkit_credentials WHERE toolkit_id = ?1 AND credential_id = ?2",
            )?
            .query_row([toolkit, id], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    /// Credential `id` if `toolkit` may use it, in one query; `None` both when it does not
    /// exist and when it is not bound, so callers cannot tell the two apart.
    pub fn get_visible_credential(
        &self,
        toolkit: &str,
        id: &str,
    ) -> Result<Option<Credential>, CatalogError> {
        get_visible_credential_in(&self.db.lock(), toolkit, id)
    }

    /// Delete a credential's metadata and bindings (and, by cascade, a Fernet ciphertext).
    pub fn remove_credential(&self, id: &str) -> Result<Credential, CatalogError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let old = get_credential_in(&tx, id)?.ok_or_else(|| CatalogError::NotFound {
            kind: "credential",
            id: id.to_owned(),
        })?;
        tx.execute("DELETE FROM credentials WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(old)
    }

    /// Create a toolkit. Fails with `Duplicate` if the id is taken.
    pub fn add_toolkit(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Toolkit, CatalogError> {
        match self.upsert_toolkit(id, name, description, false)? {
            WriteOutcome::Inserted => self.get_toolkit(id),
            _ => Err(CatalogError::Duplicate {
                kind: "toolkit",
                id: id.to_owned(),
            }),
        }
    }

    /// Insert or update a toolkit; `Unchanged` writes nothing. With `replace = false` an
    /// existing toolkit is left alone and reported `Unchanged`.
    pub fn upsert_toolkit(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
        replace: bool,
    ) -> Result<WriteOutcome, CatalogError> {
        validate_id("toolkit id", id)?;
        validate_text("toolkit name", name, MAX_ID_LEN, false)?;
        if let Some(d) = description {
            validate_text("toolkit description", d, MAX_TEXT_LEN, true)?;
        }
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let existing: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT name, description FROM toolkits WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let outcome = match existing {
            None => {
                tx.execute(
                    &format!(
                        "INSERT INTO toolkits (id, name, description, created_at, updated_at)
                         VALUES (?1, ?2, ?3, {NOW_SQL}, {NOW_SQL})"
                    ),
                    params![id, name, description],
                )?;
                WriteOutcome::Inserted
            }
            Some((n, d)) if !replace || (n == name && d.as_deref() == description) => {
                WriteOutcome::Unchanged
            }
            Some(_) => {
                tx.execute(
                    &format!(
                        "UPDATE toolkits SET name = ?2, description = ?3, updated_at = {NOW_SQL}
                         WHERE id = ?1"
                    ),
                    params![id, name, description],
                )?;
                WriteOutcome::Updated
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    pub fn get_toolkit(&self, id: &str) -> Result<Toolkit, CatalogError> {
        self.list_toolkits()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| CatalogError::NotFound {
                kind: "toolkit",
                id: id.to_owned(),
            })
    }

    /// Whether toolkit `id` exists.
    pub fn toolkit_exists(&self, id: &str) -> Result<bool, CatalogError> {
        let conn = self.db.lock();
        match require_toolkit(&conn, id) {
            Ok(()) => Ok(true),
            Err(CatalogError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every toolkit, ordered by id, with its number of visible credentials.
    pub fn list_toolkits(&self) -> Result<Vec<Toolkit>, CatalogError> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.name, t.description, t.created_at, t.updated_at,
                    CASE WHEN t.id = 'default' THEN (SELECT count(*) FROM credentials)
                         ELSE (SELECT count(*) FROM toolkit_credentials b
                               WHERE b.toolkit_id = t.id) END
             FROM toolkits t ORDER BY t.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Toolkit {
                id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
                credential_count: r.get::<_, i64>(5)? as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Delete a toolkit with its bindings and keys. The `default` toolkit cannot be removed.
    pub fn remove_toolkit(&self, id: &str) -> Result<Toolkit, CatalogError> {
        if id == DEFAULT_TOOLKIT {
            return Err(CatalogError::Invalid {
                field: "toolkit",
                reason: "the default toolkit cannot be removed".into(),
            });
        }
        let old = self.get_toolkit(id)?;
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM toolkits WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(CatalogError::NotFound {
                kind: "toolkit",
                id: id.to_owned(),
            });
        }
        tx.commit()?;
        Ok(old)
    }

    /// Let `toolkit` use credential `credential`. Binding twice is `Unchanged`.
    pub fn bind(&self, toolkit: &str, credential: &str) -> Result<WriteOutcome, CatalogError> {
        if toolkit == DEFAULT_TOOLKIT {
            return Err(CatalogError::Invalid {
                field: "toolkit",
                reason: "the default toolkit sees every credential; it takes no bindings".into(),
            });
        }
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        require_toolkit(&tx, toolkit)?;
        if get_credential_in(&tx, credential)?.is_none() {
            return Err(CatalogError::NotFound {
                kind: "credential",
                id: credential.to_owned(),
            });
        }
        let n = tx.execute(
            &format!(
                "INSERT OR IGNORE INTO toolkit_credentials (toolkit_id, credential_id, created_at)
                 VALUES (?1, ?2, {NOW_SQL})"
            ),
            [toolkit, credential],
        )?;
        tx.commit()?;
        Ok(if n == 1 {
            WriteOutcome::Inserted
        } else {
            WriteOutcome::Unchanged
        })
    }

    /// Withdraw a binding. Fails with `NotFound` if it did not exist.
    pub fn unbind(&self, toolkit: &str, credential: &str) -> Result<(), CatalogError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        require_toolkit(&tx, toolkit)?;
        let n = tx.execute(
            "DELETE FROM toolkit_credentials WHERE toolkit_id = ?1 AND credential_id = ?2",
            [toolkit, credential],
        )?;
        if n == 0 {
            return Err(CatalogError::NotFound {
                kind: "binding",
                id: format!("{toolkit} -> {credential}"),
            });
        }
        tx.commit()?;
        Ok(())
    }

    /// Every (toolkit, credential) binding, ordered.
    pub fn list_bindings(&self) -> Result<Vec<(String, String)>, CatalogError> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT toolkit_id, credential_id FROM toolkit_credentials ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }
}

/// [`Catalog::get_visible_credential`] on a connection the caller holds. (The service's
/// resolutions use [`crate::resolution_read`], which must agree with it.)
pub fn get_visible_credential_in(
    conn: &rusqlite::Connection,
    toolkit: &str,
    id: &str,
) -> Result<Option<Credential>, CatalogError> {
    if toolkit == DEFAULT_TOOLKIT {
        return get_credential_in(conn, id);
    }
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE id = ?2 AND EXISTS (SELECT 1 FROM toolkit_credentials b
          WHERE b.toolkit_id = ?1 AND b.credential_id = ?2)"
    ))?;
    Ok(stmt
        .query_row([toolkit, id], credential_from_row)
        .optional()?)
}

fn require_toolkit(conn: &rusqlite::Connection, id: &str) -> Result<(), CatalogError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM toolkits WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?;
    found.ok_or_else(|| CatalogError::NotFound {
        kind: "toolkit",
        id: id.to_owned(),
    })
}

fn get_credential_in(
    conn: &rusqlite::Connection,
    id: &str,
) -> Result<Option<Credential>, CatalogError> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id], credential_from_row).optional()?)
}

fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<Credential> {
    credential_from_row_at(row, 0)
}

/// A credential from the [`CREDENTIAL_COLUMNS`] of a row, starting at column `base`.
pub(crate) fn credential_from_row_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Credential> {
    let attributes: String = row.get(base + 8)?;
    // The CHECK constraint guarantees a JSON object; a row edited by hand that somehow is
    // not one reads as empty rather than failing every listing.
    let attributes = match serde_json::from_str(&attributes) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Ok(Credential {
        id: row.get(base)?,
        label: row.get(base + 1)?,
        api_id: row.get(base + 2)?,
        auth_type: row.get(base + 3)?,
        identity: row.get(base + 4)?,
        backend: row.get(base + 5)?,
        locator: row.get(base + 6)?,
        description: row.get(base + 7)?,
        attributes,
        created_at: row.get(base + 9)?,
        updated_at: row.get(base + 10)?,
    })
}

/// Whether a stored credential already has exactly the fields of `new`.
pub fn same_fields(old: &Credential, new: &NewCredential) -> bool {
    old.label == new.label
        && old.api_id == new.api_id
        && old.auth_type == new.auth_type
        && old.identity == new.identity
        && old.backend == new.backend
        && old.locator == new.locator
        && old.description == new.description
        && old.attributes == new.attributes
}

fn attributes_json(attributes: &Map<String, Value>) -> Result<String, CatalogError> {
    let text = serde_json::to_string(attributes).map_err(|e| CatalogError::Invalid {
        field: "attributes",
        reason: e.to_string(),
    })?;
    if text.len() > MAX_TEXT_LEN {
        return Err(CatalogError::Invalid {
            field: "attributes",
            reason: format!("{} bytes, more than {MAX_TEXT_LEN}", text.len()),
        });
    }
    Ok(text)
}

/// Ids: 1..=256 visible characters, no whitespace, no control characters. `/` and `.` are
/// allowed (Jentic Mini's ids use them); whitespace and controls are not, because ids are
/// printed in logs and tables where they could forge lines or hide characters.
pub fn validate_id(field: &'static str, id: &str) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { field, reason });
    if id.is_empty() {
        return invalid("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return invalid(format!("{} bytes, more than {MAX_ID_LEN}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return invalid(format!(
            "{id:?} contains {c:?}; whitespace and control characters are not allowed"
        ));
    }
    Ok(())
}

fn validate_text(
    field: &'static str,
    text: &str,
    max: usize,
    multiline: bool,
) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { field, reason });
    if text.trim().is_empty() && !multiline {
        return invalid("must not be empty".into());
    }
    if text.len() > max {
        return invalid(format!("{} bytes, more than {max}", text.len()));
    }
    let bad = |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\t'));
    if let Some(c) = text.chars().find(|c| bad(*c)) {
        return invalid(format!("contains the control character {c:?}"));
    }
    Ok(())
}

/// Auth types are short words (`bearer`, `basic`, `apiKey`, `oauth2`, ...): ASCII letters,
/// digits, `_` and `-`. Jentic Mini's camelCase and legacy scheme names are accepted as is.
fn validate_auth_type(auth_type: &str) -> Result<(), CatalogError> {
    let ok = !auth_type.is_empty()
        && auth_type.len() <= 64
        && auth_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CatalogError::Invalid {
            field: "auth_type",
            reason: format!(
                "{auth_type:?}: use a short word of letters, digits, `_` or `-`, such as bearer, basic or apiKey"
            ),
        })
    }
}

fn validate_credential(new: &NewCredential) -> Result<(), CatalogError> {
    validate_id("credential id", &new.id)?;
    validate_text("label", &new.label, MAX_ID_LEN, false)?;
    if let Some(api) = &new.api_id {
        validate_id("api_id", api)?;
    }
    validate_auth_type(&new.auth_type)?;
    if let Some(identity) = &new.identity {
        validate_text("identity", identity, MAX_ID_LEN, false)?;
    }
    validate_id("backend", &new.backend)?;
    if let Some(locator) = &new.locator {
        validate_text("locator", locator, MAX_TEXT_LEN, false)?;
    }
    if let Some(d) = &new.description {
        validate_text("description", d, MAX_TEXT_LEN, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        (dir, Catalog::new(db))
    }

    fn cred(id: &str, api: &str) -> NewCredential {
        NewCredential {
            id: id.into(),
            label: format!("label of {id}"),
            api_id: Some(api.into()),
            auth_type: "bearer".into(),
            identity: None,
            backend: "fernet".into(),
            locator: None,
            description: None,
            attributes: Map::new(),
        }
    }

    #[test]
    fn add_get_list_remove() {
        let (_d, cat) = catalog();
        let c = cat
            .add_credential(&cred("github/main.token", "api.github.com"))
            .unwrap();
        assert_eq!(c.id, "github/main.token");
        assert!(c.created_at.ends_with('Z'));
        cat.add_credential(&cred("stripe", "api.stripe.com"))
            .unwrap();
        let all = cat.list_credentials(None, None).unwrap();
        assert_eq!(all.len(), 2);
        let gh = cat.list_credentials(Some("api.github.com"), None).unwrap();
        assert_eq!(gh.len(), 1);
        assert_eq!(
            cat.get_credential("stripe").unwrap().label,
            "label of stripe"
        );
        cat.remove_credential("stripe").unwrap();
        assert!(matches!(
            cat.get_credential("stripe"),
            Err(CatalogError::NotFound { .. })
        ));
    }

    #[test]
    fn duplicate_id_is_refused_and_changes_nothing() {
        let (_d, cat) = catalog();
        cat.add_credential(&cred("a", "x")).unwrap();
        let mut other = cred("a", "y");
        other.label = "other".into();
        let err = cat.add_credential(&other).unwrap_err();
        assert_eq!(err.to_string(), "credential 'a' already exists");
        assert_eq!(
            cat.get_credential("a").unwrap().api_id.as_deref(),
            Some("x")
        );
    }

    #[test]
    fn upsert_is_idempotent() {
        let (_d, cat) = catalog();
        let c = cred("a", "x");
        assert_eq!(cat.upsert_credential(&c).unwrap(), WriteOutcome::Inserted);
        let before = cat.get_credential("a").unwrap();
        assert_eq!(cat.upsert_credential(&c).unwrap(), WriteOutcome::Unchanged);
        assert_eq!(cat.get_credential("a").unwrap(), before);
        let mut changed = c.clone();
        changed
            .attributes
            .insert("scheme".into(), Value::String("header".into()));
        assert_eq!(
            cat.upsert_credential(&changed).unwrap(),
            WriteOutcome::Updated
        );
    }

    #[test]
    fn toolkits_see_only_their_bindings_and_default_sees_all() {
        let (_d, cat) = catalog();
        cat.add_credential(&cred("a", "api")).unwrap();
        cat.add_credential(&cred("b", "api")).unwrap();
        cat.add_toolkit("tk1", "One", None).unwrap();
        assert_eq!(cat.bind("tk1", "a").unwrap(), WriteOutcome::Inserted);
        assert_eq!(cat.bind("tk1", "a").unwrap(), WriteOutcome::Unchanged);
        let ids = |v: Vec<Credential>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(cat.credentials_for_api("tk1", "api").unwrap()), ["a"]);
        assert_eq!(
            ids(cat.credentials_for_api("default", "api").unwrap()),
            ["a", "b"]
        );
        assert!(cat.is_visible("tk1", "a").unwrap());
        assert!(!cat.is_visible("tk1", "b").unwrap());
        assert!(cat.bind("default", "a").is_err());
        assert!(matches!(
            cat.bind("nope", "a"),
            Err(CatalogError::NotFound {
                kind: "toolkit",
                ..
            })
        ));
        assert!(matches!(
            cat.bind("tk1", "zzz"),
            Err(CatalogError::NotFound {
                kind: "credential",
                ..
            })
        ));
        let counts: Vec<_> = cat
            .list_toolkits()
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.credential_count))
            .collect();
        assert_eq!(counts, [("default".into(), 2), ("tk1".into(), 1)]);
        assert_eq!(
            cat.get_visible_credential("tk1", "a").unwrap().unwrap().id,
            "a"
        );
        assert!(cat.get_visible_credential("tk1", "b").unwrap().is_none());
        assert!(cat.get_visible_credential("tk1", "zzz").unwrap().is_none());
        assert!(
            cat.get_visible_credential("default", "b")
                .unwrap()
                .is_some()
        );
        cat.unbind("tk1", "a").unwrap();
        assert!(cat.unbind("tk1", "a").is_err());
        // Removing a credential removes its bindings.
        cat.bind("tk1", "b").unwrap();
        cat.remove_credential("b").unwrap();
        assert!(cat.list_bindings().unwrap().is_empty());
        // Removing a toolkit removes its bindings; default stays.
        cat.bind("tk1", "a").unwrap();
        assert_eq!(cat.remove_toolkit("tk1").unwrap().id, "tk1");
        assert!(cat.list_bindings().unwrap().is_empty());
        assert!(!cat.toolkit_exists("tk1").unwrap());
        assert!(cat.remove_toolkit("default").is_err());
        assert!(cat.remove_toolkit("tk1").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let (_d, cat) = catalog();
        type Case = (&'static str, fn(&mut NewCredential), &'static str);
        let table: &[Case] = &[
            ("empty id", |c| c.id.clear(), "invalid credential id"),
            (
                "space in id",
                |c| c.id = "a b".into(),
                "invalid credential id",
            ),
            (
                "newline id",
                |c| c.id = "a\nb".into(),
                "invalid credential id",
            ),
            (
                "long id",
                |c| c.id = "x".repeat(300),
                "invalid credential id",
            ),
            ("empty label", |c| c.label = " ".into(), "invalid label"),
            (
                "auth type",
                |c| c.auth_type = "Bearer Token".into(),
                "invalid auth_type",
            ),
            ("backend", |c| c.backend = String::new(), "invalid backend"),
        ];
        for (name, mutate, expected) in table {
            let mut c = cred("ok", "api");
            mutate(&mut c);
            let err = cat.add_credential(&c).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{name}: {err}");
        }
        assert!(cat.list_credentials(None, None).unwrap().is_empty());
    }
}
