//! Configuration: `airlock.toml` plus environment variables, with flags on top.
//!
//! Precedence, highest first: command-line flags, environment variables, the config file,
//! built-in defaults. With nothing set, airlock keeps its data in `./data/` and uses the
//! Fernet backend. Unknown keys in the file are errors (a typo must not silently fall back
//! to a default), and every file error names its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fernet_vault::FERNET;

/// Config file read when no `--config`/`AIRLOCK_CONFIG` is given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "airlock.toml";
/// Data directory used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "data";

pub const ENV_CONFIG: &str = "AIRLOCK_CONFIG";
pub const ENV_DATA_DIR: &str = "AIRLOCK_DATA_DIR";
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
}

/// The file's shape. Every field optional; unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    default_backend: Option<String>,
    #[serde(default)]
    backends: BTreeMap<String, BackendConfig>,
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
        }
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
            }
        );
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
