//! The error every backend operation returns, mirroring the WIT `backend-error` variant.
//!
//! Invariant: no message built here or by a backend contains a secret value. Messages name
//! keys, paths, statuses and upstream error texts (which the stores write for operators),
//! never a value, a token or a request body. [`sanitize_detail`] bounds and cleans upstream
//! texts before they are embedded.

use std::fmt;

/// Why a backend operation failed. One case per WIT `backend-error` case; the host maps each
/// to a caller-visible outcome, so picking the right case matters more than the wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The store has no value at the locator (HTTP 404 or the store's equivalent).
    NotFound,
    /// The store refused: bad or expired credentials, or a policy forbids the path.
    Denied(String),
    /// A temporary condition (sealed, rate-limited, 5xx, unreachable, slow): retry later.
    Unavailable(String),
    /// The backend's configuration or a credential's locator is wrong.
    InvalidConfig(String),
    /// The operation is not offered by this store.
    Unsupported(String),
    /// A bug or an unexpected upstream answer.
    Internal(String),
}

impl BackendError {
    /// A [`BackendError::Denied`] with `msg`.
    pub fn denied(msg: impl Into<String>) -> Self {
        Self::Denied(msg.into())
    }
    /// A [`BackendError::Unavailable`] with `msg`.
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }
    /// A [`BackendError::InvalidConfig`] with `msg`.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::InvalidConfig(msg.into())
    }
    /// A [`BackendError::Unsupported`] with `msg`.
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::Unsupported(msg.into())
    }
    /// A [`BackendError::Internal`] with `msg`.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// The WIT case name (`not-found`, `denied`, ...), for logs and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::Denied(_) => "denied",
            Self::Unavailable(_) => "unavailable",
            Self::InvalidConfig(_) => "invalid-config",
            Self::Unsupported(_) => "unsupported",
            Self::Internal(_) => "internal",
        }
    }

    /// The message carried by the case (empty for `not-found`).
    pub fn message(&self) -> &str {
        match self {
            Self::NotFound => "",
            Self::Denied(m)
            | Self::Unavailable(m)
            | Self::InvalidConfig(m)
            | Self::Unsupported(m)
            | Self::Internal(m) => m,
        }
    }

    /// Whether a caller may retry later (only `unavailable`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not-found"),
            other => write!(f, "{}: {}", other.kind(), other.message()),
        }
    }
}

impl std::error::Error for BackendError {}

/// Maps an HTTP status to the matching error case, for a request described by `context`
/// (e.g. `"read secret/data/app"`), with an optional upstream `detail`.
///
/// The mapping every backend shares: 404 ⇒ `not-found`; 401/403 ⇒ `denied`;
/// 408/429/5xx ⇒ `unavailable` (temporary by definition); anything else (other 4xx, 3xx
/// since the host never follows redirects, 1xx) ⇒ `internal`, because it means the backend
/// sent something the store did not expect. A 2xx is not an error; asking for one yields
/// `internal` so a misuse is visible rather than silently successful.
///
/// `detail` is passed through [`sanitize_detail`]; never pass a request body or a value.
pub fn status_error(status: u16, context: &str, detail: Option<&str>) -> BackendError {
    let suffix = match detail.map(sanitize_detail) {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    };
    match status {
        404 => BackendError::NotFound,
        401 | 403 => BackendError::Denied(format!("{context}: HTTP {status}{suffix}")),
        408 | 429 | 500..=599 => BackendError::Unavailable(format!("{context}: HTTP {status}{suffix}")),
        200..=299 => BackendError::Internal(format!(
            "{context}: HTTP {status} treated as an error (a backend bug){suffix}"
        )),
        _ => BackendError::Internal(format!("{context}: unexpected HTTP {status}{suffix}")),
    }
}

/// The longest upstream detail kept in an error message, in characters.
pub const MAX_DETAIL_CHARS: usize = 300;

/// Cleans an upstream error text before it goes into a [`BackendError`] message: control
/// characters become spaces (a message is one log line), runs of whitespace collapse, and the
/// result is cut at [`MAX_DETAIL_CHARS`] characters with `…` so a huge error page cannot
/// flood the host's log.
pub fn sanitize_detail(detail: &str) -> String {
    let mut out = String::new();
    let mut last_space = true;
    let mut count = 0;
    for c in detail.chars() {
        let c = if c.is_control() || c.is_whitespace() { ' ' } else { c };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if count == MAX_DETAIL_CHARS {
            out.push('…');
            return out.trim_end().to_string();
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_follows_the_contract() {
        assert_eq!(status_error(404, "read x", None), BackendError::NotFound);
        assert_eq!(status_error(401, "read x", None).kind(), "denied");
        assert_eq!(
            status_error(403, "read x", Some("permission denied")).message(),
            "read x: HTTP 403: permission denied"
        );
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(status_error(s, "c", None).is_retryable(), "{s}");
        }
        for s in [200, 301, 400, 409, 418] {
            assert_eq!(status_error(s, "c", None).kind(), "internal", "{s}");
        }
    }

    #[test]
    fn detail_is_cleaned_and_bounded() {
        assert_eq!(sanitize_detail("  a\r\n\tb  "), "a b");
        let long = "x".repeat(1000);
        let cut = sanitize_detail(&long);
        assert_eq!(cut.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn display_names_the_case() {
        assert_eq!(BackendError::NotFound.to_string(), "not-found");
        assert_eq!(BackendError::denied("no").to_string(), "denied: no");
    }
}
