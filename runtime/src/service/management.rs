//! The management API (admin token): credentials (metadata; values written through their
//! backend, never read back here), toolkits, bindings, toolkit keys, backends, audit.
//!
//! Toolkit keys may also *read* credential metadata, limited to their own toolkit's
//! credentials (without locators); every such request is audited. Every write is audited
//! and its response waits until the audit row is committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::errors::{ApiError, sanitize};
use super::json::read_json;
use super::{Caller, Ctx, Draft, ServiceState, json_response, respond, secret_json};
use crate::audit::{AuditQuery, AuditRecord};
use crate::backend::CredentialBackend;
use crate::catalog::{Credential, NewCredential, WriteOutcome, same_fields};
use crate::fernet_vault::FERNET;
use crate::secret::Secret;

/// How long `/v1/backends` and `/readyz` wait for each backend's health check: a hung
/// backend must not hang the listing or the readiness probe with it.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

type St = State<Arc<ServiceState>>;

/// Authenticate and split the request; a 401 is answered here (and not audited: there
/// is no one to attribute it to).
fn start(st: &ServiceState, req: Request) -> Result<(Ctx, Caller, Parts, Body), ApiError> {
    let ctx = Ctx::of(&req);
    let caller = st.authenticate(req.headers())?;
    let (parts, body) = req.into_parts();
    Ok((ctx, caller, parts, body))
}

