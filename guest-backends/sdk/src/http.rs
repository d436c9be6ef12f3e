//! Outbound HTTP as a backend sees it: a [`Request`] in, a complete [`Response`] out.
//!
//! In a component, [`Http`] is implemented over the WIT `http.send` import (the host checks
//! every request against the operator's allow-list and may inject headers such as
//! `X-Vault-Token`). In native tests it is implemented by [`crate::native::NativeHttp`].
//! Backends only ever see the trait, so the same code runs in both.
//!
//! Invariant: `Debug` of a request or response never shows a body or a header value, because
//! bodies carry secret values and headers carry tokens.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BackendError, status_error};
use crate::json;

/// The request method. `Other` carries extension methods such as Vault's `LIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    /// The method as sent on the wire (`GET`, `LIST`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request for the host to send. Build it with [`Request::new`] / [`Request::get`] and the
/// chaining setters.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// An absolute `http` or `https` URL without userinfo.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// `None` sends no body.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self { method, url: url.into(), headers: Vec::new(), body: None }
    }
    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }
    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }
    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header (appended; names are compared case-insensitively by servers).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header only when `value` is `Some` (e.g. an optional namespace or token).
    pub fn header_opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Serializes `value` as the JSON body and sets `Content-Type: application/json`.
    ///
    /// Serializing plain data (maps, strings, numbers, derive(Serialize) structs) cannot fail;
    /// if a custom `Serialize` does, the error is `internal` and names no data.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, BackendError> {
        let body = serde_json::to_vec(value)
            .map_err(|_| BackendError::internal("could not serialize a JSON request body"))?;
        Ok(self.header("Content-Type", "application/json").body(body))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// The upstream's complete answer, whatever its status (3xx included: redirects are never
/// followed for the guest).
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body parsed as JSON into `T`; `what` names the document for the error
    /// (e.g. `"Vault secret response"`). See [`json::parse`] for why the error never quotes
    /// the body.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, BackendError> {
        json::parse(&self.body, what)
    }

    /// The body as UTF-8 text; invalid UTF-8 is `internal`.
    pub fn text(&self, what: &str) -> Result<&str, BackendError> {
        std::str::from_utf8(&self.body)
            .map_err(|_| BackendError::internal(format!("{what}: response body is not UTF-8")))
    }

    /// `Ok(self)` for a 2xx, else the contract's status mapping ([`status_error`]) with
    /// `context`, and no upstream detail. Backends that can parse their store's error body
    /// should use [`status_error`] directly with that detail.
    pub fn error_for_status(self, context: &str) -> Result<Self, BackendError> {
        if self.is_success() { Ok(self) } else { Err(status_error(self.status, context, None)) }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Why no response could be returned; mirrors the WIT `http-error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The host's policy refused the request before sending it.
    Denied(String),
    /// The connect or total time limit passed.
    Timeout(String),
    /// No connection, or it broke (refused, reset, TLS, DNS).
    Connection(String),
    /// The request or response body exceeds the backend's limit.
    TooLarge(String),
    /// The request is malformed (bad URL, method, header).
    InvalidRequest(String),
    /// A per-call budget is spent (e.g. requests per call).
    LimitExceeded(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "refused by the host's outbound policy: {m}"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::Connection(m) => write!(f, "connection failed: {m}"),
            Self::TooLarge(m) => write!(f, "too large: {m}"),
            Self::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Self::LimitExceeded(m) => write!(f, "per-call limit reached: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for BackendError {
    /// How a transport failure surfaces to the host:
    /// - `denied` (host policy) and `invalid-request` ⇒ `invalid-config`: the operator's
    ///   `allowed_outbound` list or the backend's address must change, retrying will not help;
    /// - `timeout`, `connection`, `limit-exceeded` ⇒ `unavailable`: temporary;
    /// - `too-large` ⇒ `internal`: an answer the backend did not expect.
    fn from(e: HttpError) -> Self {
        let msg = e.to_string();
        match e {
            HttpError::Denied(_) | HttpError::InvalidRequest(_) => BackendError::InvalidConfig(msg),
            HttpError::Timeout(_) | HttpError::Connection(_) | HttpError::LimitExceeded(_) => {
                BackendError::Unavailable(msg)
            }
            HttpError::TooLarge(_) => BackendError::Internal(msg),
        }
    }
}

/// Sends one request and waits for the whole response. Implemented over the WIT import in
/// a component and by [`crate::native::NativeHttp`] in native tests.
pub trait Http {
    fn send(&self, req: &Request) -> Result<Response, HttpError>;
}

/// Percent-encodes `s` for use as one URL path segment or query value: everything except
/// RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded, so `/`, `?`, `#`,
/// `%` and spaces in a name can never change which resource is addressed.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes each `/`-separated segment of `path` with [`encode_component`], keeping
/// the separators: for store paths such as Vault's `team/app/db`.
pub fn encode_path(path: &str) -> String {
    path.split('/').map(encode_component).collect::<Vec<_>>().join("/")
}

/// Joins a base address and an absolute path (`/v1/...`) with exactly one `/` between.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bodies_or_header_values() {
        let req = Request::post("http://x/").header("X-Vault-Token", "hvs.SECRET").body("s3cret");
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("SECRET") && !dbg.contains("s3cret"), "{dbg}");
        let resp =
            Response { status: 200, headers: vec![("Set".into(), "tok".into())], body: b"value".to_vec() };
        let dbg = format!("{resp:?}");
        assert!(!dbg.contains("value\"") && !dbg.contains("tok"), "{dbg}");
    }

    #[test]
    fn encoding_keeps_names_inside_their_segment() {
        assert_eq!(encode_component("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
        assert_eq!(encode_component("héllo"), "h%C3%A9llo");
        assert_eq!(encode_path("team/my app"), "team/my%20app");
        assert_eq!(join_url("http://h:1/", "/v1/x"), "http://h:1/v1/x");
        assert_eq!(join_url("http://h:1", "v1/x"), "http://h:1/v1/x");
    }

    #[test]
    fn transport_errors_map_to_the_contract() {
        assert_eq!(BackendError::from(HttpError::Denied("x".into())).kind(), "invalid-config");
        assert_eq!(BackendError::from(HttpError::Timeout("x".into())).kind(), "unavailable");
        assert_eq!(BackendError::from(HttpError::Connection("x".into())).kind(), "unavailable");
        assert_eq!(BackendError::from(HttpError::TooLarge("x".into())).kind(), "internal");
    }

    #[test]
    fn error_for_status_passes_success() {
        let ok = Response { status: 204, headers: vec![], body: vec![] };
        assert!(ok.error_for_status("c").is_ok());
        let nf = Response { status: 404, headers: vec![], body: vec![] };
        assert_eq!(nf.error_for_status("c"), Err(BackendError::NotFound));
    }
}
