//! Secrets Manager's JSON protocol (`application/x-amz-json-1.1`, `X-Amz-Target:
//! secretsmanager.<Operation>`, `POST /`): request bodies, response shapes and the mapping of
//! AWS errors onto `backend-error`. Pure functions, unit-tested natively.
//!
//! Invariant: error messages carry AWS's error code and AWS's message (which name secrets,
//! never their values) and nothing from a request body.

use airlock_guest::{BackendError, sanitize_detail, status_error};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::locator::Locator;

/// The largest `SecretIdList` `BatchGetSecretValue` takes.
pub const MAX_BATCH: usize = 20;

/// The Secrets Manager operations this backend calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    GetSecretValue,
    BatchGetSecretValue,
    PutSecretValue,
    CreateSecret,
    DeleteSecret,
    ListSecrets,
}

impl Operation {
    /// The operation's name, as in `X-Amz-Target: secretsmanager.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetSecretValue => "GetSecretValue",
            Self::BatchGetSecretValue => "BatchGetSecretValue",
            Self::PutSecretValue => "PutSecretValue",
            Self::CreateSecret => "CreateSecret",
            Self::DeleteSecret => "DeleteSecret",
            Self::ListSecrets => "ListSecrets",
        }
    }

    /// The `X-Amz-Target` header value.
    pub fn target(self) -> String {
        format!("secretsmanager.{}", self.name())
    }
}

/// The `GetSecretValue` request for `loc`.
pub fn get_secret_value_request(loc: &Locator) -> Value {
    let mut body = Map::new();
    body.insert("SecretId".into(), json!(loc.secret_id));
    if let Some(stage) = &loc.version_stage {
        body.insert("VersionStage".into(), json!(stage));
    }
    if let Some(id) = &loc.version_id {
        body.insert("VersionId".into(), json!(id));
    }
    Value::Object(body)
}

/// The `BatchGetSecretValue` request for up to [`MAX_BATCH`] secret ids.
pub fn batch_get_request(ids: &[&str]) -> Value {
    json!({ "SecretIdList": ids })
}

/// The `PutSecretValue` request writing `value` as the new `AWSCURRENT` `SecretString`.
pub fn put_secret_value_request(secret_id: &str, value: &str, client_request_token: &str) -> Value {
    json!({ "SecretId": secret_id, "SecretString": value, "ClientRequestToken": client_request_token })
}

/// The `CreateSecret` request for a new secret named `name` holding `value`.
pub fn create_secret_request(name: &str, value: &str, client_request_token: &str) -> Value {
    json!({ "Name": name, "SecretString": value, "ClientRequestToken": client_request_token })
}

/// How `DeleteSecret` removes a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    /// Scheduled deletion after this many days (7–30); `RestoreSecret` can undo it meanwhile.
    RecoveryWindow(u8),
    /// Immediate and irreversible (`ForceDeleteWithoutRecovery`).
    Force,
}

/// The `DeleteSecret` request.
pub fn delete_secret_request(secret_id: &str, mode: DeleteMode) -> Value {
    match mode {
        DeleteMode::RecoveryWindow(days) => json!({ "SecretId": secret_id, "RecoveryWindowInDays": days }),
        DeleteMode::Force => json!({ "SecretId": secret_id, "ForceDeleteWithoutRecovery": true }),
    }
}

/// One secret version as `GetSecretValue` and `BatchGetSecretValue` return it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct SecretValue {
    #[serde(rename = "ARN", default)]
    pub arn: Option<String>,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "SecretString", default)]
    pub secret_string: Option<String>,
    /// Base64, as the JSON protocol encodes blobs.
    #[serde(rename = "SecretBinary", default)]
    pub secret_binary: Option<String>,
}

impl std::fmt::Debug for SecretValue {
    /// Names only: the value fields are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("arn", &self.arn)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretValue {
    /// Whether this value answers a request for `secret_id` (a name or a full ARN).
    pub fn answers(&self, secret_id: &str) -> bool {
        self.arn.as_deref() == Some(secret_id) || self.name.as_deref() == Some(secret_id)
    }
}

