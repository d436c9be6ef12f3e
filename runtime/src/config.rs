//! Configuration: `airlock.toml` plus environment variables, with flags on top.
//!
//! Precedence, highest first: command-line flags, environment variables, the config file,
//! built-in defaults. With nothing set, airlock keeps its data in `./data/` and uses the
//! Fernet backend. Unknown keys in the file are errors (a typo must not silently fall back
//! to a default), and every file error names its line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fernet_vault::FERNET;
use crate::rate_limit::Rate;
use crate::value_cache::{CacheSettings, DEFAULT_MAX_ENTRIES};

/// Config file read when no `--config`/`AIRLOCK_CONFIG` is given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "airlock.toml";
/// Data directory used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "data";

pub const ENV_CONFIG: &str = "AIRLOCK_CONFIG";
pub const ENV_DATA_DIR: &str = "AIRLOCK_DATA_DIR";
/// The service's listen address (overrides `[server] listen`).
pub const ENV_LISTEN: &str = "AIRLOCK_LISTEN";
/// Where `airlock serve` listens by default: loopback only, so a service started without
/// thought is not reachable from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8900";
/// Jentic Mini's name for the default backend, honoured unchanged.
pub const ENV_DEFAULT_BACKEND: &str = "JENTIC_CREDENTIAL_BACKEND";
/// Jentic Mini's Bitwarden settings: with `JENTIC_CREDENTIAL_BACKEND=bitwarden` and no
/// `[backends.bitwarden]` section, they configure the bundled Bitwarden component.
pub const ENV_BITWARDEN_URL: &str = "JENTIC_BITWARDEN_URL";
pub const ENV_BITWARDEN_TOKEN: &str = "JENTIC_BITWARDEN_TOKEN";
/// Where bundled components are looked for (default `guest-backends/dist`).
pub const ENV_COMPONENT_DIR: &str = "AIRLOCK_COMPONENT_DIR";
pub const DEFAULT_COMPONENT_DIR: &str = "guest-backends/dist";

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the database and key file live.
    pub data_dir: PathBuf,
    /// Backend for credentials created without `--backend`.
    pub default_backend: String,
    /// The file the settings came from, if any.
    pub file: Option<PathBuf>,
    /// Sandboxed backends by name (`[backends.NAME]`), paths resolved against the file.
    pub backends: BTreeMap<String, BackendConfig>,
    /// The HTTP service (`[server]`), paths resolved against the file.
    pub server: ServerConfig,
}

/// The file's shape. Every field optional; unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    default_backend: Option<String>,
    #[serde(default)]
    backends: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    server: ServerConfig,
}

/// `[server]`: how `airlock serve` listens and what it allows. Every limit has a default
/// that says which failure or attack it stops.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8900: loopback only).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key (PEM files). Off by default; without it,
    /// tokens cross the network in clear, so a non-loopback `listen` logs a warning.
    pub tls: Option<TlsConfig>,
    /// Largest request body read, in bytes (default 2 MiB: a 1 MiB value with JSON
    /// escaping). Stops a client from making the service buffer unbounded input.
    pub max_body_bytes: u64,
    /// Longest a request may take end to end (default 10 s), answered 504 `timeout`. Stops
    /// a hung backend from holding connections and memory forever.
    pub request_timeout_ms: u64,
    /// Longest a client may take to send its request headers, or to finish the TLS
    /// handshake (default 10 s). Stops slow-loris clients from pinning connections.
    pub header_read_timeout_ms: u64,
    /// On SIGTERM, how long requests in flight may take to finish before the process
    /// exits anyway (default 30 s).
    pub shutdown_grace_ms: u64,
    /// Most connections served at once (default 1024); further clients wait in the
    /// kernel's accept queue. Stops connection floods from exhausting file descriptors.
    pub max_connections: u32,
    pub rate_limit: RateLimitConfig,
    pub audit: AuditConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8900))),
            tls: None,
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            shutdown_grace_ms: 30_000,
            max_connections: 1024,
            rate_limit: RateLimitConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v}: must be between {lo} and {hi}"))
            }
        };
        range(
            "max_body_bytes",
            self.max_body_bytes,
            1024,
            64 * 1024 * 1024,
        )?;
        range("request_timeout_ms", self.request_timeout_ms, 100, 600_000)?;
        range(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            100,
            600_000,
        )?;
        range("shutdown_grace_ms", self.shutdown_grace_ms, 0, 600_000)?;
        range(
            "max_connections",
            u64::from(self.max_connections),
            1,
            100_000,
        )?;
        self.rate_limit.default_rate()?;
        for name in self.rate_limit.toolkits.keys() {
            self.rate_limit.toolkit_rate(name)?;
        }
        Ok(())
    }
}

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; relative to the config file.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); relative to the config file.
    pub key: PathBuf,
}

