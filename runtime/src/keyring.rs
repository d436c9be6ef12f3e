//! Fernet keys: where they come from, which one encrypts, how a new one is added.
//!
//! Invariants: keys are ordered newest first; the newest encrypts and every key decrypts,
//! so values written under an older key stay readable through a rotation. A key never
//! appears in a log line or error message: errors name the key's *source* (an environment
//! variable or a file and line), not its text. The key file is written with mode 0600 and
//! replaced atomically (write, fsync, rename), so a crash leaves either the old file or the
//! new one, never a truncated one.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use fernet::{Fernet, MultiFernet};
use zeroize::Zeroizing;

use crate::secret::{Secret, SecretError};

/// File name of the key file inside the data directory (the name Jentic Mini uses).
pub const KEY_FILE: &str = "vault.key";

/// Environment variables read, in order of precedence.
pub const ENV_KEYS: &str = "AIRLOCK_VAULT_KEYS";
pub const ENV_KEY: &str = "AIRLOCK_VAULT_KEY";
pub const ENV_JENTIC_KEY: &str = "JENTIC_VAULT_KEY";

/// Where the keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable (the process cannot add keys to it).
    Env(&'static str),
    /// A key file airlock may prepend new keys to.
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "${var}"),
            KeySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Key problems. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{source_name} {position}: not a Fernet key (expected 32 bytes in URL-safe base64, \
         44 characters ending in '=')"
    )]
    Malformed {
        source_name: String,
        position: String,
    },
    #[error("{0} holds no key")]
    Empty(String),
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a token does not decrypt with any of the {count} key(s) from {source_name}")]
    Undecryptable { count: usize, source_name: String },
    #[error("decrypted value is unusable: {0}")]
    BadPlaintext(#[from] SecretError),
}

/// The ordered set of Fernet keys in use.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Fernet>,
    multi: MultiFernet,
    source: KeySource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .field("source", &self.source)
            .finish()
    }
}

impl Keyring {
    /// Load keys the documented way: `AIRLOCK_VAULT_KEYS` (comma-separated, newest first),
    /// else `AIRLOCK_VAULT_KEY`, else `JENTIC_VAULT_KEY`, else `DATA_DIR/vault.key`, which is
    /// created with one fresh key (mode 0600) if it does not exist. `env` looks variables
    /// up, so tests need not touch the process environment.
    pub fn load(data_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KeyError> {
        if let Some(list) = env(ENV_KEYS).filter(|v| !v.trim().is_empty()) {
            let list = Zeroizing::new(list);
            return Keyring::from_texts(
                list.split(',').map(str::trim).filter(|k| !k.is_empty()),
                KeySource::Env(ENV_KEYS),
                "entry",
            );
        }
        for var in [ENV_KEY, ENV_JENTIC_KEY] {
            if let Some(key) = env(var).filter(|v| !v.trim().is_empty()) {
                let key = Zeroizing::new(key);
                return Keyring::from_texts([key.trim()], KeySource::Env(var), "value");
            }
        }
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            create_key_file(&path)?;
        }
        Keyring::from_file(&path)
    }

    /// Load the keys in a key file: one a line, newest first; blank lines and lines starting
    /// with `#` are ignored.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        warn_if_readable_by_others(path);
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        Keyring::from_texts(lines, KeySource::File(path.to_path_buf()), "key")
    }

    /// Build from key texts, newest first. `what` names an item in error messages.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        source: KeySource,
        what: &str,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, text) in texts.into_iter().enumerate() {
            let key = Fernet::new(text).ok_or_else(|| KeyError::Malformed {
                source_name: source.to_string(),
                position: format!("{what} {}", i + 1),
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(source.to_string()));
        }
        let multi = MultiFernet::new(keys.clone());
        Ok(Keyring {
            keys,
            multi,
            source,
        })
    }

    /// Encrypt under the newest key.
    pub fn encrypt(&self, value: &Secret) -> String {
        self.multi.encrypt(value.expose().as_bytes())
    }

    /// Decrypt with whichever key opens the token.
    pub fn decrypt(&self, token: &str) -> Result<Secret, KeyError> {
        let bytes = self
            .multi
            .decrypt(token)
            .map_err(|_| KeyError::Undecryptable {
                count: self.keys.len(),
                source_name: self.source.to_string(),
            })?;
        Ok(Secret::from_bytes(bytes)?)
    }

    /// Decrypt raw bytes (used for the canary, whose plaintext is not a credential).
    pub fn decrypt_bytes(&self, token: &str) -> Option<Zeroizing<Vec<u8>>> {
        self.multi.decrypt(token).ok().map(Zeroizing::new)
    }

    pub fn encrypt_bytes(&self, bytes: &[u8]) -> String {
        self.multi.encrypt(bytes)
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A keyring holding only the newest key (to prove a rotation needs nothing older).
    pub fn newest_only(&self) -> Keyring {
        let keys = vec![self.keys[0].clone()];
        Keyring {
            multi: MultiFernet::new(keys.clone()),
            keys,
            source: self.source.clone(),
        }
    }
}

/// Generate a fresh key and put it first in the key file at `path`, keeping every older key
/// after it. Returns the keyring read back from the file.
pub fn prepend_new_key(path: &Path) -> Result<Keyring, KeyError> {
    let old = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?,
    );
    let key = Zeroizing::new(Fernet::generate_key());
    let mut text = Zeroizing::new(String::with_capacity(old.len() + key.len() + 1));
    text.push_str(&key);
    text.push('\n');
    text.push_str(&old);
    write_key_file(path, &text)?;
    Keyring::from_file(path)
}