/// One failed id of a `BatchGetSecretValue`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BatchError {
    #[serde(rename = "SecretId", default)]
    pub secret_id: Option<String>,
    #[serde(rename = "ErrorCode", default)]
    pub error_code: Option<String>,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

/// A `BatchGetSecretValue` answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(rename = "SecretValues", default)]
    pub secret_values: Vec<SecretValue>,
    #[serde(rename = "Errors", default)]
    pub errors: Vec<BatchError>,
}

/// The credential value held by `secret` under `json_key`:
/// - no key: the `SecretString`, or the `SecretBinary` base64 text as AWS sent it;
/// - a key: the `SecretString` must be a JSON object; a string member is returned as it is,
///   other members as compact JSON; a missing or `null` member is `not-found`.
pub fn extract(secret: &SecretValue, json_key: Option<&str>) -> Result<String, BackendError> {
    let name = secret.name.as_deref().unwrap_or("the secret");
    match (json_key, &secret.secret_string, &secret.secret_binary) {
        (None, Some(s), _) => Ok(s.clone()),
        (None, None, Some(b)) => Ok(b.clone()),
        (None, None, None) => Err(BackendError::internal(format!(
            "{name}: the answer has neither SecretString nor SecretBinary"
        ))),
        (Some(_), None, _) => Err(BackendError::invalid_config(format!(
            "{name} holds a SecretBinary, which has no JSON keys: remove `#key` from the locator"
        ))),
        (Some(key), Some(s), _) => {
            let parsed: Value = serde_json::from_str(s).map_err(|_| {
                BackendError::invalid_config(format!(
                    "{name}: the SecretString is not JSON, so `#{key}` cannot be looked up"
                ))
            })?;
            let Value::Object(map) = parsed else {
                return Err(BackendError::invalid_config(format!(
                    "{name}: the SecretString is not a JSON object, so `#{key}` cannot be looked up"
                )));
            };
            match map.get(key) {
                None => Err(BackendError::NotFound),
                Some(v) => airlock_guest::json::value_to_text(v),
            }
        }
    }
}

/// `current` (a `SecretString`, or `None` for a new secret) with `key` set to `value`, as the
/// text to write back. The other keys are kept as they are.
pub fn with_json_key(current: Option<&str>, key: &str, value: &str) -> Result<String, BackendError> {
    let mut map = match current {
        None => Map::new(),
        Some(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(BackendError::invalid_config(format!(
                    "the SecretString is not a JSON object, so `#{key}` cannot be written"
                )));
            }
        },
    };
    map.insert(key.to_string(), Value::String(value.to_string()));
    Ok(Value::Object(map).to_string())
}

/// `current` with `key` removed, as the text to write back; `not-found` when the key is absent.
pub fn without_json_key(current: &str, key: &str) -> Result<String, BackendError> {
    match serde_json::from_str::<Value>(current) {
        Ok(Value::Object(mut map)) => match map.remove(key) {
            Some(_) => Ok(Value::Object(map).to_string()),
            None => Err(BackendError::NotFound),
        },
        _ => Err(BackendError::invalid_config(format!(
            "the SecretString is not a JSON object, so `#{key}` cannot be deleted"
        ))),
    }
}

/// The error code and message of an AWS error answer. The JSON protocol sends
/// `{"__type": "...#Code", "message": "..."}` (some services `Message`); the code may also
/// come in `x-amzn-ErrorType` (`Code:http://...`). Signature checks done in front of the
/// service (and moto's) answer in the query protocol's XML (`<Code>`, `<Message>`).
pub fn error_code(body: &[u8], error_type_header: Option<&str>) -> (Option<String>, Option<String>) {
    let clean = |code: &str| {
        let code = code.rsplit('#').next().unwrap_or(code);
        code.split(':').next().unwrap_or(code).trim().to_string()
    };
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        let code = map.get("__type").and_then(Value::as_str).map(clean);
        let message =
            map.get("message").or_else(|| map.get("Message")).and_then(Value::as_str).map(str::to_string);
        if code.is_some() || message.is_some() {
            return (code.or_else(|| error_type_header.map(clean)), message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&close)?;
        Some(text[start..start + len].to_string())
    };
    (tag("Code").or_else(|| error_type_header.map(clean)), tag("Message"))
}

