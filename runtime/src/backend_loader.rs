//! Builds the sandboxed backends named in configuration.
//!
//! For each `[backends.NAME]` section: resolve its `${env:…}`/`${file:…}` references (config
//! values and injected header values — errors name the backend and key, never a value),
//! map the file's `limits` onto the sandbox's [`Limits`] and the outbound capability's
//! [`OutboundConfig`], build the backend's [`OutboundClient`] and load its component into
//! the process's one [`SandboxEngine`]. Nothing here decides policy: it only carries the
//! operator's settings to the modules that enforce them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{BackendConfig, Isolation, LimitsConfig};
use crate::outbound::client::OutboundClient;
use crate::outbound::config::{InjectHeader, OutboundConfig};
use crate::outbound::stats::OutboundStats;
use crate::references::{self, ReferenceError};
use crate::sandbox::wasm_backend::DEFAULT_POOL_SIZE;
use crate::sandbox::{
    EngineConfig, Limits, SandboxEngine, SandboxError, WasmBackend, WasmBackendConfig,
};
use crate::secret::Secret;

/// Where compiled components are cached inside the data directory. Must be writable by
/// airlock alone: a cache entry is native code once deserialised.
pub const COMPONENT_CACHE_DIR: &str = "cache/components";

/// Why a configured backend could not be built. Names the backend; never a value.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("backend '{backend}': config key `{key}`: {source}")]
    Reference {
        backend: String,
        key: String,
        source: ReferenceError,
    },
    #[error("backend '{backend}': inject_headers[{index}] ({name}): {reason}")]
    InjectHeader {
        backend: String,
        index: usize,
        name: String,
        reason: String,
    },
    #[error("backend '{backend}': {source}")]
    Outbound {
        backend: String,
        source: crate::outbound::config::OutboundConfigError,
    },
    #[error("backend '{backend}': {source}")]
    Sandbox {
        backend: String,
        source: SandboxError,
    },
    #[error("backend '{backend}': limits.{field}: {reason}")]
    Limit {
        backend: String,
        field: &'static str,
        reason: String,
    },
    #[error("starting the sandbox: {0}")]
    Engine(SandboxError),
}

/// What an operator is shown about a sandboxed backend: what it was granted.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub component: PathBuf,
    pub sha256: String,
    pub allowed_outbound: Vec<String>,
    pub allow_private_networks: bool,
    /// `(destination, header name)`: never the value.
    pub injected_headers: Vec<(String, String)>,
    pub isolation: String,
    pub pool_size: usize,
    pub limits: LimitsView,
    pub config_keys: Vec<String>,
}

/// The effective limits, in the units of the config file.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub memory_mib: u64,
    pub cpu_ms: u64,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_requests: u32,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub max_hostcall_bytes: u64,
}

/// The process's sandbox engine for `data_dir`, with the component cache inside it.
pub fn engine(data_dir: &Path) -> Result<Arc<SandboxEngine>, LoadError> {
    SandboxEngine::new(EngineConfig {
        cache_dir: Some(data_dir.join(COMPONENT_CACHE_DIR)),
        ..EngineConfig::default()
    })
    .map_err(LoadError::Engine)
}

/// One configured backend, built.
pub struct Loaded {
    pub backend: Arc<WasmBackend>,
    /// What it was granted, for `airlock backends list`.
    pub grant: Grant,
    /// Its outbound capability's counters, for `/metrics`.
    pub outbound: Arc<OutboundStats>,
}

