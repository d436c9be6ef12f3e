//! Import from Jentic Mini: its credentials (metadata and values), toolkits and bindings.
//!
//! Reads a Jentic Mini SQLite database read-only (tables `credentials`,
//! `credential_routes`, `toolkits`, `toolkit_credentials`), decrypts each value with
//! Jentic's Fernet key and stores it through airlock's runtime, so it is re-encrypted under
//! airlock's own keys (or written to whichever backend the operator chose).
//!
//! Invariants: idempotent — a credential whose metadata and value already match is not
//! written, so a second run changes nothing; a credential whose token does not decrypt is
//! reported by id and skipped, the others still import; a dry run writes nothing anywhere.
//! Jentic's `identity` becomes airlock's `identity` column; `scheme`, `server_variables`
//! and routes go into `attributes`, where a broker will look for them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::backend::BackendError;
use crate::catalog::{CatalogError, DEFAULT_TOOLKIT, NewCredential, WriteOutcome, same_fields};
use crate::keyring::{ENV_JENTIC_KEY, KEY_FILE, KeyError, KeySource, Keyring};
use crate::runtime::{Runtime, RuntimeError};
use crate::secret::Secret;

/// Import failures that stop the whole import (per-credential problems are reported in
/// the [`ImportReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open Jentic Mini database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path} is not a Jentic Mini database: {reason}")]
    NotJentic { path: PathBuf, reason: String },
    #[error("reading Jentic Mini database: {0}")]
    Read(#[from] rusqlite::Error),
    #[error("Jentic Mini vault key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "an import that writes needs an open airlock data directory (only --dry-run may run without one)"
    )]
    NoRuntime,
}

/// Where the Jentic key comes from: an explicit file, `JENTIC_VAULT_KEY`, or the
/// `vault.key` beside the database (Jentic Mini's own order).
pub fn jentic_keyring(
    db: &Path,
    key_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Keyring, KeyError> {
    if let Some(path) = key_file {
        return Keyring::from_file(path);
    }
    if let Some(key) = env(ENV_JENTIC_KEY).filter(|k| !k.trim().is_empty()) {
        let key = Zeroizing::new(key);
        match Keyring::from_texts([key.trim()], KeySource::Env(ENV_JENTIC_KEY), "value") {
            Ok(ring) => return Ok(ring),
            // Jentic Mini ignores an invalid env key and falls back to its file; so do we.
            Err(e) => tracing::warn!(error = %e, "ignoring invalid JENTIC_VAULT_KEY"),
        }
    }
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Keyring::from_file(&dir.join(KEY_FILE))
}

/// One credential read from Jentic Mini, value still encrypted.
struct JenticCredential {
    new: NewCredential,
    token: String,
}

/// What the import did (or, in a dry run, would do) with one credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialOutcome {
    pub id: String,
    pub metadata: WriteOutcome,
    pub value: WriteOutcome,
}

/// A credential that was not imported, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub id: String,
    pub reason: String,
}

/// The result of an import or dry run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub credentials: Vec<CredentialOutcome>,
    pub failed: Vec<Failure>,
    pub toolkits: Vec<(String, WriteOutcome)>,
    pub bindings: Vec<(String, String, WriteOutcome)>,
    /// Things present in the source that airlock did not import, said plainly.
    pub notes: Vec<String>,
}

impl ImportReport {
    /// Whether anything was (or would be) written.
    pub fn changed(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| c.metadata != WriteOutcome::Unchanged || c.value != WriteOutcome::Unchanged)
            || self.toolkits.iter().any(|t| t.1 != WriteOutcome::Unchanged)
            || self.bindings.iter().any(|b| b.2 != WriteOutcome::Unchanged)
    }
}

/// The parsed source database.
pub struct JenticSource {
    credentials: Vec<JenticCredential>,
    toolkits: Vec<(String, String, Option<String>)>,
    bindings: Vec<(String, String)>,
    notes: Vec<String>,
    path: PathBuf,
}

