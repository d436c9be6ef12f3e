//! Bearer secrets airlock issues — toolkit keys (`tk_…`) and admin tokens (`at_…`):
//! generation, hashing and comparison.
//!
//! Shape: `PREFIX` + 16 hex characters of public id + `_` + 64 hex characters (256 bits)
//! of secret. The id lets the server find the one stored hash to compare with (no scan, no
//! oracle over other rows); the comparison itself is constant-time, so response timing
//! does not reveal how much of a guessed secret was right. Only SHA-256 hashes are stored:
//! a copy of the database does not yield usable tokens, and 256 random bits need no slow
//! password hash to resist guessing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Bytes of randomness in a token's secret part.
pub const SECRET_BYTES: usize = 32;
/// Bytes of randomness in a token's public id.
pub const ID_BYTES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A freshly issued token: its public id and the whole token (shown once).
pub struct Issued {
    pub id: String,
    pub token: Secret,
    pub hash: [u8; 32],
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, TokenError> {
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; n]);
    getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let mut out = String::with_capacity(n * 2);
    for b in bytes.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Issue a new token with `prefix`.
pub fn issue(prefix: &str) -> Result<Issued, TokenError> {
    let id = random_hex(ID_BYTES)?;
    let secret = zeroize::Zeroizing::new(random_hex(SECRET_BYTES)?);
    let token = format!("{prefix}{id}_{}", secret.as_str());
    let hash = sha256(&token);
    let token = Secret::new(token).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(Issued { id, token, hash })
}

/// The public id of a presented token of this `prefix`, if it has the right shape.
pub fn id_of<'a>(prefix: &str, presented: &'a str) -> Option<&'a str> {
    let rest = presented.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (hex(id, ID_BYTES * 2) && hex(secret, SECRET_BYTES * 2)).then_some(id)
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether `presented` hashes to `stored`, compared in constant time.
pub fn hash_matches(presented: &str, stored: &[u8]) -> bool {
    let hash = sha256(presented);
    stored.len() == hash.len() && bool::from(hash.as_slice().ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_match_only_themselves() {
        let a = issue("tk_").unwrap();
        let b = issue("tk_").unwrap();
        assert_ne!(a.token.expose(), b.token.expose());
        assert_eq!(a.token.len(), 3 + 16 + 1 + 64);
        assert_eq!(id_of("tk_", a.token.expose()), Some(a.id.as_str()));
        assert_eq!(id_of("at_", a.token.expose()), None);
        assert!(hash_matches(a.token.expose(), &a.hash));
        assert!(!hash_matches(b.token.expose(), &a.hash));
        assert!(!hash_matches(a.token.expose(), &a.hash[..31]));
        for bad in [
            "",
            "tk_",
            "tk_abc_def",
            "tk_0123456789abcdef_xyz",
            "tk_0123456789ABCDEF_",
        ] {
            assert_eq!(id_of("tk_", bad), None, "{bad}");
        }
    }
}
