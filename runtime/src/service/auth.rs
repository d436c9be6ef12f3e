//! Who is calling: the admin token or a toolkit key, from `Authorization: Bearer …`.
//!
//! The rule the whole API follows:
//! - **401 `unauthorized`** — no credentials, a malformed header, an unknown token, a
//!   wrong secret, a revoked key. The answer carries `WWW-Authenticate: Bearer`.
//! - **403 `forbidden`** — valid credentials that may not do this: a toolkit key on an
//!   admin endpoint, the admin token on a resolution endpoint, a key used from a network
//!   outside its `allowed_cidrs`, a toolkit key asking for another toolkit, or for a
//!   credential not bound to its toolkit (whether or not that credential exists, so ids
//!   cannot be probed).
//!
//! Both token kinds are checked by one indexed lookup on the token's public id and a
//! constant-time hash comparison, against the database on every request: revoking a key
//! with the CLI while the service runs takes effect on the next request.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

use super::ServiceState;
use super::errors::ApiError;
use crate::rate_limit::Decision;
use crate::resolution_read::{self, Visible};
use crate::toolkit_keys::{KEY_PREFIX, ToolkitKey, Verified};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin {
        /// The admin token's public id (`env` for `AIRLOCK_ADMIN_TOKEN`).
        token_id: String,
    },
    Toolkit {
        key: ToolkitKey,
    },
}

impl Caller {
    pub fn toolkit(&self) -> Option<&str> {
        match self {
            Caller::Toolkit { key } => Some(&key.toolkit),
            Caller::Admin { .. } => None,
        }
    }

    pub fn key_id(&self) -> &str {
        match self {
            Caller::Admin { token_id } => token_id,
            Caller::Toolkit { key } => &key.id,
        }
    }
}

impl ServiceState {
    fn unauthorized(&self, reason: &'static str, message: &str) -> ApiError {
        self.metrics.auth_failure(401, reason);
        ApiError::unauthorized(message)
    }

    /// The bearer token of the request, or 401.
    fn bearer<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, ApiError> {
        let fail = |reason, message: &str| self.unauthorized(reason, message);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(fail(
                "missing",
                "this endpoint needs `Authorization: Bearer <token>`",
            ));
        };
        let Ok(text) = value.to_str() else {
            return Err(fail("malformed", "the Authorization header is not text"));
        };
        let token = match text.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => {
                return Err(fail(
                    "malformed",
                    "use the Bearer scheme: `Authorization: Bearer <token>`",
                ));
            }
        };
        Ok(token)
    }

    fn key_caller(&self, verified: Verified) -> Result<Caller, ApiError> {
        match verified {
            Verified::Valid(key) => Ok(Caller::Toolkit { key }),
            Verified::Revoked(_) => {
                Err(self.unauthorized("revoked", "this toolkit key has been revoked"))
            }
            Verified::Unknown => Err(self.unauthorized("invalid", "invalid token")),
        }
    }

    fn admin_caller(&self, token: &str) -> Result<Caller, ApiError> {
        match self.admin.verify(token) {
            Ok(Some(token_id)) => Ok(Caller::Admin { token_id }),
            Ok(None) => Err(self.unauthorized("invalid", "invalid token")),
            Err(e) => Err(ApiError::internal(&e)),
        }
    }

    /// Identify the caller, or answer 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = self.bearer(headers)?;
        if token.starts_with(KEY_PREFIX) {
            let verified = self.keys.verify(token).map_err(ApiError::from_keys)?;
            return self.key_caller(verified);
        }
        self.admin_caller(token)
    }

    /// [`Self::authenticate`] for a resolution of `credential_id`: for a toolkit key, the
    /// key, the credential (if visible to its toolkit) and its Fernet token come from one
    /// SQL statement ([`crate::resolution_read`]). Nothing is visible to the admin token.
    pub fn authenticate_for_resolution(
        &self,
        headers: &HeaderMap,
        credential_id: &str,
    ) -> Result<(Caller, Visible), ApiError> {
        let token = self.bearer(headers)?;
        if !token.starts_with(KEY_PREFIX) {
            return self.admin_caller(token).map(|c| (c, Visible::default()));
        }
        let (verified, visible) = {
            let conn = self.runtime.database().read();
            resolution_read::read_in(&conn, token, credential_id)
                .map_err(|e| ApiError::internal(&e))?
        };
        Ok((self.key_caller(verified)?, visible))
    }

    fn deny(&self, reason: &'static str, message: String) -> ApiError {
        self.metrics.auth_failure(403, reason);
        ApiError::forbidden(message)
    }

    /// The caller must hold the admin token.
    pub fn require_admin(&self, caller: &Caller) -> Result<(), ApiError> {
        match caller {
            Caller::Admin { .. } => Ok(()),
            Caller::Toolkit { .. } => Err(self.deny(
                "needs_admin",
                "this endpoint needs the admin token; toolkit keys may only read and resolve \
                 their own credentials"
                    .into(),
            )),
        }
    }

    /// The caller must hold a toolkit key, usable from `client`, within its rate limit.
    pub fn require_toolkit<'c>(
        &self,
        caller: &'c Caller,
        client: Option<IpAddr>,
    ) -> Result<&'c ToolkitKey, ApiError> {
        match caller {
            Caller::Toolkit { key } => {
                self.admit(key, client)?;
                Ok(key)
            }
            Caller::Admin { .. } => Err(self.deny(
                "needs_toolkit_key",
                "resolving values needs a toolkit key; the admin token manages, it does not \
                 resolve"
                    .into(),
            )),
        }
    }

    /// Checks every request made with a toolkit key must pass: its network restriction
    /// and its toolkit's rate limit.
    pub fn admit(&self, key: &ToolkitKey, client: Option<IpAddr>) -> Result<(), ApiError> {
        if !key.allows(client) {
            let from = client.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
            return Err(self.deny(
                "network",
                format!("toolkit key '{}' may not be used from {from}", key.id),
            ));
        }
        match self.limiter.check(&key.toolkit) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => {
                self.metrics.rate_limited(&key.toolkit);
                Err(ApiError::rate_limited(&key.toolkit, retry_after))
            }
        }
    }

    /// A toolkit key may only act for its own toolkit.
    pub fn require_own_toolkit(&self, key: &ToolkitKey, toolkit: &str) -> Result<(), ApiError> {
        if key.toolkit == toolkit {
            Ok(())
        } else {
            Err(self.deny(
                "other_toolkit",
                format!("toolkit key '{}' may not act for another toolkit", key.id),
            ))
        }
    }

    /// 403 for a credential the toolkit may not use — the same answer whether or not the
    /// id exists.
    pub fn not_visible(&self, toolkit: &str, credential: &str) -> ApiError {
        self.deny(
            "not_bound",
            format!("credential '{credential}' is not available to toolkit '{toolkit}'"),
        )
    }
}
