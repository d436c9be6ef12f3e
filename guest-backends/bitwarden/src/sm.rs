//! Bitwarden Secrets Manager over its public API, as the official SDK talks to it: identity
//! login with the machine account's access token, then secrets by id, decrypted here with the
//! organisation key from the login answer ([`crate::crypto`]). Pure functions, unit-tested
//! natively.
//!
//! Locator syntax: `SECRET[#FIELD]`. `SECRET` is a secret's id (a UUID) or its key (its
//! name, exact and unique among the secrets the machine account can read). `FIELD` is
//! `value` (the default), `key` or `note`.

use airlock_guest::{BackendError, encode_component, sanitize_detail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::{AccessToken, CryptoError, EncString, SymmetricKey, is_uuid};

/// Bitwarden's `Device-Type` for SDK clients (`DeviceType::SDK`).
pub const DEVICE_TYPE_SDK: &str = "21";

/// Which decrypted field of a secret a locator names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretField {
    Value,
    Key,
    Note,
}

/// How the locator names the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// A secret id (UUID), lowercased.
    Id(String),
    /// A secret's key (its name).
    Key(String),
}

/// A parsed Secrets Manager locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub secret: SecretRef,
    pub field: SecretField,
}

impl Locator {
    /// Parses `SECRET[#FIELD]`; errors are `invalid-config` naming the locator.
    pub fn parse(text: &str) -> Result<Self, BackendError> {
        let bad = |why: &str| BackendError::invalid_config(format!("locator `{text}`: {why}"));
        let (secret, field) = match text.split_once('#') {
            Some((s, f)) => (s.trim(), Some(f)),
            None => (text.trim(), None),
        };
        if secret.is_empty() {
            return Err(bad("no secret id or key"));
        }
        let field = match field {
            None | Some("value") => SecretField::Value,
            Some("key") => SecretField::Key,
            Some("note") => SecretField::Note,
            Some(_) => return Err(bad("the field must be `value`, `key` or `note`")),
        };
        let secret = if is_uuid(secret) {
            SecretRef::Id(secret.to_ascii_lowercase())
        } else {
            SecretRef::Key(secret.to_string())
        };
        Ok(Self { secret, field })
    }
}

/// The form body of the identity login (`POST {identity}/connect/token`), as the SDK's
/// `AccessTokenRequest` sends it. It holds the client secret: never log it.
pub fn login_form(token: &AccessToken) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "scope=api.secrets&client_id={}&client_secret={}&grant_type=client_credentials",
        encode_component(&token.access_token_id),
        encode_component(&token.client_secret)
    ))
}

/// The identity server's answer to a successful login.
#[derive(Deserialize)]
pub struct LoginResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    pub encrypted_payload: String,
}

/// A logged-in session: the bearer token, the organisation key, and the organisation id.
pub struct Session {
    pub bearer: Zeroizing<String>,
    pub org_key: SymmetricKey,
    pub organization_id: Option<String>,
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("organization_id", &self.organization_id).finish_non_exhaustive()
    }
}

/// Turns a login answer into a [`Session`]: decrypts the organisation key from
/// `encrypted_payload` with the access token's key (MAC checked first) and reads the
/// organisation id from the JWT's `organization` claim (the SDK does the same; the JWT's
/// signature is the API's business, the guest only needs the claim).
pub fn session_from_login(body: &[u8], token: &AccessToken) -> Result<Session, BackendError> {
    let login: LoginResponse = airlock_guest::json::parse(body, "identity login answer")?;
    let org_key = crate::crypto::decrypt_org_key(&login.encrypted_payload, &token.encryption_key).map_err(|e| match e {
        CryptoError::MacMismatch => BackendError::denied(
            "the login payload does not authenticate under the access token's key: the access token is wrong or altered",
        ),
        other => BackendError::internal(format!("identity login answer: {other}")),
    })?;
    let organization_id = jwt_claim(&login.access_token, "organization");
    Ok(Session {
        bearer: Zeroizing::new(login.access_token),
        org_key,
        organization_id,
        expires_in: login.expires_in,
    })
}

/// A string claim of a JWT's payload, without verifying the signature.
pub fn jwt_claim(jwt: &str, claim: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get(claim).and_then(Value::as_str).map(str::to_string)
}