/// Maps an AWS error code to a `backend-error`, falling back on the HTTP status for codes it
/// does not know. `context` names the operation and secret (e.g. `GetSecretValue prod/db`).
pub fn map_error(status: u16, code: Option<&str>, message: Option<&str>, context: &str) -> BackendError {
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {}", sanitize_detail(m)),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => sanitize_detail(m),
        (None, None) => format!("HTTP {status}"),
    };
    let msg = format!("{context}: {detail}");
    match code.unwrap_or_default() {
        "ResourceNotFoundException" => BackendError::NotFound,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "AuthFailure"
        | "DecryptionFailure" => BackendError::Denied(msg),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException"
        | "InternalServiceError"
        | "InternalServiceErrorException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => BackendError::Unavailable(msg),
        "InvalidParameterException" | "ValidationException" | "MalformedPolicyDocumentException" => {
            BackendError::InvalidConfig(msg)
        }
        "InvalidRequestException" if message.is_some_and(is_deleted_message) => BackendError::NotFound,
        "InvalidRequestException" | "ResourceExistsException" | "PreconditionNotMetException" => {
            BackendError::Internal(msg)
        }
        _ => match status_error(status, context, Some(&detail)) {
            BackendError::Internal(_) => BackendError::Internal(msg),
            mapped => mapped,
        },
    }
}

/// Whether an `InvalidRequestException` message says the secret is scheduled for deletion:
/// such a secret holds no readable value, so reads are `not-found`.
fn is_deleted_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("marked for deletion") || m.contains("scheduled for deletion") || m.contains("deleted")
}

