//! End-to-end: `airlock serve` (the real binary, 127.0.0.1, temp data dir) with sandboxed
//! backends configured in `airlock.toml` — the test guests `minimal` (a well-behaved
//! component talking to a store over HTTP) and `hostile` — and a local HTTP store in this
//! process that counts what the components ask of it.
//!
//! Shown here: store then resolve through a wasm component; cache hit, miss and
//! invalidation; 100 concurrent identical lookups make one upstream request; a limit hit is
//! `sandbox_limit` (504); traps, limit hits and outbound denials reach `/metrics`; audit
//! rows for each; no value in any log line.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::Value;
use support::Airlock;
use support::http::{Client, Served};
use tokio::sync::Semaphore;

const FIRST: &str = "wasm-value-1-LEAKCANARY-4e7a";
const SECOND: &str = "wasm-value-2-LEAKCANARY-b210";
const SHARED: &str = "wasm-shared-LEAKCANARY-77c3";

/// The built test guest `tests/guests/dist/NAME.wasm`; `None` (with a SKIP line) when it is
/// not built, a failure instead under `make test` (`AIRLOCK_REQUIRE_GUESTS=1`).
fn test_guest(name: &str) -> Option<PathBuf> {
    let path = support::repo_root().join(format!("tests/guests/dist/{name}.wasm"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("AIRLOCK_REQUIRE_GUESTS").is_none(),
        "{} is missing (run tests/guests/build.sh)",
        path.display()
    );
    eprintln!(
        "SKIP: {} is not built (run tests/guests/build.sh or `make test`)",
        path.display()
    );
    None
}

/// What the minimal guest talks to: `GET|PUT|DELETE /secret/{locator}`, `GET /health`.
/// `GET`s of a locator in `gated` wait for a permit of `gate`.
struct Store {
    values: Mutex<HashMap<String, String>>,
    gets: Mutex<HashMap<String, usize>>,
    puts: AtomicUsize,
    gated: Mutex<Vec<String>>,
    gate: Semaphore,
}

impl Store {
    fn gets(&self, locator: &str) -> usize {
        self.gets.lock().unwrap().get(locator).copied().unwrap_or(0)
    }

    fn value(&self, locator: &str) -> Option<String> {
        self.values.lock().unwrap().get(locator).cloned()
    }
}

async fn read(State(s): State<Arc<Store>>, Path(locator): Path<String>) -> (StatusCode, String) {
    *s.gets.lock().unwrap().entry(locator.clone()).or_default() += 1;
    let gated = s.gated.lock().unwrap().contains(&locator);
    if gated {
        let _permit = s.gate.acquire().await.expect("gate open");
    }
    match s.value(&locator) {
        Some(v) => (StatusCode::OK, v),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn write(
    State(s): State<Arc<Store>>,
    Path(locator): Path<String>,
    body: Bytes,
) -> StatusCode {
    s.puts.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8(body.to_vec()).expect("UTF-8 value");
    s.values.lock().unwrap().insert(locator, text);
    StatusCode::NO_CONTENT
}

async fn remove(State(s): State<Arc<Store>>, Path(locator): Path<String>) -> StatusCode {
    s.values.lock().unwrap().remove(&locator);
    StatusCode::NO_CONTENT
}

/// Start the store on 127.0.0.1 (a free port), served until the test's runtime ends.
async fn start_store() -> (Arc<Store>, SocketAddr) {
    let store = Arc::new(Store {
        values: Mutex::default(),
        gets: Mutex::default(),
        puts: AtomicUsize::new(0),
        gated: Mutex::default(),
        gate: Semaphore::new(0),
    });
    let app = Router::new()
        .route("/secret/{*locator}", get(read).put(write).delete(remove))
        .route("/health", get(|| async { "ok" }))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (store, addr)
}

/// Three sandboxed backends: `store` (cache on), `store-nocache`, and `hostile` with a
/// 50 ms CPU budget; all may reach only the local store.
fn config(
    al: &Airlock,
    store: SocketAddr,
    minimal: &std::path::Path,
    hostile: &std::path::Path,
) -> String {
    let url = format!("http://{store}");
    let section = |name: &str, component: &std::path::Path, extra: &str| {
        format!(
            "[backends.{name}]\nkind = \"wasm\"\ncomponent = {:?}\nallowed_outbound = [\"{url}\"]\n\
             allow_private_networks = true\n{extra}\n[backends.{name}.config]\naddress = \"{url}\"\n\n",
            component.to_str().unwrap()
        )
    };
    let text = [
        section("store", minimal, "cache = { ttl_ms = 60000 }\n"),
        section("store-nocache", minimal, ""),
        section("hostile", hostile, "limits = { cpu_ms = 50 }\n"),
    ]
    .concat();
    let path = al.dir.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn metrics(s: &Served) -> String {
    s.anonymous().get("/metrics").await.expect(200).text()
}

/// The value of the metric line starting with `series` (name and labels), 0 if absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

async fn agent(s: &Served, credentials: &[&str]) -> Client {
    let admin = s.admin();
    admin.create_toolkit("agents").await;
    for id in credentials {
        admin.bind("agents", id).await;
    }
    let (_, key) = admin.create_key("agents", &[]).await;
    s.client(&key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_resolve_cache_and_single_flight_through_wasm_components() {
    let (Some(minimal), Some(hostile)) = (test_guest("minimal"), test_guest("hostile")) else {
        return;
    };
    let (store, addr) = start_store().await;
    let al = Airlock::new();
    let cfg = config(&al, addr, &minimal, &hostile);
    let s = al.serve(&["--config", &cfg]);
    let admin = s.admin();

    // Store through the component: the value lands in the upstream store.
    admin
        .create_credential("team/db.password", "db", Some("store"))
        .await;
    admin.store_value("team/db.password", FIRST).await;
    assert_eq!(store.value("team/db.password").as_deref(), Some(FIRST));
    admin
        .create_credential("team/shared.token", "api", Some("store-nocache"))
        .await;
    store
        .values
        .lock()
        .unwrap()
        .insert("team/shared.token".into(), SHARED.into());
    admin
        .create_credential("spin", "attacks", Some("hostile"))
        .await;
    admin
        .create_credential("panic", "attacks", Some("hostile"))
        .await;
    let a = agent(
        &s,
        &["team/db.password", "team/shared.token", "spin", "panic"],
    )
    .await;

    // Resolve: a miss (one upstream GET), then hits (none).
    let path = "/v1/credentials/team/db.password/value";
    let got = a.get(path).await.expect(200).json();
    assert_eq!(
        (got["value"].as_str(), got["backend"].as_str()),
        (Some(FIRST), Some("store"))
    );
    for _ in 0..3 {
        assert_eq!(a.get(path).await.expect(200).json()["value"], FIRST);
    }
    assert_eq!(
        store.gets("team/db.password"),
        1,
        "one upstream read for four resolutions"
    );
    let m = metrics(&s).await;
    assert_eq!(
        metric(
            &m,
            "airlock_cache_events_total{backend=\"store\",event=\"miss\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "airlock_cache_events_total{backend=\"store\",event=\"hit\"}"
        ),
        3
    );

    // A store through the API invalidates: the next resolution reads the new value.
    admin.store_value("team/db.password", SECOND).await;
    assert_eq!(a.get(path).await.expect(200).json()["value"], SECOND);
    assert_eq!(store.gets("team/db.password"), 2);
    assert_eq!(store.puts.load(Ordering::SeqCst), 2);

    // 100 concurrent identical lookups while the upstream holds the first: one GET.
    store.gated.lock().unwrap().push("team/shared.token".into());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let a = a.clone();
        set.spawn(async move { a.get("/v1/credentials/team/shared.token/value").await });
    }
    let coalesced = "airlock_cache_events_total{backend=\"store-nocache\",event=\"coalesced\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&metrics(&s).await, coalesced) < 99 {
        assert!(
            Instant::now() < deadline,
            "the 100 lookups did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.gate.add_permits(1000);
    let answers = set.join_all().await;
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.json()["value"] == SHARED),
        "every lookup got the value"
    );
    assert_eq!(
        store.gets("team/shared.token"),
        1,
        "exactly one upstream request"
    );

    // A limit hit is the host stopping the guest: 504 sandbox_limit; a trap is 502.
    let r = a
        .get("/v1/credentials/spin/value")
        .await
        .expect_error(504, "sandbox_limit");
    assert!(
        !r.text().contains("cpu budget"),
        "internals stay in the log: {}",
        r.text()
    );
    a.get("/v1/credentials/panic/value")
        .await
        .expect_error(502, "backend_error");
    // The hostile guest tries a destination it was not granted: denied by policy.
    admin
        .post(
            "/v1/credentials",
            serde_json::json!({
                "id": "fetch", "label": "fetch", "api_id": "attacks", "auth_type": "bearer",
                "backend": "hostile", "locator": "{\"url\": \"http://127.0.0.2:9/steal\"}",
            }),
        )
        .await
        .expect(201);
    admin.bind("agents", "fetch").await;
    a.get("/v1/credentials/fetch/value")
        .await
        .expect_error(503, "backend_unavailable");
    let m = metrics(&s).await;
    assert_eq!(
        metric(
            &m,
            "airlock_sandbox_limit_hits_total{backend=\"hostile\",limit=\"cpu\"}"
        ),
        1
    );
    assert_eq!(
        metric(&m, "airlock_sandbox_traps_total{backend=\"hostile\"}"),
        1
    );
    assert_eq!(
        metric(
            &m,
            "airlock_outbound_requests_total{backend=\"hostile\",result=\"denied\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "airlock_outbound_requests_total{backend=\"store\",result=\"sent\"}"
        ),
        4,
        "2 PUTs and 2 GETs (the hits never left the host)"
    );
    assert_eq!(
        metric(
            &m,
            "airlock_resolutions_total{backend=\"hostile\",outcome=\"sandbox_limit\"}"
        ),
        1
    );

    // Audit: every resolution, with its backend and outcome; the stores too.
    let events = admin.audit("action=credential.resolve&limit=1000").await;
    let count = |backend: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| e["backend"] == backend && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("store", "ok"), 5);
    assert_eq!(count("store-nocache", "ok"), 100);
    assert_eq!(count("hostile", "sandbox_limit"), 1);
    assert_eq!(count("hostile", "backend_error"), 1);
    let stores = admin
        .audit("action=credential.store_value&credential=team/db.password")
        .await;
    assert_eq!(stores.len(), 2, "{stores:?}");
    assert!(
        stores
            .iter()
            .all(|e| e["backend"] == "store" && e["outcome"] == "ok")
    );

    // `/v1/backends` reports the components as healthy and what they were granted.
    let listed = admin.get("/v1/backends").await.expect(200).json();
    let store_row = listed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "store")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(store_row["kind"], "wasm", "{listed}");

    let log = s.stop();
    for value in [FIRST, SECOND, SHARED] {
        assert!(!log.contains(value), "a value reached the log");
    }
    assert!(
        log.contains("sandboxed backend loaded"),
        "the log is captured: {log}"
    );
}
