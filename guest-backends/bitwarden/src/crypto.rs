//! Bitwarden Secrets Manager cryptography, as the official SDK does it, inside the guest:
//! the access-token key derivation and `EncString` type 2 (AES-256-CBC + HMAC-SHA256)
//! decryption.
//!
//! Checked against Bitwarden's own published vectors (`tests/data/README.md`): the SDK's
//! access-token unit test (token ⇒ derived key) and the encrypted payload and secrets of the
//! SDK's mock and fake servers (⇒ the plaintexts their tests assert).
//!
//! Invariants:
//! - the MAC is verified, in constant time, **before** any byte is decrypted: a tampered or
//!   foreign ciphertext is refused without touching the padding oracle that CBC would be;
//! - only type 2 is accepted: type 0 (AES-CBC without MAC) would bypass the MAC, and the
//!   asymmetric and newer types are not what Secrets Manager sends;
//! - key material and plaintexts live in `Zeroizing` buffers; errors never contain either.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Standard base64 that accepts input with or without padding, as the SDK's
/// `STANDARD_INDIFFERENT` does for the access token's key.
const STANDARD_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a cryptographic step failed. The messages name the step, never the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The access token does not have the `0.<id>.<secret>:<key>` shape.
    MalformedToken(&'static str),
    /// The text is not an `EncString`.
    MalformedEncString(&'static str),
    /// An `EncString` of a type this backend does not decrypt.
    UnsupportedType(String),
    /// The MAC does not match: wrong key, or the ciphertext was altered.
    MacMismatch,
    /// The MAC matched but the plaintext does not unpad (cannot happen with a genuine
    /// ciphertext: it means the key is right and the sender is broken).
    BadPadding,
    /// A key of the wrong length.
    BadKeyLength(usize),
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MalformedToken(why) => write!(f, "the access token is malformed: {why}"),
            Self::MalformedEncString(why) => write!(f, "an encrypted field is malformed: {why}"),
            Self::UnsupportedType(t) => write!(
                f,
                "an encrypted field has type {t}; only type 2 (AES-256-CBC + HMAC-SHA256) is accepted"
            ),
            Self::MacMismatch => {
                f.write_str("an encrypted field failed its MAC check (wrong key or altered ciphertext)")
            }
            Self::BadPadding => f.write_str("an encrypted field has invalid padding"),
            Self::BadKeyLength(n) => write!(f, "a key has {n} bytes, 64 expected"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// An AES-256-CBC-HMAC-SHA256 key: 32 bytes of encryption key then 32 bytes of MAC key,
/// Bitwarden's 64-byte layout.
#[derive(Clone)]
pub struct SymmetricKey {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

impl SymmetricKey {
    /// A key from its 64-byte form (`enc ‖ mac`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 64 {
            return Err(CryptoError::BadKeyLength(bytes.len()));
        }
        let mut enc = Zeroizing::new([0u8; 32]);
        let mut mac = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&bytes[..32]);
        mac.copy_from_slice(&bytes[32..]);
        Ok(Self { enc, mac })
    }

    /// The 64-byte form in standard base64, as the SDK's `to_base64` prints it. For tests
    /// against the vendor's vectors; never logged.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(&self.enc[..]);
        bytes[32..].copy_from_slice(&self.mac[..]);
        Zeroizing::new(STANDARD.encode(&bytes[..]))
    }
}

/// Bitwarden's `derive_shareable_key(secret, name, info)`: the PRK is
/// HMAC-SHA256(key = `bitwarden-<name>`, message = secret), expanded by HKDF-SHA256 with
/// `info` to 64 bytes. (This is HKDF with salt `bitwarden-<name>`.)
pub fn derive_shareable_key(secret: &[u8; 16], name: &str, info: &str) -> SymmetricKey {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(format!("bitwarden-{name}").as_bytes()), secret);
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit, so expansion cannot fail; the
    // error arm would leave the buffer zeroed, which the vendor vector test would catch.
    if hk.expand(info.as_bytes(), &mut okm[..]).is_err() {
        okm.fill(0);
    }
    let mut enc = Zeroizing::new([0u8; 32]);
    let mut mac = Zeroizing::new([0u8; 32]);
    enc.copy_from_slice(&okm[..32]);
    mac.copy_from_slice(&okm[32..]);
    SymmetricKey { enc, mac }
}

