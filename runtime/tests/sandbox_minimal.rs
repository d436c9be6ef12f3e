//! The well-behaved minimal guest, end to end through the sandbox with an in-process store.

mod sandbox_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::sandbox::{Isolation, WasmBackend, WasmBackendConfig};
use airlock::{BackendError, CredentialBackend, Secret};
use sandbox_support::{FakeStore, MemorySink, STORE_URL, cred, engine, guest};

fn backend(
    name: &str,
    store: Arc<FakeStore>,
    tweak: impl FnOnce(&mut WasmBackendConfig),
) -> Option<WasmBackend> {
    let path = guest("minimal")?;
    let mut config = WasmBackendConfig::new(name, path, store);
    config.config.insert("address".into(), STORE_URL.into());
    tweak(&mut config);
    Some(WasmBackend::new(&engine(), config).expect("minimal guest loads"))
}

#[tokio::test]
async fn resolves_a_value_through_the_http_import() {
    let store = FakeStore::with(&[("payments", "sk_live_123")]);
    let Some(b) = backend("vault-test", store.clone(), |_| {}) else {
        return;
    };
    assert_eq!(b.name(), "vault-test");
    assert_eq!(b.kind(), "wasm");
    b.init().await.unwrap();
    let value = b.get_value(&cred("payments")).await.unwrap();
    assert_eq!(value.expose(), "sk_live_123");
    let requests = store.requests.lock().unwrap().clone();
    let last = requests.last().unwrap();
    assert_eq!(last.method, "GET");
    assert_eq!(last.url, "http://store.test/secret/payments");
    assert_eq!(
        last.headers,
        vec![("accept".to_string(), "text/plain".to_string())]
    );
}

#[tokio::test]
async fn maps_missing_values_and_uses_the_locator() {
    let store = FakeStore::with(&[("kv/github#token", "ghp_x")]);
    let Some(b) = backend("vault-test", store, |_| {}) else {
        return;
    };
    assert_eq!(
        b.get_value(&cred("nope")).await.unwrap_err(),
        BackendError::NotFound
    );
    let mut c = cred("github");
    c.locator = Some("kv/github#token".into());
    assert_eq!(b.get_value(&c).await.unwrap().expose(), "ghp_x");
}

#[tokio::test]
async fn batch_store_delete_and_health() {
    let store = FakeStore::with(&[("a", "1"), ("b", "2")]);
    let Some(b) = backend("vault-test", store.clone(), |_| {}) else {
        return;
    };
    let values = b.get_values(&[cred("a"), cred("missing"), cred("b")]).await;
    assert_eq!(values.len(), 3);
    assert_eq!(values[0].as_ref().unwrap().expose(), "1");
    assert_eq!(values[1].as_ref().unwrap_err(), &BackendError::NotFound);
    assert_eq!(values[2].as_ref().unwrap().expose(), "2");
    assert!(b.get_values(&[]).await.is_empty());

    let secret = Secret::new("new-value".into()).unwrap();
    b.store_value(&cred("c"), &secret).await.unwrap();
    assert_eq!(store.values.lock().unwrap().get("c").unwrap(), b"new-value");
    b.delete_value(&cred("c")).await.unwrap();
    assert_eq!(
        b.delete_value(&cred("c")).await.unwrap_err(),
        BackendError::NotFound
    );
    assert!(b.health().await.unwrap().starts_with("ok inits=1"));
}

#[tokio::test]
async fn http_errors_reach_the_guest_one_to_one() {
    let store = Arc::new(FakeStore {
        refuse_with: Some(airlock::outbound::OutboundError::Denied(
            "169.254.169.254 is a blocked address".into(),
        )),
        ..FakeStore::default()
    });
    let Some(b) = backend("vault-test", store, |_| {}) else {
        return;
    };
    assert_eq!(
        b.get_value(&cred("x")).await.unwrap_err(),
        BackendError::Denied("request denied: 169.254.169.254 is a blocked address".into())
    );
}

#[tokio::test]
async fn init_runs_once_per_pooled_instance_and_state_survives_calls() {
    let store = FakeStore::with(&[]);
    let Some(b) = backend("vault-test", store, |c| c.pool_size = 1) else {
        return;
    };
    assert_eq!(b.isolation(), Isolation::Pooled);
    assert_eq!(b.health().await.unwrap(), "ok inits=1 calls=1");
    assert_eq!(b.health().await.unwrap(), "ok inits=1 calls=2");
    assert_eq!(b.health().await.unwrap(), "ok inits=1 calls=3");
    let stats = b.stats();
    assert_eq!((stats.created, stats.discarded, stats.idle), (1, 0, 1));
}

#[tokio::test]
async fn per_call_isolation_gives_a_fresh_instance_every_call() {
    let store = FakeStore::with(&[]);
    let Some(b) = backend("vault-test", store, |c| c.isolation = Isolation::PerCall) else {
        return;
    };
    b.init().await.unwrap();
    for _ in 0..3 {
        assert_eq!(b.health().await.unwrap(), "ok inits=1 calls=1");
    }
    let stats = b.stats();
    assert_eq!((stats.created, stats.idle), (4, 0));
}

#[tokio::test]
async fn a_failing_init_is_reported_and_retried_on_a_fresh_instance() {
    let store = FakeStore::with(&[]);
    let Some(b) = backend("vault-test", store, |c| {
        c.config.clear();
    }) else {
        return;
    };
    let expected = BackendError::InvalidConfig("config key `address` is required".into());
    assert_eq!(b.init().await.unwrap_err(), expected);
    assert_eq!(b.get_value(&cred("a")).await.unwrap_err(), expected);
    let stats = b.stats();
    assert_eq!((stats.created, stats.discarded, stats.idle), (2, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_run_in_parallel_on_separate_instances() {
    let store = Arc::new(FakeStore {
        delay: Some(Duration::from_millis(300)),
        ..FakeStore::default()
    });
    store
        .values
        .lock()
        .unwrap()
        .insert("k".into(), b"v".to_vec());
    let Some(b) = backend("vault-test", store, |c| c.pool_size = 3) else {
        return;
    };
    let b = Arc::new(b);
    let start = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.get_value(&cred("k")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().expose(), "v");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_millis(850),
        "3 calls of 300 ms took {elapsed:?}"
    );
    assert_eq!(b.stats().created, 3);
}

#[tokio::test]
async fn guest_log_lines_are_tagged_with_the_configured_name() {
    let store = FakeStore::with(&[]);
    let sink = Arc::new(MemorySink::default());
    let Some(b) = backend("vault-prod", store, |c| c.log_sink = Some(sink.clone())) else {
        return;
    };
    b.init().await.unwrap();
    assert_eq!(
        sink.lines(),
        vec!["vault-prod|Log|minimal backend initialised"]
    );
}
