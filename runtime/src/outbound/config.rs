//! The outbound-HTTP settings of one backend, as the config loader hands them over, and
//! the errors building a policy or client from them can raise.
//!
//! Every field has a safe default: with nothing set, a backend may send nothing at all
//! (empty allow-list), private networks are closed, and every limit is finite. Values of
//! `inject_headers` arrive already resolved: the config loader expands `${env:NAME}` and
//! `${file:PATH}` before building this struct, so nothing here reads the environment or
//! the file system (except the client loading `ca_bundle`).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::rule::RuleError;
use crate::secret::Secret;

/// Connect timeout: an unreachable or black-holed upstream costs a guest call at most this.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Total time for one request, DNS lookup to last body byte. Stops a slow-drip upstream
/// (one byte a second keeps every per-read timeout happy) from holding a call open.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Request body cap: a credential API request is small; this stops bulk exfiltration and
/// host memory pinning through the request path.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Response body cap, enforced while streaming: stops an upstream (or a guest pointing at a
/// large download) from filling host and guest memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Guest headers per request.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 64;
/// Total bytes of guest header names and values.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;
/// Response headers: a header flood is refused (the HTTP parser stops at this count).
pub const DEFAULT_MAX_RESPONSE_HEADERS: usize = 100;
/// Total bytes of response header names and values handed to the guest.
pub const DEFAULT_MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// One backend's outbound settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Allow-list entries (see `rule` for the syntax). Empty: no request is allowed.
    pub allowed_outbound: Vec<String>,
    /// Let resolved or literal addresses in loopback, private and other non-public ranges
    /// through. Metadata and link-local stay blocked regardless.
    pub allow_private_networks: bool,
    /// Headers the host adds for allowed destinations.
    pub inject_headers: Vec<InjectHeader>,
    /// PEM file of extra root certificates trusted for this backend (added to the
    /// system's roots), e.g. a private CA that signed `vault.internal`'s certificate.
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub max_request_headers: usize,
    pub max_request_header_bytes: usize,
    pub max_response_headers: usize,
    pub max_response_header_bytes: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allowed_outbound: Vec::new(),
            allow_private_networks: false,
            inject_headers: Vec::new(),
            ca_bundle: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            max_response_headers: DEFAULT_MAX_RESPONSE_HEADERS,
            max_response_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
        }
    }
}

/// A header the host adds to requests for one allowed destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectHeader {
    /// An entry of `allowed_outbound` (same syntax; must grant the same thing as one).
    pub destination: String,
    /// Header name, e.g. `X-Vault-Token`.
    pub name: String,
    /// The resolved value. Deserialising takes the string as it is: resolve `${...}`
    /// references before deserialising, or replace the value afterwards.
    #[serde(deserialize_with = "secret_from_string")]
    pub value: Secret,
}

fn secret_from_string<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let text = String::deserialize(d)?;
    Secret::new(text).map_err(serde::de::Error::custom)
}

/// Why a backend's outbound settings were refused. Never carries a header value.
#[derive(Debug, thiserror::Error)]
pub enum OutboundConfigError {
    #[error("allowed_outbound entry {0}")]
    Rule(RuleError),
    #[error("inject_headers destination {0}")]
    Destination(RuleError),
    #[error("inject_headers entry for {destination:?}: {problem}")]
    InjectHeader {
        destination: String,
        problem: String,
    },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("ca_bundle {}: {problem}", path.display())]
    CaBundle { path: PathBuf, problem: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_closed_and_finite() {
        let c = OutboundConfig::default();
        assert!(c.allowed_outbound.is_empty());
        assert!(!c.allow_private_networks);
        assert!(c.inject_headers.is_empty());
        assert_eq!(c.ca_bundle, None);
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.connect_timeout_ms, 5_000);
        assert_eq!(c.max_response_bytes, 1024 * 1024);
    }

    #[test]
    fn deserialises_with_defaults_and_rejects_unknown_keys() {
        let c: OutboundConfig = toml::from_str(
            r#"
            allowed_outbound = ["https://vault.internal:8200"]
            timeout_ms = 300
            [[inject_headers]]
            destination = "https://vault.internal:8200"
            name = "X-Vault-Token"
            value = "s.token"
            "#,
        )
        .unwrap();
        assert_eq!(c.allowed_outbound, ["https://vault.internal:8200"]);
        assert_eq!(c.timeout_ms, 300);
        assert_eq!(c.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(c.inject_headers[0].value.expose(), "s.token");
        assert!(!format!("{c:?}").contains("s.token"));

        let err = toml::from_str::<OutboundConfig>("allowed_outbounds = []").unwrap_err();
        assert!(err.to_string().contains("allowed_outbounds"), "{err}");
        let err = toml::from_str::<OutboundConfig>(
            "[[inject_headers]]\ndestination = \"https://v\"\nname = \"X\"\nvalue = \"\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
