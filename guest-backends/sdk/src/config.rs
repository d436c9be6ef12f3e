//! The operator's settings for one backend instance, read once at `init`.
//!
//! In a component the SDK fills a [`Config`] from the WIT `config` import (`keys` then `get`
//! for each), so a backend reads plain data and native tests build one with
//! [`Config::from_pairs`]. Invariant: no error produced here quotes a value: config values
//! include tokens and passwords, so messages name only the key.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::BackendError;
use crate::secret::Secret;

/// Key/value settings. Values are as the host resolved them (`${env:..}`/`${file:..}` done).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Config {
    /// Keys only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("keys", &self.values.keys().collect::<Vec<_>>()).finish()
    }
}

impl Config {
    /// A config holding `pairs` (later duplicates win).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { values: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Every key set, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The value of `key`, or `None` when unset. An empty value counts as set.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`; `invalid-config` when unset or empty (an empty required setting
    /// is always an operator mistake, e.g. an unset environment variable behind `${env:..}`).
    pub fn required(&self, key: &str) -> Result<&str, BackendError> {
        match self.optional(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(BackendError::invalid_config(format!("config key `{key}` is empty"))),
            None => Err(BackendError::invalid_config(format!("config key `{key}` is required"))),
        }
    }

    /// The value of `key` wrapped as a [`Secret`] (for tokens and passwords), or `None`.
    pub fn optional_secret(&self, key: &str) -> Option<Secret> {
        self.optional(key).map(Secret::new)
    }

    /// The value of `key` wrapped as a [`Secret`]; `invalid-config` when unset or empty.
    pub fn required_secret(&self, key: &str) -> Result<Secret, BackendError> {
        self.required(key).map(Secret::new)
    }

    /// `key` parsed as `T`, or `None` when unset. A value that does not parse is
    /// `invalid-config` with `expected` describing the accepted values (the value itself is
    /// not quoted).
    pub fn optional_parse<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>, BackendError> {
        match self.optional(key) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse::<T>().map(Some).map_err(|_| {
                    BackendError::invalid_config(format!("config key `{key}` must be {expected}"))
                })
            }
        }
    }

    /// `key` as a boolean (`true`/`false`/`1`/`0`/`yes`/`no`), `default` when unset.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, BackendError> {
        match self.optional(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(BackendError::invalid_config(format!("config key `{key}` must be true or false"))),
            },
        }
    }

    /// `key` as an `http://` or `https://` base URL without a trailing `/`, userinfo, query
    /// or fragment; `invalid-config` otherwise. The host enforces its own rules on every
    /// request; this check only turns a typo into a clear message at `init`.
    pub fn required_url(&self, key: &str) -> Result<String, BackendError> {
        let v = self.required(key)?.trim();
        let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://")).ok_or_else(|| {
            BackendError::invalid_config(format!("config key `{key}` must start with http:// or https://"))
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(BackendError::invalid_config(format!("config key `{key}` has no host")));
        }
        if authority.contains('@') || v.contains('?') || v.contains('#') {
            return Err(BackendError::invalid_config(format!(
                "config key `{key}` must be a plain base URL (no userinfo, query or fragment)"
            )));
        }
        Ok(v.trim_end_matches('/').to_string())
    }

    /// `invalid-config` naming every key not in `known`, so a misspelt setting (which would
    /// otherwise be silently ignored) stops the instance at `init`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), BackendError> {
        let unknown: Vec<&str> = self.keys().filter(|k| !known.contains(k)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(BackendError::invalid_config(format!(
                "unknown config key(s): {}; known keys: {}",
                unknown.join(", "),
                known.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::from_pairs([
            ("address", "http://127.0.0.1:8200/"),
            ("token", "hunter2"),
            ("n", "x7"),
            ("empty", " "),
        ])
    }

    #[test]
    fn accessors() {
        let c = cfg();
        assert_eq!(c.required("token").ok(), Some("hunter2"));
        assert_eq!(c.optional("missing"), None);
        assert_eq!(c.required("missing").expect_err("missing").message(), "config key `missing` is required");
        assert_eq!(c.required("empty").expect_err("empty").kind(), "invalid-config");
        assert_eq!(c.required_url("address").ok().as_deref(), Some("http://127.0.0.1:8200"));
        assert_eq!(c.bool_or("missing", true).ok(), Some(true));
    }

    #[test]
    fn errors_never_quote_values() {
        let c = Config::from_pairs([("token", "hunter2"), ("url", "ftp://hunter2")]);
        let e = c.optional_parse::<u32>("token", "a number").expect_err("not a number");
        assert!(!e.message().contains("hunter2"), "{e}");
        let e = c.required_url("url").expect_err("scheme");
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn urls_are_checked() {
        let c = Config::from_pairs([("a", "https://u:p@h/"), ("b", "http://"), ("c", "http://h/x?y")]);
        assert!(c.required_url("a").is_err());
        assert!(c.required_url("b").is_err());
        assert!(c.required_url("c").is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = cfg().reject_unknown(&["address", "token"]).expect_err("unknown");
        assert_eq!(e.message(), "unknown config key(s): empty, n; known keys: address, token");
        assert!(cfg().reject_unknown(&["address", "token", "n", "empty"]).is_ok());
    }
}
