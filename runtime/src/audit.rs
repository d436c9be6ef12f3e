//! The audit log: who did what to which credential, when, with what outcome — never a
//! value. Every management write and every resolution becomes one row of `audit_events`
//! and one structured log line (target `airlock::audit`, level info).
//!
//! Invariants:
//! - An event names ids, names, outcome codes, a status, a latency, the client address and
//!   the request id. It has no field that could hold a value, a token or a request body.
//! - Rows are appended by one writer thread in batched transactions, on its own database
//!   connection, so resolutions never wait for SQLite's commit (nor for the shared
//!   connection's lock during one), and the log line is formatted there too.
//!   The queue is bounded ([`QUEUE_CAPACITY`]); when it is full, producers wait
//!   (backpressure) rather than drop events. Management writes wait for their event to be
//!   committed ([`AuditLog::record_durable`]); resolutions do not, so a crash can lose the
//!   last few milliseconds of resolution events, never a management event.
//! - Queries ([`AuditLog::query`]) flush first, so a caller reads its own events.
//! - Rows older than `retention` are deleted in bounded batches, at most hourly, so a busy
//!   service cannot fill its disk with audit rows.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{ToSql, params};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::database::Database;
use crate::metrics::Metrics;

/// Events queued for the writer before producers wait: a few seconds of traffic at the
/// benchmark's rate (so a slow checkpoint fsync on a busy disk does not stall resolutions),
/// about 20 MiB of memory at most.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Most events written in one transaction: bounds how long the writer holds the write
/// lock.
pub const BATCH_SIZE: usize = 1024;
/// Pause after a batch that emptied the queue. Under load, events queue meanwhile and go
/// out as one transaction, instead of a commit and a thread wake-up per event (which cost
/// more CPU than the resolutions themselves); with a backlog the writer does not pause;
/// idle, it sleeps until the next event. It is also the most a management write waits for
/// its event to be committed, beyond the commit itself.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(5);
/// Most rows a query returns (the default is 100): bounds the memory and size of one
/// `/v1/audit` answer however large the table grows.
pub const MAX_QUERY_LIMIT: u32 = 1_000;
const DEFAULT_QUERY_LIMIT: u32 = 100;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: i64 = 10_000;
/// Most prune batches per run: a backlog is worked off over several runs, never in one
/// long stall of the writer.
const PRUNE_MAX_BATCHES: usize = 100;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The management API, with the admin token.
    Admin,
    /// An agent, with a toolkit key.
    Toolkit,
    /// The `airlock` command line, with direct access to the data directory.
    Cli,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Admin => "admin",
            Actor::Toolkit => "toolkit",
            Actor::Cli => "cli",
        }
    }
}

/// One event, as produced.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: SystemTime,
    pub actor: Actor,
    /// The toolkit key or admin token used (its public id).
    pub key_id: Option<String>,
    pub toolkit: Option<String>,
    /// What was attempted, e.g. `credential.resolve`, `credential.create`, `key.revoke`.
    pub action: &'static str,
    pub credential_id: Option<String>,
    pub api_id: Option<String>,
    pub backend: Option<String>,
    /// The object of a management write that is not a credential (a toolkit, a key).
    pub target: Option<String>,
    /// `ok` or an error code.
    pub outcome: String,
    pub status: Option<u16>,
    pub latency: Option<Duration>,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<String>,
}

