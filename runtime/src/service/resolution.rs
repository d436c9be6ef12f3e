//! The resolution API (toolkit keys only): the values of credentials bound to the caller's
//! toolkit, resolved at the moment of the request through whichever backend holds them.
//!
//! - `GET /v1/credentials/{id}/value` — one credential (`get_value`).
//! - `GET /v1/toolkits/{toolkit}/apis/{api_id}/credentials` — everything the toolkit may
//!   use for an API (`get_values_for_api`), each with its value or its own error.
//!
//! A credential that is not bound to the caller's toolkit is 403 whether or not it exists.
//! Each resolved credential is one audit event and one `airlock_resolutions_total` count
//! (backend, outcome); the value appears only in the response body, which is `no-store`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::errors::ApiError;
use super::{Ctx, ServiceState, secret_json};
use crate::catalog::Credential;
use crate::fernet_vault::FERNET;
use crate::runtime::RuntimeError;

#[derive(Serialize)]
struct Resolved<'a> {
    id: &'a str,
    label: &'a str,
    api_id: Option<&'a str>,
    auth_type: &'a str,
    identity: Option<&'a str>,
    backend: &'a str,
    attributes: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn resolved<'a>(c: &'a Credential) -> Resolved<'a> {
    Resolved {
        id: &c.id,
        label: &c.label,
        api_id: c.api_id.as_deref(),
        auth_type: &c.auth_type,
        identity: c.identity.as_deref(),
        backend: &c.backend,
        attributes: &c.attributes,
        value: None,
        error: None,
    }
}

pub async fn resolve_value(
    State(st): State<Arc<ServiceState>>,
    id: String,
    req: Request,
) -> Response {
    let ctx = Ctx::of(&req);
    let (caller, visible) = match st.authenticate_for_resolution(req.headers(), &id) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    drop(req);
    let mut draft = st.draft(&ctx, &caller, "credential.resolve");
    draft.set(|e| e.credential_id = Some(id.clone()));
    let result = async {
        let key = st.require_toolkit(&caller, ctx.client_ip)?;
        let token = visible.token;
        let cred = visible
            .credential
            .ok_or_else(|| st.not_visible(&key.toolkit, &id))?;
        draft.set(|e| {
            e.backend = Some(cred.backend.clone());
            e.api_id = cred.api_id.clone();
        });
        let started = Instant::now();
        // Fernet: the ciphertext came with the lookup; only the decryption is left.
        let value = if cred.backend == FERNET {
            st.runtime
                .fernet()
                .value_from_token(&cred.id, token.as_deref())
                .map_err(|source| RuntimeError::Backend {
                    credential: cred.id.clone(),
                    backend: FERNET.to_owned(),
                    source,
                })
        } else {
            st.runtime.value_of(&cred).await
        };
        match value {
            Ok(value) => {
                st.metrics
                    .resolution(&cred.backend, "ok", started.elapsed());
                tracing::trace!(
                    credential = %cred.id,
                    backend = %cred.backend,
                    bytes = value.len(),
                    "resolved"
                );
                let mut body = resolved(&cred);
                body.value = Some(value.expose());
                Ok(secret_json(StatusCode::OK, &body, value.len()))
            }
            Err(e) => {
                let err = ApiError::from_runtime(e);
                st.metrics
                    .resolution(&cred.backend, err.code, started.elapsed());
                Err(err)
            }
        }
    }
    .await;
    draft.finish(result).await
}

#[derive(Serialize)]
struct ApiResolution<'a> {
    toolkit: &'a str,
    api_id: &'a str,
    credentials: Vec<Resolved<'a>>,
}

pub async fn resolve_api(
    State(st): State<Arc<ServiceState>>,
    p: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    let ctx = Ctx::of(&req);
    let caller = match st.authenticate(req.headers()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    drop(req);
    let mut draft = st.draft(&ctx, &caller, "api.resolve");
    let result = async {
        let (toolkit, api_id) = p
            .map(|Path(t)| t)
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        draft.set(|e| {
            e.target = Some(toolkit.clone());
            e.api_id = Some(api_id.clone());
        });
        let key = st.require_toolkit(&caller, ctx.client_ip)?;
        st.require_own_toolkit(key, &toolkit)?;
        let started = Instant::now();
        let list = st
            .runtime
            .get_values_for_api(&toolkit, &api_id)
            .await
            .map_err(ApiError::from_runtime)?;
        let elapsed = started.elapsed();
        let mut size = 0;
        let mut errors = Vec::with_capacity(list.len());
        for r in &list {
            let (outcome, status, err) = match &r.value {
                Ok(v) => {
                    size += v.len();
                    ("ok", StatusCode::OK, None)
                }
                Err(e) => {
                    let err = ApiError::from_backend(&r.backend, &r.id, e);
                    (err.code, err.status, Some(err))
                }
            };
            st.metrics.resolution(&r.backend, outcome, elapsed);
            let mut one = st.draft(&ctx, &caller, "credential.resolve");
            one.set(|e| {
                e.credential_id = Some(r.id.clone());
                e.backend = Some(r.backend.clone());
                e.api_id = Some(api_id.clone());
            });
            one.finish_with(outcome, status).await;
            errors.push(err);
        }
        let credentials: Vec<Resolved<'_>> = list
            .iter()
            .zip(&errors)
            .map(|(r, err)| Resolved {
                id: &r.id,
                label: &r.label,
                api_id: r.api_id.as_deref(),
                auth_type: &r.auth_type,
                identity: r.identity.as_deref(),
                backend: &r.backend,
                attributes: &r.attributes,
                value: r.value.as_ref().ok().map(|v| v.expose()),
                error: err.as_ref().map(|e| ErrorBody {
                    code: e.code,
                    message: &e.message,
                }),
            })
            .collect();
        Ok(secret_json(
            StatusCode::OK,
            &ApiResolution {
                toolkit: &toolkit,
                api_id: &api_id,
                credentials,
            },
            size,
        ))
    }
    .await;
    draft.finish(result).await
}