/// `[server.rate_limit]`: a token bucket per toolkit, applied to requests made with a
/// toolkit key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second per toolkit (default 1000; 0 turns limits off).
    pub requests_per_second: f64,
    /// Requests a toolkit may make at once after being idle (default 2000).
    pub burst: u32,
    /// Per-toolkit overrides: `[server.rate_limit.toolkits.NAME]`.
    pub toolkits: BTreeMap<String, ToolkitRateConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 1000.0,
            burst: 2000,
            toolkits: BTreeMap::new(),
        }
    }
}

/// `[server.rate_limit.toolkits.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolkitRateConfig {
    /// 0 means unlimited for this toolkit.
    pub requests_per_second: f64,
    /// Default: twice the rate (at least 1).
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    fn rate(per_second: f64, burst: Option<u32>, what: &str) -> Result<Option<Rate>, String> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(format!(
                "{what}: requests_per_second = {per_second}: must be 0 or more"
            ));
        }
        if per_second == 0.0 {
            return Ok(None);
        }
        let burst =
            burst.unwrap_or_else(|| (per_second * 2.0).ceil().min(f64::from(u32::MAX)) as u32);
        if burst == 0 {
            return Err(format!("{what}: burst must be at least 1"));
        }
        Ok(Some(Rate {
            per_second,
            burst: f64::from(burst),
        }))
    }

    /// The rate for toolkits without an override (`None`: unlimited).
    pub fn default_rate(&self) -> Result<Option<Rate>, String> {
        Self::rate(self.requests_per_second, Some(self.burst), "rate_limit")
    }

    /// The override for `toolkit`, if any.
    pub fn toolkit_rate(&self, toolkit: &str) -> Result<Option<Rate>, String> {
        match self.toolkits.get(toolkit) {
            Some(t) => Self::rate(
                t.requests_per_second,
                t.burst,
                &format!("rate_limit.toolkits.{toolkit}"),
            ),
            None => self.default_rate(),
        }
    }
}

/// `[server.audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days audit events are kept (default 90; 0 keeps them forever). Stops a busy
    /// service from filling its disk with audit rows.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 90 }
    }
}

impl AuditConfig {
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0)
            .then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }
}

/// `cache = { … }` in a `[backends.NAME]` section. Off by default: a cached value outlives
/// a change made directly in the upstream store by up to `ttl_ms`, which only the operator
/// can judge acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a value is served from memory (0: no cache; single-flight stays on).
    pub ttl_ms: u64,
    /// How much longer a value may be served while the backend is unavailable (0: never).
    pub stale_if_error_ms: u64,
    /// Most values kept (default 10000).
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_ms: 0,
            stale_if_error_ms: 0,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CacheConfig {
    pub fn settings(&self) -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_millis(self.ttl_ms),
            stale_if_error: Duration::from_millis(self.stale_if_error_ms),
            max_entries: self.max_entries,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.stale_if_error_ms > 0 && self.ttl_ms == 0 {
            return Err("cache.stale_if_error_ms needs cache.ttl_ms > 0".into());
        }
        if self.max_entries == 0 || self.max_entries > 1_000_000 {
            return Err(format!(
                "cache.max_entries = {}: must be between 1 and 1000000",
                self.max_entries
            ));
        }
        if self.ttl_ms > 86_400_000 || self.stale_if_error_ms > 7 * 86_400_000 {
            return Err("cache.ttl_ms is at most a day, cache.stale_if_error_ms a week".into());
        }
        Ok(())
    }
}

/// What kind of backend a `[backends.NAME]` section configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A WebAssembly component run in the sandbox.
    Wasm,
}

/// How instances of a sandboxed backend are reused (`pooled` or `per-call`).
pub use crate::sandbox::Isolation;