impl AuditEvent {
    pub fn new(actor: Actor, action: &'static str) -> AuditEvent {
        AuditEvent {
            at: SystemTime::now(),
            actor,
            key_id: None,
            toolkit: None,
            action,
            credential_id: None,
            api_id: None,
            backend: None,
            target: None,
            outcome: "ok".into(),
            status: None,
            latency: None,
            client_ip: None,
            request_id: None,
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub key_id: Option<String>,
    pub toolkit: Option<String>,
    pub action: String,
    pub credential_id: Option<String>,
    pub api_id: Option<String>,
    pub backend: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub status: Option<u16>,
    pub latency_us: Option<i64>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

/// Filters for [`AuditLog::query`]; all optional, combined with AND. Results are newest
/// first; page with `before_id` (the smallest id of the previous page).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub toolkit: Option<String>,
    pub credential: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    pub key_id: Option<String>,
    /// Events at or after this RFC 3339 UTC time (compared as text: `2026-12-03` works).
    pub since: Option<String>,
    /// Events before this RFC 3339 UTC time.
    pub until: Option<String>,
    pub before_id: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid audit filter {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("audit database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the audit writer: {0}")]
    Spawn(std::io::Error),
    #[error("the audit writer's database connection: {0}")]
    Database(#[from] crate::database::DatabaseError),
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// The producer side: cheap to clone, one per service.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    db: Database,
}

impl AuditLog {
    /// Start the writer thread. It stops when every `AuditLog` clone is dropped, after
    /// writing what was queued.
    pub fn start(
        db: Database,
        metrics: Arc<Metrics>,
        retention: Option<Duration>,
    ) -> Result<AuditLog, AuditError> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer_db = db.reopen()?;
        std::thread::Builder::new()
            .name("airlock-audit".into())
            .spawn(move || writer(writer_db, rx, metrics, retention))
            .map_err(AuditError::Spawn)?;
        Ok(AuditLog { tx, db })
    }

    /// Queue an event (waiting while the queue is full).
    pub async fn record(&self, event: AuditEvent) {
        if self.tx.send(Msg::Event(Box::new(event))).await.is_err() {
            tracing::error!("audit writer stopped; an audit event was not recorded");
        }
    }

    /// Queue an event without waiting (for drop guards, which cannot await). A full queue
    /// is reported, never silently ignored.
    pub fn record_nowait(&self, event: AuditEvent) {
        if let Err(e) = self.tx.try_send(Msg::Event(Box::new(event))) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "writer stopped",
            };
            tracing::error!(why, "an audit event was not recorded");
        }
    }

    /// Queue an event and wait until it is committed.
    pub async fn record_durable(&self, event: AuditEvent) {
        self.record(event).await;
        self.flush().await;
    }

    /// Wait until everything queued so far is committed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Events matching `q`, newest first (after a flush).
    pub async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        self.flush().await;
        query(&self.db, q)
    }
}

/// Write one event synchronously (the command line, which has no writer thread).
pub fn write_now(db: &Database, event: &AuditEvent) -> Result<(), AuditError> {
    let conn = db.lock();
    insert(&conn, event)?;
    log_event(event);
    Ok(())
}

fn writer(
    db: Database,
    mut rx: mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
    retention: Option<Duration>,
) {
    let mut events: Vec<Box<AuditEvent>> = Vec::with_capacity(BATCH_SIZE);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_prune: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Event(e) => events.push(e),
                Msg::Flush(a) => acks.push(a),
            }
            if events.len() < BATCH_SIZE {
                next = rx.try_recv().ok();
            }
        }
        let backlog = events.len() >= BATCH_SIZE;
        if !events.is_empty() {
            match write_batch(&db, &events) {
                Ok(()) => metrics.audit_event("written", events.len() as u64),
                Err(e) => {
                    metrics.audit_event("failed", events.len() as u64);
                    tracing::error!(error = %e, events = events.len(), "audit events not stored");
                }
            }
            for e in &events {
                log_event(e);
            }
            events.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if let Some(keep) = retention
            && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
        {
            last_prune = Some(Instant::now());
            prune(&db, keep);
        }
        // A full batch means a backlog: write on at once. Otherwise let events gather.
        if !backlog {
            std::thread::sleep(BATCH_INTERVAL);
        }
    }
}

/// Rows per multi-row INSERT: one statement execution for many rows costs SQLite far less
/// than one per row (14 bound values each, well under SQLite's variable limit).
const ROWS_PER_INSERT: usize = 32;
const COLUMNS: usize = 14;
const INSERT_HEAD: &str = "INSERT INTO audit_events (at, actor, key_id, toolkit_id, action, \
     credential_id, api_id, backend, target, outcome, status, latency_us, client_ip, request_id) \
     VALUES ";

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(INSERT_HEAD);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * COLUMNS + c + 1));
        }
        sql.push(')');
    }
    sql
}