/// The frame of every management write: authenticate (a 401 is answered here), open the
/// audit event for `action`, run `write`, and answer once the event is committed
/// ([`Draft::finish_durable`]). `write` checks for the admin token itself, after naming
/// what it acts on, so a refused attempt is audited with its target.
async fn audited_write(
    st: &ServiceState,
    req: Request,
    action: &'static str,
    write: impl AsyncFnOnce(&mut Draft, &Caller, Parts, Body) -> Result<Response, ApiError>,
) -> Response {
    let (ctx, caller, parts, body) = match start(st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let mut draft = st.draft(&ctx, &caller, action);
    let result = write(&mut draft, &caller, parts, body).await;
    draft.finish_durable(result).await
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

fn limit(st: &ServiceState) -> usize {
    usize::try_from(st.config.max_body_bytes).unwrap_or(usize::MAX)
}

/// A credential as the API shows it; toolkit keys do not see locators (where a value
/// lives upstream is the operator's business).
fn credential_view(c: &Credential, admin: bool) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if !admin && let Value::Object(map) = &mut v {
        map.remove("locator");
    }
    v
}

fn credentials_view(list: &[Credential], admin: bool) -> Value {
    serde_json::json!({
        "credentials": list.iter().map(|c| credential_view(c, admin)).collect::<Vec<_>>()
    })
}

fn with_location(mut resp: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Path-encode an id for a Location header (`/` kept: the credential routes take it).
fn encode_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- credentials ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCredentialsQuery {
    pub api_id: Option<String>,
    pub toolkit: Option<String>,
}

pub async fn list_credentials(
    State(st): St,
    q: Result<Query<ListCredentialsQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let (ctx, caller, _, _) = match start(&st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match &caller {
        Caller::Admin { .. } => respond((|| {
            let q = query(q)?;
            let list = st
                .runtime
                .catalog()
                .list_credentials(q.api_id.as_deref(), q.toolkit.as_deref())
                .map_err(ApiError::from_catalog)?;
            Ok(json_response(
                StatusCode::OK,
                &credentials_view(&list, true),
            ))
        })()),
        Caller::Toolkit { key } => {
            let draft = st.draft(&ctx, &caller, "credential.list");
            let result = (|| {
                st.admit(key, ctx.client_ip)?;
                let q = query(q)?;
                if let Some(t) = &q.toolkit {
                    st.require_own_toolkit(key, t)?;
                }
                let list = st
                    .runtime
                    .catalog()
                    .list_credentials(q.api_id.as_deref(), Some(&key.toolkit))
                    .map_err(ApiError::from_catalog)?;
                Ok(json_response(
                    StatusCode::OK,
                    &credentials_view(&list, false),
                ))
            })();
            draft.finish(result).await
        }
    }
}

/// The body of `POST /v1/credentials` and `PUT /v1/credentials/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// Required on POST; on PUT optional and, if given, equal to the path's id.
    pub id: Option<String>,
    pub label: String,
    pub api_id: Option<String>,
    pub auth_type: String,
    pub identity: Option<String>,
    /// Default: the server's default backend (on PUT of an existing credential: its own).
    pub backend: Option<String>,
    pub locator: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

impl CredentialBody {
    fn into_new(self, id: String, backend: String) -> NewCredential {
        NewCredential {
            id,
            label: self.label,
            api_id: self.api_id,
            auth_type: self.auth_type,
            identity: self.identity,
            backend,
            locator: self.locator,
            description: self.description,
            attributes: self.attributes,
        }
    }
}

pub async fn create_credential(State(st): St, req: Request) -> Response {
    audited_write(
        &st,
        req,
        "credential.create",
        async |draft, caller, parts, body| {
            st.require_admin(caller)?;
            let body: CredentialBody = read_json(&parts.headers, body, limit(&st)).await?;
            let id = body
                .id
                .clone()
                .ok_or_else(|| ApiError::bad_request("invalid_field", "missing field `id`"))?;
            draft.set(|e| e.credential_id = Some(id.clone()));
            let backend = body
                .backend
                .clone()
                .unwrap_or_else(|| st.runtime.default_backend().to_owned());
            draft.set(|e| e.backend = Some(backend.clone()));
            st.runtime
                .backend(&backend)
                .map_err(|e| ApiError::validation(e.to_string()))?;
            let created = st
                .runtime
                .add_credential(&body.into_new(id, backend))
                .map_err(ApiError::from_runtime)?;
            let resp = json_response(StatusCode::CREATED, &credential_view(&created, true));
            Ok(with_location(
                resp,
                &format!("/v1/credentials/{}", encode_path(&created.id)),
            ))
        },
    )
    .await
}

pub async fn get_credential(State(st): St, id: String, req: Request) -> Response {
    let (ctx, caller, _, _) = match start(&st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match &caller {
        Caller::Admin { .. } => respond(
            st.runtime
                .catalog()
                .get_credential(&id)
                .map(|c| json_response(StatusCode::OK, &credential_view(&c, true)))
                .map_err(ApiError::from_catalog),
        ),
        Caller::Toolkit { key } => {
            let mut draft = st.draft(&ctx, &caller, "credential.read");
            draft.set(|e| e.credential_id = Some(id.clone()));
            let result = (|| {
                st.admit(key, ctx.client_ip)?;
                let cred = st
                    .runtime
                    .catalog()
                    .get_visible_credential(&key.toolkit, &id)
                    .map_err(ApiError::from_catalog)?
                    .ok_or_else(|| st.not_visible(&key.toolkit, &id))?;
                Ok(json_response(
                    StatusCode::OK,
                    &credential_view(&cred, false),
                ))
            })();
            draft.finish(result).await
        }
    }
}

pub async fn put_credential(State(st): St, id: String, req: Request) -> Response {
    audited_write(
        &st,
        req,
        "credential.update",
        async |draft, caller, parts, body| {
            draft.set(|e| e.credential_id = Some(id.clone()));
            st.require_admin(caller)?;
            let body: CredentialBody = read_json(&parts.headers, body, limit(&st)).await?;
            if let Some(body_id) = &body.id
                && *body_id != id
            {
                return Err(ApiError::validation(format!(
                    "the body's id '{body_id}' differs from the path's '{id}'"
                )));
            }
            let existing = match st.runtime.catalog().get_credential(&id) {
                Ok(c) => Some(c),
                Err(crate::catalog::CatalogError::NotFound { .. }) => None,
                Err(e) => return Err(ApiError::from_catalog(e)),
            };
            let backend = match (&existing, &body.backend) {
                (Some(old), Some(new)) if old.backend != *new => {
                    return Err(ApiError::conflict(format!(
                        "credential '{id}' is held by backend '{}'; moving it to '{new}' is not \
                     supported (remove it and create it again)",
                        old.backend
                    )));
                }
                (Some(old), _) => old.backend.clone(),
                (None, Some(new)) => new.clone(),
                (None, None) => st.runtime.default_backend().to_owned(),
            };
            draft.set(|e| e.backend = Some(backend.clone()));
            st.runtime
                .backend(&backend)
                .map_err(|e| ApiError::validation(e.to_string()))?;
            let new = body.into_new(id.clone(), backend);
            if existing.is_none() {
                draft.set(|e| e.action = "credential.create");
            } else if existing.as_ref().is_some_and(|old| same_fields(old, &new)) {
                draft.set(|e| e.outcome = "unchanged".into());
            }
            let outcome = st
                .runtime
                .catalog()
                .upsert_credential(&new)
                .map_err(ApiError::from_catalog)?;
            let cred = st
                .runtime
                .catalog()
                .get_credential(&id)
                .map_err(ApiError::from_catalog)?;
            let status = if outcome == WriteOutcome::Inserted {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(status, &credential_view(&cred, true)))
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteCredentialQuery {
    /// Also delete the value in a non-Fernet backend (a Fernet value always goes).
    #[serde(default)]
    pub delete_value: bool,
}

pub async fn delete_credential(State(st): St, id: String, req: Request) -> Response {
    let q = Query::<DeleteCredentialQuery>::try_from_uri(req.uri());
    audited_write(
        &st,
        req,
        "credential.delete",
        async |draft, caller, _, _| {
            draft.set(|e| e.credential_id = Some(id.clone()));
            st.require_admin(caller)?;
            let q = query(q)?;
            let removed = st
                .runtime
                .remove_credential(&id, q.delete_value)
                .await
                .map_err(ApiError::from_runtime)?;
            draft.set(|e| e.backend = Some(removed.backend.clone()));
            Ok(no_content())
        },
    )
    .await
}

/// `{"value": "…"}`: the value is a [`Secret`] from the moment it is parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueBody {
    value: SecretField,
}

struct SecretField(Secret);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        Secret::new(text.as_str().to_owned())
            .map(SecretField)
            .map_err(|e| serde::de::Error::custom(format!("field `value`: {e}")))
    }
}

pub async fn put_value(State(st): St, id: String, req: Request) -> Response {
    audited_write(
        &st,
        req,
        "credential.store_value",
        async |draft, caller, parts, body| {
            draft.set(|e| e.credential_id = Some(id.clone()));
            st.require_admin(caller)?;
            let cred = st
                .runtime
                .catalog()
                .get_credential(&id)
                .map_err(ApiError::from_catalog)?;
            draft.set(|e| e.backend = Some(cred.backend.clone()));
            let body: ValueBody = read_json(&parts.headers, body, limit(&st)).await?;
            st.runtime
                .store_value(&id, &body.value.0)
                .await
                .map_err(ApiError::from_runtime)?;
            Ok(no_content())
        },
    )
    .await
}

pub async fn delete_value(State(st): St, id: String, req: Request) -> Response {
    audited_write(
        &st,
        req,
        "credential.delete_value",
        async |draft, caller, _, _| {
            draft.set(|e| e.credential_id = Some(id.clone()));
            st.require_admin(caller)?;
            let cred = st
                .runtime
                .delete_value(&id)
                .await
                .map_err(ApiError::from_runtime)?;
            draft.set(|e| e.backend = Some(cred.backend));
            Ok(no_content())
        },
    )
    .await
}

// ---- toolkits -------------------------------------------------------------------------

fn admin_read(
    st: &ServiceState,
    req: Request,
    f: impl FnOnce() -> Result<Response, ApiError>,
) -> Response {
    let (_, caller, _, _) = match start(st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    respond(st.require_admin(&caller).and_then(|()| f()))
}

pub async fn list_toolkits(State(st): St, req: Request) -> Response {
    admin_read(&st, req, || {
        let list = st
            .runtime
            .catalog()
            .list_toolkits()
            .map_err(ApiError::from_catalog)?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "toolkits": list }),
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolkitBody {
    /// Required on POST; on PUT optional and equal to the path's.
    pub id: Option<String>,
    /// Display name (default: the id).
    pub name: Option<String>,
    pub description: Option<String>,
}

pub async fn create_toolkit(State(st): St, req: Request) -> Response {
    audited_write(
        &st,
        req,
        "toolkit.create",
        async |draft, caller, parts, body| {
            st.require_admin(caller)?;
            let body: ToolkitBody = read_json(&parts.headers, body, limit(&st)).await?;
            let id = body
                .id
                .ok_or_else(|| ApiError::bad_request("invalid_field", "missing field `id`"))?;
            draft.set(|e| e.target = Some(id.clone()));
            let name = body.name.unwrap_or_else(|| id.clone());
            let tk = st
                .runtime
                .catalog()
                .add_toolkit(&id, &name, body.description.as_deref())
                .map_err(ApiError::from_catalog)?;
            Ok(with_location(
                json_response(StatusCode::CREATED, &tk),
                &format!("/v1/toolkits/{}", encode_path(&tk.id).replace('/', "%2F")),
            ))
        },
    )
    .await
}

pub async fn get_toolkit(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    admin_read(&st, req, || {
        let id = path(p)?;
        let tk = st
            .runtime
            .catalog()
            .get_toolkit(&id)
            .map_err(ApiError::from_catalog)?;
        Ok(json_response(StatusCode::OK, &tk))
    })
}

pub async fn put_toolkit(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(
        &st,
        req,
        "toolkit.update",
        async |draft, caller, parts, body| {
            let id = path(p)?;
            draft.set(|e| e.target = Some(id.clone()));
            st.require_admin(caller)?;
            let body: ToolkitBody = read_json(&parts.headers, body, limit(&st)).await?;
            if let Some(body_id) = &body.id
                && *body_id != id
            {
                return Err(ApiError::validation(format!(
                    "the body's id '{body_id}' differs from the path's '{id}'"
                )));
            }
            let name = body.name.unwrap_or_else(|| id.clone());
            let outcome = st
                .runtime
                .catalog()
                .upsert_toolkit(&id, &name, body.description.as_deref(), true)
                .map_err(ApiError::from_catalog)?;
            match outcome {
                WriteOutcome::Inserted => draft.set(|e| e.action = "toolkit.create"),
                WriteOutcome::Unchanged => draft.set(|e| e.outcome = "unchanged".into()),
                WriteOutcome::Updated => {}
            }
            let tk = st
                .runtime
                .catalog()
                .get_toolkit(&id)
                .map_err(ApiError::from_catalog)?;
            let status = if outcome == WriteOutcome::Inserted {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(status, &tk))
        },
    )
    .await
}

pub async fn delete_toolkit(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(&st, req, "toolkit.delete", async |draft, caller, _, _| {
        let id = path(p)?;
        draft.set(|e| e.target = Some(id.clone()));
        st.require_admin(caller)?;
        st.runtime
            .catalog()
            .remove_toolkit(&id)
            .map_err(ApiError::from_catalog)?;
        Ok(no_content())
    })
    .await
}

pub async fn list_toolkit_credentials(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    admin_read(&st, req, || {
        let id = path(p)?;
        let list = st
            .runtime
            .catalog()
            .list_credentials(None, Some(&id))
            .map_err(ApiError::from_catalog)?;
        Ok(json_response(
            StatusCode::OK,
            &credentials_view(&list, true),
        ))
    })
}

#[derive(Serialize)]
struct Binding<'a> {
    toolkit: &'a str,
    credential: &'a str,
}

pub async fn bind(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(&st, req, "binding.create", async |draft, caller, _, _| {
        let (toolkit, credential) = path(p)?;
        draft.set(|e| {
            e.target = Some(toolkit.clone());
            e.credential_id = Some(credential.clone());
        });
        st.require_admin(caller)?;
        let outcome = st
            .runtime
            .catalog()
            .bind(&toolkit, &credential)
            .map_err(ApiError::from_catalog)?;
        let status = if outcome == WriteOutcome::Inserted {
            StatusCode::CREATED
        } else {
            draft.set(|e| e.outcome = "unchanged".into());
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &Binding {
                toolkit: &toolkit,
                credential: &credential,
            },
        ))
    })
    .await
}

pub async fn unbind(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(&st, req, "binding.delete", async |draft, caller, _, _| {
        let (toolkit, credential) = path(p)?;
        draft.set(|e| {
            e.target = Some(toolkit.clone());
            e.credential_id = Some(credential.clone());
        });
        st.require_admin(caller)?;
        st.runtime
            .catalog()
            .unbind(&toolkit, &credential)
            .map_err(ApiError::from_catalog)?;
        Ok(no_content())
    })
    .await
}

pub async fn list_bindings(State(st): St, req: Request) -> Response {
    admin_read(&st, req, || {
        let pairs = st
            .runtime
            .catalog()
            .list_bindings()
            .map_err(ApiError::from_catalog)?;
        let list: Vec<Binding<'_>> = pairs
            .iter()
            .map(|(t, c)| Binding {
                toolkit: t,
                credential: c,
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "bindings": list }),
        ))
    })
}

// ---- toolkit keys ---------------------------------------------------------------------

pub async fn list_keys(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    admin_read(&st, req, || {
        let toolkit = path(p)?;
        let keys = st.keys.list(Some(&toolkit)).map_err(ApiError::from_keys)?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "keys": keys }),
        ))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    pub label: Option<String>,
    /// Client networks allowed to use the key (CIDRs or addresses); empty: any.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

pub async fn create_key(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(
        &st,
        req,
        "key.create",
        async |draft, caller, parts, body| {
            let toolkit = path(p)?;
            draft.set(|e| e.target = Some(toolkit.clone()));
            st.require_admin(caller)?;
            let body: KeyBody = read_json(&parts.headers, body, limit(&st)).await?;
            let created = st
                .keys
                .create(&toolkit, body.label.as_deref(), &body.allowed_cidrs)
                .map_err(ApiError::from_keys)?;
            draft.set(|e| e.target = Some(format!("{toolkit}/{}", created.key.id)));
            #[derive(Serialize)]
            struct Created<'a> {
                #[serde(flatten)]
                meta: &'a crate::toolkit_keys::ToolkitKey,
                /// The key itself: shown only in this response.
                key: &'a str,
            }
            Ok(secret_json(
                StatusCode::CREATED,
                &Created {
                    meta: &created.key,
                    key: created.secret.expose(),
                },
                created.secret.len(),
            ))
        },
    )
    .await
}

