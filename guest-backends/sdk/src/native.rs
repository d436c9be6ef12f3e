//! Native-only helpers for running a backend's full logic in `cargo test`: an HTTP client,
//! log sinks, and fixture utilities for real or fake servers. Absent from every wasm build.
//!
//! Invariant: [`NativeHttp`] reaches loopback addresses only (`127.0.0.0/8`, `::1`,
//! `localhost`), so a test can never send traffic anywhere but this machine.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Http, HttpError, Level, Log, Request, Response};

/// The largest response [`NativeHttp`] reads (like the host's response-size limit).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A minimal blocking HTTP/1.1 client over `std::net::TcpStream` for `http://` loopback
/// URLs: one connection per request (`Connection: close`), `Content-Length` and chunked
/// bodies, a timeout on connect and on every read/write. Redirects are returned, not
/// followed, as the host does.
#[derive(Clone, Debug)]
pub struct NativeHttp {
    timeout: Duration,
}

impl Default for NativeHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl NativeHttp {
    /// A client with a 10 s timeout.
    pub fn new() -> Self {
        Self { timeout: Duration::from_secs(10) }
    }

    /// A client with `timeout` for connect and for each read or write.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { timeout }
    }
}

fn io_error(e: std::io::Error) -> HttpError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => HttpError::Timeout(e.to_string()),
        _ => HttpError::Connection(e.to_string()),
    }
}

/// Splits `http://authority/path?query` into (authority, path-and-query).
fn split_url(url: &str) -> Result<(&str, &str), HttpError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        HttpError::InvalidRequest("the native test client speaks plain http:// only".into())
    })?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(HttpError::InvalidRequest("URL has no host, or has userinfo".into()));
    }
    let path = path.split('#').next().unwrap_or("/");
    Ok((authority, path))
}

fn loopback_addr(authority: &str) -> Result<SocketAddr, HttpError> {
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, rest)| rest.starts_with(':')),
        None => authority.contains(':'),
    };
    let with_port = if has_port { authority.to_string() } else { format!("{authority}:80") };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| HttpError::Connection(format!("cannot resolve {authority}: {e}")))?
        .collect();
    addrs.into_iter().find(|a| is_loopback(a.ip())).ok_or_else(|| {
        HttpError::Denied(format!("{authority} is not a loopback address (native test client)"))
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn check_header_text(s: &str) -> Result<(), HttpError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(HttpError::InvalidRequest("CR, LF or NUL in a header".into()))
    } else {
        Ok(())
    }
}

impl Http for NativeHttp {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let (authority, path) = split_url(&req.url)?;
        let addr = loopback_addr(authority)?;
        let method = req.method.as_str();
        if method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(HttpError::InvalidRequest("method is not an RFC 9110 token".into()));
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in &req.headers {
            check_header_text(name)?;
            check_header_text(value)?;
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = req.body.as_deref().unwrap_or_default();
        if req.body.is_some() || matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");

        let mut stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(io_error)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io_error)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io_error)?;
        stream.write_all(head.as_bytes()).map_err(io_error)?;
        stream.write_all(body).map_err(io_error)?;
        stream.flush().map_err(io_error)?;

        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(io_error)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge(format!("response over {MAX_RESPONSE_BYTES} bytes")));
            }
        }
        parse_response(&raw, method == "HEAD")
    }
}

