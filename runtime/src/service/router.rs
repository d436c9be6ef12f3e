//! Routes and the middleware every request passes through.
//!
//! Credential ids may contain `/` and `.` (Jentic Mini's do), so the credential routes use
//! one wildcard, `/v1/credentials/{*id}`, and split it on the raw (still percent-encoded)
//! path: a final literal `/value` segment selects the value, anything before it is the id.
//! So `GET /v1/credentials/a/b.c/value` resolves id `a/b.c`, and
//! `GET /v1/credentials/a/b.c` reads its metadata. An id that itself ends in `/value`
//! is written with its last slash encoded (`foo%2Fvalue`); `%` in an id is `%25`. Other
//! path parameters (toolkit, api and key ids) are single segments: encode `/` as `%2F`.
//!
//! Middleware (outermost first): request id, in-flight gauge, request timeout, access
//! metrics by route template; panics become a JSON 500 instead of a dropped connection.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use tower_http::catch_panic::CatchPanicLayer;

use super::errors::ApiError;
use super::{RequestId, ServiceState, management, operations, resolution};

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/openapi.json";
pub const CREDENTIALS: &str = "/v1/credentials";
pub const CREDENTIAL: &str = "/v1/credentials/{*id}";
pub const TOOLKITS: &str = "/v1/toolkits";
pub const TOOLKIT: &str = "/v1/toolkits/{toolkit}";
pub const TOOLKIT_CREDENTIALS: &str = "/v1/toolkits/{toolkit}/credentials";
pub const TOOLKIT_BINDING: &str = "/v1/toolkits/{toolkit}/credentials/{*credential}";
pub const TOOLKIT_KEYS: &str = "/v1/toolkits/{toolkit}/keys";
pub const TOOLKIT_KEY: &str = "/v1/toolkits/{toolkit}/keys/{key_id}";
pub const TOOLKIT_API_CREDENTIALS: &str = "/v1/toolkits/{toolkit}/apis/{api_id}/credentials";
pub const BINDINGS: &str = "/v1/bindings";
pub const BACKENDS: &str = "/v1/backends";
pub const AUDIT: &str = "/v1/audit";

/// Every (method, route) the router serves, as the OpenAPI document names them (the
/// credential wildcard is documented as its two shapes). The OpenAPI test checks the
/// document against this list and the end-to-end test requests each one.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", HEALTHZ),
    ("get", READYZ),
    ("get", METRICS),
    ("get", OPENAPI),
    ("get", CREDENTIALS),
    ("post", CREDENTIALS),
    ("get", "/v1/credentials/{id}"),
    ("put", "/v1/credentials/{id}"),
    ("delete", "/v1/credentials/{id}"),
    ("get", "/v1/credentials/{id}/value"),
    ("put", "/v1/credentials/{id}/value"),
    ("delete", "/v1/credentials/{id}/value"),
    ("get", TOOLKITS),
    ("post", TOOLKITS),
    ("get", TOOLKIT),
    ("put", TOOLKIT),
    ("delete", TOOLKIT),
    ("get", TOOLKIT_CREDENTIALS),
    ("put", "/v1/toolkits/{toolkit}/credentials/{credential}"),
    ("delete", "/v1/toolkits/{toolkit}/credentials/{credential}"),
    ("get", TOOLKIT_KEYS),
    ("post", TOOLKIT_KEYS),
    ("delete", TOOLKIT_KEY),
    ("get", TOOLKIT_API_CREDENTIALS),
    ("get", BINDINGS),
    ("get", BACKENDS),
    ("get", AUDIT),
];

