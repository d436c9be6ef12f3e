//! The backend contract on the host side: what every credential store — the native Fernet
//! vault or a sandboxed WebAssembly component — offers the runtime.
//!
//! It mirrors `wit/credential-backend.wit` (`interface backend`): the same operations and
//! the same error cases, so a component's answer maps onto these types one to one.

use async_trait::async_trait;

use crate::secret::Secret;

/// What a backend is told about a credential: airlock's metadata, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    pub id: String,
    pub label: String,
    pub api_id: Option<String>,
    pub auth_type: String,
    /// Where the value lives in the backend's store, in that backend's syntax.
    pub locator: Option<String>,
}

/// Why a backend operation failed (the WIT `backend-error` variant). The strings are for
/// operators: no backend may put a secret value in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("no value stored")]
    NotFound,
    #[error("access denied: {0}")]
    Denied(String),
    #[error("backend unavailable (retryable): {0}")]
    Unavailable(String),
    #[error("invalid backend configuration: {0}")]
    InvalidConfig(String),
    #[error("operation not supported: {0}")]
    Unsupported(String),
    #[error("internal backend error: {0}")]
    Internal(String),
    /// A limit the host enforces on the backend was hit: a sandbox's CPU, memory or
    /// wall-time budget, its HTTP request count or byte caps. Raised by the host (the
    /// sandbox), never by a guest, so the service can tell "the backend was stopped" apart
    /// from "the backend failed" (`sandbox_limit`, HTTP 504).
    #[error("backend stopped at a limit: {0}")]
    LimitExceeded(String),
}

impl BackendError {
    /// A stable machine-readable name for the case, for metrics labels and API error codes.
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::NotFound => "not_found",
            BackendError::Denied(_) => "denied",
            BackendError::Unavailable(_) => "unavailable",
            BackendError::InvalidConfig(_) => "invalid_config",
            BackendError::Unsupported(_) => "unsupported",
            BackendError::Internal(_) => "internal",
            BackendError::LimitExceeded(_) => "limit_exceeded",
        }
    }

    /// Whether the failure says the store could not answer right now (as opposed to an
    /// authoritative answer such as "not found" or "denied"). Only these may be papered
    /// over with a stale cached value: serving stale after `Denied` would outlive a
    /// revocation upstream.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable(_) | BackendError::LimitExceeded(_)
        )
    }
}

/// A store of credential values. Implementations must be safe to call concurrently.
#[async_trait]
pub trait CredentialBackend: Send + Sync {
    /// The name this backend instance was configured under (e.g. `fernet`, `vault-prod`).
    fn name(&self) -> &str;

    /// What kind of backend it is (`fernet`, `wasm`).
    fn kind(&self) -> &'static str;

    /// Prepare for use (check keys, log in). Called once before the first operation.
    async fn init(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The value of one credential.
    async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError>;

    /// The values of several credentials: exactly one result per element of `creds`, in
    /// order. The default asks one at a time; stores with a batch API override it.
    async fn get_values(&self, creds: &[CredentialRef]) -> Vec<Result<Secret, BackendError>> {
        let mut out = Vec::with_capacity(creds.len());
        for cred in creds {
            out.push(self.get_value(cred).await);
        }
        out
    }

    /// Write the value of a credential.
    async fn store_value(&self, cred: &CredentialRef, value: &Secret) -> Result<(), BackendError>;

    /// Delete the value of a credential; `NotFound` when there was none.
    async fn delete_value(&self, cred: &CredentialRef) -> Result<(), BackendError>;

    /// Check that the store is reachable and usable; a short description on success.
    async fn health(&self) -> Result<String, BackendError>;
}