fn write_batch(db: &Database, events: &[Box<AuditEvent>]) -> Result<(), rusqlite::Error> {
    static MULTI: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let multi = MULTI.get_or_init(|| insert_sql(ROWS_PER_INSERT));
    // The few values that are not already text in the event, made once per row.
    let derived: Vec<Derived> = events.iter().map(|e| Derived::of(e)).collect();
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let full = events.len() - events.len() % ROWS_PER_INSERT;
    for start in (0..full).step_by(ROWS_PER_INSERT) {
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(ROWS_PER_INSERT * COLUMNS);
        for (e, d) in events[start..start + ROWS_PER_INSERT]
            .iter()
            .zip(&derived[start..start + ROWS_PER_INSERT])
        {
            values.extend(row_values(e, d));
        }
        tx.prepare_cached(multi)?
            .execute(rusqlite::params_from_iter(values))?;
    }
    for (e, d) in events[full..].iter().zip(&derived[full..]) {
        insert_one(&tx, e, d)?;
    }
    tx.commit()
}

/// Column values computed from an event (everything else is bound by reference).
struct Derived {
    at: String,
    latency_us: Option<i64>,
    client_ip: Option<String>,
}

impl Derived {
    fn of(e: &AuditEvent) -> Derived {
        Derived {
            at: rfc3339(e.at),
            latency_us: e
                .latency
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            client_ip: e.client_ip.map(|ip| ip.to_string()),
        }
    }
}

fn row_values<'a>(e: &'a AuditEvent, d: &'a Derived) -> [&'a dyn ToSql; COLUMNS] {
    [
        &d.at,
        &e.actor,
        &e.key_id,
        &e.toolkit,
        &e.action,
        &e.credential_id,
        &e.api_id,
        &e.backend,
        &e.target,
        &e.outcome,
        &e.status,
        &d.latency_us,
        &d.client_ip,
        &e.request_id,
    ]
}

impl ToSql for Actor {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
    }
}

fn insert_one(
    conn: &rusqlite::Connection,
    e: &AuditEvent,
    d: &Derived,
) -> Result<(), rusqlite::Error> {
    static ONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let one = ONE.get_or_init(|| insert_sql(1));
    conn.prepare_cached(one)?
        .execute(rusqlite::params_from_iter(row_values(e, d)))?;
    Ok(())
}

fn insert(conn: &rusqlite::Connection, e: &AuditEvent) -> Result<(), rusqlite::Error> {
    insert_one(conn, e, &Derived::of(e))
}

fn log_event(e: &AuditEvent) {
    tracing::info!(
        target: "airlock::audit",
        actor = e.actor.as_str(),
        action = e.action,
        key_id = e.key_id.as_deref(),
        toolkit = e.toolkit.as_deref(),
        credential = e.credential_id.as_deref(),
        api_id = e.api_id.as_deref(),
        backend = e.backend.as_deref(),
        target_id = e.target.as_deref(),
        outcome = %e.outcome,
        status = e.status,
        latency_us = e.latency.map(|d| d.as_micros() as u64),
        client_ip = e.client_ip.map(|ip| ip.to_string()),
        request_id = e.request_id.as_deref(),
        "audit"
    );
}

