//! [`WasmBackend`]: a credential backend that is an untrusted WebAssembly component.
//!
//! Invariants:
//! - A backend is built only from a component that passed the pin check, the import policy
//!   and linking ([`WasmBackend::new`] fails otherwise, naming the reason).
//! - Every operation runs on an instance of this backend alone, within its limits; a limit
//!   hit becomes `BackendError::LimitExceeded("sandbox limit: …")` naming the limit.
//! - Values cross the boundary as [`Secret`]s: the guest's string is moved into a `Secret`
//!   at once (zeroed on drop) and is never formatted into a log line or an error.
//! - A guest's `get-values` answer of the wrong length is rejected whole: no result is
//!   attributed to a credential it may not belong to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::bindings;
use super::capabilities::log::{LogSink, TracingLogSink};
use super::component_cache::LoadSource;
use super::engine::SandboxEngine;
use super::error::{SandboxError, error_chain};
use super::host_state::InstanceTemplate;
use super::import_policy::{first_refused_import, missing_backend_export};
use super::instance_pool::{InstancePool, Isolation, Op, Outcome, PoolStats, from_guest_error};
use super::limits::Limits;
use crate::backend::{BackendError, CredentialBackend, CredentialRef};
use crate::outbound::HttpSender;
use crate::secret::{Secret, SecretError};

/// Default number of instances per backend: enough for a few concurrent calls on a small
/// machine without reserving many pool slots.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// Everything needed to run one sandboxed backend. The config-file loader fills it in.
#[derive(Clone)]
pub struct WasmBackendConfig {
    /// The backend's configured name (`[backends.NAME]`); tags its log lines.
    pub name: String,
    /// Path of the component file.
    pub component: PathBuf,
    /// Optional SHA-256 pin (64 hex digits, optionally prefixed `sha256:`).
    pub sha256: Option<String>,
    pub isolation: Isolation,
    /// Most instances alive at once; also the most concurrent calls. At least 1.
    pub pool_size: usize,
    pub limits: Limits,
    /// What the guest reads through `config`: values already resolved by the host.
    pub config: BTreeMap<String, String>,
    /// The outbound HTTP capability for this backend (policy and enforcement).
    pub http: Arc<dyn HttpSender>,
    /// Where guest log lines go; `None` uses [`TracingLogSink`].
    pub log_sink: Option<Arc<dyn LogSink>>,
}

impl WasmBackendConfig {
    /// A configuration with default isolation, pool size and limits, and no settings.
    pub fn new(
        name: impl Into<String>,
        component: impl Into<PathBuf>,
        http: Arc<dyn HttpSender>,
    ) -> Self {
        WasmBackendConfig {
            name: name.into(),
            component: component.into(),
            sha256: None,
            isolation: Isolation::default(),
            pool_size: DEFAULT_POOL_SIZE,
            limits: Limits::default(),
            config: BTreeMap::new(),
            http,
            log_sink: None,
        }
    }
}