/// Maps a failed identity login: OAuth errors (`invalid_client`, `invalid_grant`, …) are
/// `denied`, rate limits and server errors `unavailable`.
pub fn login_error(status: u16, body: &[u8]) -> BackendError {
    #[derive(Deserialize)]
    struct OAuthError {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
    }
    let parsed: Option<OAuthError> = serde_json::from_slice(body).ok();
    let detail = parsed
        .map(|e| {
            [e.error, e.error_description]
                .into_iter()
                .flatten()
                .map(|s| sanitize_detail(&s))
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        400 | 401 | 403 => {
            BackendError::denied(format!("Bitwarden identity login refused the access token: {detail}"))
        }
        404 => BackendError::invalid_config(format!(
            "Bitwarden identity login: HTTP 404 at connect/token; check `identity_url`/`url` ({detail})"
        )),
        408 | 429 | 500..=599 => BackendError::unavailable(format!("Bitwarden identity login: {detail}")),
        _ => BackendError::internal(format!("Bitwarden identity login: unexpected {detail}")),
    }
}

/// A secret as the API returns it (fields still encrypted).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct EncryptedSecret {
    pub id: String,
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /secrets/{id}` is one secret; `POST /secrets/get-by-ids` answers `{"data": [...]}`.
#[derive(Debug, Deserialize)]
pub struct SecretsList {
    #[serde(default)]
    pub data: Vec<EncryptedSecret>,
}

/// `GET /organizations/{org}/secrets` answers `{"secrets": [{id, key, …}], "projects": …}`.
#[derive(Debug, Deserialize)]
pub struct SecretIdentifiers {
    #[serde(default)]
    pub secrets: Vec<SecretIdentifier>,
}

/// One entry of [`SecretIdentifiers`]: the id and the encrypted key (name).
#[derive(Clone, Debug, Deserialize)]
pub struct SecretIdentifier {
    pub id: String,
    pub key: String,
}

/// The `get-by-ids` request body.
pub fn get_by_ids_body(ids: &[&str]) -> Value {
    serde_json::json!({ "ids": ids })
}

/// Decrypts `field` of `secret` with the organisation key. A MAC failure is `internal` (the
/// API returned a ciphertext that does not authenticate: altered in transit or stored under
/// another key) and says so without any ciphertext or plaintext.
pub fn decrypt_field(
    secret: &EncryptedSecret,
    field: SecretField,
    key: &SymmetricKey,
) -> Result<String, BackendError> {
    let (name, enc) = match field {
        SecretField::Value => ("value", secret.value.as_deref()),
        SecretField::Key => ("key", Some(secret.key.as_str())),
        SecretField::Note => ("note", secret.note.as_deref()),
    };
    let Some(enc) = enc.filter(|e| !e.is_empty()) else {
        return Err(BackendError::NotFound);
    };
    let plain = EncString::parse(enc)
        .and_then(|e| e.decrypt_to_string(key))
        .map_err(|e| BackendError::internal(format!("secret {}: {name}: {e}", secret.id)))?;
    Ok(plain.to_string())
}

/// The id of the one secret whose decrypted key is `wanted`; `not-found` for none,
/// `invalid-config` for several. Keys that fail to decrypt are skipped (they cannot match).
pub fn find_by_key(
    list: &[SecretIdentifier],
    wanted: &str,
    key: &SymmetricKey,
) -> Result<String, BackendError> {
    let matches: Vec<&SecretIdentifier> = list
        .iter()
        .filter(|s| {
            EncString::parse(&s.key)
                .and_then(|e| e.decrypt_to_string(key))
                .is_ok_and(|k| k.as_str() == wanted)
        })
        .collect();
    match matches.as_slice() {
        [] => Err(BackendError::NotFound),
        [one] => Ok(one.id.to_ascii_lowercase()),
        many => Err(BackendError::invalid_config(format!(
            "{} secrets have the key `{wanted}`; use the secret id in the locator",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators() {
        let l = Locator::parse("15744A66-341A-4C62-AF50-AF960166B6BC").expect("id");
        assert_eq!(l.secret, SecretRef::Id("15744a66-341a-4c62-af50-af960166b6bc".into()));
        assert_eq!(l.field, SecretField::Value);
        let l = Locator::parse("DB_PASSWORD#note").expect("key");
        assert_eq!((l.secret, l.field), (SecretRef::Key("DB_PASSWORD".into()), SecretField::Note));
        for bad in ["", "#value", "x#password"] {
            assert_eq!(Locator::parse(bad).expect_err(bad).kind(), "invalid-config");
        }
    }

    #[test]
    fn login_form_encodes_and_names_the_scope() {
        let token = AccessToken::parse(
            "0.ec2c1d46-6a4b-4751-a310-af9601317f2d.C2Igx+jjL/F7q:X8vbvA0bduihIDe/qrzIQQ==",
        )
        .expect("token");
        assert_eq!(
            login_form(&token).as_str(),
            "scope=api.secrets&client_id=ec2c1d46-6a4b-4751-a310-af9601317f2d&client_secret=C2Igx%2BjjL%2FF7q&grant_type=client_credentials"
        );
    }

    #[test]
    fn jwt_claims_are_read() {
        // {"organization":"org-1"} as a JWT payload.
        let jwt = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(br#"{"organization":"org-1"}"#));
        assert_eq!(jwt_claim(&jwt, "organization").as_deref(), Some("org-1"));
        assert_eq!(jwt_claim("not-a-jwt", "organization"), None);
    }

    #[test]
    fn login_errors() {
        assert_eq!(login_error(400, br#"{"error":"invalid_client"}"#).kind(), "denied");
        assert!(login_error(400, br#"{"error":"invalid_client"}"#).message().contains("invalid_client"));
        assert_eq!(login_error(429, b"").kind(), "unavailable");
        assert_eq!(login_error(503, b"").kind(), "unavailable");
        assert_eq!(login_error(404, b"").kind(), "invalid-config");
    }
}