pub async fn revoke_key(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    audited_write(&st, req, "key.revoke", async |draft, caller, _, _| {
        let (toolkit, key_id) = path(p)?;
        draft.set(|e| e.target = Some(format!("{toolkit}/{key_id}")));
        st.require_admin(caller)?;
        let key = st.keys.get(&key_id).map_err(ApiError::from_keys)?;
        if key.toolkit != toolkit {
            return Err(ApiError::not_found(format!(
                "toolkit '{toolkit}' has no key '{key_id}'"
            )));
        }
        let (_, newly) = st.keys.revoke(&key_id).map_err(ApiError::from_keys)?;
        if !newly {
            draft.set(|e| e.outcome = "unchanged".into());
        }
        Ok(no_content())
    })
    .await
}

// ---- backends and audit ---------------------------------------------------------------

#[derive(Serialize)]
struct BackendView {
    name: String,
    kind: &'static str,
    default: bool,
    healthy: bool,
    /// The backend's own health summary when healthy (operator text, capped).
    detail: Option<String>,
    /// The error code when not healthy (the backend's text goes to the log only).
    error: Option<&'static str>,
    allowed_outbound: Vec<String>,
    allow_private_networks: bool,
    limits: Option<Value>,
    isolation: Option<String>,
    cache: Option<Value>,
    bound_credentials: usize,
}