impl std::fmt::Debug for WasmBackendConfig {
    /// Config values may be resolved secrets: only the keys are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBackendConfig")
            .field("name", &self.name)
            .field("component", &self.component)
            .field("sha256", &self.sha256)
            .field("isolation", &self.isolation)
            .field("pool_size", &self.pool_size)
            .field("limits", &self.limits)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A credential backend running as a sandboxed WebAssembly component.
pub struct WasmBackend {
    name: String,
    sha256: String,
    load_source: LoadSource,
    isolation: Isolation,
    pool_size: usize,
    limits: Limits,
    pool: InstancePool,
}

impl std::fmt::Debug for WasmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBackend")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("isolation", &self.isolation)
            .field("pool_size", &self.pool_size)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WasmBackend {
    /// Load, check and link the component. Compiles it (or loads it from the cache), which
    /// can take seconds for a large component: call it from `spawn_blocking` inside an
    /// async context. No guest code runs here; [`CredentialBackend::init`] runs the first
    /// instance.
    pub fn new(
        engine: &Arc<SandboxEngine>,
        config: WasmBackendConfig,
    ) -> Result<Self, SandboxError> {
        let invalid = |reason: String| SandboxError::InvalidConfig {
            backend: config.name.clone(),
            reason,
        };
        if config.name.trim().is_empty() {
            return Err(invalid("the backend name is empty".into()));
        }
        if config.pool_size == 0 {
            return Err(invalid("pool_size must be at least 1".into()));
        }
        config
            .limits
            .validate(engine.config().max_memory_bytes)
            .map_err(|reason| invalid(format!("limits: {reason}")))?;

        let loaded =
            engine
                .cache()
                .load(engine.engine(), &config.component, config.sha256.as_deref())?;
        let path = loaded.path.clone();
        if let Some((import, reason)) = first_refused_import(engine.engine(), &loaded.component) {
            return Err(SandboxError::RefusedImport {
                path,
                import,
                reason,
            });
        }
        if let Some(reason) = missing_backend_export(engine.engine(), &loaded.component) {
            return Err(SandboxError::MissingExport { path, reason });
        }
        let pre = engine
            .linker()
            .instantiate_pre(&loaded.component)
            .map_err(|e| SandboxError::Link {
                path: path.clone(),
                reason: error_chain(&e),
            })?;
        let template = InstanceTemplate {
            backend: Arc::from(config.name.as_str()),
            limits: config.limits.clone(),
            config: Arc::new(config.config),
            http: config.http,
            log_sink: config.log_sink.unwrap_or_else(|| Arc::new(TracingLogSink)),
            epoch_tick: engine.config().epoch_tick,
        };
        let pool = InstancePool::new(
            engine.engine().clone(),
            pre,
            template,
            config.isolation,
            config.pool_size,
            engine.config().max_wasm_stack,
        )
        .map_err(|e| SandboxError::MissingExport {
            path: path.clone(),
            reason: error_chain(&e),
        })?;
        tracing::info!(backend = %config.name, component = %path.display(), sha256 = %loaded.sha256,
            from_cache = loaded.source == LoadSource::Cache, "sandboxed backend loaded");
        Ok(WasmBackend {
            name: config.name,
            sha256: loaded.sha256,
            load_source: loaded.source,
            isolation: config.isolation,
            pool_size: config.pool_size,
            limits: config.limits,
            pool,
        })
    }

    /// SHA-256 of the component file (lower-case hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the component was compiled now or came from the cache.
    pub fn load_source(&self) -> LoadSource {
        self.load_source
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Instances created and discarded so far, and idle now.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
}

fn to_wit(cred: &CredentialRef) -> bindings::types::CredentialRef {
    bindings::types::CredentialRef {
        id: cred.id.clone(),
        label: cred.label.clone(),
        api_id: cred.api_id.clone(),
        auth_type: cred.auth_type.clone(),
        locator: cred.locator.clone(),
    }
}

/// The guest's value as a `Secret`; the error never contains the value.
fn to_secret(value: Result<String, bindings::types::BackendError>) -> Result<Secret, BackendError> {
    let value = value.map_err(from_guest_error)?;
    Secret::new(value).map_err(|e| match e {
        SecretError::Empty => BackendError::Internal("the backend returned an empty value".into()),
        other => BackendError::Internal(format!("the backend returned an unusable value: {other}")),
    })
}

/// An outcome of the wrong shape means the pool and the op disagree: a host bug.
fn unexpected() -> BackendError {
    BackendError::Internal("sandbox: unexpected result shape".into())
}

#[async_trait]
impl CredentialBackend for WasmBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "wasm"
    }

    /// Create (and, when pooled, keep) one instance: runs the guest's `init`.
    async fn init(&self) -> Result<(), BackendError> {
        self.pool.warm().await
    }

    async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError> {
        let cred = to_wit(cred);
        match self.pool.call(Op::GetValue(&cred)).await? {
            Outcome::Text(value) => to_secret(value),
            _ => Err(unexpected()),
        }
    }

    async fn get_values(&self, creds: &[CredentialRef]) -> Vec<Result<Secret, BackendError>> {
        if creds.is_empty() {
            return Vec::new();
        }
        let wit: Vec<_> = creds.iter().map(to_wit).collect();
        let all_failed = |e: BackendError| creds.iter().map(|_| Err(e.clone())).collect();
        match self.pool.call(Op::GetValues(&wit)).await {
            Ok(Outcome::Texts(values)) if values.len() == creds.len() => {
                values.into_iter().map(to_secret).collect()
            }
            Ok(Outcome::Texts(values)) => all_failed(BackendError::Internal(format!(
                "the backend returned {} results for {} credentials",
                values.len(),
                creds.len()
            ))),
            Ok(_) => all_failed(unexpected()),
            Err(e) => all_failed(e),
        }
    }

    async fn store_value(&self, cred: &CredentialRef, value: &Secret) -> Result<(), BackendError> {
        let cred = to_wit(cred);
        match self
            .pool
            .call(Op::StoreValue(&cred, value.expose()))
            .await?
        {
            Outcome::Unit(result) => result.map_err(from_guest_error),
            _ => Err(unexpected()),
        }
    }

    async fn delete_value(&self, cred: &CredentialRef) -> Result<(), BackendError> {
        let cred = to_wit(cred);
        match self.pool.call(Op::DeleteValue(&cred)).await? {
            Outcome::Unit(result) => result.map_err(from_guest_error),
            _ => Err(unexpected()),
        }
    }

    async fn health(&self) -> Result<String, BackendError> {
        match self.pool.call(Op::Health).await? {
            Outcome::Text(result) => result.map_err(from_guest_error).map(|text| {
                super::capabilities::log::sanitize(
                    &text,
                    super::instance_pool::MAX_ERROR_MESSAGE_BYTES,
                    0,
                )
            }),
            _ => Err(unexpected()),
        }
    }
}
