//! # airlock-guest: write an airlock credential backend in Rust
//!
//! A backend is a WebAssembly component for the WIT world `credential-backend`
//! (`wit/credential-backend.wit`). With this SDK it is a plain Rust type implementing
//! [`Backend`] plus one [`export_backend!`] line; the SDK owns the bindings, keeps the
//! instance's state between calls, reads the `config` import, and maps errors to the WIT
//! `backend-error`.
//!
//! ```
//! use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Request};
//!
//! struct Echo { base: String }
//!
//! impl Backend for Echo {
//!     fn init(config: &Config, _host: &Host<'_>) -> Result<Self, BackendError> {
//!         config.reject_unknown(&["address"])?;
//!         Ok(Echo { base: config.required_url("address")? })
//!     }
//!     fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
//!         let url = airlock_guest::join_url(&self.base, &airlock_guest::encode_path(cred.locator_or_id()));
//!         let resp = host.send(&Request::get(url))?.error_for_status("read value")?;
//!         Ok(resp.text("value")?.to_string())
//!     }
//!     fn health(&mut self, _host: &Host<'_>) -> Result<String, BackendError> {
//!         Ok(format!("echo at {}", self.base))
//!     }
//! }
//!
//! airlock_guest::export_backend!(Echo);
//! ```
//!
//! The same type runs natively in `cargo test`: build a [`Host`] over
//! [`native::NativeHttp`] (a small loopback-only HTTP/1.1 client) and a
//! [`native::MemoryLog`], and call the trait methods directly against a real or fake server.
//! Nothing native ends up in the component: the `native` module exists only when the target
//! is not `wasm32`, and the export glue only when it is.
//!
//! Invariants every backend keeps, and the SDK's types help with:
//! - no secret value in a log line or an error message ([`Secret`] redacts itself; request and
//!   response `Debug` omit bodies and header values; JSON and config errors never quote data);
//! - the error case, not the text, carries meaning: use [`status_error`] for HTTP statuses;
//! - `get_values` returns exactly one result per credential, in order (the SDK enforces it).

// The generated bindings name this crate by its absolute path (so the export macro works
// from a backend crate); this makes the same path resolve inside the SDK itself.
extern crate self as airlock_guest;

mod config;
mod error;
mod http;
mod instance;
pub mod json;
mod secret;
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;

pub use config::Config;
pub use error::{BackendError, MAX_DETAIL_CHARS, sanitize_detail, status_error};
pub use http::{Http, HttpError, Method, Request, Response, encode_component, encode_path, join_url};
pub use instance::Instance;
pub use secret::Secret;

/// What a backend is told about the credential it resolves (the WIT `credential-ref`):
/// airlock's metadata, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRef {
    /// airlock's id for the credential; may contain `/` and `.`.
    pub id: String,
    /// Human-readable label.
    pub label: String,
    /// The API the credential is for, when known.
    pub api_id: Option<String>,
    /// How the credential is presented upstream (`bearer`, `basic`, `api_key`, ...).
    pub auth_type: String,
    /// Where the value lives, in the backend's own syntax; `None` means derive it from `id`.
    pub locator: Option<String>,
}

impl CredentialRef {
    /// A reference with only an id and a locator (tests, tools); label = id,
    /// auth type `bearer`.
    pub fn with_locator(id: impl Into<String>, locator: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            label: id.clone(),
            id,
            api_id: None,
            auth_type: "bearer".into(),
            locator: Some(locator.into()),
        }
    }

    /// The locator, or the id when no locator is set (the contract: `none` means derive it
    /// from `id`).
    pub fn locator_or_id(&self) -> &str {
        self.locator.as_deref().unwrap_or(&self.id)
    }
}

/// Log levels of the WIT `log` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where log lines go: the WIT `log` import in a component, [`native::MemoryLog`] or
/// [`native::StderrLog`] in tests. Never pass a secret value: no sink can tell one apart.
pub trait Log {
    fn log(&self, level: Level, message: &str);
}

/// What a backend can use during a call: outbound HTTP and the log. Passed to every
/// [`Backend`] method instead of being stored, so backend state stays plain data and a
/// native test can hand in its own implementations.
#[derive(Clone, Copy)]
pub struct Host<'a> {
    http: &'a dyn Http,
    log: &'a dyn Log,
}

