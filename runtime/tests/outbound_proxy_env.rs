//! Proxy variables in the environment must not route outbound requests: a proxy named by
//! `HTTP_PROXY` would receive every request (and any injected header) and connect to
//! wherever it likes, past the pinned, checked address.
//!
//! Its own test binary with a single test, so setting process environment variables
//! cannot race with any other test.

use std::io::ErrorKind;
use std::time::Duration;

use airlock::outbound::client::OutboundClient;
use airlock::outbound::config::OutboundConfig;
use airlock::outbound::{HttpSender, OutboundRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn outbound_ignores_proxy_environment_variables() {
    // A "proxy" that must never be contacted.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        // SAFETY: this binary runs this one test; no other thread exists yet that could
        // read the environment concurrently (the runtime is built below).
        unsafe { std::env::set_var(var, &proxy_url) };
    }
    for var in ["NO_PROXY", "no_proxy"] {
        // SAFETY: as above.
        unsafe { std::env::remove_var(var) };
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = upstream.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let Ok((mut stream, _)) = upstream.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndirect",
                )
                .await;
        });
        let config = OutboundConfig {
            allowed_outbound: vec![format!("http://127.0.0.1:{port}")],
            timeout_ms: 5_000,
            ..OutboundConfig::default()
        };
        let client = OutboundClient::new("proxy-test", &config).unwrap();
        let response = client
            .send(OutboundRequest {
                method: "GET".into(),
                url: format!("http://127.0.0.1:{port}/"),
                headers: vec![],
                body: None,
            })
            .await
            .unwrap();
        server.abort();
        response.body
    });
    assert_eq!(body, b"direct");
    match proxy.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the proxy was contacted: {other:?}"),
    }
}
