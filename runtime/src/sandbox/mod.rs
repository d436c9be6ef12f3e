//! The sandbox: runs credential backends that are untrusted WebAssembly components.
//!
//! A component implements the `credential-backend` world (`wit/credential-backend.wit`)
//! and runs in wasmtime with nothing but:
//! - `airlock:backend/http` — outbound requests, handed to the backend's [`HttpSender`]
//!   (allow-list and network policy) and budgeted per call;
//! - `airlock:backend/config` — its own, already-resolved settings;
//! - `airlock:backend/log` — diagnostics tagged with its configured name;
//! - WASI 0.2 with a context that grants nothing (see [`capabilities::wasi`]).
//!
//! Every other import refuses the component at load ([`import_policy`]). CPU, memory, stack,
//! wall time, requests and hostcall sizes are bounded per backend ([`limits`]).
//!
//! Pieces, one per file: [`engine`] (the process-wide engine and epoch ticker),
//! [`component_cache`] (pinning, compiling, the on-disk cache), [`import_policy`],
//! [`inspect`], [`instance_pool`], [`wasm_backend`] (the `CredentialBackend`), and the
//! capabilities a guest is granted under [`capabilities`].
//!
//! [`HttpSender`]: crate::outbound::HttpSender

pub mod bindings;
pub mod capabilities;
pub mod component_cache;
pub mod engine;
pub mod error;
pub mod host_state;
pub mod import_policy;
pub mod inspect;
pub mod instance_pool;
pub mod limits;
pub mod wasm_backend;

pub use capabilities::log::{GuestLogLevel, LogRecord, LogSink, LogSource, TracingLogSink};
pub use component_cache::{ComponentCache, LoadSource, LoadedComponent, parse_pin, sha256_hex};
pub use engine::{EngineConfig, SandboxEngine};
pub use error::SandboxError;
pub use import_policy::ImportVerdict;
pub use inspect::{ComponentReport, ImportReport, ItemReport, inspect};
pub use instance_pool::{Isolation, PoolStats};
pub use limits::{LimitHit, Limits};
pub use wasm_backend::{WasmBackend, WasmBackendConfig};