/// A `ClientRequestToken` (idempotency token, 32–64 characters) shaped as a UUID v4 from 16
/// unpredictable bytes; the caller derives them so that no randomness import is needed.
pub fn uuid_from_bytes(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::sigv4::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(string: Option<&str>, binary: Option<&str>) -> SecretValue {
        SecretValue {
            arn: Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf".into()),
            name: Some("app".into()),
            secret_string: string.map(str::to_string),
            secret_binary: binary.map(str::to_string),
        }
    }

    #[test]
    fn request_bodies() {
        let loc = Locator::parse("app?stage=AWSPREVIOUS").expect("locator");
        assert_eq!(get_secret_value_request(&loc), json!({"SecretId": "app", "VersionStage": "AWSPREVIOUS"}));
        let loc = Locator::parse("app?version=v1#k").expect("locator");
        assert_eq!(get_secret_value_request(&loc), json!({"SecretId": "app", "VersionId": "v1"}));
        assert_eq!(batch_get_request(&["a", "b"]), json!({"SecretIdList": ["a", "b"]}));
        assert_eq!(
            delete_secret_request("a", DeleteMode::RecoveryWindow(7)),
            json!({"SecretId": "a", "RecoveryWindowInDays": 7})
        );
        assert_eq!(
            delete_secret_request("a", DeleteMode::Force),
            json!({"SecretId": "a", "ForceDeleteWithoutRecovery": true})
        );
        assert_eq!(Operation::BatchGetSecretValue.target(), "secretsmanager.BatchGetSecretValue");
    }

    #[test]
    fn extraction() {
        assert_eq!(extract(&sv(Some("plain"), None), None).ok().as_deref(), Some("plain"));
        assert_eq!(extract(&sv(None, Some("AAEC")), None).ok().as_deref(), Some("AAEC"));
        let j = sv(Some(r#"{"user":"u","port":5432,"nested":{"a":1},"gone":null}"#), None);
        assert_eq!(extract(&j, Some("user")).ok().as_deref(), Some("u"));
        assert_eq!(extract(&j, Some("port")).ok().as_deref(), Some("5432"));
        assert_eq!(extract(&j, Some("nested")).ok().as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(extract(&j, Some("missing")), Err(BackendError::NotFound));
        assert_eq!(extract(&j, Some("gone")), Err(BackendError::NotFound));
        let e = extract(&sv(Some("not json s3cr3t"), None), Some("k")).expect_err("not json");
        assert_eq!(e.kind(), "invalid-config");
        assert!(!e.message().contains("s3cr3t"));
        assert_eq!(extract(&sv(Some("[1]"), None), Some("k")).expect_err("array").kind(), "invalid-config");
        assert_eq!(extract(&sv(None, Some("AAEC")), Some("k")).expect_err("binary").kind(), "invalid-config");
        assert_eq!(extract(&sv(None, None), None).expect_err("empty").kind(), "internal");
    }

    #[test]
    fn json_key_updates() {
        assert_eq!(with_json_key(None, "k", "v").ok().as_deref(), Some(r#"{"k":"v"}"#));
        let updated = with_json_key(Some(r#"{"a":1,"k":"old"}"#), "k", "new").expect("update");
        let parsed: Value = serde_json::from_str(&updated).expect("json");
        assert_eq!(parsed, json!({"a": 1, "k": "new"}));
        assert_eq!(with_json_key(Some("plain"), "k", "v").expect_err("plain").kind(), "invalid-config");
        assert_eq!(without_json_key(r#"{"a":1,"k":2}"#, "k").ok().as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(without_json_key(r#"{"a":1}"#, "k"), Err(BackendError::NotFound));
    }

    #[test]
    fn batch_answers_match_by_name_or_arn() {
        let v = sv(Some("x"), None);
        assert!(v.answers("app"));
        assert!(v.answers("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"));
        assert!(!v.answers("other"));
        assert!(!format!("{v:?}").contains("\"x\""));
    }

    #[test]
    fn error_codes_are_read_from_json_header_and_xml() {
        let (c, m) = error_code(
            br#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"no such"}"#,
            None,
        );
        assert_eq!((c.as_deref(), m.as_deref()), (Some("ResourceNotFoundException"), Some("no such")));
        let (c, _) = error_code(br#"{"message":"x"}"#, Some("ThrottlingException:http://internal/"));
        assert_eq!(c.as_deref(), Some("ThrottlingException"));
        let xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match</Message></Error></ErrorResponse>";
        let (c, m) = error_code(xml, None);
        assert_eq!(c.as_deref(), Some("SignatureDoesNotMatch"));
        assert!(m.is_some_and(|m| m.starts_with("The request signature")));
        assert_eq!(error_code(b"garbage", None), (None, None));
    }

    #[test]
    fn error_mapping_follows_the_contract() {
        let m = |status, code: &str| map_error(status, Some(code), Some("msg"), "GetSecretValue app").kind();
        assert_eq!(m(400, "ResourceNotFoundException"), "not-found");
        for code in ["UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException"] {
            assert_eq!(m(400, code), "denied", "{code}");
        }
        assert_eq!(m(403, "SignatureDoesNotMatch"), "denied");
        for code in ["ThrottlingException", "InternalServiceError"] {
            assert_eq!(m(400, code), "unavailable", "{code}");
        }
        assert_eq!(m(400, "InvalidParameterException"), "invalid-config");
        assert_eq!(m(400, "InvalidRequestException"), "internal");
        assert_eq!(
            map_error(
                400,
                Some("InvalidRequestException"),
                Some("You can't perform this operation on the secret because it was marked for deletion."),
                "c"
            ),
            BackendError::NotFound
        );
        // Unknown codes fall back on the status.
        assert_eq!(m(503, "SomethingNew"), "unavailable");
        assert_eq!(m(403, "SomethingNew"), "denied");
        assert_eq!(m(400, "SomethingNew"), "internal");
        assert_eq!(map_error(500, None, None, "c").kind(), "unavailable");
        let e = map_error(400, Some("AccessDeniedException"), Some("User: x is not authorized"), "Get app");
        assert_eq!(e.message(), "Get app: AccessDeniedException: User: x is not authorized");
    }

    #[test]
    fn request_tokens_look_like_uuid_v4() {
        let t = uuid_from_bytes([0xff; 16]);
        assert_eq!(t, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_from_bytes([0; 16]), "00000000-0000-4000-8000-000000000000");
    }
}
