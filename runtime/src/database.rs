//! The SQLite file that holds airlock's catalog and the Fernet vault's ciphertexts.
//!
//! Invariants: the schema version lives in `PRAGMA user_version` and only moves forward,
//! one migration per transaction, so a crash mid-upgrade leaves the previous version intact;
//! WAL mode lets readers (e.g. a CLI beside a running service) proceed during writes;
//! foreign keys are enforced, so a binding or a ciphertext never outlives its credential;
//! transactions are `BEGIN IMMEDIATE`, so concurrent writers wait for each other instead of
//! failing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "airlock.db";

/// How long a writer waits for another process's write lock before failing with "database
/// is locked". Long enough to ride out a key rotation of a few thousand values, short enough
/// that a wedged process is reported rather than waited on forever.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations, in order. Entry `i` moves the schema from version `i` to `i + 1`.
/// Never edit a released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: credentials, toolkits, bindings, Fernet ciphertexts.
    r#"
    CREATE TABLE credentials (
        id          TEXT PRIMARY KEY NOT NULL,
        label       TEXT NOT NULL,
        api_id      TEXT,
        auth_type   TEXT NOT NULL,
        identity    TEXT,
        backend     TEXT NOT NULL,
        locator     TEXT,
        description TEXT,
        attributes  TEXT NOT NULL DEFAULT '{}'
                    CHECK (json_valid(attributes) AND json_type(attributes) = 'object'),
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX credentials_by_api ON credentials (api_id);

    CREATE TABLE toolkits (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        description TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    ) STRICT;

    CREATE TABLE toolkit_credentials (
        toolkit_id    TEXT NOT NULL REFERENCES toolkits (id) ON DELETE CASCADE,
        credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (toolkit_id, credential_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX toolkit_credentials_by_credential ON toolkit_credentials (credential_id);

    INSERT INTO toolkits (id, name, description, created_at, updated_at)
    VALUES ('default', 'Default', 'Sees every credential',
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

    CREATE TABLE fernet_values (
        credential_id TEXT PRIMARY KEY NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
        token         TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    ) STRICT;

    -- One token of a known plaintext, so a wrong key is detected before it is used to
    -- write values that the right key could not read.
    CREATE TABLE fernet_canary (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL
    ) STRICT;
    "#,
    // 2: the service: toolkit keys and admin tokens (SHA-256 hashes only), audit events.
    r#"
    CREATE TABLE toolkit_keys (
        id            TEXT PRIMARY KEY NOT NULL,
        toolkit_id    TEXT NOT NULL REFERENCES toolkits (id) ON DELETE CASCADE,
        hash          BLOB NOT NULL CHECK (length(hash) = 32),
        label         TEXT,
        allowed_cidrs TEXT NOT NULL DEFAULT '[]'
                      CHECK (json_valid(allowed_cidrs) AND json_type(allowed_cidrs) = 'array'),
        created_at    TEXT NOT NULL,
        revoked_at    TEXT
    ) STRICT;
    CREATE INDEX toolkit_keys_by_toolkit ON toolkit_keys (toolkit_id);

    CREATE TABLE admin_tokens (
        id         TEXT PRIMARY KEY NOT NULL,
        hash       BLOB NOT NULL CHECK (length(hash) = 32),
        created_at TEXT NOT NULL,
        revoked_at TEXT
    ) STRICT;

    -- Append-only. No foreign keys: an event outlives the toolkit, key or credential it
    -- names.
    CREATE TABLE audit_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        at            TEXT NOT NULL,
        actor         TEXT NOT NULL,
        key_id        TEXT,
        toolkit_id    TEXT,
        action        TEXT NOT NULL,
        credential_id TEXT,
        api_id        TEXT,
        backend       TEXT,
        target        TEXT,
        outcome       TEXT NOT NULL,
        status        INTEGER,
        latency_us    INTEGER,
        client_ip     TEXT,
        request_id    TEXT
    ) STRICT;
    CREATE INDEX audit_events_by_toolkit ON audit_events (toolkit_id, id);
    CREATE INDEX audit_events_by_credential ON audit_events (credential_id, id);
    CREATE INDEX audit_events_by_at ON audit_events (at);
    "#,
];

/// Read-only connections per database handle: one per core of the machine this is sized
/// for (two), so each tokio worker can read without waiting for the other (measured: one
/// reader shared by both workers raised the load benchmark's p99 by about 10%).
const READERS: usize = 2;

/// Prepared statements kept per connection.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// The SQL expression for "now" used in every timestamp column (UTC, RFC 3339, ms).
pub const NOW_SQL: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this airlock understands \
         ({supported}); upgrade airlock"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("migrating database {path} to schema version {version} failed: {source}")]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} is read-only (check the permissions of the file and its directory): \
         airlock needs write access to its data directory"
    )]
    ReadOnly { path: PathBuf },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A handle on the open database, shared by the catalog and the Fernet vault.
