//! API errors: one JSON shape, `{"error": {"code": "…", "message": "…"}}`, a stable
//! machine-readable `code` and the HTTP status that fits.
//!
//! Invariants: a message names ids and backends the caller already knows, never a value,
//! a token or text a backend produced. Backend failures in particular are reported by a
//! fixed message per case: a sandboxed backend's error string may quote its upstream's
//! response body, so it goes to the operator's log (truncated, control characters
//! stripped) and never into a response. Internal errors say only that they happened.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::audit::AuditError;
use crate::backend::BackendError;
use crate::catalog::CatalogError;
use crate::runtime::RuntimeError;
use crate::toolkit_keys::ToolkitKeyError;

/// Longest backend-supplied text written to the log per error: a guest that fails with a
/// megabyte of text cannot flood the operator's log (or smuggle a whole response body in).
const MAX_LOGGED_DETAIL: usize = 300;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    retry_after_secs: Option<u64>,
    challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            challenge: false,
        }
    }

    /// 401: no credentials, or credentials that are not (or no longer) valid.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 403: valid credentials that may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: well-formed input that breaks a rule (an id with a space, an unknown backend).
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn rate_limited(toolkit: &str, retry_after: std::time::Duration) -> ApiError {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after_secs: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("toolkit '{toolkit}' is over its rate limit; retry in {secs} s"),
            )
        }
    }

    pub fn timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the request did not finish within {} ms", limit.as_millis()),
        )
    }

    /// 500 with a generic message; `detail` goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }

    pub fn from_catalog(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Duplicate { .. } => ApiError::conflict(e.to_string()),
            CatalogError::NotFound { .. } => ApiError::not_found(e.to_string()),
            CatalogError::Invalid { .. } => ApiError::validation(e.to_string()),
            CatalogError::Sqlite(_) => ApiError::internal(&e),
        }
    }

    pub fn from_runtime(e: RuntimeError) -> ApiError {
        match e {
            RuntimeError::Catalog(c) => ApiError::from_catalog(c),
            RuntimeError::Backend {
                credential,
                backend,
                source,
            } => ApiError::from_backend(&backend, &credential, &source),
            RuntimeError::UnknownBackend { name, .. } => {
                tracing::warn!(backend = %name, "credential names a backend that is not configured");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backend_misconfigured",
                    format!("backend '{name}' is not configured on this server"),
                )
            }
            RuntimeError::BatchMismatch {
                backend,
                expected,
                got,
            } => {
                tracing::warn!(
                    backend = %backend,
                    expected,
                    got,
                    "backend returned the wrong number of results"
                );
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "backend_error",
                    format!("backend '{backend}' failed"),
                )
            }
            other => ApiError::internal(&other),
        }
    }

    /// The answer for a backend failure on `credential`. The backend's own text is
    /// logged, not returned.
    pub fn from_backend(backend: &str, credential: &str, e: &BackendError) -> ApiError {
        let (status, code, message) = match e {
            BackendError::NotFound => (
                StatusCode::NOT_FOUND,
                "value_not_found",
                format!("credential '{credential}' has no value in backend '{backend}'"),
            ),
            BackendError::Denied(_) => (
                StatusCode::BAD_GATEWAY,
                "backend_denied",
                format!("backend '{backend}' was refused access to credential '{credential}'"),
            ),
            BackendError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                format!("backend '{backend}' is unavailable; retry later"),
            ),
            BackendError::LimitExceeded(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "sandbox_limit",
                format!("backend '{backend}' was stopped at a sandbox limit"),
            ),
            BackendError::InvalidConfig(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_misconfigured",
                format!("backend '{backend}' is misconfigured; an operator must fix it"),
            ),
            BackendError::Unsupported(_) => (
                StatusCode::NOT_IMPLEMENTED,
                "backend_unsupported",
                format!("backend '{backend}' does not support this operation"),
            ),
            BackendError::Internal(_) => (
                StatusCode::BAD_GATEWAY,
                "backend_error",
                format!("backend '{backend}' failed"),
            ),
        };
        if !matches!(e, BackendError::NotFound) {
            tracing::warn!(
                backend,
                credential,
                code = e.code(),
                detail = %sanitize(&e.to_string()),
                "backend call failed"
            );
        }
        let mut err = ApiError::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE && code == "backend_unavailable" {
            err.retry_after_secs = Some(1);
        }
        err
    }

    pub fn from_keys(e: ToolkitKeyError) -> ApiError {
        match e {
            ToolkitKeyError::ToolkitNotFound(_) | ToolkitKeyError::NotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            ToolkitKeyError::Invalid { .. } => ApiError::validation(e.to_string()),
            other => ApiError::internal(&other),
        }
    }

    pub fn from_audit(e: AuditError) -> ApiError {
        match e {
            AuditError::Invalid { .. } => ApiError::bad_request("invalid_query", e.to_string()),
            other => ApiError::internal(&other),
        }
    }

    /// The outcome recorded in the audit log and metrics.
    pub fn outcome(&self) -> &'static str {
        self.code
    }
}

/// Backend text made safe for one log line: control characters replaced, length capped.
pub fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LOGGED_DETAIL)
        .collect();
    if text.chars().count() > MAX_LOGGED_DETAIL {
        out.push('…');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock\""),
            );
        }
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_map_to_fixed_messages() {
        let leaky = "upstream said: {\"data\":{\"password\":\"LEAK-ME\"}}";
        let cases = [
            (BackendError::NotFound, 404, "value_not_found"),
            (BackendError::Denied(leaky.into()), 502, "backend_denied"),
            (
                BackendError::Unavailable(leaky.into()),
                503,
                "backend_unavailable",
            ),
            (
                BackendError::LimitExceeded(leaky.into()),
                504,
                "sandbox_limit",
            ),
            (
                BackendError::InvalidConfig(leaky.into()),
                503,
                "backend_misconfigured",
            ),
            (
                BackendError::Unsupported(leaky.into()),
                501,
                "backend_unsupported",
            ),
            (BackendError::Internal(leaky.into()), 502, "backend_error"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from_backend("vault", "db/prod", &e);
            assert_eq!(api.status.as_u16(), status, "{e:?}");
            assert_eq!(api.code, code);
            assert!(!api.message.contains("LEAK-ME"), "{}", api.message);
        }
    }

    #[test]
    fn sanitize_strips_controls_and_caps() {
        assert_eq!(sanitize("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        assert_eq!(sanitize(&long).chars().count(), MAX_LOGGED_DETAIL + 1);
    }
}