fn prune(db: &Database, keep: Duration) {
    let cutoff = rfc3339(SystemTime::now().checked_sub(keep).unwrap_or(UNIX_EPOCH));
    let mut removed = 0usize;
    for _ in 0..PRUNE_MAX_BATCHES {
        let n = db.lock().execute(
            "DELETE FROM audit_events WHERE id IN
             (SELECT id FROM audit_events WHERE at < ?1 ORDER BY id LIMIT ?2)",
            params![cutoff, PRUNE_BATCH],
        );
        match n {
            Ok(0) => break,
            Ok(n) => removed += n,
            Err(e) => {
                tracing::error!(error = %e, "pruning old audit events failed");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, cutoff, "pruned audit events past retention");
    }
}

/// Events matching `q`, newest first.
pub fn query(db: &Database, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    let limit = q.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
    if limit == 0 || limit > MAX_QUERY_LIMIT {
        return Err(AuditError::Invalid {
            field: "limit",
            reason: format!("must be 1..={MAX_QUERY_LIMIT}"),
        });
    }
    for (field, value) in [("since", &q.since), ("until", &q.until)] {
        if let Some(v) = value {
            check_time(field, v)?;
        }
    }
    // Only fixed column names are spliced in; every value is bound.
    let mut sql = String::from(
        "SELECT id, at, actor, key_id, toolkit_id, action, credential_id, api_id, backend,
         target, outcome, status, latency_us, client_ip, request_id FROM audit_events WHERE 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut filter = |clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    for (clause, value) in [
        ("toolkit_id =", &q.toolkit),
        ("credential_id =", &q.credential),
        ("action =", &q.action),
        ("outcome =", &q.outcome),
        ("actor =", &q.actor),
        ("key_id =", &q.key_id),
        ("at >=", &q.since),
        ("at <", &q.until),
    ] {
        if let Some(v) = value {
            filter(clause, rusqlite::types::Value::Text(v.clone()));
        }
    }
    if let Some(v) = q.before_id {
        filter("id <", rusqlite::types::Value::Integer(v));
    }
    args.push(rusqlite::types::Value::Integer(i64::from(limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    let conn = db.lock();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            key_id: r.get(3)?,
            toolkit: r.get(4)?,
            action: r.get(5)?,
            credential_id: r.get(6)?,
            api_id: r.get(7)?,
            backend: r.get(8)?,
            target: r.get(9)?,
            outcome: r.get(10)?,
            status: r.get(11)?,
            latency_us: r.get(12)?,
            client_ip: r.get(13)?,
            request_id: r.get(14)?,
        })
    })?;
    rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
}

fn check_time(field: &'static str, v: &str) -> Result<(), AuditError> {
    let b = v.as_bytes();
    let shape = b.len() >= 4
        && b.len() <= 30
        && b[..4].iter().all(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'T' | b'.' | b'Z'));
    if shape {
        Ok(())
    } else {
        Err(AuditError::Invalid {
            field,
            reason: format!(
                "{v:?} is not an RFC 3339 UTC time such as 2026-12-03 or 2026-12-03T20:15:00Z"
            ),
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the format of every timestamp column in the database.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        for secs in [0u64, 951_782_400, 1_796_000_000, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + 123);
            let ours = rfc3339(t);
            let theirs: String = db
                .lock()
                .query_row(
                    "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1, 'unixepoch')",
                    [secs as f64 + 0.123],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(ours, theirs, "{secs}");
        }
    }

    #[tokio::test]
    async fn events_are_written_in_order_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let log = AuditLog::start(
            db.clone(),
            metrics.clone(),
            Some(Duration::from_secs(86_400)),
        )
        .unwrap();
        for i in 0..1200 {
            let mut e = AuditEvent::new(Actor::Toolkit, "credential.resolve");
            e.toolkit = Some(if i % 2 == 0 { "a" } else { "b" }.into());
            e.credential_id = Some(format!("c{i}"));
            e.latency = Some(Duration::from_micros(i));
            log.record(e).await;
        }
        let mut old = AuditEvent::new(Actor::Admin, "credential.create");
        old.at = UNIX_EPOCH + Duration::from_secs(86_400);
        old.outcome = "conflict".into();
        log.record_durable(old).await;
        let rows = log
            .query(&AuditQuery {
                toolkit: Some("a".into()),
                limit: Some(5),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].credential_id.as_deref(), Some("c1198"));
        assert!(rows.windows(2).all(|w| w[0].id > w[1].id));
        let page2 = query(
            &db,
            &AuditQuery {
                toolkit: Some("a".into()),
                limit: Some(5),
                before_id: Some(rows[4].id),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(page2[0].credential_id.as_deref(), Some("c1188"));
        let conflicts = query(
            &db,
            &AuditQuery {
                outcome: Some("conflict".into()),
                until: Some("1971".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].actor, "admin");
        assert_eq!(
            metrics.counter("airlock_audit_events_total", &["written"]),
            1201
        );
        assert!(matches!(
            query(
                &db,
                &AuditQuery {
                    since: Some("yesterday".into()),
                    ..Default::default()
                }
            ),
            Err(AuditError::Invalid { field: "since", .. })
        ));
        assert!(
            query(
                &db,
                &AuditQuery {
                    limit: Some(0),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn prune_removes_only_rows_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let mut old = AuditEvent::new(Actor::Cli, "key.create");
        old.at = SystemTime::now() - Duration::from_secs(10 * 86_400);
        write_now(&db, &old).unwrap();
        write_now(&db, &AuditEvent::new(Actor::Cli, "key.revoke")).unwrap();
        prune(&db, Duration::from_secs(86_400));
        let rows = query(&db, &AuditQuery::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].action, "key.revoke");
    }
}