/// One `[backends.NAME]` section, as written (references not yet resolved).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// The component file (`.wasm`); relative to the config file.
    pub component: PathBuf,
    /// Expected SHA-256 of the component, hex; a mismatch refuses to load it.
    pub sha256: Option<String>,
    /// Destinations the backend may send HTTP requests to (see the README for syntax).
    #[serde(default)]
    pub allowed_outbound: Vec<String>,
    /// Allow loopback and private addresses for every allowed destination (off: only
    /// entries naming such an address or CIDR reach it).
    #[serde(default)]
    pub allow_private_networks: bool,
    #[serde(default)]
    pub isolation: Isolation,
    /// Instances kept for reuse (pooled isolation).
    pub pool_size: Option<u32>,
    /// PEM file of extra CA certificates trusted for this backend's HTTPS.
    pub ca_bundle: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What the guest reads through its `config` import; `${env:…}`/`${file:…}` allowed.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigScalar>,
    /// Headers the host adds to requests for a destination; the guest never sees them.
    #[serde(default)]
    pub inject_headers: Vec<InjectHeaderConfig>,
    /// Value cache in front of this backend (off by default).
    #[serde(default)]
    pub cache: CacheConfig,
}

/// A `config` value: strings, numbers and booleans are accepted and given to the guest as
/// text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigScalar {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl ConfigScalar {
    pub fn as_text(&self) -> String {
        match self {
            ConfigScalar::String(s) => s.clone(),
            ConfigScalar::Integer(i) => i.to_string(),
            ConfigScalar::Float(f) => f.to_string(),
            ConfigScalar::Boolean(b) => b.to_string(),
        }
    }
}

/// `[[backends.NAME.inject_headers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectHeaderConfig {
    /// An `allowed_outbound`-style destination the header is added for.
    pub destination: String,
    pub name: String,
    /// The value; normally a `${env:…}` or `${file:…}` reference.
    pub value: String,
}

/// `limits = { … }`: every field optional, defaults in the sandbox's `Limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub memory_mib: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub max_requests: Option<u32>,
    pub max_request_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_hostcall_bytes: Option<u64>,
    pub max_log_line_bytes: Option<u64>,
    pub log_lines_per_second: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: backend '{backend}': {message}")]
    Backend {
        path: PathBuf,
        backend: String,
        message: String,
    },
    #[error("{source_name}: [server] {message}")]
    Server {
        source_name: String,
        message: String,
    },
}

/// Overrides from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Resolve the configuration. `env` looks variables up (the process environment in
    /// the binary; a map in tests).
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let explicit = overrides
            .config
            .clone()
            .or_else(|| env(ENV_CONFIG).filter(|v| !v.is_empty()).map(PathBuf::from));
        let path = match explicit {
            Some(p) => Some(p),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let mut file = match &path {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        // Relative paths in a file are relative to that file, so `airlock --config
        // /etc/airlock/airlock.toml` works from any directory.
        let file_dir = path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| {
                env(ENV_DATA_DIR)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| file.data_dir.map(|d| file_dir.join(d)))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let default_backend = env(ENV_DEFAULT_BACKEND)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .or(file.default_backend)
            .unwrap_or_else(|| FERNET.to_owned());
        let mut backends = std::mem::take(&mut file.backends);
        for (name, backend) in &mut backends {
            let invalid = |message: String| ConfigError::Backend {
                path: path.clone().unwrap_or_default(),
                backend: name.clone(),
                message,
            };
            if name == FERNET {
                return Err(invalid(
                    "the name `fernet` is the built-in vault's; choose another".into(),
                ));
            }
            crate::catalog::validate_id("backend name", name)
                .map_err(|e| invalid(e.to_string()))?;
            backend.component = file_dir.join(&backend.component);
            if let Some(ca) = &backend.ca_bundle {
                backend.ca_bundle = Some(file_dir.join(ca));
            }
            backend.cache.validate().map_err(invalid)?;
        }
        let mut server = file.server;
        let source_name = match &path {
            Some(p) => format!("config file {}", p.display()),
            None => "defaults".to_owned(),
        };
        if let Some(listen) = env(ENV_LISTEN).filter(|v| !v.trim().is_empty()) {
            server.listen = listen.trim().parse().map_err(|_| ConfigError::Server {
                source_name: format!("${ENV_LISTEN}"),
                message: format!("listen {listen:?} is not an address such as 127.0.0.1:8900"),
            })?;
        }
        if let Some(tls) = &mut server.tls {
            tls.cert = file_dir.join(&tls.cert);
            tls.key = file_dir.join(&tls.key);
        }
        server.validate().map_err(|message| ConfigError::Server {
            source_name,
            message,
        })?;
        if default_backend == "bitwarden" && !backends.contains_key("bitwarden") {
            let section = jentic_bitwarden(env).map_err(|message| ConfigError::Backend {
                path: path.clone().unwrap_or_default(),
                backend: "bitwarden".into(),
                message,
            })?;
            backends.insert("bitwarden".into(), section);
        }
        Ok(Config {
            data_dir,
            default_backend,
            file: path,
            backends,
            server,
        })
    }

    /// The directory `${file:…}` references are relative to.
    pub fn base_dir(&self) -> PathBuf {
        self.file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        let message = e.to_string().trim_end().to_owned();
        // Name the backend whose section the error is in, not only the line.
        match e.span().and_then(|span| backend_at(&text, span.start)) {
            Some(backend) => ConfigError::Backend {
                path: path.to_path_buf(),
                backend,
                message,
            },
            None => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
        }
    })
}

