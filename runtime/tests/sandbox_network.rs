//! The hostile guest's network attacks, end to end: the guest runs in the real sandbox and
//! talks through the real [`OutboundClient`] (policy, resolution, reqwest) to raw HTTP
//! servers on 127.0.0.1 that write literal, sometimes lying, responses.
//!
//! The hostile guest's `fetch` attack sends the request its credential's locator describes
//! and returns what it saw: `status=… location=… bytes=… body=…` for a response, or
//! `Err(unavailable("KIND: MESSAGE"))` for an `http-error`. So each assertion on the
//! caller's `BackendError` is, at the same time, an assertion on the exact `http-error`
//! the guest received. Names never reach a real resolver (`StaticLookup`), except
//! `localhost`, which the system resolves from the hosts file; no test sends traffic off
//! the machine unless the host's address checks are broken.

mod sandbox_support;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::outbound::client::OutboundClient;
use airlock::outbound::config::{InjectHeader, OutboundConfig};
use airlock::outbound::resolve::{Lookup, StaticLookup, SystemLookup};
use airlock::sandbox::{WasmBackend, WasmBackendConfig};
use airlock::{BackendError, CredentialBackend, CredentialRef, Secret};
use sandbox_support::{cred, engine, guest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------
// Raw test servers
// ---------------------------------------------------------------------------------------

/// Connections one test server accepts before it stops accepting: every loop is bounded.
const MAX_CONNECTIONS: usize = 16;

/// A raw HTTP/1.1 server on 127.0.0.1:0. Reads each connection's request head, records it,
/// and hands the stream to `respond`, which writes whatever bytes it likes. Dropping the
/// server stops it and every connection it still serves.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl Server {
    async fn start<F, Fut>(respond: F) -> Server
    where
        F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let (a, f, h) = (accepted.clone(), finished.clone(), heads.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            for _ in 0..MAX_CONNECTIONS {
                let Ok((mut stream, _)) = listener.accept().await else {
                    break;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (f, h, respond) = (f.clone(), h.clone(), respond.clone());
                connections.spawn(async move {
                    if let Some(head) = read_head(&mut stream).await {
                        h.lock().unwrap().push(head.clone());
                        respond(stream, head).await;
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                });
                while connections.try_join_next().is_some() {}
            }
            // Keep serving the connections already accepted until the server is dropped.
            while connections.join_next().await.is_some() {}
        });
        Server {
            addr,
            accepted,
            finished,
            heads,
            task,
        }
    }

    /// A server answering every request with the same bytes.
    async fn answering(response: Vec<u8>) -> Server {
        Server::start(move |stream, _| reply(stream, response.clone())).await
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The allow-list entry naming exactly this server.
    fn rule(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Wait (at most `limit`) until `n` connections were handled to the end.
    async fn wait_finished(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.finished.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// The request head (through the blank line), within 5 s and 64 KiB. Bodies are ignored:
/// every request in these tests is bodiless.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 64 * 1024 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// Write `bytes` and close.
async fn reply(mut stream: TcpStream, bytes: Vec<u8>) {
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// A complete 200 response; `Connection: close` so that each request is one connection.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The request line of a head, e.g. `GET /x HTTP/1.1`.
fn request_line(head: &str) -> &str {
    head.split("\r\n").next().unwrap_or_default()
}

/// Values of header `name` in a request head (case-insensitive name).
fn header_values<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Backends over the real outbound client
// ---------------------------------------------------------------------------------------

/// A sandboxed backend and the outbound client it sends through (kept to read its
/// counters).
struct Net {
    backend: WasmBackend,
    client: Arc<OutboundClient>,
}

/// Outbound settings allowing `rules`, with a short connect timeout: should a check ever
/// let a blocked address through, the attempt fails fast instead of hanging the suite.
fn outbound(rules: &[String]) -> OutboundConfig {
    OutboundConfig {
        allowed_outbound: rules.to_vec(),
        connect_timeout_ms: 1_000,
        ..OutboundConfig::default()
    }
}

/// Guest `name` over a real `OutboundClient` built from `config` and `lookup`; `tweak`
/// adjusts the backend (limits, settings) before it is loaded.
fn backend_over(
    name: &str,
    config: &OutboundConfig,
    lookup: Arc<dyn Lookup>,
    tweak: impl FnOnce(&mut WasmBackendConfig),
) -> Option<Net> {
    let path = guest(name)?;
    let client = Arc::new(
        OutboundClient::with_lookup(format!("{name}-net"), config, lookup)
            .unwrap_or_else(|e| panic!("outbound config: {e}")),
    );
    let mut wasm = WasmBackendConfig::new(format!("{name}-net"), path, client.clone());
    tweak(&mut wasm);
    let backend = WasmBackend::new(&engine(), wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(Net { backend, client })
}

/// The hostile guest over a real client that resolves names with `lookup` only.
fn hostile(config: &OutboundConfig, lookup: StaticLookup) -> Option<Net> {
    backend_over("hostile", config, Arc::new(lookup), |_| {})
}

/// No names resolve: every destination is an IP literal.
fn no_names() -> StaticLookup {
    StaticLookup::new(Vec::<(String, Vec<IpAddr>)>::new())
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The credential that makes the hostile guest send `request` (a JSON description).
fn fetch(request: serde_json::Value) -> CredentialRef {
    CredentialRef {
        locator: Some(request.to_string()),
        ..cred("fetch")
    }
}

fn get(url: &str) -> CredentialRef {
    fetch(json!({ "url": url }))
}

/// What the caller sees when the guest received `http-error` `kind(message)`: the guest
/// reports it as `unavailable("kind: message")`.
fn guest_saw(kind: &str, message: &str) -> BackendError {
    BackendError::Unavailable(format!("{kind}: {message}"))
}

impl Net {
    async fn fetch(&self, request: CredentialRef) -> Result<String, BackendError> {
        self.backend
            .get_value(&request)
            .await
            .map(|v| v.expose().to_owned())
    }

    /// The backend still answers: a plain GET to `healthy` (on the allow-list) succeeds.
    async fn assert_still_serves(&self, healthy: &Server) {
        assert_eq!(
            self.fetch(get(&healthy.url("/still-there"))).await,
            Ok("status=200 location=- bytes=2 body=ok".to_owned()),
            "the backend no longer answers"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Hostile requests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_host_not_on_the_allow_list_is_denied_before_any_connection() {
    let healthy = Server::answering(ok("ok")).await;
    let target = Server::answering(ok("leaked")).await;
    let port = target.port();
    // The name resolves to the target server: only the allow-list stands in the way.
    let lookup = StaticLookup::new([("elsewhere.test", vec![ip("127.0.0.1")])]);
    let Some(net) = hostile(&outbound(&[healthy.rule()]), lookup) else {
        return;
    };
    assert_eq!(
        net.fetch(get(&format!("http://elsewhere.test:{port}/secret")))
            .await,
        Err(guest_saw(
            "denied",
            &format!("no allowed_outbound entry matches GET http://elsewhere.test:{port}/secret")
        ))
    );
    // Same address as the allowed server, another port.
    assert_eq!(
        net.fetch(get(&target.url("/"))).await,
        Err(guest_saw(
            "denied",
            &format!("no allowed_outbound entry matches GET http://127.0.0.1:{port}/")
        ))
    );
    assert_eq!(target.accepted(), 0);
    assert_eq!(net.client.stats().snapshot().denied, 2);
    net.assert_still_serves(&healthy).await;
    assert_eq!(net.backend.stats().discarded, 0);
}

#[tokio::test]
async fn metadata_is_denied_in_every_spelling_even_when_allowed() {
    let healthy = Server::answering(ok("ok")).await;
    // The operator allowed the metadata address and private networks: still refused.
    let config = OutboundConfig {
        allow_private_networks: true,
        ..outbound(&["http://169.254.169.254".into(), healthy.rule()])
    };
    let Some(net) = hostile(&config, no_names()) else {
        return;
    };
    let spellings = [
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "[::ffff:169.254.169.254]",
        "169.254.169.254.",
    ];
    for host in spellings {
        assert_eq!(
            net.fetch(get(&format!("http://{host}/latest/meta-data/")))
                .await,
            Err(guest_saw(
                "denied",
                "address 169.254.169.254 is a cloud metadata address: always blocked"
            )),
            "{host}"
        );
    }
    let stats = net.client.stats().snapshot();
    assert_eq!((stats.blocked_address, stats.sent), (6, 0));
    net.assert_still_serves(&healthy).await;
}

#[tokio::test]
async fn a_name_resolving_to_metadata_is_denied() {
    let healthy = Server::answering(ok("ok")).await;
    let lookup = StaticLookup::new([
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("mapped.test", vec![ip("::ffff:169.254.169.254")]),
        // The first answer is the healthy server: every answer is checked, not the first.
        ("mixed.test", vec![ip("127.0.0.1"), ip("169.254.169.254")]),
    ]);
    let port = healthy.port();
    let config = OutboundConfig {
        allow_private_networks: true,
        ..outbound(&[format!("http://*.test:{port}"), healthy.rule()])
    };
    let Some(net) = hostile(&config, lookup) else {
        return;
    };
    for name in ["metadata.test", "mapped.test", "mixed.test"] {
        assert_eq!(
            net.fetch(get(&format!("http://{name}:{port}/latest/meta-data/")))
                .await,
            Err(guest_saw(
                "denied",
                &format!(
                    "{name} resolves to 169.254.169.254, which is a cloud metadata address: always blocked"
                )
            )),
            "{name}"
        );
    }
    assert_eq!(healthy.accepted(), 0);
    assert_eq!(net.client.stats().snapshot().blocked_address, 3);
    net.assert_still_serves(&healthy).await;
}

#[tokio::test]
async fn localhost_resolves_to_loopback_and_is_blocked_without_permission() {
    let server = Server::answering(ok("ok")).await;
    let port = server.port();
    // The system resolver answers from the hosts file; the message names its first answer.
    let first = SystemLookup.lookup("localhost", port).await.unwrap()[0];
    let first = match first {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let config = outbound(&[format!("http://localhost:{port}")]);
    let Some(closed) = backend_over("hostile", &config, Arc::new(SystemLookup), |_| {}) else {
        return;
    };
    let url = format!("http://localhost:{port}/admin");
    assert_eq!(
        closed.fetch(get(&url)).await,
        Err(guest_saw(
            "denied",
            &format!(
                "localhost resolves to {first}, which is loopback: blocked unless \
                 allow_private_networks = true or an allowed_outbound entry names that address"
            )
        ))
    );
    assert_eq!(server.accepted(), 0);

    // The same request with private networks opened reaches the server: the refusal above
    // was the policy, not an unreachable server.
    let open_config = OutboundConfig {
        allow_private_networks: true,
        ..config
    };
    let open = backend_over("hostile", &open_config, Arc::new(SystemLookup), |_| {}).unwrap();
    assert_eq!(
        open.fetch(get(&url)).await,
        Ok("status=200 location=- bytes=2 body=ok".to_owned())
    );
    assert_eq!(server.accepted(), 1);
    // The refusal was an answer to the guest, not a failure: its instance was kept.
    assert_eq!(closed.backend.stats().discarded, 0);
}

#[tokio::test]
async fn a_redirect_to_metadata_is_returned_to_the_guest_not_followed() {
    let healthy = Server::answering(ok("ok")).await;
    // Stands in for the metadata service: it is on the allow-list, so a host that followed
    // redirects would reach it.
    let stand_in = Server::answering(ok("ami-id\ninstance-id\n")).await;
    let to_metadata = Server::answering(
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec(),
    )
    .await;
    let to_stand_in = Server::answering(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            stand_in.url("/latest/meta-data/")
        )
        .into_bytes(),
    )
    .await;
    let config = outbound(&[
        healthy.rule(),
        stand_in.rule(),
        to_metadata.rule(),
        to_stand_in.rule(),
    ]);
    let Some(net) = hostile(&config, no_names()) else {
        return;
    };
    assert_eq!(
        net.fetch(get(&to_metadata.url("/login"))).await,
        Ok("status=302 location=http://169.254.169.254/latest/meta-data/ bytes=0 body=".into())
    );
    assert_eq!(
        net.fetch(get(&to_stand_in.url("/login"))).await,
        Ok(format!(
            "status=302 location={} bytes=0 body=",
            stand_in.url("/latest/meta-data/")
        ))
    );
    assert_eq!(
        to_metadata
            .heads()
            .iter()
            .map(|h| request_line(h))
            .collect::<Vec<_>>(),
        ["GET /login HTTP/1.1"]
    );
    assert_eq!(to_stand_in.heads().len(), 1);
    assert_eq!(stand_in.accepted(), 0, "the host followed a redirect");
    // The metadata address was never even considered for a connection.
    let stats = net.client.stats().snapshot();
    assert_eq!((stats.sent, stats.blocked_address), (2, 0));
    net.assert_still_serves(&healthy).await;
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

/// Writes `head`, then `total` bytes of `x` in 64 KiB chunks, stopping at the first write
/// error; `written` holds the body bytes written so far.
async fn stream_body(mut stream: TcpStream, head: String, total: usize, written: Arc<AtomicUsize>) {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        sent += chunk.len();
        written.store(sent, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_100_mb_response_is_too_large_and_not_read() {
    let healthy = Server::answering(ok("ok")).await;
    for declared in [true, false] {
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        let big = Server::start(move |stream, _| {
            let head = if declared {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n")
            } else {
                // No length: the body runs until the server closes.
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned()
            };
            stream_body(stream, head, HUNDRED_MB, w.clone())
        })
        .await;
        let Some(net) = hostile(&outbound(&[big.rule(), healthy.rule()]), no_names()) else {
            return;
        };
        let start = Instant::now();
        assert_eq!(
            net.fetch(get(&big.url("/big"))).await,
            Err(guest_saw(
                "too-large",
                "the response body is larger than the 1048576-byte limit"
            )),
            "declared={declared}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        // The host hung up: the server's writes failed long before 100 MB.
        assert!(
            big.wait_finished(1, Duration::from_secs(5)).await,
            "the host kept the connection open"
        );
        let sent = written.load(Ordering::SeqCst);
        assert!(
            sent < HUNDRED_MB / 4,
            "declared={declared}: server wrote {sent} bytes"
        );
        net.assert_still_serves(&healthy).await;
    }
}

#[tokio::test]
async fn the_sandbox_caps_the_response_below_the_outbound_cap() {
    let body = "x".repeat(2 << 20);
    let big = Server::answering(ok(&body)).await;
    // The outbound client would take 4 MiB; the backend's own limit is 1 MiB.
    let config = OutboundConfig {
        max_response_bytes: 4 << 20,
        ..outbound(&[big.rule()])
    };
    let Some(net) = hostile(&config, no_names()) else {
        return;
    };
    assert_eq!(
        net.fetch(get(&big.url("/2mib"))).await,
        Err(guest_saw(
            "too-large",
            "response body of 2097152 bytes exceeds the limit of 1048576 bytes"
        ))
    );
    assert_eq!(net.client.stats().snapshot().sent, 1);
}

#[tokio::test]
async fn a_lying_content_length_is_never_trusted() {
    let healthy = Server::answering(ok("ok")).await;
    // Declares 10 bytes, then pushes 5 MB: the guest gets the 10 bytes, nothing more.
    let short = Server::start(|stream, _| {
        stream_body(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".into(),
            5 << 20,
            Arc::new(AtomicUsize::new(0)),
        )
    })
    .await;
    // Declares 1000 bytes, sends 10 and hangs up.
    let long =
        Server::answering(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b".to_vec())
            .await;
    // Declares more than the cap, sends 5 bytes: refused on the declaration alone.
    let huge =
        Server::answering(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\nshort".to_vec())
            .await;
    let config = outbound(&[short.rule(), long.rule(), huge.rule(), healthy.rule()]);
    let Some(net) = hostile(&config, no_names()) else {
        return;
    };
    assert_eq!(
        net.fetch(get(&short.url("/"))).await,
        Ok("status=200 location=- bytes=10 body=xxxxxxxxxx".into())
    );
    assert_eq!(
        net.fetch(get(&long.url("/"))).await,
        Err(guest_saw(
            "connection",
            "error decoding response body: request or response body error: \
             error reading a body from connection: end of file before message length reached"
        ))
    );
    assert_eq!(
        net.fetch(get(&huge.url("/"))).await,
        Err(guest_saw(
            "too-large",
            "the response body is larger than the 1048576-byte limit"
        ))
    );
    net.assert_still_serves(&healthy).await;
    assert_eq!(net.backend.stats().discarded, 0);
}

/// Writes `head`, then one byte a second, at most 20 bytes; `dripped` counts the bytes
/// written before a write failed (the peer hung up).
async fn drip(mut stream: TcpStream, head: &'static str, dripped: Arc<AtomicUsize>) {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stream.write_all(b"x").await.is_err() {
            return;
        }
        dripped.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_slow_drip_upstream_hits_the_wall_time_limit() {
    let healthy = Server::answering(ok("ok")).await;
    // Another backend on the same host, serving a real store, must keep answering.
    let store = Server::start(|stream, head| async move {
        let body = if request_line(&head).starts_with("GET /secret/k ") {
            "v"
        } else {
            "?"
        };
        reply(stream, ok(body)).await
    })
    .await;
    let Some(other) = backend_over(
        "minimal",
        &outbound(&[store.rule()]),
        Arc::new(no_names()),
        |c| {
            c.config.insert("address".into(), store.url(""));
        },
    ) else {
        return;
    };
    other.backend.init().await.unwrap();

    // Dripping the body, and dripping a header line (the response never even starts).
    for (i, head) in [
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Slow: ",
    ]
    .into_iter()
    .enumerate()
    {
        let dripped = Arc::new(AtomicUsize::new(0));
        let d = dripped.clone();
        let slow = Server::start(move |stream, _| drip(stream, head, d.clone())).await;
        // The outbound timeout (10 s) is longer than the wall time: the sandbox trips first.
        let Some(net) = backend_over(
            "hostile",
            &outbound(&[slow.rule(), healthy.rule()]),
            Arc::new(no_names()),
            // 1.5 s, not less: the check afterwards that the backend still answers runs
            // under the same wall time, on a machine busy with the rest of the suite.
            |c| c.limits.wall_time = Duration::from_millis(1500),
        ) else {
            return;
        };
        assert_eq!(net.client.limits().timeout, Duration::from_secs(10));
        let dripping = async {
            let start = Instant::now();
            let result = net.fetch(get(&slow.url("/drip"))).await;
            (result, start.elapsed())
        };
        let answering = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let start = Instant::now();
            let value = other.backend.get_value(&cred("k")).await;
            (value.map(|v| v.expose().to_owned()), start.elapsed())
        };
        let ((result, elapsed), (value, other_took)) = tokio::join!(dripping, answering);
        assert_eq!(
            result,
            Err(BackendError::LimitExceeded(
                "sandbox limit: wall time 1500 ms exceeded".into()
            )),
            "head {i}"
        );
        assert!(
            elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4),
            "head {i}: {elapsed:?}"
        );
        assert_eq!(value, Ok("v".to_owned()));
        // Started 100 ms in, done well before the 1.5 s wall time: answered while the
        // dripping call was still pending.
        assert!(other_took < Duration::from_millis(1200), "{other_took:?}");
        // The guest saw no answer at all: its instance was dropped mid-request ...
        assert_eq!(net.backend.stats().discarded, 1);
        assert_eq!(net.client.stats().snapshot().timeout, 0);
        // ... and with it the upstream connection: the server's writes start failing.
        assert!(
            slow.wait_finished(1, Duration::from_secs(5)).await,
            "head {i}: the host kept the slow connection open"
        );
        assert!(dripped.load(Ordering::SeqCst) < 8, "head {i}");
        net.assert_still_serves(&healthy).await;
    }
}

#[tokio::test]
async fn crlf_in_a_header_or_url_is_an_invalid_request_and_nothing_is_sent() {
    let server = Server::answering(ok("ok")).await;
    let Some(net) = hostile(&outbound(&[server.rule()]), no_names()) else {
        return;
    };
    let url = server.url("/");
    for (headers, message) in [
        (
            json!([["X-A", "v\r\nX-Injected: 1"]]),
            "the value of header X-A contains CR, LF or NUL",
        ),
        (
            json!([["X-A", "v\nHost: evil.example"]]),
            "the value of header X-A contains CR, LF or NUL",
        ),
        (
            json!([["X-A\r\nX-Injected", "1"]]),
            r#"header name "X-A\r\nX-Injected" contains CR, LF or NUL"#,
        ),
    ] {
        assert_eq!(
            net.fetch(fetch(json!({ "url": url, "headers": headers })))
                .await,
            Err(guest_saw("invalid-request", message)),
            "{headers}"
        );
    }
    assert_eq!(
        net.fetch(get(&format!("{url}x\r\nHost: evil.example")))
            .await,
        Err(guest_saw(
            "invalid-request",
            "the URL contains whitespace or a control character"
        ))
    );
    assert_eq!(server.accepted(), 0);
    assert_eq!(net.client.stats().snapshot().invalid_request, 4);
    net.assert_still_serves(&server).await;
}

#[tokio::test]
async fn more_requests_than_allowed_are_refused_and_never_sent() {
    let server = Server::answering(ok("ok")).await;
    let Some(net) = backend_over(
        "hostile",
        &outbound(&[server.rule()]),
        Arc::new(no_names()),
        |c| {
            c.limits.max_requests_per_call = 3;
            c.config.insert("address".into(), server.url(""));
        },
    ) else {
        return;
    };
    let expected = BackendError::Unavailable(
        "request 4 refused: limit-exceeded: this call already made 3 HTTP requests, the most allowed per call"
            .into(),
    );
    assert_eq!(
        net.fetch(cred("many-requests")).await,
        Err(expected.clone())
    );
    let lines: Vec<String> = server
        .heads()
        .iter()
        .map(|h| request_line(h).to_owned())
        .collect();
    assert_eq!(lines, ["GET /secret/x HTTP/1.1"; 3]);
    // A new call has a new budget, and the upstream again sees exactly three.
    assert_eq!(net.fetch(cred("many-requests")).await, Err(expected));
    assert_eq!(server.heads().len(), 6);
    assert_eq!(net.client.stats().snapshot().sent, 6);
    net.assert_still_serves(&server).await;
}

const BOOTSTRAP_TOKEN: &str = "s.bootstrap-7f3a9c-never-seen-by-the-guest";

/// Says whether the request carried exactly one `X-Vault-Token`, and whether it was the
/// bootstrap token, without echoing the value.
async fn token_echo(stream: TcpStream, head: String) {
    let body = match header_values(&head, "x-vault-token").as_slice() {
        [] => "token=absent",
        [value] if *value == BOOTSTRAP_TOKEN => "token=injected",
        [_] => "token=other",
        _ => "token=repeated",
    };
    reply(stream, ok(body)).await
}

#[tokio::test]
async fn an_injected_header_is_added_by_the_host_and_cannot_be_set_by_the_guest() {
    let vault = Server::start(token_echo).await;
    let elsewhere = Server::start(token_echo).await;
    let config = OutboundConfig {
        inject_headers: vec![InjectHeader {
            destination: vault.rule(),
            name: "X-Vault-Token".into(),
            value: Secret::new(BOOTSTRAP_TOKEN.to_owned()).unwrap(),
        }],
        ..outbound(&[vault.rule(), elsewhere.rule()])
    };
    let Some(net) = hostile(&config, no_names()) else {
        return;
    };
    let url = vault.url("/v1/auth/token/lookup-self");
    for name in ["X-Vault-Token", "x-vault-token"] {
        assert_eq!(
            net.fetch(fetch(json!({ "url": url, "headers": [[name, "mine"]] })))
                .await,
            Err(guest_saw(
                "denied",
                &format!(
                    "header {name} is set by the host for \"{}\"; the backend may not set it",
                    vault.rule()
                )
            ))
        );
    }
    assert_eq!(vault.accepted(), 0);

    // A plain request gets the token added by the host; the guest sees only the echo.
    let seen = net.fetch(get(&url)).await.unwrap();
    assert_eq!(seen, "status=200 location=- bytes=14 body=token=injected");
    assert_eq!(
        header_values(&vault.heads()[0], "x-vault-token"),
        [BOOTSTRAP_TOKEN]
    );
    // Only for that destination: elsewhere gets no token, and the guest may set its own.
    assert_eq!(
        net.fetch(get(&elsewhere.url("/"))).await,
        Ok("status=200 location=- bytes=12 body=token=absent".into())
    );
    assert_eq!(
        net.fetch(fetch(
            json!({ "url": elsewhere.url("/"), "headers": [["X-Vault-Token", "mine"]] })
        ))
        .await,
        Ok("status=200 location=- bytes=11 body=token=other".into())
    );
}

// ---------------------------------------------------------------------------------------
// A well-behaved guest, end to end
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_well_behaved_guest_resolves_a_value_through_a_local_http_server() {
    let store = Server::start(|stream, head| async move {
        let response = match request_line(&head) {
            "GET /secret/db-password HTTP/1.1" => ok("correct horse battery staple"),
            "GET /health HTTP/1.1" => ok("ok"),
            _ => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
        };
        reply(stream, response).await
    })
    .await;
    let Some(net) = backend_over(
        "minimal",
        &outbound(&[store.rule()]),
        Arc::new(no_names()),
        |c| {
            c.config.insert("address".into(), store.url(""));
        },
    ) else {
        return;
    };
    net.backend.init().await.unwrap();
    assert_eq!(
        net.backend
            .get_value(&cred("db-password"))
            .await
            .unwrap()
            .expose(),
        "correct horse battery staple"
    );
    assert_eq!(
        net.backend.get_value(&cred("missing")).await.unwrap_err(),
        BackendError::NotFound
    );
    assert_eq!(net.backend.health().await.unwrap(), "ok inits=1 calls=3");
    let heads = store.heads();
    assert_eq!(
        heads.iter().map(|h| request_line(h)).collect::<Vec<_>>(),
        [
            "GET /secret/db-password HTTP/1.1",
            "GET /secret/missing HTTP/1.1",
            "GET /health HTTP/1.1"
        ]
    );
    let host = format!("127.0.0.1:{}", store.port());
    assert_eq!(header_values(&heads[0], "host"), [host.as_str()]);
    assert_eq!(header_values(&heads[0], "accept"), ["text/plain"]);
    assert_eq!(net.client.stats().snapshot().sent, 3);
}