/// A Secrets Manager machine-account access token, `0.<access-token-id>.<client-secret>:<key>`
/// where `<key>` is the base64 of a 16-byte seed.
pub struct AccessToken {
    /// The access token id, the identity server's `client_id`. Not secret.
    pub access_token_id: String,
    /// The identity server's `client_secret`.
    pub client_secret: Zeroizing<String>,
    /// The key derived from the seed: `derive_shareable_key(seed, "accesstoken", "sm-access-token")`.
    pub encryption_key: SymmetricKey,
}

impl std::fmt::Debug for AccessToken {
    /// Only the id: the client secret and the key are redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("access_token_id", &self.access_token_id).finish_non_exhaustive()
    }
}

impl AccessToken {
    /// Parses and derives, with the SDK's rules: version `0`, three dot-separated parts
    /// before the `:`, a UUID id, a base64 seed of exactly 16 bytes (padding optional).
    pub fn parse(token: &str) -> Result<Self, CryptoError> {
        let (first, key) =
            token.trim().split_once(':').ok_or(CryptoError::MalformedToken("no ':' before the key"))?;
        let parts: Vec<&str> = first.split('.').collect();
        let [version, id, secret] = parts[..] else {
            return Err(CryptoError::MalformedToken(
                "expected 0.<access-token-id>.<client-secret> before ':'",
            ));
        };
        if version != "0" {
            return Err(CryptoError::MalformedToken("unknown version (only 0 is known)"));
        }
        if !is_uuid(id) {
            return Err(CryptoError::MalformedToken("the access token id is not a UUID"));
        }
        if secret.is_empty() {
            return Err(CryptoError::MalformedToken("the client secret is empty"));
        }
        let seed = Zeroizing::new(
            STANDARD_INDIFFERENT
                .decode(key)
                .map_err(|_| CryptoError::MalformedToken("the key is not base64"))?,
        );
        let seed: &[u8; 16] =
            seed[..].try_into().map_err(|_| CryptoError::MalformedToken("the key is not 16 bytes"))?;
        Ok(Self {
            access_token_id: id.to_ascii_lowercase(),
            client_secret: Zeroizing::new(secret.to_string()),
            encryption_key: derive_shareable_key(seed, "accesstoken", "sm-access-token"),
        })
    }
}

/// Whether `s` is a UUID in its hyphenated form (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A parsed `EncString` of type 2: `2.<iv>|<ciphertext>|<mac>`, each part standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncString {
    iv: [u8; 16],
    data: Vec<u8>,
    mac: [u8; 32],
}

impl EncString {
    /// Parses the text form. Refuses every type but 2 and wrong part lengths.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let (kind, rest) = s.split_once('.').ok_or(CryptoError::MalformedEncString("no type prefix"))?;
        if kind != "2" {
            // Name the type (a short digit string from the server), not the content.
            let shown: String = kind.chars().take(4).collect();
            return Err(CryptoError::UnsupportedType(shown));
        }
        let parts: Vec<&str> = rest.split('|').collect();
        let [iv, data, mac] = parts[..] else {
            return Err(CryptoError::MalformedEncString("type 2 has three parts"));
        };
        let decode =
            |p: &str| STANDARD.decode(p).map_err(|_| CryptoError::MalformedEncString("a part is not base64"));
        let iv: [u8; 16] =
            decode(iv)?.try_into().map_err(|_| CryptoError::MalformedEncString("the IV is not 16 bytes"))?;
        let mac: [u8; 32] = decode(mac)?
            .try_into()
            .map_err(|_| CryptoError::MalformedEncString("the MAC is not 32 bytes"))?;
        let data = decode(data)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::MalformedEncString(
                "the ciphertext is not a whole number of AES blocks",
            ));
        }
        Ok(Self { iv, data, mac })
    }

    /// Verifies the MAC — HMAC-SHA256 over `iv ‖ ciphertext` under the MAC key, compared in
    /// constant time — and only then decrypts with AES-256-CBC and removes PKCS#7 padding.
    pub fn decrypt(&self, key: &SymmetricKey) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut mac =
            HmacSha256::new_from_slice(&key.mac[..]).map_err(|_| CryptoError::BadKeyLength(key.mac.len()))?;
        mac.update(&self.iv);
        mac.update(&self.data);
        // `verify_slice` compares in constant time (the `subtle` crate underneath).
        mac.verify_slice(&self.mac).map_err(|_| CryptoError::MacMismatch)?;

        let mut buf = Zeroizing::new(self.data.clone());
        let dec = Aes256CbcDec::new((&key.enc[..]).into(), (&self.iv[..]).into());
        let len = dec.decrypt_padded_mut::<Pkcs7>(&mut buf[..]).map_err(|_| CryptoError::BadPadding)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// [`EncString::decrypt`], then UTF-8. A non-UTF-8 plaintext is reported without content.
    pub fn decrypt_to_string(&self, key: &SymmetricKey) -> Result<Zeroizing<String>, CryptoError> {
        let bytes = self.decrypt(key)?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(Zeroizing::new(s.to_string())),
            Err(_) => Err(CryptoError::MalformedEncString("the plaintext is not UTF-8")),
        }
    }
}