/// The Bitwarden backend Jentic Mini's settings describe: `JENTIC_BITWARDEN_URL` is the
/// `bw serve` address (or, with a token, the self-hosted server's base URL);
/// `JENTIC_BITWARDEN_TOKEN` is a Secrets Manager machine-account access token. The grant is
/// exactly those destinations (the Bitwarden cloud's identity and API hosts when only a token
/// is given); a `localhost` URL is also granted as 127.0.0.1 and [::1], the addresses the
/// name resolves to, since loopback is otherwise closed.
fn jentic_bitwarden(env: &dyn Fn(&str) -> Option<String>) -> Result<BackendConfig, String> {
    let present = |name| env(name).filter(|v: &String| !v.trim().is_empty());
    let url = present(ENV_BITWARDEN_URL);
    let token = present(ENV_BITWARDEN_TOKEN);
    if url.is_none() && token.is_none() {
        return Err(format!(
            "JENTIC_CREDENTIAL_BACKEND=bitwarden needs {ENV_BITWARDEN_URL} (bw serve) or \
             {ENV_BITWARDEN_TOKEN} (Secrets Manager), or a [backends.bitwarden] section"
        ));
    }
    let mut allowed = Vec::new();
    let mut config = BTreeMap::new();
    if let Some(url) = &url {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("{ENV_BITWARDEN_URL} is not a URL: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("{ENV_BITWARDEN_URL} has no host"))?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("{ENV_BITWARDEN_URL} has no port"))?;
        let scheme = parsed.scheme();
        allowed.push(format!("{scheme}://{host}:{port}"));
        if host.eq_ignore_ascii_case("localhost") {
            allowed.push(format!("{scheme}://127.0.0.1:{port}"));
            allowed.push(format!("{scheme}://[::1]:{port}"));
        }
        config.insert(
            "url".to_owned(),
            ConfigScalar::String(format!("${{env:{ENV_BITWARDEN_URL}}}")),
        );
    }
    if token.is_some() {
        if url.is_none() {
            allowed.push("https://identity.bitwarden.com".into());
            allowed.push("https://api.bitwarden.com".into());
        }
        config.insert(
            "access_token".to_owned(),
            ConfigScalar::String(format!("${{env:{ENV_BITWARDEN_TOKEN}}}")),
        );
    }
    let dir = present(ENV_COMPONENT_DIR).unwrap_or_else(|| DEFAULT_COMPONENT_DIR.to_owned());
    Ok(BackendConfig {
        kind: BackendKind::Wasm,
        component: PathBuf::from(dir).join("bitwarden.wasm"),
        sha256: None,
        allowed_outbound: allowed,
        allow_private_networks: false,
        isolation: Isolation::Pooled,
        pool_size: None,
        ca_bundle: None,
        limits: LimitsConfig::default(),
        config,
        inject_headers: Vec::new(),
        cache: CacheConfig::default(),
    })
}

/// The backend whose `[backends.NAME…]` table contains byte `offset` of `text`.
fn backend_at(text: &str, offset: usize) -> Option<String> {
    let mut current = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') {
            let header = t.trim_start_matches('[').trim_end_matches(']').trim();
            current = header
                .strip_prefix("backends.")
                .map(|rest| {
                    let rest = rest.trim();
                    match rest.strip_prefix('"') {
                        Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
                        None => rest.split('.').next().unwrap_or_default().trim().to_owned(),
                    }
                })
                .filter(|n| !n.is_empty());
        }
        pos += line.len();
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_without_anything() {
        // Tests run in the crate directory, which holds no airlock.toml.
        assert!(!Path::new(DEFAULT_CONFIG_FILE).exists());
        let c = Config::load(&Overrides::default(), &env_of(&[])).unwrap();
        assert_eq!(
            c,
            Config {
                data_dir: PathBuf::from("data"),
                default_backend: "fernet".into(),
                file: None,
                backends: BTreeMap::new(),
                server: ServerConfig::default(),
            }
        );
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8900");
        assert_eq!(
            c.server.rate_limit.default_rate().unwrap().unwrap().burst,
            2000.0
        );
    }

    #[test]
    fn server_section_parses_validates_and_names_problems() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("airlock.toml");
        let o = Overrides {
            config: Some(file.clone()),
            data_dir: None,
        };
        std::fs::write(
            &file,
            r#"
[server]
listen = "127.0.0.1:9000"
max_body_bytes = 65536
request_timeout_ms = 2000

[server.tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[server.rate_limit]
requests_per_second = 50
burst = 10

[server.rate_limit.toolkits.batch]
requests_per_second = 0

[server.audit]
retention_days = 7

[backends.vault]
kind = "wasm"
component = "vault.wasm"
cache = { ttl_ms = 30000, stale_if_error_ms = 60000 }
"#,
        )
        .unwrap();
        let c = Config::load(&o, &env_of(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.request_timeout(), Duration::from_secs(2));
        assert_eq!(
            c.server.tls.as_ref().unwrap().cert,
            dir.path().join("tls/cert.pem")
        );
        assert_eq!(c.server.rate_limit.toolkit_rate("batch").unwrap(), None);
        assert_eq!(
            c.server.rate_limit.toolkit_rate("other").unwrap(),
            Some(Rate {
                per_second: 50.0,
                burst: 10.0
            })
        );
        assert_eq!(
            c.server.audit.retention(),
            Some(Duration::from_secs(7 * 86_400))
        );
        let cache = c.backends["vault"].cache.settings();
        assert_eq!(cache.ttl, Duration::from_secs(30));
        assert_eq!(cache.stale_if_error, Duration::from_secs(60));
        let c = Config::load(&o, &env_of(&[("AIRLOCK_LISTEN", "127.0.0.1:0")])).unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert!(Config::load(&o, &env_of(&[("AIRLOCK_LISTEN", "nowhere")])).is_err());

        let cases: &[(&str, &str)] = &[
            ("[server]\nlisten = \"localhost\"\n", "line"),
            ("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "listen_addr"),
            ("[server]\nmax_body_bytes = 10\n", "max_body_bytes = 10"),
            ("[server]\nrequest_timeout_ms = 0\n", "request_timeout_ms"),
            (
                "[server.rate_limit]\nrequests_per_second = -1\n",
                "requests_per_second",
            ),
            ("[server.rate_limit]\nburst = 0\n", "burst"),
            ("[server.tls]\ncert = \"c.pem\"\n", "key"),
            (
                "[backends.v]\nkind = \"wasm\"\ncomponent = \"x\"\ncache = { stale_if_error_ms = 5 }\n",
                "needs cache.ttl_ms",
            ),
            (
                "[backends.v]\nkind = \"wasm\"\ncomponent = \"x\"\ncache = { ttl = 5 }\n",
                "backend 'v'",
            ),
        ];
        for (text, needle) in cases {
            std::fs::write(&file, text).unwrap();
            let err = Config::load(&o, &env_of(&[])).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn precedence_flag_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("airlock.toml");
        std::fs::write(&file, "data_dir = \"state\"\ndefault_backend = \"vault\"\n").unwrap();
        let o = Overrides {
            config: Some(file.clone()),
            data_dir: None,
        };
        let c = Config::load(&o, &env_of(&[])).unwrap();
        assert_eq!(c.data_dir, dir.path().join("state"));
        assert_eq!(c.default_backend, "vault");
        let c = Config::load(
            &o,
            &env_of(&[
                ("AIRLOCK_DATA_DIR", "/env"),
                ("JENTIC_CREDENTIAL_BACKEND", "fernet"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/env"));
        assert_eq!(c.default_backend, "fernet");
        let o = Overrides {
            config: Some(file),
            data_dir: Some("/flag".into()),
        };
        let c = Config::load(&o, &env_of(&[("AIRLOCK_DATA_DIR", "/env")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("airlock.toml");
        std::fs::write(&file, "data_dir = \"x\"\ndefualt_backend = \"fernet\"\n").unwrap();
        let o = Overrides {
            config: Some(file.clone()),
            data_dir: None,
        };
        let err = Config::load(&o, &env_of(&[])).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("defualt_backend"), "{err}");
        std::fs::write(&file, "data_dir = \n").unwrap();
        let err = Config::load(&o, &env_of(&[])).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let missing = Overrides {
            config: Some(dir.path().join("nope.toml")),
            data_dir: None,
        };
        let err = Config::load(&missing, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read config file"), "{err}");
    }

    #[test]
    fn backend_sections_parse_and_errors_name_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("airlock.toml");
        let text = r#"
[backends.vault-prod]
kind = "wasm"
component = "guests/vault.wasm"
sha256 = "ab12"
allowed_outbound = ["https://vault.internal:8200"]
isolation = "per-call"
limits = { memory_mib = 32, cpu_ms = 100, timeout_ms = 2000, max_requests = 4 }

[backends.vault-prod.config]
address = "https://vault.internal:8200"
port = 8200
tls = true

[[backends.vault-prod.inject_headers]]
destination = "https://vault.internal:8200"
name = "X-Vault-Token"
value = "${env:VAULT_TOKEN}"
"#;
        std::fs::write(&file, text).unwrap();
        let o = Overrides {
            config: Some(file.clone()),
            data_dir: None,
        };
        let c = Config::load(&o, &env_of(&[])).unwrap();
        let b = &c.backends["vault-prod"];
        assert_eq!(b.kind, BackendKind::Wasm);
        assert_eq!(b.component, dir.path().join("guests/vault.wasm"));
        assert_eq!(b.isolation, Isolation::PerCall);
        assert_eq!(b.limits.cpu_ms, Some(100));
        assert_eq!(b.config["port"].as_text(), "8200");
        assert_eq!(b.config["tls"].as_text(), "true");
        assert_eq!(b.inject_headers[0].value, "${env:VAULT_TOKEN}");

        let cases: &[(&str, &str)] = &[
            (
                "[backends.v1]\nkind = \"wasm\"\ncomponent = \"x.wasm\"\nalowed_outbound = []\n",
                "backend 'v1'",
            ),
            (
                "[backends.v2]\nkind = \"wasm\"\ncomponent = \"x.wasm\"\n[backends.v2.limits]\ncpu = 5\n",
                "backend 'v2'",
            ),
            (
                "[backends.v3]\nkind = \"docker\"\ncomponent = \"x\"\n",
                "backend 'v3'",
            ),
            (
                "[backends.fernet]\nkind = \"wasm\"\ncomponent = \"x\"\n",
                "built-in vault",
            ),
            (
                "[backends.v4]\nkind = \"wasm\"\ncomponent = \"x\"\nisolation = \"shared\"\n",
                "backend 'v4'",
            ),
        ];
        for (text, needle) in cases {
            std::fs::write(&file, text).unwrap();
            let err = Config::load(&o, &env_of(&[])).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            if *needle != "built-in vault" {
                assert!(err.contains("line"), "{text}: {err}");
            }
        }
    }

    #[test]
    fn jentic_bitwarden_settings_configure_the_bitwarden_component() {
        let c = Config::load(
            &Overrides::default(),
            &env_of(&[
                ("JENTIC_CREDENTIAL_BACKEND", "bitwarden"),
                ("JENTIC_BITWARDEN_URL", "http://localhost:8087"),
                ("AIRLOCK_COMPONENT_DIR", "/opt/airlock/components"),
            ]),
        )
        .unwrap();
        let b = &c.backends["bitwarden"];
        assert_eq!(
            b.component,
            PathBuf::from("/opt/airlock/components/bitwarden.wasm")
        );
        assert_eq!(
            b.allowed_outbound,
            [
                "http://localhost:8087",
                "http://127.0.0.1:8087",
                "http://[::1]:8087"
            ]
        );
        assert_eq!(b.config["url"].as_text(), "${env:JENTIC_BITWARDEN_URL}");
        assert!(!b.config.contains_key("access_token"));

        let c = Config::load(
            &Overrides::default(),
            &env_of(&[
                ("JENTIC_CREDENTIAL_BACKEND", "bitwarden"),
                ("JENTIC_BITWARDEN_TOKEN", "0.id.secret:key"),
            ]),
        )
        .unwrap();
        let b = &c.backends["bitwarden"];
        assert_eq!(
            b.allowed_outbound,
            [
                "https://identity.bitwarden.com",
                "https://api.bitwarden.com"
            ]
        );
        assert_eq!(
            b.config["access_token"].as_text(),
            "${env:JENTIC_BITWARDEN_TOKEN}"
        );

        let err = Config::load(
            &Overrides::default(),
            &env_of(&[("JENTIC_CREDENTIAL_BACKEND", "bitwarden")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs JENTIC_BITWARDEN_URL"), "{err}");
    }
}