/// Build one configured backend. `base_dir` is where relative `${file:…}` paths start.
pub fn load(
    engine: &Arc<SandboxEngine>,
    name: &str,
    section: &BackendConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, LoadError> {
    let file = |path: &str| references::read_file_under(base_dir, path);
    let mut config = BTreeMap::new();
    for (key, value) in &section.config {
        let resolved = references::resolve(&value.as_text(), env, &file).map_err(|source| {
            LoadError::Reference {
                backend: name.to_owned(),
                key: key.clone(),
                source,
            }
        })?;
        config.insert(key.clone(), resolved);
    }
    let mut inject_headers = Vec::new();
    for (index, h) in section.inject_headers.iter().enumerate() {
        let header_err = |reason: String| LoadError::InjectHeader {
            backend: name.to_owned(),
            index,
            name: h.name.clone(),
            reason,
        };
        let value =
            references::resolve(&h.value, env, &file).map_err(|e| header_err(e.to_string()))?;
        let value = Secret::new(value).map_err(|e| header_err(e.to_string()))?;
        inject_headers.push(InjectHeader {
            destination: h.destination.clone(),
            name: h.name.clone(),
            value,
        });
    }
    let limits = sandbox_limits(name, &section.limits)?;
    let outbound = outbound_config(section, &limits, inject_headers);
    let http = OutboundClient::new(name, &outbound).map_err(|source| LoadError::Outbound {
        backend: name.to_owned(),
        source,
    })?;
    let outbound_stats = http.stats().clone();
    let pool_size = section
        .pool_size
        .map(|n| n as usize)
        .unwrap_or(DEFAULT_POOL_SIZE);
    let wasm = WasmBackendConfig {
        name: name.to_owned(),
        component: section.component.clone(),
        sha256: section.sha256.clone(),
        isolation: section.isolation,
        pool_size,
        limits: limits.clone(),
        config,
        http: Arc::new(http),
        log_sink: None,
    };
    let keys: Vec<String> = wasm.config.keys().cloned().collect();
    let backend = WasmBackend::new(engine, wasm).map_err(|source| LoadError::Sandbox {
        backend: name.to_owned(),
        source,
    })?;
    let grant = Grant {
        component: section.component.clone(),
        sha256: backend.sha256().to_owned(),
        allowed_outbound: section.allowed_outbound.clone(),
        allow_private_networks: section.allow_private_networks,
        injected_headers: section
            .inject_headers
            .iter()
            .map(|h| (h.destination.clone(), h.name.clone()))
            .collect(),
        isolation: match section.isolation {
            Isolation::Pooled => "pooled".into(),
            Isolation::PerCall => "per-call".into(),
        },
        pool_size,
        limits: limits_view(&limits, &outbound),
        config_keys: keys,
    };
    Ok(Loaded {
        backend: Arc::new(backend),
        grant,
        outbound: outbound_stats,
    })
}

/// The sandbox limits for a section: the file's values over the sandbox's defaults.
pub fn sandbox_limits(backend: &str, l: &LimitsConfig) -> Result<Limits, LoadError> {
    let bad = |field: &'static str, reason: &str| LoadError::Limit {
        backend: backend.to_owned(),
        field,
        reason: reason.to_owned(),
    };
    let positive = |field: &'static str, v: Option<u64>| match v {
        Some(0) => Err(bad(field, "must be at least 1")),
        other => Ok(other),
    };
    let mut limits = Limits::default();
    if let Some(mib) = positive("memory_mib", l.memory_mib)? {
        limits.max_memory_bytes = usize::try_from(mib)
            .ok()
            .and_then(|m| m.checked_mul(1 << 20))
            .ok_or_else(|| bad("memory_mib", "too large"))?;
    }
    if let Some(ms) = positive("cpu_ms", l.cpu_ms)? {
        limits.cpu_budget = Duration::from_millis(ms);
    }
    if let Some(ms) = positive("timeout_ms", l.timeout_ms)? {
        limits.wall_time = Duration::from_millis(ms);
    }
    if let Some(n) = l.max_requests {
        limits.max_requests_per_call = n;
    }
    let size = |field: &'static str, v: Option<u64>| -> Result<Option<usize>, LoadError> {
        positive(field, v)?
            .map(|b| usize::try_from(b).map_err(|_| bad(field, "too large")))
            .transpose()
    };
    if let Some(b) = size("max_request_bytes", l.max_request_bytes)? {
        limits.max_request_bytes = b;
        // The hostcall cap must leave room for a full request body plus URL and headers.
        limits.max_hostcall_bytes = limits.max_hostcall_bytes.max(b.saturating_add(64 << 10));
    }
    if let Some(b) = size("max_response_bytes", l.max_response_bytes)? {
        limits.max_response_bytes = b;
    }
    if let Some(b) = size("max_hostcall_bytes", l.max_hostcall_bytes)? {
        limits.max_hostcall_bytes = b;
    }
    if let Some(b) = size("max_log_line_bytes", l.max_log_line_bytes)? {
        limits.max_log_line_bytes = b;
    }
    if let Some(n) = l.log_lines_per_second {
        if n == 0 {
            return Err(bad("log_lines_per_second", "must be at least 1"));
        }
        limits.log_lines_per_second = n;
    }
    Ok(limits)
}