impl JenticSource {
    /// Read everything airlock imports from the database at `path` (opened read-only).
    /// `backend` is the airlock backend the values will be stored in.
    pub fn read(path: &Path, backend: &str) -> Result<JenticSource, ImportError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| ImportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let not_jentic = |reason: String| ImportError::NotJentic {
            path: path.to_path_buf(),
            reason,
        };
        let columns = table_columns(&conn, "credentials").map_err(|e| not_jentic(e.to_string()))?;
        if columns.is_empty() {
            return Err(not_jentic("it has no `credentials` table".into()));
        }
        for required in ["id", "label", "encrypted_value"] {
            if !columns.contains(required) {
                return Err(not_jentic(format!(
                    "`credentials` has no `{required}` column"
                )));
            }
        }
        // Columns added by later Jentic migrations (or renamed by earlier ones) are read
        // when present; an older database simply lacks them.
        let col = |name: &str| {
            if columns.contains(name) {
                name.to_owned()
            } else {
                "NULL".to_owned()
            }
        };
        let auth_col = if columns.contains("auth_type") {
            "auth_type".to_owned()
        } else {
            col("scheme_name")
        };
        let sql = format!(
            "SELECT id, label, encrypted_value, {}, {auth_col}, {}, {}, {}, {} FROM credentials
             ORDER BY id",
            col("api_id"),
            col("identity"),
            col("scheme"),
            col("server_variables"),
            col("description"),
        );
        let mut notes = Vec::new();
        let has_routes = !table_columns(&conn, "credential_routes")?.is_empty();
        let mut credentials = Vec::new();
        {
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let mut attributes = Map::new();
                for (index, key) in [(6, "scheme"), (7, "server_variables")] {
                    let text: Option<String> = row.get(index)?;
                    if let Some(value) = text.as_deref().and_then(parse_json_object) {
                        attributes.insert(key.to_owned(), value);
                    } else if text.as_deref().is_some_and(|t| !t.trim().is_empty()) {
                        notes.push(format!(
                            "credential '{id}': {key} is not a JSON object; kept as text"
                        ));
                        attributes.insert(key.to_owned(), Value::String(text.unwrap_or_default()));
                    }
                }
                if has_routes {
                    let routes = read_routes(&conn, &id)?;
                    if !routes.is_empty() {
                        attributes.insert("routes".into(), Value::Array(routes));
                    }
                }
                let auth_type: Option<String> = row.get(4)?;
                credentials.push(JenticCredential {
                    new: NewCredential {
                        id,
                        label: row.get(1)?,
                        api_id: row.get(3)?,
                        auth_type: auth_type
                            .filter(|a| !a.trim().is_empty())
                            .unwrap_or_else(|| "none".into()),
                        identity: row.get(5)?,
                        backend: backend.to_owned(),
                        locator: None,
                        description: row.get(8)?,
                        attributes,
                    },
                    token: row.get(2)?,
                });
            }
        }
        let mut toolkits = Vec::new();
        if !table_columns(&conn, "toolkits")?.is_empty() {
            let mut stmt =
                conn.prepare("SELECT id, name, description FROM toolkits ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                let (id, name, description): (String, String, Option<String>) = row?;
                if id != DEFAULT_TOOLKIT {
                    toolkits.push((id, name, description));
                }
            }
        }
        let mut bindings = Vec::new();
        if !table_columns(&conn, "toolkit_credentials")?.is_empty() {
            let mut stmt = conn.prepare(
                "SELECT toolkit_id, credential_id FROM toolkit_credentials ORDER BY 1, 2",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in rows {
                let (toolkit, credential): (String, String) = row?;
                // The default toolkit sees every credential in airlock too.
                if toolkit != DEFAULT_TOOLKIT {
                    bindings.push((toolkit, credential));
                }
            }
        }
        let keys = count_rows(&conn, "toolkit_keys")?;
        if keys > 0 {
            notes.push(format!(
                "{keys} toolkit key(s) not imported: airlock issues its own hashed toolkit keys"
            ));
        }
        let policies = count_rows(&conn, "credential_policies")?;
        if policies > 0 {
            notes.push(format!("{policies} credential polic(ies) not imported"));
        }
        Ok(JenticSource {
            credentials,
            toolkits,
            bindings,
            notes,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Import into `runtime`, or with `dry_run` only report what would change. With
    /// `runtime = None` (a dry run against a data directory that does not exist yet)
    /// everything is reported as an insert.
    pub async fn import(
        &self,
        keyring: &Keyring,
        runtime: Option<&Runtime>,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let mut report = ImportReport {
            dry_run,
            notes: self.notes.clone(),
            ..ImportReport::default()
        };
        if runtime.is_none() && !dry_run {
            return Err(ImportError::NoRuntime);
        }
        if let (Some(rt), Some(first)) = (runtime, self.credentials.first()) {
            rt.backend(&first.new.backend)?;
        }
        let mut imported = BTreeSet::new();
        for cred in &self.credentials {
            let id = cred.new.id.clone();
            let value = match keyring.decrypt(&cred.token) {
                Ok(v) => v,
                Err(e) => {
                    report.failed.push(Failure {
                        id,
                        reason: format!("value does not decrypt: {e}"),
                    });
                    continue;
                }
            };
            match import_one(runtime, &cred.new, &value, dry_run).await {
                Ok(outcome) => {
                    imported.insert(id);
                    report.credentials.push(outcome);
                }
                Err(reason) => report.failed.push(Failure { id, reason }),
            }
        }
        for (id, name, description) in &self.toolkits {
            let outcome = match runtime {
                None => WriteOutcome::Inserted,
                Some(rt) if dry_run => match rt.catalog().get_toolkit(id) {
                    Ok(t) if t.name == *name && t.description == *description => {
                        WriteOutcome::Unchanged
                    }
                    Ok(_) => WriteOutcome::Updated,
                    Err(_) => WriteOutcome::Inserted,
                },
                Some(rt) => {
                    match rt
                        .catalog()
                        .upsert_toolkit(id, name, description.as_deref(), true)
                    {
                        Ok(o) => o,
                        Err(e) => {
                            report
                                .notes
                                .push(format!("toolkit '{id}' not imported: {e}"));
                            continue;
                        }
                    }
                }
            };
            report.toolkits.push((id.clone(), outcome));
        }
        for (toolkit, credential) in &self.bindings {
            if !imported.contains(credential) {
                report.notes.push(format!(
                    "binding {toolkit} -> {credential} skipped: the credential was not imported"
                ));
                continue;
            }
            let outcome = match runtime {
                None => WriteOutcome::Inserted,
                Some(rt) if dry_run => {
                    let bound = rt
                        .catalog()
                        .is_visible(toolkit, credential)
                        .unwrap_or(false);
                    if bound {
                        WriteOutcome::Unchanged
                    } else {
                        WriteOutcome::Inserted
                    }
                }
                Some(rt) => match rt.catalog().bind(toolkit, credential) {
                    Ok(o) => o,
                    Err(e) => {
                        report
                            .notes
                            .push(format!("binding {toolkit} -> {credential}: {e}"));
                        continue;
                    }
                },
            };
            report
                .bindings
                .push((toolkit.clone(), credential.clone(), outcome));
        }
        Ok(report)
    }
}

/// Import (or plan) one credential; the error string is the reason it was skipped.
async fn import_one(
    runtime: Option<&Runtime>,
    new: &NewCredential,
    value: &Secret,
    dry_run: bool,
) -> Result<CredentialOutcome, String> {
    let Some(rt) = runtime else {
        return Ok(CredentialOutcome {
            id: new.id.clone(),
            metadata: WriteOutcome::Inserted,
            value: WriteOutcome::Inserted,
        });
    };
    let existing = match rt.catalog().get_credential(&new.id) {
        Ok(c) => Some(c),
        Err(CatalogError::NotFound { .. }) => None,
        Err(e) => return Err(e.to_string()),
    };
    let metadata = match &existing {
        None => WriteOutcome::Inserted,
        Some(old) if same_fields(old, new) => WriteOutcome::Unchanged,
        Some(_) => WriteOutcome::Updated,
    };
    let current = if existing.is_some() {
        match rt.get_value(&new.id).await {
            Ok(v) => Some(v),
            Err(RuntimeError::Backend {
                source: BackendError::NotFound,
                ..
            }) => None,
            Err(e) => return Err(e.to_string()),
        }
    } else {
        None
    };
    let value_outcome = match current {
        None => WriteOutcome::Inserted,
        Some(v) if v.expose() == value.expose() => WriteOutcome::Unchanged,
        Some(_) => WriteOutcome::Updated,
    };
    if !dry_run {
        if metadata != WriteOutcome::Unchanged {
            rt.catalog()
                .upsert_credential(new)
                .map_err(|e| e.to_string())?;
        }
        if value_outcome != WriteOutcome::Unchanged {
            rt.store_value(&new.id, value)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(CredentialOutcome {
        id: new.id.clone(),
        metadata,
        value: value_outcome,
    })
}

fn parse_json_object(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

fn read_routes(conn: &Connection, id: &str) -> Result<Vec<Value>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT host, path_prefix FROM credential_routes WHERE credential_id = ?1 ORDER BY 1, 2",
    )?;
    let rows = stmt.query_map([id], |r| {
        let host: String = r.get(0)?;
        let prefix: Option<String> = r.get(1)?;
        let mut route = Map::new();
        route.insert("host".into(), Value::String(host));
        route.insert(
            "path_prefix".into(),
            Value::String(prefix.unwrap_or_else(|| "/".into())),
        );
        Ok(Value::Object(route))
    })?;
    rows.collect()
}

fn table_columns(conn: &Connection, table: &str) -> Result<BTreeSet<String>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let rows = stmt.query_map([table], |r| r.get::<_, String>(0))?;
    rows.collect()
}

fn count_rows(conn: &Connection, table: &str) -> Result<i64, rusqlite::Error> {
    if table_columns(conn, table)?.is_empty() {
        return Ok(0);
    }
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
}
