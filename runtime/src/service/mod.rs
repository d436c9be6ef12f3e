//! `airlock serve`: the multi-tenant credential service, an HTTP API over the [`Runtime`].
//!
//! - The **management API** (admin token) creates and changes credentials (metadata, and
//!   values written through their backend), toolkits, bindings and toolkit keys, and reads
//!   the backends and the audit log.
//! - The **resolution API** (toolkit key) resolves the values of credentials bound to the
//!   caller's toolkit, and nothing else.
//! - **Operations**: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, unauthenticated.
//!
//! Every management write, every resolution and every request made with a toolkit key is
//! an audit event (see [`crate::audit`]). No response but a resolution's (and a new
//! key's) carries a secret, and those are marked `Cache-Control: no-store`.

pub mod auth;
pub mod errors;
pub mod json;
pub mod management;
pub mod openapi;
pub mod operations;
pub mod resolution;
pub mod router;
pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

use crate::admin_tokens::AdminTokens;
use crate::audit::{Actor, AuditError, AuditEvent, AuditLog};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::runtime::Runtime;
use crate::token;
use crate::toolkit_keys::ToolkitKeys;

pub use auth::Caller;
pub use errors::ApiError;
pub use server::{Listener, serve};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid [server] settings: {0}")]
    Config(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

/// Shared state of one running service.
pub struct ServiceState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) config: ServerConfig,
    pub(crate) admin: AdminTokens,
    pub(crate) keys: ToolkitKeys,
    pub(crate) audit: AuditLog,
    pub(crate) limiter: RateLimiter,
    pub(crate) metrics: Arc<Metrics>,
    request_prefix: String,
    request_counter: AtomicU64,
}

/// The service: build it over a runtime, then [`serve`] its router.
#[derive(Clone)]
pub struct Service {
    state: Arc<ServiceState>,
}

impl Service {
    /// The service over `runtime`, with the `[server]` settings and the admin token setup.
    /// Starts the audit writer.
    pub fn new(
        runtime: Arc<Runtime>,
        config: ServerConfig,
        admin: AdminTokens,
    ) -> Result<Service, ServiceError> {
        let default_rate = config
            .rate_limit
            .default_rate()
            .map_err(ServiceError::Config)?;
        let mut overrides = std::collections::BTreeMap::new();
        for name in config.rate_limit.toolkits.keys() {
            let rate = config
                .rate_limit
                .toolkit_rate(name)
                .map_err(ServiceError::Config)?;
            overrides.insert(name.clone(), rate);
        }
        let metrics = runtime.metrics().clone();
        let audit = AuditLog::start(
            runtime.database().clone(),
            metrics.clone(),
            config.audit.retention(),
        )?;
        Ok(Service {
            state: Arc::new(ServiceState {
                keys: ToolkitKeys::new(runtime.database().clone()),
                runtime,
                admin,
                audit,
                limiter: RateLimiter::new(default_rate, overrides),
                metrics,
                request_prefix: token::random_hex(4)?,
                request_counter: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The HTTP routes, with every middleware in place.
    pub fn router(&self) -> Router {
        router::build(self.state.clone())
    }

    pub fn audit(&self) -> &AuditLog {
        &self.state.audit
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.state.runtime
    }
}

/// Per-request facts every handler needs: set by the router's middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl ServiceState {
    fn next_request_id(&self) -> Arc<str> {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{n:x}", self.request_prefix))
    }

    /// Start an audit event for `caller` doing `action`.
    pub(crate) fn draft(&self, ctx: &Ctx, caller: &Caller, action: &'static str) -> Draft {
        let mut event = match caller {
            Caller::Admin { .. } => AuditEvent::new(Actor::Admin, action),
            Caller::Toolkit { key } => {
                let mut e = AuditEvent::new(Actor::Toolkit, action);
                e.toolkit = Some(key.toolkit.clone());
                e
            }
        };
        event.key_id = Some(caller.key_id().to_owned());
        event.client_ip = ctx.client_ip;
        event.request_id = Some(ctx.request_id.to_string());
        Draft {
            audit: self.audit.clone(),
            event: Some(event),
            start: ctx.start,
        }
    }
}

/// What the handlers read from a request besides its body.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: Arc<str>,
    pub client_ip: Option<IpAddr>,
    pub start: Instant,
}

impl Ctx {
    pub fn of<B>(req: &Request<B>) -> Ctx {
        Ctx {
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_else(|| Arc::from("-")),
            client_ip: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            start: Instant::now(),
        }
    }
}

/// An audit event being filled in. Finished explicitly with the outcome; if the request
/// is dropped first (client gone, timeout), the event is recorded as `cancelled`.
pub(crate) struct Draft {
    audit: AuditLog,
    event: Option<AuditEvent>,
    start: Instant,
}

impl Draft {
    pub fn set(&mut self, f: impl FnOnce(&mut AuditEvent)) {
        if let Some(e) = &mut self.event {
            f(e);
        }
    }

    fn close(&mut self, result: &Result<Response, ApiError>) -> Option<AuditEvent> {
        let mut e = self.event.take()?;
        match result {
            Ok(resp) => {
                e.outcome = "ok".into();
                e.status = Some(resp.status().as_u16());
            }
            Err(err) => {
                e.outcome = err.outcome().into();
                e.status = Some(err.status.as_u16());
            }
        }
        e.latency = Some(self.start.elapsed());
        Some(e)
    }

    /// Record the outcome and wait until it is committed (management writes).
    pub async fn finish_durable(mut self, result: Result<Response, ApiError>) -> Response {
        if let Some(e) = self.close(&result) {
            self.audit.record_durable(e).await;
        }
        respond(result)
    }

    /// Record the outcome without waiting for the commit (resolutions and reads).
    pub async fn finish(mut self, result: Result<Response, ApiError>) -> Response {
        if let Some(e) = self.close(&result) {
            self.audit.record(e).await;
        }
        respond(result)
    }

    /// Record an outcome decided elsewhere (one event per credential of a batch).
    pub async fn finish_with(mut self, outcome: &str, status: StatusCode) {
        if let Some(mut e) = self.event.take() {
            e.outcome = outcome.to_owned();
            e.status = Some(status.as_u16());
            e.latency = Some(self.start.elapsed());
            self.audit.record(e).await;
        }
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if let Some(mut e) = self.event.take() {
            e.outcome = "cancelled".into();
            e.latency = Some(self.start.elapsed());
            self.audit.record_nowait(e);
        }
    }
}

/// The response for a handler's result.
pub(crate) fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// A plain JSON response.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = axum::response::IntoResponse::into_response(axum::Json(body));
    *resp.status_mut() = status;
    resp
}

/// A JSON response whose body holds a secret: serialized into a buffer that is zeroed
/// when the response is dropped, and marked `no-store` so no cache keeps it. (Copies that
/// hyper or the kernel make while sending are out of reach; this keeps airlock's own.)
pub(crate) fn secret_json<T: Serialize>(
    status: StatusCode,
    body: &T,
    size_hint: usize,
) -> Response {
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(size_hint * 2 + 512));
    if let Err(e) = serde_json::to_writer(&mut *buf, body) {
        return axum::response::IntoResponse::into_response(ApiError::internal(&e));
    }
    let mut resp = Response::new(Body::from(Bytes::from_owner(ZeroOnDrop(buf))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

struct ZeroOnDrop(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroOnDrop {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}
