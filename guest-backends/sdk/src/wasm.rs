//! The component side: wit-bindgen bindings of `wit/` (world `credential-backend`) and the
//! glue [`crate::export_backend!`] expands to.
//!
//! Compiled on every target so the glue is type-checked and linted natively; the imports
//! are only ever called from a component (natively the generated import stubs would
//! trap), and the exports are emitted only for `wasm32`.

use std::sync::{Mutex, MutexGuard};

use crate::{
    Backend, BackendError, Config, CredentialRef, Host, Http, HttpError, Level, Log, Method, Request,
    Response,
};

/// Bindings generated from `wit/credential-backend.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        world: "credential-backend",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_credential_backend",
        default_bindings_module: "::airlock_guest::__private::bindings",
        runtime_path: "::airlock_guest::__private::wit_bindgen::rt",
    });
}

pub use bindings::export_credential_backend;

use bindings::airlock::backend::{
    config as wit_config, http as wit_http, log as wit_log, types as wit_types,
};

/// The static cell holding the one backend instance of this component.
///
/// A `Mutex` (not a `RefCell`) so the `static` is `Sync` without `unsafe`; a component is
/// single-threaded and the host never re-enters an export while one runs, so the lock is
/// never contended. A poisoned lock cannot be observed either: a panic traps the component
/// and the host discards the instance.
pub struct Slot<B>(Mutex<crate::Instance<B>>);

impl<B> Slot<B> {
    /// An empty slot (before `init`).
    pub const fn new() -> Self {
        Self(Mutex::new(crate::Instance::new()))
    }

    fn lock(&self) -> MutexGuard<'_, crate::Instance<B>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// [`Http`] over the WIT `http.send` import.
pub struct WasmHttp;

impl Http for WasmHttp {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let wit_req = wit_http::Request {
            method: match &req.method {
                Method::Get => wit_http::Method::Get,
                Method::Head => wit_http::Method::Head,
                Method::Post => wit_http::Method::Post,
                Method::Put => wit_http::Method::Put,
                Method::Patch => wit_http::Method::Patch,
                Method::Delete => wit_http::Method::Delete,
                Method::Options => wit_http::Method::Options,
                Method::Other(m) => wit_http::Method::Other(m.clone()),
            },
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        };
        match wit_http::send(&wit_req) {
            Ok(r) => Ok(Response { status: r.status, headers: r.headers, body: r.body }),
            Err(e) => Err(match e {
                wit_http::HttpError::Denied(m) => HttpError::Denied(m),
                wit_http::HttpError::Timeout(m) => HttpError::Timeout(m),
                wit_http::HttpError::Connection(m) => HttpError::Connection(m),
                wit_http::HttpError::TooLarge(m) => HttpError::TooLarge(m),
                wit_http::HttpError::InvalidRequest(m) => HttpError::InvalidRequest(m),
                wit_http::HttpError::LimitExceeded(m) => HttpError::LimitExceeded(m),
            }),
        }
    }
}

/// [`Log`] over the WIT `log` import.
pub struct WasmLog;

impl Log for WasmLog {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message);
    }
}

/// The operator's settings, read from the `config` import: every key `keys()` lists.
pub fn host_config() -> Config {
    Config::from_pairs(wit_config::keys().into_iter().filter_map(|k| wit_config::get(&k).map(|v| (k, v))))
}

impl From<BackendError> for wit_types::BackendError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound => Self::NotFound,
            BackendError::Denied(m) => Self::Denied(m),
            BackendError::Unavailable(m) => Self::Unavailable(m),
            BackendError::InvalidConfig(m) => Self::InvalidConfig(m),
            BackendError::Unsupported(m) => Self::Unsupported(m),
            BackendError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<wit_types::CredentialRef> for CredentialRef {
    fn from(c: wit_types::CredentialRef) -> Self {
        Self { id: c.id, label: c.label, api_id: c.api_id, auth_type: c.auth_type, locator: c.locator }
    }
}

fn with_host<T>(f: impl FnOnce(&Host<'_>) -> T) -> T {
    f(&Host::new(&WasmHttp, &WasmLog))
}

/// The `init` export.
pub fn init<B: Backend>(slot: &Slot<B>) -> Result<(), wit_types::BackendError> {
    let config = host_config();
    with_host(|h| slot.lock().init(&config, h)).map_err(Into::into)
}

/// The `get-value` export.
pub fn get_value<B: Backend>(
    slot: &Slot<B>,
    cred: wit_types::CredentialRef,
) -> Result<String, wit_types::BackendError> {
    let cred = CredentialRef::from(cred);
    with_host(|h| slot.lock().get_value(h, &cred)).map_err(Into::into)
}

/// The `get-values` export.
pub fn get_values<B: Backend>(
    slot: &Slot<B>,
    creds: Vec<wit_types::CredentialRef>,
) -> Vec<Result<String, wit_types::BackendError>> {
    let creds: Vec<CredentialRef> = creds.into_iter().map(CredentialRef::from).collect();
    with_host(|h| slot.lock().get_values(h, &creds)).into_iter().map(|r| r.map_err(Into::into)).collect()
}

/// The `store-value` export.
pub fn store_value<B: Backend>(
    slot: &Slot<B>,
    cred: wit_types::CredentialRef,
    value: String,
) -> Result<(), wit_types::BackendError> {
    let cred = CredentialRef::from(cred);
    let value = crate::Secret::new(value);
    with_host(|h| slot.lock().store_value(h, &cred, value.expose())).map_err(Into::into)
}

/// The `delete-value` export.
pub fn delete_value<B: Backend>(
    slot: &Slot<B>,
    cred: wit_types::CredentialRef,
) -> Result<(), wit_types::BackendError> {
    let cred = CredentialRef::from(cred);
    with_host(|h| slot.lock().delete_value(h, &cred)).map_err(Into::into)
}

/// The `health` export.
pub fn health<B: Backend>(slot: &Slot<B>) -> Result<String, wit_types::BackendError> {
    with_host(|h| slot.lock().health(h)).map_err(Into::into)
}
