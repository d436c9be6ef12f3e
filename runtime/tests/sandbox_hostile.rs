//! Hostile guests: every attack is contained, the caller sees a precise error naming the
//! limit, the instance that misbehaved is discarded, and other backends keep answering.

mod sandbox_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::sandbox::{Limits, WasmBackend, WasmBackendConfig};
use airlock::{BackendError, CredentialBackend};
use sandbox_support::{FakeStore, MemorySink, STORE_URL, cred, engine, guest};

fn hostile_with(
    tweak: impl FnOnce(&mut WasmBackendConfig),
) -> Option<(WasmBackend, Arc<FakeStore>)> {
    let path = guest("hostile")?;
    let store = FakeStore::with(&[("x", "value")]);
    let mut config = WasmBackendConfig::new("hostile", path, store.clone());
    config.config.insert("address".into(), STORE_URL.into());
    tweak(&mut config);
    Some((
        WasmBackend::new(&engine(), config).expect("hostile guest loads"),
        store,
    ))
}

fn hostile() -> Option<(WasmBackend, Arc<FakeStore>)> {
    hostile_with(|_| {})
}

fn limit(message: &str) -> BackendError {
    BackendError::LimitExceeded(format!("sandbox limit: {message}"))
}

#[tokio::test]
async fn an_infinite_loop_is_trapped_by_the_cpu_budget() {
    let Some((b, _)) = hostile() else { return };
    let start = Instant::now();
    let err = b.get_value(&cred("spin")).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err, limit("cpu budget 200 ms exhausted"));
    assert!(
        elapsed >= Duration::from_millis(190),
        "trapped after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "trapped after {elapsed:?}"
    );
    assert_eq!(b.stats().discarded, 1);
    // The backend itself keeps working on a fresh instance.
    assert_eq!(
        b.get_value(&cred("count")).await.unwrap().expose(),
        "call 1"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_never_blocks_other_backends() {
    let Some((spinner, _)) = hostile_with(|c| {
        c.limits.cpu_budget = Duration::from_millis(1500);
        c.limits.wall_time = Duration::from_secs(10);
    }) else {
        return;
    };
    let Some(path) = guest("minimal") else { return };
    let store = FakeStore::with(&[("k", "v")]);
    let mut config = WasmBackendConfig::new("healthy", path, store);
    config.config.insert("address".into(), STORE_URL.into());
    let healthy = WasmBackend::new(&engine(), config).unwrap();
    healthy.init().await.unwrap();

    // One runtime thread: if the spinning guest held it, nothing else could run.
    let spinning = async {
        let start = Instant::now();
        let err = spinner.get_value(&cred("spin")).await.unwrap_err();
        (err, start.elapsed())
    };
    let answering = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let start = Instant::now();
            assert_eq!(healthy.get_value(&cred("k")).await.unwrap().expose(), "v");
            slowest = slowest.max(start.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slowest
    };
    let ((err, spun), slowest) = tokio::join!(spinning, answering);
    assert_eq!(err, limit("cpu budget 1500 ms exhausted"));
    assert!(spun >= Duration::from_millis(1000), "spun only {spun:?}");
    assert!(
        slowest < Duration::from_millis(100),
        "a healthy call took {slowest:?}"
    );
}

#[tokio::test]
async fn memory_growth_stops_at_the_memory_limit() {
    let Some((b, _)) = hostile_with(|c| c.limits.max_memory_bytes = 16 << 20) else {
        return;
    };
    assert_eq!(
        b.get_value(&cred("grow")).await.unwrap_err(),
        limit("memory limit 16 MiB exceeded")
    );
    assert_eq!(b.stats().discarded, 1);
}

#[tokio::test]
async fn unbounded_recursion_hits_the_stack_limit() {
    let Some((b, _)) = hostile() else { return };
    assert_eq!(
        b.get_value(&cred("recurse")).await.unwrap_err(),
        limit("stack limit 512 KiB exhausted (recursion too deep)")
    );
}

#[tokio::test]
async fn a_panic_is_a_trap_and_its_message_goes_to_the_log() {
    let sink = Arc::new(MemorySink::default());
    let Some((b, _)) = hostile_with(|c| c.log_sink = Some(sink.clone())) else {
        return;
    };
    assert_eq!(
        b.get_value(&cred("panic")).await.unwrap_err(),
        BackendError::Internal("backend trapped: wasm `unreachable` instruction executed".into())
    );
    let lines = sink.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hostile|Stderr|")
                && l.contains("hostile guest panicked on purpose")),
        "{lines:?}"
    );
    assert_eq!(b.stats().discarded, 1);
    assert_eq!(b.health().await.unwrap(), "hostile and proud");
}

#[tokio::test]
async fn exit_ends_the_call() {
    let Some((b, _)) = hostile() else { return };
    assert_eq!(
        b.get_value(&cred("exit")).await.unwrap_err(),
        BackendError::Internal("backend called exit(1)".into())
    );
}