/// Parses a complete HTTP/1.1 response read until the server closed the connection.
pub fn parse_response(raw: &[u8], head_request: bool) -> Result<Response, HttpError> {
    let bad = |what: &str| HttpError::Connection(format!("malformed HTTP response: {what}"));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("header without colon"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
    let body = if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if rest.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

/// Decodes a chunked transfer-coded body (RFC 9112 §7.1); trailers are ignored.
pub fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = |what: &str| HttpError::Connection(format!("malformed chunked body: {what}"));
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("no chunk size line"))?;
        let size_line = std::str::from_utf8(&data[..line_end]).map_err(|_| bad("size not UTF-8"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("size not hex"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunk shorter than its size"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Wraps an [`Http`] and records every request sent through it, so a test can check what a
/// backend sent (e.g. that no token header went out when the host injects it).
pub struct Recording<H> {
    inner: H,
    requests: Mutex<Vec<Request>>,
}

impl<H: Http> Recording<H> {
    /// Records requests sent through `inner`.
    pub fn new(inner: H) -> Self {
        Self { inner, requests: Mutex::new(Vec::new()) }
    }

    /// The requests sent so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl<H: Http> Http for Recording<H> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(req.clone());
        self.inner.send(req)
    }
}

/// A [`Log`] that keeps every line, so tests can assert that no secret was logged.
#[derive(Default)]
pub struct MemoryLog {
    lines: Mutex<Vec<(Level, String)>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|(_, l)| l.contains(needle))
    }
}

impl Log for MemoryLog {
    fn log(&self, level: Level, message: &str) {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((level, message.to_string()));
    }
}

/// A [`Log`] printing `[level] message` to stderr (shown by `cargo test` on failure).
pub struct StderrLog;

impl Log for StderrLog {
    fn log(&self, level: Level, message: &str) {
        eprintln!("[{level:?}] {message}");
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; a server started right after gets it
/// unless another process races for it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Calls `probe` every `interval` until it returns `Some` or `timeout` passes (bounded).
pub fn wait_for<T>(timeout: Duration, interval: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// A child process killed (and reaped) when dropped, so a failing test never leaves a test
/// server running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds executable `name` on `PATH`. When it is missing: panics if the environment has
/// `AIRLOCK_REQUIRE_TOOLS=1` (CI and `make test`, where a skip would hide a missing install
/// step), otherwise prints `SKIP: <test>: <name> not found (<hint>)` and returns `None`.
pub fn require_tool(name: &str, test: &str, hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    });
    if found.is_none() {
        if std::env::var("AIRLOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{test}: `{name}` is required (AIRLOCK_REQUIRE_TOOLS=1) but not on PATH; {hint}");
        }
        println!("SKIP: {test}: `{name}` not found on PATH ({hint})");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn parses_content_length_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA", false)
            .expect("parse");
        assert_eq!((r.status, r.body.as_slice(), r.header("x-a")), (200, &b"hello"[..], Some("b")));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", false)
            .expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", false).expect("parse");
        assert!(r.body.is_empty());
        assert!(parse_response(b"garbage", false).is_err());
        assert!(decode_chunked(b"5\r\nab").is_err());
    }

    #[test]
    fn refuses_non_loopback_and_non_http() {
        let http = NativeHttp::new();
        assert!(matches!(http.send(&Request::get("https://127.0.0.1/")), Err(HttpError::InvalidRequest(_))));
        assert!(matches!(http.send(&Request::get("http://192.0.2.1:80/")), Err(HttpError::Denied(_))));
        assert!(matches!(
            http.send(&Request::get("http://127.0.0.1:1/").header("a", "b\r\nc")),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn round_trip_against_a_loopback_server() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok").expect("write");
            String::from_utf8(got).expect("utf8")
        });
        let http = Recording::new(NativeHttp::new());
        let req = Request::post(format!("http://127.0.0.1:{port}/v1/x?y=1"))
            .header("X-Test", "1")
            .json(&serde_json::json!({"a": 1}))
            .expect("json");
        let resp = http.send(&req).expect("send");
        assert_eq!((resp.status, resp.body.as_slice()), (201, &b"ok"[..]));
        let sent = server.join().expect("server");
        assert!(sent.starts_with("POST /v1/x?y=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("X-Test: 1\r\n") && sent.contains("Content-Length: 7\r\n"), "{sent}");
        assert_eq!(http.requests().len(), 1);
    }

    #[test]
    fn connection_refused_is_a_connection_error() {
        let port = free_port().expect("port");
        let r = NativeHttp::with_timeout(Duration::from_secs(2))
            .send(&Request::get(format!("http://127.0.0.1:{port}/")));
        assert!(matches!(r, Err(HttpError::Connection(_))), "{r:?}");
    }
}
