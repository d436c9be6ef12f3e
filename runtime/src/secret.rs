//! The `Secret` type: how a credential value travels through airlock.
//!
//! Invariant: a value is readable only through [`Secret::expose`], an explicit call that is
//! easy to grep for. `Debug` and `Display` print `[REDACTED]`, so a value cannot reach a log
//! line, an error message or a panic by accident, and the bytes are zeroed when the last
//! owner drops them (via `secrecy`), so they do not linger in freed memory.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Largest value airlock accepts, in bytes. Credentials are tokens, keys and passwords; a
/// megabyte is far beyond any of them, and the cap stops a mistaken `set-value < big-file`
/// (or a hostile backend) from filling the database or memory.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// A credential value: UTF-8 text, never printed, zeroed on drop.
#[derive(Clone)]
pub struct Secret(SecretString);

/// Why bytes could not become a [`Secret`]. Carries no part of the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the value is empty")]
    Empty,
    #[error("the value is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    NotUtf8 { valid_up_to: usize },
    #[error("the value is {len} bytes, more than the {MAX_SECRET_BYTES}-byte limit")]
    TooLarge { len: usize },
}

impl Secret {
    /// Wrap a string. Rejects empty and oversized values.
    pub fn new(value: String) -> Result<Self, SecretError> {
        let value = zeroize::Zeroizing::new(value);
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge { len: value.len() });
        }
        Ok(Secret(SecretString::from(value.as_str())))
    }

    /// Take ownership of raw bytes (e.g. from stdin or a decrypted token), zeroing them
    /// whatever the outcome.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let bytes = zeroize::Zeroizing::new(bytes);
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge { len: bytes.len() });
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Secret::new(text.to_owned()),
            Err(e) => Err(SecretError::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            }),
        }
    }

    /// The value itself. Every call site is a place where a secret leaves airlock's
    /// protection; keep them few.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in bytes; safe to log.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false: empty values are rejected at construction.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret".into()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(
            format!("{:?}", Some(vec![s.clone()])),
            "Some([Secret([REDACTED])])"
        );
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(s.len(), 19);
    }

    #[test]
    fn rejects_empty_non_utf8_and_oversized_values() {
        assert_eq!(Secret::new(String::new()).unwrap_err(), SecretError::Empty);
        assert_eq!(
            Secret::from_bytes(vec![b'o', b'k', 0xff, 0xfe]).unwrap_err(),
            SecretError::NotUtf8 { valid_up_to: 2 }
        );
        let big = vec![b'a'; MAX_SECRET_BYTES + 1];
        assert_eq!(
            Secret::from_bytes(big).unwrap_err(),
            SecretError::TooLarge {
                len: MAX_SECRET_BYTES + 1
            }
        );
        assert!(Secret::from_bytes(vec![b'a'; MAX_SECRET_BYTES]).is_ok());
    }

    #[test]
    fn error_messages_carry_no_part_of_the_value() {
        let err = Secret::from_bytes(b"topsecret\xff".to_vec()).unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
