//! Configuration: `airlock.toml` plus environment variables, with flags on top.
//!
//! Precedence, highest first: command-line flags, environment variables, the config file,
//! built-in defaults. With nothing set, airlock keeps its data in `./data/` and uses the
//! Fernet backend. Unknown keys in the file are errors (a typo must not silently fall back
//! to a default), and every file error names its line.

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

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the database and key file live.
    pub data_dir: PathBuf,
    /// Backend for credentials created without `--backend`.
    pub default_backend: String,
    /// The file the settings came from, if any.
    pub file: Option<PathBuf>,
}

/// The file's shape. Every field optional; unknown fields rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    default_backend: Option<String>,
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
        let file = match &path {
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
        Ok(Config {
            data_dir,
            default_backend,
            file: path,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })
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
}