/// Decrypts the identity server's `encrypted_payload` with the access token's key and returns
/// the organisation key it carries (`{"encryptionKey": "<base64 of 64 bytes>"}`).
pub fn decrypt_org_key(
    encrypted_payload: &str,
    token_key: &SymmetricKey,
) -> Result<SymmetricKey, CryptoError> {
    let payload = EncString::parse(encrypted_payload)?.decrypt(token_key)?;
    #[derive(serde::Deserialize)]
    struct Payload {
        #[serde(rename = "encryptionKey")]
        encryption_key: String,
    }
    let parsed: Payload = serde_json::from_slice(&payload)
        .map_err(|_| CryptoError::MalformedEncString("the login payload is not {\"encryptionKey\": …}"))?;
    let encoded = Zeroizing::new(parsed.encryption_key);
    let bytes = Zeroizing::new(
        STANDARD
            .decode(encoded.as_bytes())
            .map_err(|_| CryptoError::MalformedEncString("the organisation key is not base64"))?,
    );
    SymmetricKey::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's own `test_derive_shareable_key` vectors (bitwarden-crypto,
    /// `keys/shareable_key.rs`).
    #[test]
    fn shareable_key_matches_the_sdk_unit_test() {
        let key = derive_shareable_key(b"&/$%F1a895g67HlX", "test_key", "");
        assert_eq!(
            key.to_base64().as_str(),
            "4PV6+PcmF2w7YHRatvyMcVQtI7zvCyssv/wFWmzjiH6Iv9altjmDkuBD1aagLVaLezbthbSe+ktR+U6qswxNnQ=="
        );
        let key = derive_shareable_key(b"67t9b5g67$%Dh89n", "test_key", "test");
        assert_eq!(
            key.to_base64().as_str(),
            "F9jVQmrACGx9VUPjuzfMYDjr726JtL300Y3Yg+VYUnVQtQ1s8oImJ5xtp1KALC9h2nav04++1LDW4iFD+infng=="
        );
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("ec2c1d46-6a4b-4751-a310-af9601317f2d"));
        assert!(!is_uuid("ec2c1d46-6a4b-4751-a310-af9601317f2"));
        assert!(!is_uuid("ec2c1d46x6a4b-4751-a310-af9601317f2d"));
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn other_enc_string_types_are_refused() {
        assert_eq!(
            EncString::parse("0.AAAAAAAAAAAAAAAAAAAAAA==|AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(CryptoError::UnsupportedType("0".into()))
        );
        assert!(matches!(EncString::parse("no-dot"), Err(CryptoError::MalformedEncString(_))));
        assert!(matches!(EncString::parse("2.AAAA|BBBB"), Err(CryptoError::MalformedEncString(_))));
    }

    #[test]
    fn errors_never_echo_input() {
        let secretish = "2.c2VjcmV0LXZhbHVl|c2VjcmV0LXZhbHVl|c2VjcmV0LXZhbHVl";
        let err = EncString::parse(secretish).expect_err("bad lengths");
        assert!(!err.to_string().contains("c2VjcmV0"));
        let err = AccessToken::parse("0.x.supersecret:AAAA").expect_err("bad id");
        assert!(!err.to_string().contains("supersecret"));
    }
}