/// Replace the key file's contents with only the newest key of `keyring` (after every value
/// has been re-encrypted under it).
pub fn keep_only_newest(path: &Path, newest_key_text: &str) -> Result<(), KeyError> {
    let mut text = Zeroizing::new(newest_key_text.to_owned());
    text.push('\n');
    write_key_file(path, &text)
}

/// The key text at line `index` (0 = newest) of a key file, for `keep_only_newest`.
pub fn key_text_at(path: &Path, index: usize) -> Result<Zeroizing<String>, KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?,
    );
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .nth(index)
        .map(|k| Zeroizing::new(k.to_owned()))
        .ok_or_else(|| KeyError::Empty(path.display().to_string()))
}

fn create_key_file(path: &Path) -> Result<(), KeyError> {
    let key = Zeroizing::new(Fernet::generate_key());
    let mut text = Zeroizing::new(String::new());
    text.push_str(&key);
    text.push('\n');
    write_key_file(path, &text)?;
    tracing::info!(path = %path.display(), "created a new vault key file");
    Ok(())
}

/// Write `text` to `path` atomically with mode 0600.
fn write_key_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(KEY_FILE),
        std::process::id()
    ));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "vault key file is accessible to other users; chmod 600 it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn creates_a_private_key_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keyring::load(dir.path(), &no_env).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(*a.source(), KeySource::File(dir.path().join(KEY_FILE)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let token = a.encrypt(&Secret::new("v".into()).unwrap());
        let b = Keyring::load(dir.path(), &no_env).unwrap();
        assert_eq!(b.decrypt(&token).unwrap().expose(), "v");
    }

    #[test]
    fn env_precedence_and_every_key_decrypts() {
        let dir = tempfile::tempdir().unwrap();
        let old = Fernet::generate_key();
        let new = Fernet::generate_key();
        let old_ring = Keyring::from_texts([old.as_str()], KeySource::Env(ENV_KEY), "v").unwrap();
        let token_old = old_ring.encrypt(&Secret::new("old".into()).unwrap());
        let list = format!("{new}, {old}");
        let env = |name: &str| match name {
            ENV_KEYS => Some(list.clone()),
            ENV_KEY => Some("ignored".into()),
            _ => None,
        };
        let ring = Keyring::load(dir.path(), &env).unwrap();
        assert_eq!(*ring.source(), KeySource::Env(ENV_KEYS));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.decrypt(&token_old).unwrap().expose(), "old");
        let token_new = ring.encrypt(&Secret::new("new".into()).unwrap());
        let new_only = Keyring::from_texts([new.as_str()], KeySource::Env(ENV_KEY), "v").unwrap();
        assert_eq!(new_only.decrypt(&token_new).unwrap().expose(), "new");
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "env keys create no file"
        );

        let jentic = |name: &str| (name == ENV_JENTIC_KEY).then(|| SPEC_KEY.to_string());
        let ring = Keyring::load(dir.path(), &jentic).unwrap();
        assert_eq!(*ring.source(), KeySource::Env(ENV_JENTIC_KEY));
    }

    #[test]
    fn malformed_keys_are_named_by_position_never_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let list = format!("{SPEC_KEY},not-a-key-but-a-secret");
        let env = |name: &str| (name == ENV_KEYS).then(|| list.clone());
        let err = Keyring::load(dir.path(), &env).unwrap_err().to_string();
        assert!(
            err.starts_with("$AIRLOCK_VAULT_KEYS entry 2: not a Fernet key"),
            "{err}"
        );
        assert!(!err.contains("not-a-key-but-a-secret"));

        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, format!("# comment\n\n{SPEC_KEY}\nshort\n")).unwrap();
        let err = Keyring::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("vault.key key 2: not a Fernet key"), "{err}");
        std::fs::write(&path, "# only a comment\n").unwrap();
        assert!(matches!(Keyring::from_file(&path), Err(KeyError::Empty(_))));
    }

    #[test]
    fn prepend_keeps_old_keys_readable() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load(dir.path(), &no_env).unwrap();
        let token = ring.encrypt(&Secret::new("v".into()).unwrap());
        let path = dir.path().join(KEY_FILE);
        let rotated = prepend_new_key(&path).unwrap();
        assert_eq!(rotated.len(), 2);
        assert_eq!(rotated.decrypt(&token).unwrap().expose(), "v");
        assert!(rotated.newest_only().decrypt(&token).is_err());
        let newest = key_text_at(&path, 0).unwrap();
        keep_only_newest(&path, &newest).unwrap();
        assert_eq!(Keyring::from_file(&path).unwrap().len(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let a = Keyring::from_texts([SPEC_KEY], KeySource::Env(ENV_KEY), "v").unwrap();
        let other = Fernet::generate_key();
        let b = Keyring::from_texts([other.as_str()], KeySource::Env(ENV_KEY), "v").unwrap();
        let token = a.encrypt(&Secret::new("v".into()).unwrap());
        let err = b.decrypt(&token).unwrap_err().to_string();
        assert_eq!(
            err,
            "a token does not decrypt with any of the 1 key(s) from $AIRLOCK_VAULT_KEY"
        );
    }
}