pub async fn list_backends(State(st): St, req: Request) -> Response {
    let (_, caller, _, _) = match start(&st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = st.require_admin(&caller) {
        return e.into_response();
    }
    let health = check_health(&st).await;
    let counts = match st.runtime.catalog().list_credentials(None, None) {
        Ok(list) => list.iter().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.backend.clone()).or_insert(0usize) += 1;
            m
        }),
        Err(e) => return ApiError::from_catalog(e).into_response(),
    };
    let mut out = Vec::new();
    for (name, backend) in st.runtime.backends() {
        let cfg = st.runtime.backend_config(name);
        let (healthy, detail, error) = match health.get(name) {
            Some(Ok(d)) => (true, Some(sanitize(d)), None),
            Some(Err(code)) => (false, None, Some(*code)),
            None => (false, None, Some("unavailable")),
        };
        let cache = (name != FERNET).then(|| {
            let s = st.runtime.cache_settings(name);
            serde_json::json!({
                "ttl_ms": s.ttl.as_millis() as u64,
                "stale_if_error_ms": s.stale_if_error.as_millis() as u64,
                "max_entries": s.max_entries,
                "single_flight": true,
            })
        });
        out.push(BackendView {
            name: name.to_owned(),
            kind: backend.kind(),
            default: name == st.runtime.default_backend(),
            healthy,
            detail,
            error,
            allowed_outbound: cfg.map(|c| c.allowed_outbound.clone()).unwrap_or_default(),
            allow_private_networks: cfg.is_some_and(|c| c.allow_private_networks),
            limits: cfg.map(|c| limits_json(&c.limits)),
            isolation: cfg.map(|c| {
                match c.isolation {
                    crate::config::Isolation::Pooled => "pooled",
                    crate::config::Isolation::PerCall => "per-call",
                }
                .to_owned()
            }),
            cache,
            bound_credentials: counts.get(name).copied().unwrap_or(0),
        });
    }
    json_response(StatusCode::OK, &serde_json::json!({ "backends": out }))
}

