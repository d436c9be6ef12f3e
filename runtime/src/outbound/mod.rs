//! The outbound-HTTP capability: the only way a sandboxed backend reaches the network.
//!
//! Policy (what may be sent where: allow-list parsing and matching, URL and header rules,
//! blocked networks) is pure code in `policy`; enforcement (resolving, pinning the checked
//! address, sending with reqwest, timeouts and size caps) only carries out what policy
//! decided. The sandbox talks to this module through [`HttpSender`], so it never sees a
//! socket and tests can answer requests in-process.

pub mod address;
pub mod client;
pub mod config;
pub mod http_syntax;
pub mod policy;
pub mod resolve;
pub mod rule;
pub mod stats;

use async_trait::async_trait;

/// A request as handed over by a guest (already converted from the WIT `http.request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Upper-case method token, e.g. `GET`, `LIST`.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The upstream's complete answer (3xx included: redirects are never followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why no response was returned: the WIT `http-error` cases, one to one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("denied by policy: {0}")]
    Denied(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}

/// Sends requests on behalf of one backend. Implementations enforce that backend's policy
/// and limits; the sandbox adds the per-call request budget on top.
#[async_trait]
pub trait HttpSender: Send + Sync {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError>;
}
