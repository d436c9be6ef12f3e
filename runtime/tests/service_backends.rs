//! The service over a non-Fernet backend: the library's service, started in-process on
//! 127.0.0.1 (a free port) and driven over HTTP, with a fake backend plugged in through
//! `Runtime::insert_backend` the way the sandbox plugs in WebAssembly backends. The fake
//! stands in for a sandboxed backend (the sandbox is not part of this crate yet): it
//! counts calls, can be held at a gate, delayed, or told to fail.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::admin_tokens::{AdminTokens, Bootstrap};
use airlock::config::{Config, Overrides, ServerConfig};
use airlock::metrics::Metrics;
use airlock::service::{Listener, Service, serve};
use airlock::value_cache::CacheSettings;
use airlock::{BackendError, CredentialBackend, CredentialRef, Runtime, Secret};
use async_trait::async_trait;
use support::http::Client;
use tokio::sync::Semaphore;

/// An upstream store behind a "sandboxed" backend.
struct Fake {
    name: &'static str,
    values: Mutex<HashMap<String, String>>,
    gets: AtomicUsize,
    fail: Mutex<Option<BackendError>>,
    delay: Mutex<Duration>,
    gate: Option<Arc<Semaphore>>,
}

impl Fake {
    fn new(name: &'static str) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            values: Mutex::new(HashMap::new()),
            gets: AtomicUsize::new(0),
            fail: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            gate: None,
        })
    }

    fn gated(name: &'static str, gate: Arc<Semaphore>) -> Arc<Fake> {
        Arc::new(Fake {
            gate: Some(gate),
            ..Arc::into_inner(Fake::new(name)).unwrap()
        })
    }

    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn fail_with(&self, e: Option<BackendError>) {
        *self.fail.lock().unwrap() = e;
    }

    fn key(cred: &CredentialRef) -> String {
        cred.locator.clone().unwrap_or_else(|| cred.id.clone())
    }
}

#[async_trait]
impl CredentialBackend for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.map_err(|_| BackendError::NotFound)?;
        }
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        let v = self.values.lock().unwrap().get(&Fake::key(cred)).cloned();
        v.map(|v| Secret::new(v).unwrap())
            .ok_or(BackendError::NotFound)
    }
    async fn store_value(&self, cred: &CredentialRef, value: &Secret) -> Result<(), BackendError> {
        self.values
            .lock()
            .unwrap()
            .insert(Fake::key(cred), value.expose().to_owned());
        Ok(())
    }
    async fn delete_value(&self, cred: &CredentialRef) -> Result<(), BackendError> {
        match self.values.lock().unwrap().remove(&Fake::key(cred)) {
            Some(_) => Ok(()),
            None => Err(BackendError::NotFound),
        }
    }
    async fn health(&self) -> Result<String, BackendError> {
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok("fake upstream reachable".into()),
        }
    }
}

