//! Shared helpers for the sandbox tests: the test guests, one engine per test binary, an
//! in-process HTTP store, and a log sink that keeps lines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use airlock::CredentialRef;
use airlock::outbound::{HttpSender, OutboundError, OutboundRequest, OutboundResponse};
use airlock::sandbox::{EngineConfig, LogRecord, LogSink, SandboxEngine};

/// The built test guest `name` (`tests/guests/dist/NAME.wasm`), or `None` after printing
/// why the test is skipped. With `AIRLOCK_REQUIRE_GUESTS` set, a missing guest fails.
pub fn guest(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/guests/dist")
        .join(format!("{name}.wasm"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("AIRLOCK_REQUIRE_GUESTS").is_some() {
        panic!(
            "test guest {} is missing: build it with tests/guests/build.sh",
            path.display()
        );
    }
    // Written to the process's stderr directly, past libtest's output capture, so the skip
    // is visible in a normal `cargo test` run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: test guest {} is not built (run tests/guests/build.sh; set AIRLOCK_REQUIRE_GUESTS=1 to fail instead)",
        path.display()
    );
    None
}

/// The engine shared by every test in this binary (one engine per process, as in airlock).
pub fn engine() -> Arc<SandboxEngine> {
    static ENGINE: OnceLock<Arc<SandboxEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("airlock-sandbox-test-{}", std::process::id()));
            SandboxEngine::new(EngineConfig {
                max_instances: 64,
                cache_dir: Some(dir),
                ..EngineConfig::default()
            })
            .expect("engine")
        })
        .clone()
}

/// A credential reference with id `id` and no locator.
pub fn cred(id: &str) -> CredentialRef {
    CredentialRef {
        id: id.into(),
        label: format!("label of {id}"),
        api_id: None,
        auth_type: "bearer".into(),
        locator: None,
    }
}

/// An in-process key-value store speaking the minimal guest's protocol at
/// `http://store.test`: `GET/PUT/DELETE /secret/KEY`, `GET /health`.
#[derive(Default)]
pub struct FakeStore {
    pub values: Mutex<HashMap<String, Vec<u8>>>,
    pub requests: Mutex<Vec<OutboundRequest>>,
    pub delay: Option<Duration>,
    pub refuse_with: Option<OutboundError>,
}

pub const STORE_URL: &str = "http://store.test";

impl FakeStore {
    pub fn with(values: &[(&str, &str)]) -> Arc<FakeStore> {
        Arc::new(FakeStore {
            values: Mutex::new(
                values
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            ),
            ..FakeStore::default()
        })
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn respond(status: u16, body: Vec<u8>) -> Result<OutboundResponse, OutboundError> {
    Ok(OutboundResponse {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body,
    })
}

#[async_trait::async_trait]
impl HttpSender for FakeStore {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        self.requests.lock().unwrap().push(request.clone());
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(err) = &self.refuse_with {
            return Err(err.clone());
        }
        let Some(path) = request.url.strip_prefix(STORE_URL) else {
            return Err(OutboundError::Denied(format!(
                "{} is not on the allow-list",
                request.url
            )));
        };
        if path == "/health" {
            return respond(200, b"ok".to_vec());
        }
        let Some(key) = path.strip_prefix("/secret/") else {
            return respond(404, Vec::new());
        };
        let mut values = self.values.lock().unwrap();
        match request.method.as_str() {
            "GET" => match values.get(key) {
                Some(v) => respond(200, v.clone()),
                None => respond(404, Vec::new()),
            },
            "PUT" => {
                values.insert(key.to_owned(), request.body.unwrap_or_default());
                respond(204, Vec::new())
            }
            "DELETE" => match values.remove(key) {
                Some(_) => respond(204, Vec::new()),
                None => respond(404, Vec::new()),
            },
            _ => respond(405, Vec::new()),
        }
    }
}

/// Keeps every guest log line as `backend|source|message`.
#[derive(Default)]
pub struct MemorySink(pub Mutex<Vec<String>>);

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl LogSink for MemorySink {
    fn record(&self, r: &LogRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{}|{:?}|{}", r.backend, r.source, r.message));
    }
}
