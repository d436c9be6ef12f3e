//! Transport failures surface as `unavailable` (retryable): a server that never answers
//! (timeout) and a port nobody listens on (connection refused). Loopback only, bounded.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use airlock_guest::native::{MemoryLog, NativeHttp, free_port};
use airlock_guest::{Backend, Config, CredentialRef, Host};
use aws_secrets_manager::AwsSecretsManager;

fn config(endpoint: &str) -> Config {
    Config::from_pairs([
        ("region", "us-east-1"),
        ("endpoint", endpoint),
        ("access_key_id", "AKIDEXAMPLE"),
        ("secret_access_key", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    ])
}

#[test]
fn a_server_that_never_answers_is_unavailable() {
    // Accepts connections (the kernel's backlog) but never reads or writes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let http = NativeHttp::with_timeout(Duration::from_millis(300));
    let log = MemoryLog::new();
    let host = Host::new(&http, &log);
    let mut b = AwsSecretsManager::init(&config(&endpoint), &host).expect("init");
    let started = Instant::now();
    let err = b.get_value(&host, &CredentialRef::with_locator("c", "app")).expect_err("timeout");
    assert_eq!(err.kind(), "unavailable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn a_refused_connection_is_unavailable() {
    let port = free_port().expect("port");
    let http = NativeHttp::with_timeout(Duration::from_millis(500));
    let log = MemoryLog::new();
    let host = Host::new(&http, &log);
    let mut b = AwsSecretsManager::init(&config(&format!("http://127.0.0.1:{port}")), &host).expect("init");
    let err = b.health(&host).expect_err("refused");
    assert_eq!(err.kind(), "unavailable", "{err}");
}
