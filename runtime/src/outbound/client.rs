//! Enforcement: the [`HttpSender`] that carries out one backend's [`OutboundPolicy`] with
//! reqwest (HTTP/1.1, rustls).
//!
//! For each request: the policy checks it; the host resolves a DNS name itself and checks
//! every address (an IP literal is checked the same way); the checked addresses are pinned
//! so reqwest connects to them and to nothing else; the request goes out with no proxy, no
//! redirect following, no retries and no decompression; the response is read within the
//! total timeout and the size caps, counted chunk by chunk (Content-Length is never
//! trusted to bound a read). Every refusal or failure is logged with the backend's name,
//! the URL without its query and the reason, and counted in [`OutboundStats`].

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::config::{OutboundConfig, OutboundConfigError};
use super::policy::{Checked, OutboundPolicy, loggable_url};
use super::resolve::{Lookup, PinGuard, PinnedResolver, SystemLookup};
use super::rule::Host;
use super::stats::OutboundStats;
use super::{HttpSender, OutboundError, OutboundRequest, OutboundResponse};

/// How long an idle pooled connection is kept. Reuse saves TLS handshakes between the few
/// requests a call makes; a short life bounds how long a connection to an address checked
/// once keeps being used after its DNS answer changed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_MAX_IDLE_PER_HOST: usize = 4;

/// Limits applied to the exchange itself (the request side is in the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// DNS lookup to last response byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    pub max_response_headers: usize,
    pub max_response_header_bytes: usize,
}

impl ExchangeLimits {
    fn from_config(config: &OutboundConfig) -> Result<ExchangeLimits, OutboundConfigError> {
        for (field, value) in [
            ("timeout_ms", config.timeout_ms as usize),
            ("connect_timeout_ms", config.connect_timeout_ms as usize),
            ("max_response_bytes", config.max_response_bytes),
            ("max_response_headers", config.max_response_headers),
            (
                "max_response_header_bytes",
                config.max_response_header_bytes,
            ),
        ] {
            if value == 0 {
                return Err(OutboundConfigError::Zero { field });
            }
        }
        Ok(ExchangeLimits {
            timeout: Duration::from_millis(config.timeout_ms),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            max_response_bytes: config.max_response_bytes,
            max_response_headers: config.max_response_headers,
            max_response_header_bytes: config.max_response_header_bytes,
        })
    }
}

/// One backend's outbound HTTP capability. Not shared between backends: each has its own
/// policy, connection pool, pins and counters.
pub struct OutboundClient {
    backend: String,
    policy: OutboundPolicy,
    limits: ExchangeLimits,
    http: reqwest::Client,
    pins: Arc<PinnedResolver>,
    lookup: Arc<dyn Lookup>,
    stats: Arc<OutboundStats>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("backend", &self.backend)
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// A client for backend `backend`, resolving names with the system resolver.
    pub fn new(
        backend: impl Into<String>,
        config: &OutboundConfig,
    ) -> Result<OutboundClient, OutboundConfigError> {
        OutboundClient::with_lookup(backend, config, Arc::new(SystemLookup))
    }