impl<'a> Host<'a> {
    /// A host context over `http` and `log`.
    pub fn new(http: &'a dyn Http, log: &'a dyn Log) -> Self {
        Self { http, log }
    }

    /// The raw HTTP capability (transport errors as [`HttpError`]).
    pub fn http(&self) -> &'a dyn Http {
        self.http
    }

    /// Sends `req`; transport failures become [`BackendError`]s by the mapping documented on
    /// `From<HttpError> for BackendError`. Any status (4xx/5xx too) is an `Ok` response.
    pub fn send(&self, req: &Request) -> Result<Response, BackendError> {
        self.http.send(req).map_err(BackendError::from)
    }

    /// Logs `message` at `level`.
    pub fn log(&self, level: Level, message: &str) {
        self.log.log(level, message);
    }
    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }
}

/// A credential backend. One value of the implementing type is one instance's state: it is
/// created by [`Backend::init`] and kept by the SDK between calls (the host may discard the
/// instance at any time, e.g. after a trap, and start a fresh one with a new `init`).
///
/// `Send + 'static` because the state lives in a `static`; components are single-threaded,
/// so this only rules out `Rc`-like fields.
pub trait Backend: Sized + Send + 'static {
    /// Reads and validates configuration and logs in if the store needs it. Reject unknown
    /// keys ([`Config::reject_unknown`]) so typos fail here and not at the first read.
    fn init(config: &Config, host: &Host<'_>) -> Result<Self, BackendError>;

    /// The value of one credential as UTF-8 text.
    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError>;

    /// The values of several credentials, one result per element of `creds` in order.
    /// Default: one [`Backend::get_value`] after another. Override to batch upstream calls.
    /// If an override returns a list of the wrong length the SDK replaces it with `internal`
    /// errors rather than break the contract.
    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        creds.iter().map(|c| self.get_value(host, c)).collect()
    }

    /// Writes a credential's value. Default: `unsupported` (read-only store).
    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        let _ = (host, cred, value);
        Err(BackendError::unsupported("this backend is read-only: store-value is not offered"))
    }

    /// Deletes a credential's value; `not-found` when there was none. Default: `unsupported`.
    fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        let _ = (host, cred);
        Err(BackendError::unsupported("this backend is read-only: delete-value is not offered"))
    }

    /// Checks reachability and authentication; a short description on success, never a
    /// secret.
    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError>;
}

/// Exports `$ty` (a type implementing [`Backend`]) as the component's `backend` interface.
///
/// Call it once, at the crate root of a `cdylib` backend crate. It expands to nothing on
/// non-wasm targets, so the same crate builds natively for tests.
#[macro_export]
macro_rules! export_backend {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::bindings::exports::airlock::backend::backend as __wit;

            static __AIRLOCK_INSTANCE: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();

            struct __AirlockExport;

            impl __wit::Guest for __AirlockExport {
                fn init() -> ::core::result::Result<(), __wit::BackendError> {
                    $crate::__private::init(&__AIRLOCK_INSTANCE)
                }
                fn get_value(cred: __wit::CredentialRef) -> ::core::result::Result<::std::string::String, __wit::BackendError> {
                    $crate::__private::get_value(&__AIRLOCK_INSTANCE, cred)
                }
                fn get_values(
                    creds: ::std::vec::Vec<__wit::CredentialRef>,
                ) -> ::std::vec::Vec<::core::result::Result<::std::string::String, __wit::BackendError>> {
                    $crate::__private::get_values(&__AIRLOCK_INSTANCE, creds)
                }
                fn store_value(
                    cred: __wit::CredentialRef,
                    value: ::std::string::String,
                ) -> ::core::result::Result<(), __wit::BackendError> {
                    $crate::__private::store_value(&__AIRLOCK_INSTANCE, cred, value)
                }
                fn delete_value(cred: __wit::CredentialRef) -> ::core::result::Result<(), __wit::BackendError> {
                    $crate::__private::delete_value(&__AIRLOCK_INSTANCE, cred)
                }
                fn health() -> ::core::result::Result<::std::string::String, __wit::BackendError> {
                    $crate::__private::health(&__AIRLOCK_INSTANCE)
                }
            }

            $crate::__private::export_credential_backend!(__AirlockExport with_types_in $crate::__private::bindings);
        };
    };
}

/// Implementation details of [`export_backend!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wasm::*;
    pub use wit_bindgen;
}