///
/// One read-write connection behind a mutex: every statement is short, and a single
/// connection means airlock's own components never contend for SQLite's write lock. The
/// service's hot read path uses a couple of read-only connections beside it
/// ([`Database::read`]).
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections for the service's hot path ([`Database::read`]); empty for a
    /// [`Database::reopen`]ed handle.
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
    path: PathBuf,
}

impl Database {
    /// Open (creating if needed) `DATA_DIR/airlock.db` and bring its schema up to date.
    /// A directory airlock creates is private to its user (0700): it holds the key file
    /// and every credential's metadata.
    pub fn open_in(data_dir: &Path) -> Result<Database, DatabaseError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(data_dir)
            .map_err(|source| DatabaseError::CreateDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        Database::open(&data_dir.join(DATABASE_FILE))
    }

    /// Open (creating if needed) the database file at `path` and migrate it.
    pub fn open(path: &Path) -> Result<Database, DatabaseError> {
        Database::open_with_readers(path, READERS)
    }

    fn open_with_readers(path: &Path, readers: usize) -> Result<Database, DatabaseError> {
        let open_err = |source| DatabaseError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // SQLite silently falls back to read-only when the file is not writable; every
        // write would then fail later with a vaguer message, so refuse here, by name.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? {
            return Err(DatabaseError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        // journal_mode returns a row; setting it also proves the directory is writable
        // (WAL needs its -wal and -shm files), so a read-only data dir fails here, clearly.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(open_err)?;
        // Every transaction airlock opens writes. Taking the write lock at BEGIN lets
        // SQLite wait for another connection's write (the busy timeout) instead of
        // failing at once with SQLITE_BUSY when a deferred transaction that has read must
        // upgrade after another connection committed (the audit writer, a CLI beside
        // the service).
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // Room for every statement airlock prepares, so none is re-parsed on the hot path
        // after an eviction (rusqlite's default is 16).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        migrate(&mut conn, path)?;
        let readers = (0..readers)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                reader.busy_timeout(BUSY_TIMEOUT)?;
                reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(open_err)?;
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            path: path.to_path_buf(),
        })
    }

    /// A read-only connection for a short run of reads (the service's resolution lookups).
    /// Readers are separate connections, so reads on different threads neither wait for
    /// each other nor for the shared connection — in particular a thread descheduled while
    /// holding one lock does not stall every other request behind it. WAL gives each a
    /// consistent snapshot of committed data. Falls back to the shared connection when the
    /// handle has no readers.
    pub fn read(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        if n == 0 {
            return self.lock();
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(guard) = self.readers[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.readers[start]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A second, independent connection to the same file, for a component that writes
    /// in batches (the audit log) and must not hold the shared connection's lock while it
    /// does: WAL lets the other connection read meanwhile, and SQLite's own locking (with
    /// the busy timeout) orders the two writers.
    pub fn reopen(&self) -> Result<Database, DatabaseError> {
        Database::open_with_readers(&self.path, 0)
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Exclusive use of the connection for one short unit of work.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (an open
        // transaction is rolled back when its guard drops), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The schema version this build creates and understands.
pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DatabaseError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = supported_version();
    if found > supported {
        return Err(DatabaseError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let migrate_err = |source| DatabaseError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn.transaction().map_err(migrate_err)?;
        tx.execute_batch(sql).map_err(migrate_err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
        tracing::info!(path = %path.display(), version, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_schema_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let version: i64 = db
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, supported_version());
        let mode: String = db
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(db);
        // Re-opening runs no migration twice (it would fail on CREATE TABLE).
        Database::open_in(dir.path()).unwrap();
    }

    #[test]
    fn two_connections_write_concurrently_without_busy_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = Database::open_in(dir.path()).unwrap();
        let b = a.reopen().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..200 {
                let mut conn = b.lock();
                let tx = conn.transaction().unwrap();
                tx.execute(
                    "INSERT INTO toolkits (id, name, created_at, updated_at)
                     VALUES (?1, 'n', 'now', 'now')",
                    [format!("b{i}")],
                )
                .unwrap();
                tx.commit().unwrap();
            }
        });
        for i in 0..200 {
            // Read, then write, in one transaction: with deferred transactions this fails
            // with SQLITE_BUSY whenever the other connection committed in between.
            let mut conn = a.lock();
            let tx = conn.transaction().unwrap();
            let n: i64 = tx
                .query_row("SELECT count(*) FROM toolkits", [], |r| r.get(0))
                .unwrap();
            tx.execute(
                "INSERT INTO toolkits (id, name, created_at, updated_at)
                 VALUES (?1, 'n', 'now', 'now')",
                [format!("a{i}-{n}")],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        writer.join().unwrap();
        let n: i64 = a
            .read()
            .query_row("SELECT count(*) FROM toolkits", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 401);
    }

    #[test]
    fn refuses_a_database_from_a_newer_airlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        Database::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Database::open(&path).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn attributes_must_be_a_json_object() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let res = db.lock().execute(
            "INSERT INTO credentials (id, label, auth_type, backend, attributes, created_at,
             updated_at) VALUES ('a', 'A', 'bearer', 'fernet', '[1]', 'now', 'now')",
            [],
        );
        assert!(res.is_err());
    }
}