/// A service running in this process.
struct InProcess {
    addr: SocketAddr,
    admin: String,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn start(
        backends: Vec<(Arc<Fake>, CacheSettings)>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(
            &Overrides {
                config: None,
                data_dir: Some(dir.path().join("data")),
            },
            &|_| None,
        )
        .unwrap();
        let mut rt = Runtime::open(&config, &|_| None).unwrap();
        for (fake, cache) in backends {
            rt.insert_backend_with_cache(fake.name, fake.clone(), cache)
                .unwrap();
        }
        let (admin, boot) = AdminTokens::bootstrap(rt.database().clone(), None).unwrap();
        let Bootstrap::Generated(token) = boot else {
            panic!("a new data dir generates the admin token")
        };
        let mut server = config.server.clone();
        server.listen = "127.0.0.1:0".parse().unwrap();
        tweak(&mut server);
        let listener = Listener::bind(&server).await.unwrap();
        let addr = listener.local_addr();
        let metrics = rt.metrics().clone();
        let service = Service::new(Arc::new(rt), server, admin).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(service, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        InProcess {
            addr,
            admin: token.expose().to_owned(),
            metrics,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    fn admin(&self) -> Client {
        Client::new(self.addr, Some(&self.admin))
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// A toolkit `agents` bound to `creds`, and a client with its key.
    async fn agent(&self, creds: &[&str]) -> Client {
        let admin = self.admin();
        if admin.get("/v1/toolkits/agents").await.status == 404 {
            admin.create_toolkit("agents").await;
        }
        for c in creds {
            admin.bind("agents", c).await;
        }
        let (_, key) = admin.create_key("agents", &[]).await;
        Client::new(self.addr, Some(&key))
    }

    fn cache(&self, backend: &str, event: &str) -> u64 {
        self.metrics
            .counter("airlock_cache_events_total", &[backend, event])
    }
}

fn ttl(ms: u64, stale_ms: u64) -> CacheSettings {
    CacheSettings {
        ttl: Duration::from_millis(ms),
        stale_if_error: Duration::from_millis(stale_ms),
        ..CacheSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_then_resolve_through_a_non_fernet_backend() {
    let vault = Fake::new("vault");
    let s = InProcess::start(vec![(vault.clone(), CacheSettings::default())], |_| {}).await;
    let admin = s.admin();
    admin
        .create_credential("kv/db.password", "db", Some("vault"))
        .await;
    admin
        .create_credential("kv/empty", "db", Some("vault"))
        .await;
    admin.create_credential("local/db.user", "db", None).await;
    admin.store_value("kv/db.password", "from-the-vault").await;
    admin.store_value("local/db.user", "from-fernet").await;
    assert_eq!(
        vault
            .values
            .lock()
            .unwrap()
            .get("kv/db.password")
            .map(String::as_str),
        Some("from-the-vault"),
        "the value was written through the owning backend"
    );
    let agent = s
        .agent(&["kv/db.password", "kv/empty", "local/db.user"])
        .await;
    let got = agent
        .get("/v1/credentials/kv/db.password/value")
        .await
        .expect(200)
        .json();
    assert_eq!(
        (got["value"].as_str(), got["backend"].as_str()),
        (Some("from-the-vault"), Some("vault"))
    );
    // One API, two backends, one credential without a value: each answers for itself.
    let all = agent
        .get("/v1/toolkits/agents/apis/db/credentials")
        .await
        .expect(200)
        .json();
    let by_id: HashMap<&str, &serde_json::Value> = all["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c))
        .collect();
    assert_eq!(by_id["kv/db.password"]["value"], "from-the-vault");
    assert_eq!(by_id["local/db.user"]["value"], "from-fernet");
    assert_eq!(by_id["kv/empty"]["error"]["code"], "value_not_found");
    assert!(by_id["kv/empty"].get("value").is_none());
    let events = admin.audit("action=credential.resolve&limit=10").await;
    let backends: Vec<&str> = events
        .iter()
        .map(|e| e["backend"].as_str().unwrap())
        .collect();
    assert!(backends.contains(&"vault") && backends.contains(&"fernet"));
    let listed = admin.get("/v1/backends").await.expect(200).json();
    let names: Vec<&str> = listed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fernet", "vault"]);
    assert_eq!(listed["backends"][1]["cache"]["single_flight"], true);
    assert_eq!(listed["backends"][1]["bound_credentials"], 2);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_identical_lookups_make_exactly_one_backend_call() {
    let gate = Arc::new(Semaphore::new(0));
    let vault = Fake::gated("vault", gate.clone());
    let s = InProcess::start(vec![(vault.clone(), CacheSettings::default())], |_| {}).await;
    let admin = s.admin();
    admin
        .create_credential("shared/token", "api", Some("vault"))
        .await;
    vault
        .values
        .lock()
        .unwrap()
        .insert("shared/token".into(), "one-call".into());
    let agent = s.agent(&["shared/token"]).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let agent = agent.clone();
        set.spawn(async move { agent.get("/v1/credentials/shared/token/value").await });
    }
    // Hold the backend until all 100 lookups are waiting on the one call.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.cache("vault", "coalesced") < 99 {
        assert!(Instant::now() < deadline, "lookups did not all arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.add_permits(100);
    let answers = set.join_all().await;
    assert_eq!(vault.gets(), 1, "exactly one backend call");
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.json()["value"] == "one-call")
    );
    assert_eq!(s.cache("vault", "miss"), 1);
    // No cache configured: the next lookup is a new call.
    agent
        .get("/v1/credentials/shared/token/value")
        .await
        .expect(200);
    assert_eq!(vault.gets(), 2);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_misses_expiry_and_invalidation() {
    let vault = Fake::new("vault");
    let short = Fake::new("short");
    let s = InProcess::start(
        vec![
            (vault.clone(), ttl(60_000, 0)),
            (short.clone(), ttl(200, 0)),
        ],
        |_| {},
    )
    .await;
    let admin = s.admin();
    admin.create_credential("c/one", "api", Some("vault")).await;
    admin
        .create_credential("c/short", "api", Some("short"))
        .await;
    admin.store_value("c/one", "v1").await;
    admin.store_value("c/short", "s1").await;
    let agent = s.agent(&["c/one", "c/short"]).await;
    let get = |path: &'static str| {
        let agent = agent.clone();
        async move { agent.get(path).await }
    };
    let one = "/v1/credentials/c/one/value";
    assert_eq!(get(one).await.expect(200).json()["value"], "v1");
    assert_eq!(get(one).await.expect(200).json()["value"], "v1");
    assert_eq!(vault.gets(), 1, "second lookup is a hit");
    assert_eq!((s.cache("vault", "miss"), s.cache("vault", "hit")), (1, 1));
    // A write through the API invalidates.
    admin.store_value("c/one", "v2").await;
    assert_eq!(get(one).await.expect(200).json()["value"], "v2");
    assert_eq!(vault.gets(), 2);
    assert_eq!(s.cache("vault", "invalidated"), 1);
    // So does deleting the value.
    admin.delete(one).await.expect(204);
    get(one).await.expect_error(404, "value_not_found");
    assert_eq!(vault.gets(), 3, "errors are never cached");
    get(one).await.expect_error(404, "value_not_found");
    assert_eq!(vault.gets(), 4);
    // Removing the credential forgets its value: a new credential with the same id must
    // not be answered from the old one's cache entry.
    admin.store_value("c/one", "old").await;
    assert_eq!(get(one).await.expect(200).json()["value"], "old");
    admin.delete("/v1/credentials/c/one").await.expect(204);
    vault
        .values
        .lock()
        .unwrap()
        .insert("c/one".into(), "new".into());
    admin.create_credential("c/one", "api", Some("vault")).await;
    admin.bind("agents", "c/one").await;
    assert_eq!(get(one).await.expect(200).json()["value"], "new");
    // TTL expiry.
    let short_path = "/v1/credentials/c/short/value";
    get(short_path).await.expect(200);
    get(short_path).await.expect(200);
    assert_eq!(short.gets(), 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    get(short_path).await.expect(200);
    assert_eq!(short.gets(), 2, "expired");
    let metrics = s.admin().get("/metrics").await.text();
    assert!(metrics.contains("airlock_cache_events_total{backend=\"vault\",event=\"hit\"}"));
    assert!(metrics.contains(
        "airlock_backend_calls_total{backend=\"vault\",operation=\"get_value\",outcome=\"ok\"}"
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_cover_transient_failures_only() {
    let vault = Fake::new("vault");
    let s = InProcess::start(vec![(vault.clone(), ttl(100, 60_000))], |_| {}).await;
    let admin = s.admin();
    admin.create_credential("c", "api", Some("vault")).await;
    admin.store_value("c", "last-good").await;
    let agent = s.agent(&["c"]).await;
    agent.get("/v1/credentials/c/value").await.expect(200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    vault.fail_with(Some(BackendError::Unavailable("connection refused".into())));
    let r = agent.get("/v1/credentials/c/value").await.expect(200);
    assert_eq!(r.json()["value"], "last-good");
    assert_eq!(s.cache("vault", "stale"), 1);
    vault.fail_with(Some(BackendError::LimitExceeded("wall time".into())));
    agent.get("/v1/credentials/c/value").await.expect(200);
    // "Denied" is an answer, not an outage: no stale value papers over it.
    vault.fail_with(Some(BackendError::Denied("policy revoked".into())));
    agent
        .get("/v1/credentials/c/value")
        .await
        .expect_error(502, "backend_denied");
    let ready = s.admin().get("/readyz").await.expect(200).json();
    assert_eq!(ready["status"], "degraded");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failures_have_stable_codes_and_never_leak_upstream_bodies() {
    let vault = Fake::new("vault");
    let s = InProcess::start(vec![(vault.clone(), CacheSettings::default())], |_| {}).await;
    let admin = s.admin();
    admin.create_credential("c", "api", Some("vault")).await;
    admin.store_value("c", "fine").await;
    let agent = s.agent(&["c"]).await;
    let body = r#"upstream said 500: {"errors":["UPSTREAM-BODY-LEAK"],"token":"s.LEAK"}"#;
    let cases = [
        (BackendError::Denied(body.into()), 502, "backend_denied"),
        (
            BackendError::Unavailable(body.into()),
            503,
            "backend_unavailable",
        ),
        (
            BackendError::LimitExceeded(body.into()),
            504,
            "sandbox_limit",
        ),
        (
            BackendError::InvalidConfig(body.into()),
            503,
            "backend_misconfigured",
        ),
        (
            BackendError::Unsupported(body.into()),
            501,
            "backend_unsupported",
        ),
        (BackendError::Internal(body.into()), 502, "backend_error"),
    ];
    for (e, status, code) in cases {
        vault.fail_with(Some(e));
        for path in [
            "/v1/credentials/c/value",
            "/v1/toolkits/agents/apis/api/credentials",
        ] {
            let r = agent.get(path).await;
            assert!(!r.text().contains("LEAK"), "{path}: {}", r.text());
            if path.ends_with("/value") {
                let r = r.expect_error(status, code);
                if code == "backend_unavailable" {
                    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                }
            } else {
                let j = r.expect(200).json();
                assert_eq!(j["credentials"][0]["error"]["code"], code);
            }
        }
        let backends = admin.get("/v1/backends").await.expect(200);
        assert!(!backends.text().contains("LEAK"));
        assert!(!s.admin().get("/readyz").await.text().contains("LEAK"));
    }
    let outcomes: Vec<String> = admin
        .audit("action=credential.resolve&limit=100")
        .await
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    for code in [
        "backend_denied",
        "backend_unavailable",
        "sandbox_limit",
        "backend_error",
    ] {
        assert!(outcomes.iter().any(|o| o == code), "{code}: {outcomes:?}");
    }
    let metrics = admin.get("/metrics").await.text();
    assert!(
        metrics.contains("airlock_resolutions_total{backend=\"vault\",outcome=\"sandbox_limit\"}")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_the_request_but_its_answer_still_lands() {
    let vault = Fake::new("vault");
    let s = InProcess::start(vec![(vault.clone(), ttl(60_000, 0))], |c| {
        c.request_timeout_ms = 300;
    })
    .await;
    let admin = s.admin();
    admin.create_credential("slow", "api", Some("vault")).await;
    admin.store_value("slow", "eventually").await;
    let agent = s.agent(&["slow"]).await;
    *vault.delay.lock().unwrap() = Duration::from_millis(800);
    let started = Instant::now();
    agent
        .get("/v1/credentials/slow/value")
        .await
        .expect_error(504, "timeout");
    assert!(started.elapsed() < Duration::from_millis(750));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let r = agent.get("/v1/credentials/slow/value").await.expect(200);
    assert_eq!(r.json()["value"], "eventually");
    assert_eq!(vault.gets(), 1, "the detached call filled the cache");
    let cancelled = admin.audit("outcome=cancelled").await;
    assert_eq!(
        cancelled.len(),
        1,
        "the timed-out resolution is still audited"
    );
    s.shutdown().await;
}
