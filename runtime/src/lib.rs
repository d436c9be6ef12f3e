//! airlock: resolves credentials for agents and services from pluggable backends.
//!
//! Metadata lives in the [`catalog`]; values live in backends ([`backend`]): the native
//! [`fernet_vault`] by default. The [`runtime`] offers the three operations callers use —
//! `get_value`, `get_values_for_api`, `store_value` — and dispatches each to the backend
//! that holds the credential. Values travel as [`secret::Secret`], which never prints.

pub mod admin_tokens;
pub mod audit;
pub mod backend;
pub mod backend_loader;
pub mod catalog;
pub mod config;
pub mod database;
pub mod fernet_vault;
pub mod jentic_import;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod rate_limit;
pub mod references;
pub mod resolution_read;
pub mod runtime;
pub mod sandbox;
pub mod secret;
pub mod service;
pub mod token;
pub mod toolkit_keys;
pub mod value_cache;

pub use backend::{BackendError, CredentialBackend, CredentialRef};
pub use runtime::{Runtime, RuntimeError};
pub use secret::Secret;