fn limits_json(l: &crate::config::LimitsConfig) -> Value {
    serde_json::json!({
        "memory_mib": l.memory_mib,
        "cpu_ms": l.cpu_ms,
        "timeout_ms": l.timeout_ms,
        "connect_timeout_ms": l.connect_timeout_ms,
        "max_requests": l.max_requests,
        "max_request_bytes": l.max_request_bytes,
        "max_response_bytes": l.max_response_bytes,
        "max_hostcall_bytes": l.max_hostcall_bytes,
        "max_log_line_bytes": l.max_log_line_bytes,
        "log_lines_per_second": l.log_lines_per_second,
    })
}

/// Every backend's health, checked concurrently, each within [`HEALTH_TIMEOUT`]: `Ok`
/// with its summary, or `Err` with the error code.
pub async fn check_health(st: &ServiceState) -> BTreeMap<String, Result<String, &'static str>> {
    let mut set = tokio::task::JoinSet::new();
    for (name, backend) in st.runtime.backends() {
        let name = name.to_owned();
        let backend: Arc<dyn CredentialBackend> = backend.clone();
        set.spawn(async move {
            let result = match tokio::time::timeout(HEALTH_TIMEOUT, backend.health()).await {
                Ok(Ok(detail)) => Ok(detail),
                Ok(Err(e)) => {
                    tracing::warn!(
                        backend = %name,
                        code = e.code(),
                        detail = %sanitize(&e.to_string()),
                        "backend health check failed"
                    );
                    Err(e.code())
                }
                Err(_) => Err("timeout"),
            };
            (name, result)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((name, result)) = joined {
            out.insert(name, result);
        }
    }
    out
}

#[derive(Serialize)]
struct AuditPage {
    events: Vec<AuditRecord>,
    /// Pass as `before_id` for the next (older) page; absent on the last page.
    next_before_id: Option<i64>,
}

pub async fn audit(
    State(st): St,
    q: Result<Query<AuditQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let (_, caller, _, _) = match start(&st, req) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let result = async {
        st.require_admin(&caller)?;
        let q = query(q)?;
        let limit = q.limit.unwrap_or(100) as usize;
        let events = st.audit.query(&q).await.map_err(ApiError::from_audit)?;
        let next_before_id = (events.len() == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(json_response(
            StatusCode::OK,
            &AuditPage {
                events,
                next_before_id,
            },
        ))
    }
    .await;
    respond(result)
}