pub(crate) fn build(state: Arc<ServiceState>) -> Router {
    Router::new()
        .route(HEALTHZ, get(operations::healthz))
        .route(READYZ, get(operations::readyz))
        .route(METRICS, get(operations::metrics))
        .route(OPENAPI, get(operations::openapi))
        .route(
            CREDENTIALS,
            get(management::list_credentials).post(management::create_credential),
        )
        .route(
            CREDENTIAL,
            get(credential_get)
                .put(credential_put)
                .delete(credential_delete),
        )
        .route(
            TOOLKITS,
            get(management::list_toolkits).post(management::create_toolkit),
        )
        .route(
            TOOLKIT,
            get(management::get_toolkit)
                .put(management::put_toolkit)
                .delete(management::delete_toolkit),
        )
        .route(
            TOOLKIT_CREDENTIALS,
            get(management::list_toolkit_credentials),
        )
        .route(
            TOOLKIT_BINDING,
            put(management::bind).delete(management::unbind),
        )
        .route(
            TOOLKIT_KEYS,
            get(management::list_keys).post(management::create_key),
        )
        .route(TOOLKIT_KEY, delete(management::revoke_key))
        .route(TOOLKIT_API_CREDENTIALS, get(resolution::resolve_api))
        .route(BINDINGS, get(management::list_bindings))
        .route(BACKENDS, get(management::list_backends))
        .route(AUDIT, get(management::audit))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Which credential operation a wildcard path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialPath {
    Metadata(String),
    Value(String),
}

/// Split `/v1/credentials/…` into the id and whether `/value` follows (see the module
/// doc for the rule).
pub fn parse_credential_path(raw_path: &str) -> Result<CredentialPath, ApiError> {
    let rest = raw_path
        .strip_prefix("/v1/credentials/")
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    let (raw_id, value) = match rest.strip_suffix("/value") {
        Some(id) if !id.is_empty() => (id, true),
        _ => (rest, false),
    };
    let id = percent_decode(raw_id)?;
    if id.is_empty() {
        return Err(ApiError::not_found("no credential id in the path"));
    }
    Ok(if value {
        CredentialPath::Value(id)
    } else {
        CredentialPath::Metadata(id)
    })
}

/// Decode `%XX` escapes; the result must be UTF-8.
pub fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_path",
            "the path has an invalid percent-escape or is not UTF-8",
        )
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let text = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

async fn credential_get(state: State<Arc<ServiceState>>, req: Request) -> Response {
    match parse_credential_path(req.uri().path()) {
        Ok(CredentialPath::Metadata(id)) => management::get_credential(state, id, req).await,
        Ok(CredentialPath::Value(id)) => resolution::resolve_value(state, id, req).await,
        Err(e) => e.into_response(),
    }
}

async fn credential_put(state: State<Arc<ServiceState>>, req: Request) -> Response {
    match parse_credential_path(req.uri().path()) {
        Ok(CredentialPath::Metadata(id)) => management::put_credential(state, id, req).await,
        Ok(CredentialPath::Value(id)) => management::put_value(state, id, req).await,
        Err(e) => e.into_response(),
    }
}

async fn credential_delete(state: State<Arc<ServiceState>>, req: Request) -> Response {
    match parse_credential_path(req.uri().path()) {
        Ok(CredentialPath::Metadata(id)) => management::delete_credential(state, id, req).await,
        Ok(CredentialPath::Value(id)) => management::delete_value(state, id, req).await,
        Err(e) => e.into_response(),
    }
}

async fn unknown_route() -> Response {
    ApiError::not_found("no such route; see /openapi.json").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
    .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a crate::metrics::Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.http_in_flight(-1);
    }
}

async fn observe(State(state): State<Arc<ServiceState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |m| Arc::<str>::from(m.as_str()));
    let method = req.method().clone();
    let request_id = state.next_request_id();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    state.metrics.http_in_flight(1);
    let _in_flight = InFlight(&state.metrics);
    let limit = state.config.request_timeout();
    let mut resp = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout(limit).into_response(),
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    state
        .metrics
        .http_request(&route, method.as_str(), status, elapsed);
    tracing::debug!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        elapsed_us = elapsed.as_micros() as u64,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_paths_split_on_the_last_literal_value_segment() {
        use CredentialPath::*;
        let cases = [
            ("/v1/credentials/a", Metadata("a".into())),
            ("/v1/credentials/a/b.c", Metadata("a/b.c".into())),
            ("/v1/credentials/a/b.c/value", Value("a/b.c".into())),
            ("/v1/credentials/value", Metadata("value".into())),
            ("/v1/credentials/value/value", Value("value".into())),
            ("/v1/credentials/foo%2Fvalue", Metadata("foo/value".into())),
            (
                "/v1/credentials/foo%2Fvalue/value",
                Value("foo/value".into()),
            ),
            ("/v1/credentials/100%25/value", Value("100%".into())),
            ("/v1/credentials/%2E%2E/x", Metadata("../x".into())),
        ];
        for (path, want) in cases {
            assert_eq!(parse_credential_path(path).unwrap(), want, "{path}");
        }
        for bad in [
            "/v1/credentials/%zz",
            "/v1/credentials/%ff",
            "/v1/credentials/a%2",
        ] {
            assert_eq!(
                parse_credential_path(bad).unwrap_err().code,
                "invalid_path",
                "{bad}"
            );
        }
        assert_eq!(
            parse_credential_path("/v1/credentials/").unwrap_err().code,
            "not_found"
        );
    }
}