/// The outbound settings for a section. A single request never outlives the call it is
/// part of, so its total timeout is the call's wall time.
pub fn outbound_config(
    section: &BackendConfig,
    limits: &Limits,
    inject_headers: Vec<InjectHeader>,
) -> OutboundConfig {
    let defaults = OutboundConfig::default();
    let wall_ms = u64::try_from(limits.wall_time.as_millis()).unwrap_or(u64::MAX);
    OutboundConfig {
        allowed_outbound: section.allowed_outbound.clone(),
        allow_private_networks: section.allow_private_networks,
        inject_headers,
        ca_bundle: section.ca_bundle.clone(),
        connect_timeout_ms: section
            .limits
            .connect_timeout_ms
            .unwrap_or(defaults.connect_timeout_ms)
            .min(wall_ms),
        timeout_ms: defaults.timeout_ms.min(wall_ms),
        max_request_bytes: limits.max_request_bytes,
        max_response_bytes: limits.max_response_bytes,
        ..defaults
    }
}

fn limits_view(limits: &Limits, outbound: &OutboundConfig) -> LimitsView {
    LimitsView {
        memory_mib: (limits.max_memory_bytes >> 20) as u64,
        cpu_ms: limits.cpu_budget.as_millis() as u64,
        timeout_ms: limits.wall_time.as_millis() as u64,
        connect_timeout_ms: outbound.connect_timeout_ms,
        max_requests: limits.max_requests_per_call,
        max_request_bytes: limits.max_request_bytes as u64,
        max_response_bytes: limits.max_response_bytes as u64,
        max_hostcall_bytes: limits.max_hostcall_bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_limits_map_onto_sandbox_and_outbound() {
        let l = LimitsConfig {
            memory_mib: Some(32),
            cpu_ms: Some(100),
            timeout_ms: Some(2000),
            max_requests: Some(3),
            max_response_bytes: Some(4096),
            max_request_bytes: Some(4 << 20),
            ..LimitsConfig::default()
        };
        let limits = sandbox_limits("v", &l).unwrap();
        assert_eq!(limits.max_memory_bytes, 32 << 20);
        assert_eq!(limits.cpu_budget, Duration::from_millis(100));
        assert_eq!(limits.wall_time, Duration::from_secs(2));
        assert_eq!(limits.max_requests_per_call, 3);
        assert_eq!(limits.max_response_bytes, 4096);
        assert!(limits.max_hostcall_bytes > 4 << 20);
        let section: BackendConfig = toml::from_str(
            "kind = \"wasm\"\ncomponent = \"x.wasm\"\nallowed_outbound = [\"https://a.example\"]\n",
        )
        .unwrap();
        let out = outbound_config(&section, &limits, Vec::new());
        assert_eq!(out.timeout_ms, 2000, "a request cannot outlive its call");
        assert_eq!(out.max_response_bytes, 4096);
        assert_eq!(out.allowed_outbound, ["https://a.example"]);
        let zero = LimitsConfig {
            cpu_ms: Some(0),
            ..LimitsConfig::default()
        };
        let err = sandbox_limits("v", &zero).unwrap_err().to_string();
        assert_eq!(err, "backend 'v': limits.cpu_ms: must be at least 1");
    }
}