#[tokio::test]
async fn files_sockets_and_name_lookup_fail_inside_the_guest() {
    let Some((b, _)) = hostile() else { return };
    let read = b.get_value(&cred("read-file")).await.unwrap_err();
    let tcp = b.get_value(&cred("tcp")).await.unwrap_err();
    let dns = b.get_value(&cred("dns")).await.unwrap_err();
    // No preopened directory: the path does not resolve to anything.
    assert_eq!(
        read,
        BackendError::Denied(
            "open /etc/passwd failed: No such file or directory (os error 44)".into()
        )
    );
    // TCP is switched off in the WASI context: EACCES.
    assert_eq!(
        tcp,
        BackendError::Denied("tcp connect failed: Permission denied (os error 2)".into())
    );
    // Name lookup is switched off: EAI_FAIL.
    assert_eq!(
        dns,
        BackendError::Denied(
            "name lookup failed: failed to lookup address information: Non-recoverable error"
                .into()
        )
    );
    // Failing inside the guest is a normal answer: the instance is kept.
    assert_eq!(b.stats().discarded, 0);
}

#[tokio::test]
async fn the_environment_is_empty() {
    let Some((b, _)) = hostile() else { return };
    assert_eq!(
        b.get_value(&cred("env")).await.unwrap().expose(),
        "vars=0 args=0 cwd=/ clock=true"
    );
}

#[tokio::test]
async fn the_request_budget_is_enforced_per_call() {
    let Some((b, store)) = hostile_with(|c| c.limits.max_requests_per_call = 3) else {
        return;
    };
    let expected = BackendError::Unavailable(
        "request 4 refused: limit-exceeded: this call already made 3 HTTP requests, the most allowed per call".into(),
    );
    assert_eq!(
        b.get_value(&cred("many-requests")).await.unwrap_err(),
        expected
    );
    assert_eq!(store.request_count(), 3);
    // A new call has a new budget.
    assert_eq!(
        b.get_value(&cred("many-requests")).await.unwrap_err(),
        expected
    );
    assert_eq!(store.request_count(), 6);
}

#[tokio::test]
async fn oversized_host_call_arguments_trap() {
    let Some((b, store)) = hostile() else { return };
    assert_eq!(
        b.get_value(&cred("huge-url")).await.unwrap_err(),
        limit("hostcall data limit: http.send was passed 3145745 bytes, more than 2097152")
    );
    assert_eq!(store.request_count(), 0);
    assert_eq!(
        b.get_value(&cred("huge-log")).await.unwrap_err(),
        limit("hostcall data limit: log.log was passed 3145728 bytes, more than 2097152")
    );
}

#[tokio::test]
async fn log_floods_are_rate_limited_and_lines_cannot_be_forged() {
    let sink = Arc::new(MemorySink::default());
    let Some((b, _)) = hostile_with(|c| c.log_sink = Some(sink.clone())) else {
        return;
    };
    assert_eq!(
        b.get_value(&cred("log-flood")).await.unwrap().expose(),
        "flooded"
    );
    let lines = sink.lines();
    // The burst (100 lines) passes, then a trickle at 20 lines per second.
    assert!(
        lines.len() >= 100 && lines.len() < 140,
        "{} lines",
        lines.len()
    );
    assert!(lines.iter().all(|l| l.starts_with("hostile|")));
    assert_eq!(
        lines[0],
        "hostile|Log|flood line 0\\nforged-backend: fake line"
    );
    assert!(!lines.iter().any(|l| l.contains('\n')));
}

#[tokio::test]
async fn an_oversized_value_is_refused() {
    let Some((b, _)) = hostile() else { return };
    assert_eq!(
        b.get_value(&cred("big-value")).await.unwrap_err(),
        BackendError::Internal(
            "the backend returned an unusable value: the value is 2097152 bytes, more than the 1048576-byte limit".into()
        )
    );
}

#[tokio::test]
async fn a_sleeping_guest_hits_the_wall_time_limit() {
    let Some((b, _)) = hostile_with(|c| c.limits.wall_time = Duration::from_millis(300)) else {
        return;
    };
    let start = Instant::now();
    assert_eq!(
        b.get_value(&cred("sleep")).await.unwrap_err(),
        limit("wall time 300 ms exceeded")
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().discarded, 1);
}

#[tokio::test]
async fn a_slow_upstream_hits_the_wall_time_limit() {
    let Some(path) = guest("minimal") else { return };
    let store = Arc::new(FakeStore {
        delay: Some(Duration::from_secs(30)),
        ..FakeStore::default()
    });
    let mut config = WasmBackendConfig::new("slow", path, store);
    config.config.insert("address".into(), STORE_URL.into());
    config.limits = Limits {
        wall_time: Duration::from_millis(250),
        ..Limits::default()
    };
    let b = WasmBackend::new(&engine(), config).unwrap();
    assert_eq!(
        b.get_value(&cred("k")).await.unwrap_err(),
        limit("wall time 250 ms exceeded")
    );
}

#[tokio::test]
async fn a_batch_of_the_wrong_length_is_rejected_whole() {
    let Some((b, _)) = hostile() else { return };
    let results = b.get_values(&[cred("wrong-length"), cred("count")]).await;
    let expected =
        BackendError::Internal("the backend returned 0 results for 2 credentials".into());
    let errors: Vec<_> = results.into_iter().map(|r| r.unwrap_err()).collect();
    assert_eq!(errors, vec![expected.clone(), expected]);
}

#[tokio::test]
async fn a_failing_init_makes_every_call_fail_with_its_error() {
    let Some((b, _)) = hostile_with(|c| {
        c.config.insert("fail_init".into(), "yes".into());
    }) else {
        return;
    };
    assert_eq!(
        b.health().await.unwrap_err(),
        BackendError::InvalidConfig("init refused on purpose".into())
    );
}