    /// A client that resolves names with `lookup` (e.g. a [`super::resolve::StaticLookup`]).
    /// Reads `ca_bundle` if one is configured.
    pub fn with_lookup(
        backend: impl Into<String>,
        config: &OutboundConfig,
        lookup: Arc<dyn Lookup>,
    ) -> Result<OutboundClient, OutboundConfigError> {
        let policy = OutboundPolicy::from_config(config)?;
        let limits = ExchangeLimits::from_config(config)?;
        let pins = PinnedResolver::new();
        let mut builder = reqwest::Client::builder()
            // The guest sees every 3xx; a followed hop would skip the policy.
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY/ALL_PROXY from the environment would route around the pinned
            // address and leak the request to whatever the variable names.
            .no_proxy()
            // A retried request is a request the guest did not make (and may not be
            // idempotent).
            .retry(reqwest::retry::never())
            .referer(false)
            .http1_only()
            .http1_max_headers(limits.max_response_headers)
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .tls_version_min(reqwest::tls::Version::TLS_1_2)
            .dns_resolver(Arc::clone(&pins));
        if let Some(path) = &config.ca_bundle {
            let problem = |problem: String| OutboundConfigError::CaBundle {
                path: path.clone(),
                problem,
            };
            let pem = std::fs::read(path).map_err(|e| problem(format!("cannot read: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| problem(format!("not a PEM certificate bundle: {}", describe(&e))))?;
            if certs.is_empty() {
                return Err(problem("holds no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| OutboundConfigError::Client(describe(&e)))?;
        Ok(OutboundClient {
            backend: backend.into(),
            policy,
            limits,
            http,
            pins,
            lookup,
            stats: Arc::new(OutboundStats::new()),
        })
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    pub fn limits(&self) -> ExchangeLimits {
        self.limits
    }

    /// This backend's counters.
    pub fn stats(&self) -> &Arc<OutboundStats> {
        &self.stats
    }

    async fn exchange(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let checked = self.policy.check_destination(&request)?;
        let _pin = self.check_addresses(&checked).await?;

        let method = reqwest::Method::from_bytes(checked.method().as_bytes())
            .map_err(|_| OutboundError::InvalidRequest("the method is not a valid token".into()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in checked.headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                OutboundError::InvalidRequest("a header name is not a valid token".into())
            })?;
            let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                OutboundError::InvalidRequest(format!("the value of header {name} is not valid"))
            })?;
            headers.append(name, value);
        }
        for (name, secret) in checked.injected() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                OutboundError::InvalidRequest("an injected header name is not valid".into())
            })?;
            let mut value = HeaderValue::from_bytes(secret.expose().as_bytes()).map_err(|_| {
                OutboundError::InvalidRequest(format!("the injected value of {name} is not valid"))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = self
            .http
            .request(method, checked.url().clone())
            .headers(headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.map_err(map_error)?;

        let status = response.status().as_u16();
        let mut header_bytes = 0usize;
        let mut response_headers = Vec::with_capacity(response.headers().len());
        for (name, value) in response.headers() {
            header_bytes += name.as_str().len() + value.len();
            if response_headers.len() >= self.limits.max_response_headers
                || header_bytes > self.limits.max_response_header_bytes
            {
                return Err(OutboundError::TooLarge(format!(
                    "the response headers exceed the limit ({} headers, {} bytes)",
                    self.limits.max_response_headers, self.limits.max_response_header_bytes
                )));
            }
            response_headers.push((
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }

        let max = self.limits.max_response_bytes;
        let too_large = || {
            OutboundError::TooLarge(format!(
                "the response body is larger than the {max}-byte limit"
            ))
        };
        // A declared length over the cap is refused before reading a byte; a declared
        // length under it only sizes the first allocation, and the count below decides.
        let declared = response.content_length();
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let initial = declared.map_or(0, |len| len as usize).min(64 * 1024);
        let mut body = Vec::with_capacity(initial);
        while let Some(chunk) = response.chunk().await.map_err(map_error)? {
            if chunk.len() > max - body.len() {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse {
            status,
            headers: response_headers,
            body,
        })
    }

    /// Check the address of an IP literal, or resolve the name and check every address,
    /// then pin what was checked. `None` for IP literals (nothing to pin).
    async fn check_addresses(&self, checked: &Checked) -> Result<Option<PinGuard>, OutboundError> {
        let name = match checked.host() {
            Host::Ip(ip) => {
                self.check_address(checked, *ip)?;
                return Ok(None);
            }
            Host::Domain(name) => name,
        };
        let addrs = self
            .lookup
            .lookup(name, checked.port())
            .await
            .map_err(|e| OutboundError::Connection(format!("cannot resolve {name}: {e}")))?;
        if addrs.is_empty() {
            return Err(OutboundError::Connection(format!(
                "{name} resolved to no address"
            )));
        }
        for ip in &addrs {
            self.check_address(checked, *ip)?;
        }
        Ok(Some(self.pins.pin(name, addrs)))
    }

    fn check_address(&self, checked: &Checked, ip: std::net::IpAddr) -> Result<(), OutboundError> {
        self.policy.check_address(checked, ip).inspect_err(|_| {
            self.stats.record_blocked_address();
        })
    }
}

#[async_trait]
impl HttpSender for OutboundClient {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let url = loggable_url(&request.url);
        let method = super::http_syntax::quote(&request.method, 32);
        let result = match tokio::time::timeout(self.limits.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout(format!(
                "no complete response within {} ms",
                self.limits.timeout.as_millis()
            ))),
        };
        match &result {
            Ok(response) => {
                self.stats.record_sent();
                tracing::debug!(
                    backend = %self.backend,
                    method = %method,
                    url = %url,
                    status = response.status,
                    bytes = response.body.len(),
                    "outbound request"
                );
            }
            Err(error) => {
                self.stats.record_error(error);
                tracing::warn!(
                    backend = %self.backend,
                    method = %method,
                    url = %url,
                    reason = %error,
                    "outbound request refused or failed"
                );
            }
        }
        result
    }
}

/// Map a reqwest failure to the guest-facing kind. The message is built from the error
/// chain with the URL removed (it may hold a query string).
fn map_error(error: reqwest::Error) -> OutboundError {
    let error = error.without_url();
    let message = describe(&error);
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = source {
        // hyper reports a head over its header-count or buffer limit as a parse error
        // "message head is too large" (`is_parse_too_large` exists only with hyper's
        // server feature); `response_header_floods_are_too_large` pins this mapping.
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_parse()
            && h.to_string().contains("too large")
        {
            return OutboundError::TooLarge(format!("the response head is too large: {message}"));
        }
        source = e.source();
    }
    if error.is_timeout() {
        OutboundError::Timeout(message)
    } else if error.is_builder() {
        OutboundError::InvalidRequest(message)
    } else {
        OutboundError::Connection(message)
    }
}

/// An error and its sources, joined by `: `, repeats dropped, at most 400 characters.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    let joined = parts.join(": ");
    if joined.chars().count() > 400 {
        let cut: String = joined.chars().take(400).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::outbound::config::InjectHeader;
    use crate::outbound::resolve::StaticLookup;
    use crate::secret::Secret;

    const TOKEN: &str = "s.bootstrap-token-the-guest-never-sees";
    /// Connections a test server accepts before it stops: every loop here is bounded.
    const MAX_CONNECTIONS: usize = 8;

    /// A raw HTTP server on 127.0.0.1: reads each request (head plus a Content-Length
    /// body), records it, and lets `respond` write whatever bytes it likes — including
    /// lies. Stops after [`MAX_CONNECTIONS`] connections or when dropped.
    struct TestServer {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TestServer {
        async fn start<F, Fut>(respond: F) -> TestServer
        where
            F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let respond = Arc::new(respond);
            let (a, r) = (Arc::clone(&accepted), Arc::clone(&requests));
            let task = tokio::spawn(async move {
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    a.fetch_add(1, Ordering::SeqCst);
                    let (r, respond) = (Arc::clone(&r), Arc::clone(&respond));
                    tokio::spawn(async move {
                        let request = read_request(&mut stream).await;
                        r.lock().unwrap().push(request.clone());
                        respond(stream, request).await;
                    });
                }
            });
            TestServer {
                addr,
                accepted,
                requests,
                task,
            }
        }

        fn port(&self) -> u16 {
            self.addr.port()
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port())
        }

        fn rule(&self) -> String {
            format!("http://127.0.0.1:{}", self.port())
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Read one request: the head, then as many body bytes as Content-Length says (at most
    /// 1 MiB), within 5 s.
    async fn read_request(stream: &mut TcpStream) -> String {
        let read = async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                if let Some(end) = head_end {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(1 << 20);
                    if buf.len() >= end + 4 + length {
                        break;
                    }
                }
                if buf.len() > 2 << 20 {
                    break;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            String::from_utf8_lossy(&buf).into_owned()
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap_or_default()
    }

    async fn respond_raw(mut stream: TcpStream, bytes: Vec<u8>) {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    }

    fn ok_response(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Answers 200 with the request it received as the body.
    async fn echo_server() -> TestServer {
        TestServer::start(|stream, request| respond_raw(stream, ok_response(&request))).await
    }

    fn config(rules: &[String]) -> OutboundConfig {
        OutboundConfig {
            allowed_outbound: rules.to_vec(),
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            ..OutboundConfig::default()
        }
    }

    fn client(config: &OutboundConfig) -> OutboundClient {
        OutboundClient::new("test-backend", config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get(url: &str) -> OutboundRequest {
        OutboundRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
        }
    }

    fn header(name: &str, value: &str) -> (String, String) {
        (name.into(), value.into())
    }

    /// A lookup that counts how often it was asked.
    struct CountingLookup {
        inner: StaticLookup,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Lookup for CountingLookup {
        async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.lookup(host, port).await
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn allowed_request_succeeds_and_injected_header_arrives() {
        let server = echo_server().await;
        let cfg = OutboundConfig {
            inject_headers: vec![InjectHeader {
                destination: server.rule(),
                name: "X-Vault-Token".into(),
                value: Secret::new(TOKEN.into()).unwrap(),
            }],
            ..config(&[server.rule()])
        };
        let c = client(&cfg);
        let mut request = get(&server.url("/v1/secret/data/app?version=2"));
        request.method = "POST".into();
        request.headers = vec![
            header("X-Guest", "hello"),
            header("Content-Type", "text/plain"),
        ];
        request.body = Some(b"payload".to_vec());
        let response = c.send(request).await.unwrap();
        assert_eq!(response.status, 200);
        let seen = String::from_utf8(response.body).unwrap();
        assert!(
            seen.starts_with("POST /v1/secret/data/app?version=2 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(
            seen.contains(&format!("x-vault-token: {TOKEN}\r\n")),
            "{seen}"
        );
        assert!(seen.contains("x-guest: hello\r\n"), "{seen}");
        assert!(seen.contains("content-length: 7\r\n"), "{seen}");
        assert!(
            seen.contains(&format!("host: 127.0.0.1:{}\r\n", server.port())),
            "{seen}"
        );
        assert!(seen.ends_with("\r\n\r\npayload"), "{seen}");
        assert!(
            response
                .headers
                .iter()
                .any(|(n, v)| n == "content-length" && !v.is_empty())
        );

        // The guest may not set the injected header itself, in any case; nothing is sent.
        for name in ["X-Vault-Token", "x-vault-token"] {
            let mut request = get(&server.url("/"));
            request.headers = vec![header(name, "guessed")];
            let err = c.send(request).await.unwrap_err();
            let OutboundError::Denied(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("set by the host"), "{msg}");
            assert!(!msg.contains(TOKEN) && !msg.contains("guessed"), "{msg}");
        }
        assert_eq!(server.accepted(), 1);
        let stats = c.stats().snapshot();
        assert_eq!((stats.sent, stats.denied), (1, 2));
        assert!(!format!("{c:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn host_not_on_the_list_is_denied_before_any_lookup_or_connection() {
        let allowed = echo_server().await;
        let other = echo_server().await;
        let lookup = Arc::new(CountingLookup {
            inner: StaticLookup::new([("vault.test", vec![ip("127.0.0.1")])]),
            calls: AtomicUsize::new(0),
        });
        let c =
            OutboundClient::with_lookup("b", &config(&[allowed.rule()]), lookup.clone()).unwrap();
        for url in [
            other.url("/"),
            format!("http://vault.test:{}/", other.port()),
            format!("https://127.0.0.1:{}/", allowed.port()),
        ] {
            let err = c.send(get(&url)).await.unwrap_err();
            assert!(
                matches!(&err, OutboundError::Denied(m) if m.contains("no allowed_outbound entry")),
                "{url}: {err:?}"
            );
        }
        assert_eq!(lookup.calls.load(Ordering::SeqCst), 0);
        assert_eq!(other.accepted(), 0);
        assert_eq!(allowed.accepted(), 0);
        assert_eq!(c.stats().snapshot().denied, 3);
    }

    #[tokio::test]
    async fn localhost_is_denied_unless_private_networks_are_allowed() {
        let server = echo_server().await;
        let rule = format!("http://localhost:{}", server.port());
        let url = format!("http://localhost:{}/", server.port());

        let closed = client(&config(std::slice::from_ref(&rule)));
        let err = closed.send(get(&url)).await.unwrap_err();
        let OutboundError::Denied(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.starts_with("localhost resolves to "), "{msg}");
        assert!(
            msg.contains("loopback") && msg.contains("allow_private_networks"),
            "{msg}"
        );
        assert_eq!(server.accepted(), 0);
        let stats = closed.stats().snapshot();
        assert_eq!((stats.denied, stats.blocked_address), (1, 1));

        // Also reachable by name when an entry names the address for the same port.
        let named = client(&config(&[
            rule.clone(),
            server.rule(),
            format!("http://[::1]:{}", server.port()),
        ]));
        assert_eq!(named.send(get(&url)).await.unwrap().status, 200);

        let open = client(&OutboundConfig {
            allow_private_networks: true,
            ..config(&[rule])
        });
        let response = open.send(get(&url)).await.unwrap();
        assert_eq!(response.status, 200);
        let seen = String::from_utf8(response.body).unwrap();
        assert!(
            seen.contains(&format!("host: localhost:{}\r\n", server.port())),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked_and_only_checked_ones_are_used() {
        let server = echo_server().await;
        let port = server.port();
        let lookup = Arc::new(StaticLookup::new([
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("mixed.test", vec![ip("127.0.0.1"), ip("10.0.0.1")]),
            ("mapped.test", vec![ip("::ffff:169.254.169.254")]),
            ("vault.test", vec![ip("127.0.0.1")]),
        ]));
        let cfg = config(&[format!("http://*.test:{port}"), server.rule()]);
        let c = OutboundClient::with_lookup("b", &cfg, lookup.clone()).unwrap();
        for (name, reason) in [
            ("metadata.test", "always blocked"),
            ("mapped.test", "always blocked"),
            ("mixed.test", "10.0.0.1, which is a private network address"),
            ("unknown.test", "cannot resolve"),
        ] {
            let err = c
                .send(get(&format!("http://{name}:{port}/")))
                .await
                .unwrap_err();
            assert!(err.to_string().contains(reason), "{name}: {err}");
        }
        assert_eq!(server.accepted(), 0);
        // vault.test exists only in the static table: reaching the server proves the
        // connection went to the checked address, not to a second (system) lookup.
        let response = c
            .send(get(&format!("http://vault.test:{port}/x")))
            .await
            .unwrap();
        let seen = String::from_utf8(response.body).unwrap();
        assert!(
            seen.contains(&format!("host: vault.test:{port}\r\n")),
            "{seen}"
        );

        let open = OutboundClient::with_lookup(
            "b",
            &OutboundConfig {
                allow_private_networks: true,
                ..cfg
            },
            lookup,
        )
        .unwrap();
        let err = open
            .send(get(&format!("http://metadata.test:{port}/")))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Denied(_)), "{err:?}");
        let stats = open.stats().snapshot();
        assert_eq!(stats.blocked_address, 1);
    }

    #[tokio::test]
    async fn ip_literal_metadata_is_denied_without_connecting() {
        let c = client(&OutboundConfig {
            allow_private_networks: true,
            ..config(&["http://0.0.0.0/0:*".into(), "http://[::]/0:*".into()])
        });
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:169.254.169.254]/",
            "http://169.254.169.254./",
        ] {
            let err = c.send(get(url)).await.unwrap_err();
            assert!(
                matches!(&err, OutboundError::Denied(m) if m.contains("metadata")),
                "{url}: {err:?}"
            );
        }
        assert_eq!(c.stats().snapshot().blocked_address, 6);
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let server = TestServer::start(|stream, _| {
            respond_raw(
                stream,
                b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let response = c.send(get(&server.url("/"))).await.unwrap();
        assert_eq!(response.status, 302);
        assert!(response.headers.contains(&(
            "location".to_string(),
            "http://169.254.169.254/latest/meta-data/".to_string()
        )));
        assert_eq!(server.accepted(), 1);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].starts_with("GET / HTTP/1.1\r\n"),
            "{requests:?}"
        );
    }

    /// Writes `total` body bytes in 64 KiB chunks after `head`, stopping at the first write
    /// error; records how much it managed to write.
    async fn stream_body(
        mut stream: TcpStream,
        head: String,
        total: usize,
        written: Arc<AtomicUsize>,
    ) {
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            written.store(sent, Ordering::SeqCst);
        }
    }

    const HUNDRED_MB: usize = 100 * 1024 * 1024;

    #[tokio::test]
    async fn huge_response_is_too_large_quickly() {
        for declared in [true, false] {
            let written = Arc::new(AtomicUsize::new(0));
            let w = Arc::clone(&written);
            let server = TestServer::start(move |stream, _| {
                let head = if declared {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
                };
                stream_body(stream, head, HUNDRED_MB, Arc::clone(&w))
            })
            .await;
            let c = client(&config(&[server.rule()]));
            let start = Instant::now();
            let err = c.send(get(&server.url("/big"))).await.unwrap_err();
            assert!(
                matches!(&err, OutboundError::TooLarge(m) if m.contains("1048576")),
                "{err:?}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{:?}",
                start.elapsed()
            );
            // The server could not push the whole 100 MB: the client stopped reading.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sent = written.load(Ordering::SeqCst);
            assert!(
                sent < HUNDRED_MB / 4,
                "declared={declared}: server wrote {sent} bytes"
            );
        }
    }

    #[tokio::test]
    async fn lying_short_content_length_is_not_over_read() {
        let written = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&written);
        let server = TestServer::start(move |stream, _| {
            stream_body(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".into(),
                5 * 1024 * 1024,
                Arc::clone(&w),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let start = Instant::now();
        let response = c.send(get(&server.url("/"))).await.unwrap();
        assert_eq!(response.body, b"xxxxxxxxxx");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn lying_long_content_length_then_close_is_a_connection_error() {
        let server = TestServer::start(|stream, _| {
            respond_raw(
                stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b".to_vec(),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let start = Instant::now();
        let err = c.send(get(&server.url("/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::Connection(_)), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(c.stats().snapshot().connection, 1);
    }

    #[tokio::test]
    async fn lying_content_length_above_the_cap_is_refused_unread() {
        let server = TestServer::start(|stream, _| {
            respond_raw(
                stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\nshort".to_vec(),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let err = c.send(get(&server.url("/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::TooLarge(_)), "{err:?}");
    }

    /// Sends `head`, then one byte a second, at most 20 bytes.
    async fn drip(mut stream: TcpStream, head: &'static str) {
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"x").await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn slow_drip_hits_the_total_timeout() {
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-Slow: ",
        ] {
            let server = TestServer::start(move |stream, _| drip(stream, head)).await;
            let c = client(&OutboundConfig {
                timeout_ms: 300,
                ..config(&[server.rule()])
            });
            let start = Instant::now();
            let err = c.send(get(&server.url("/"))).await.unwrap_err();
            let elapsed = start.elapsed();
            assert!(matches!(err, OutboundError::Timeout(_)), "{err:?}");
            assert!(
                elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
                "{elapsed:?}"
            );
            assert_eq!(c.stats().snapshot().timeout, 1);
        }
    }

    #[tokio::test]
    async fn crlf_in_a_header_is_an_invalid_request_and_sends_nothing() {
        let server = echo_server().await;
        let c = client(&config(&[server.rule()]));
        for (name, value) in [
            ("X-A", "v\r\nX-Injected: 1"),
            ("X-A\r\nX-Injected", "1"),
            ("X-A", "v\nHost: evil"),
            ("X-A", "v\0"),
        ] {
            let mut request = get(&server.url("/"));
            request.headers = vec![header(name, value)];
            let err = c.send(request).await.unwrap_err();
            assert!(matches!(err, OutboundError::InvalidRequest(_)), "{err:?}");
        }
        let mut request = get(&server.url("/"));
        request.headers = vec![header("Host", "evil.example")];
        assert!(matches!(
            c.send(request).await,
            Err(OutboundError::Denied(_))
        ));
        assert_eq!(server.accepted(), 0);
        assert_eq!(c.stats().snapshot().invalid_request, 4);
    }

    #[tokio::test]
    async fn request_body_over_the_limit_is_too_large_and_sends_nothing() {
        let server = echo_server().await;
        let c = client(&OutboundConfig {
            max_request_bytes: 16,
            ..config(&[server.rule()])
        });
        let mut request = get(&server.url("/"));
        request.method = "PUT".into();
        request.body = Some(vec![0; 17]);
        assert!(matches!(
            c.send(request).await,
            Err(OutboundError::TooLarge(_))
        ));
        assert_eq!(server.accepted(), 0);
    }

    #[tokio::test]
    async fn response_header_floods_are_too_large() {
        let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
        let server = TestServer::start(move |stream, _| {
            respond_raw(
                stream,
                format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n").into_bytes(),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let err = c.send(get(&server.url("/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::TooLarge(_)), "{err:?}");

        let big = "v".repeat(100 * 1024);
        let server = TestServer::start(move |stream, _| {
            respond_raw(
                stream,
                format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes(),
            )
        })
        .await;
        let c = client(&config(&[server.rule()]));
        let err = c.send(get(&server.url("/"))).await.unwrap_err();
        assert!(
            matches!(&err, OutboundError::TooLarge(m) if m.contains("headers")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connection_failures_are_connection_errors() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = client(&config(&[
            format!("http://127.0.0.1:{port}"),
            "https://127.0.0.1:*".into(),
        ]));
        let err = c
            .send(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Connection(_)), "{err:?}");

        // TLS to a server that answers in plain HTTP: the handshake fails.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        let answer = tokio::spawn(async move {
            if let Ok((stream, _)) = plain.accept().await {
                respond_raw(stream, ok_response("not tls")).await;
            }
        });
        let err = c
            .send(get(&format!("https://127.0.0.1:{plain_port}/?token=abc")))
            .await
            .unwrap_err();
        let OutboundError::Connection(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(!msg.contains("token=abc"), "{msg}");
        answer.abort();
    }

    #[tokio::test]
    async fn zero_limits_and_bad_ca_bundles_are_config_errors() {
        for (cfg, field) in [
            (
                OutboundConfig {
                    timeout_ms: 0,
                    ..OutboundConfig::default()
                },
                "timeout_ms",
            ),
            (
                OutboundConfig {
                    connect_timeout_ms: 0,
                    ..OutboundConfig::default()
                },
                "connect_timeout_ms",
            ),
            (
                OutboundConfig {
                    max_response_bytes: 0,
                    ..OutboundConfig::default()
                },
                "max_response_bytes",
            ),
        ] {
            let err = OutboundClient::new("b", &cfg).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        for (path, problem) in [(missing, "cannot read"), (garbage, "no PEM certificate")] {
            let cfg = OutboundConfig {
                ca_bundle: Some(path.clone()),
                ..OutboundConfig::default()
            };
            let err = OutboundClient::new("b", &cfg).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(problem),
                "{msg}"
            );
        }
    }
}
