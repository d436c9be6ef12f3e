//! # aws-secrets-manager: an airlock credential backend for AWS Secrets Manager
//!
//! Reads secrets with `GetSecretValue` (one) and `BatchGetSecretValue` (many), writes with
//! `PutSecretValue` (creating the secret with `CreateSecret` when it does not exist), deletes
//! with `DeleteSecret` (a recovery window by default). Every request is signed here with
//! AWS Signature Version 4 ([`sigv4`]), from static keys or temporary ones with a session
//! token; no AWS SDK is involved, and nothing but the host's `http` import is used.
//!
//! The locator syntax is in [`locator`]; the configuration keys are in [`Settings::KEYS`];
//! README.md describes both for operators.
//!
//! Invariants:
//! - the secret access key and session token are only signing inputs; they never reach a log
//!   line, an error or `Debug` output ([`sigv4::Credentials`] redacts itself);
//! - secret values travel only in request and response bodies, which the SDK never logs; an
//!   error names the operation, the secret id and AWS's error code and message;
//! - the signed `host` is the authority the host will send for the configured endpoint, so a
//!   signature is never computed for one host and sent to another.

pub mod api;
pub mod locator;
pub mod sigv4;

use std::cell::Cell;

use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Request, Response};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::api::{BatchResponse, DeleteMode, MAX_BATCH, Operation, SecretValue};
use crate::locator::Locator;
use crate::sigv4::{AmzDate, Credentials};

/// The signing service name of Secrets Manager.
const SERVICE: &str = "secretsmanager";

/// The operator's settings (`[backends.NAME.config]`), validated.
#[derive(Debug)]
pub struct Settings {
    /// The region in the signature scope, e.g. `eu-west-1`.
    pub region: String,
    /// The base URL requests are sent to (no trailing `/`).
    pub endpoint: String,
    /// The static or temporary credentials.
    pub credentials: Credentials,
    /// How `delete-value` removes a secret.
    pub delete_mode: DeleteMode,
    /// Whether `store-value` creates a secret that does not exist yet.
    pub create_missing: bool,
}

impl Settings {
    /// Every configuration key this backend reads.
    pub const KEYS: &'static [&'static str] = &[
        "region",
        "endpoint",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "recovery_window_days",
        "force_delete_without_recovery",
        "create_missing",
    ];

    /// Reads and checks `config`. `region`, `access_key_id` and `secret_access_key` are
    /// required; `endpoint` defaults to the region's public endpoint.
    pub fn from_config(config: &Config) -> Result<Self, BackendError> {
        config.reject_unknown(Self::KEYS)?;
        let region = config.required("region")?.trim().to_string();
        if !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(BackendError::invalid_config(
                "config key `region` must look like `eu-west-1` (lowercase letters, digits, `-`)",
            ));
        }
        let endpoint = match config.optional("endpoint") {
            Some(_) => config.required_url("endpoint")?,
            None => default_endpoint(&region),
        };
        let access_key_id = config.required("access_key_id")?.trim().to_string();
        if !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BackendError::invalid_config(
                "config key `access_key_id` must be letters and digits (e.g. AKIA…)",
            ));
        }
        let credentials = Credentials {
            access_key_id,
            secret_access_key: Zeroizing::new(config.required("secret_access_key")?.trim().to_string()),
            session_token: match config.optional("session_token").map(str::trim) {
                None | Some("") => None,
                Some(t) => Some(Zeroizing::new(t.to_string())),
            },
        };
        let force = config.bool_or("force_delete_without_recovery", false)?;
        let days: Option<u8> =
            config.optional_parse("recovery_window_days", "a number of days from 7 to 30")?;
        let delete_mode = match (force, days) {
            (true, Some(_)) => {
                return Err(BackendError::invalid_config(
                    "set either `recovery_window_days` or `force_delete_without_recovery`, not both",
                ));
            }
            (true, None) => DeleteMode::Force,
            (false, None) => DeleteMode::RecoveryWindow(30),
            (false, Some(d)) if (7..=30).contains(&d) => DeleteMode::RecoveryWindow(d),
            (false, Some(_)) => {
                return Err(BackendError::invalid_config(
                    "config key `recovery_window_days` must be a number of days from 7 to 30",
                ));
            }
        };
        let create_missing = config.bool_or("create_missing", true)?;
        Ok(Self { region, endpoint, credentials, delete_mode, create_missing })
    }
}

/// The public Secrets Manager endpoint of `region` (China regions use `amazonaws.com.cn`).
pub fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://secretsmanager.{region}.{suffix}")
}

/// The `host` header value an HTTP client sends for `url` (authority, lowercased, without
/// userinfo and without the scheme's default port) and the request path (`/` when empty).
pub fn host_and_path(url: &str) -> Result<(String, String), BackendError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| BackendError::invalid_config("the endpoint is not an absolute URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return Err(BackendError::invalid_config("the endpoint must be http:// or https://")),
    };
    let host = authority.strip_suffix(default_port).unwrap_or(&authority).to_string();
    Ok((host, path.to_string()))
}

/// How far (seconds) the time a request was signed with may be from the server's `Date`
/// before a refused request is retried with the server's time. AWS accepts 5 minutes of skew.
const MAX_SKEW_SECS: u64 = 300;

/// The backend's state: its settings, the last time the server told, and a counter that
/// keeps idempotency tokens distinct.
///
/// The clock: SigV4 needs the current time, and the sandbox gives a guest no clock it must
/// trust (a component that imports none runs under the strictest linker). So the time comes
/// from AWS itself: every answer's `Date` header is remembered; a fresh instance first asks
/// the endpoint once (an unsigned `GET`, whose answer carries `Date`); and a refused request
/// whose answer's `Date` is more than [`MAX_SKEW_SECS`] from the signing time (the instance
/// sat idle) is signed again with that time, once. A forged `Date` could only make requests
/// fail, which whoever forges answers can do anyway.
pub struct AwsSecretsManager {
    settings: Settings,
    host_header: String,
    path: String,
    server_time: Cell<Option<u64>>,
    tokens_issued: u64,
}

impl AwsSecretsManager {
    /// A backend for `settings`.
    pub fn new(settings: Settings) -> Result<Self, BackendError> {
        let (host_header, path) = host_and_path(&settings.endpoint)?;
        Ok(Self { settings, host_header, path, server_time: Cell::new(None), tokens_issued: 0 })
    }

    /// Builds the signed request for `op` with JSON `body` at `time`. Pure apart from its
    /// inputs, so tests can pin the time.
    pub fn signed_request(&self, op: Operation, body: &Value, time: &AmzDate) -> Request {
        let body = body.to_string().into_bytes();
        let headers = vec![
            ("Content-Type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("Host".to_string(), self.host_header.clone()),
            ("X-Amz-Target".to_string(), op.target()),
        ];
        let signed = sigv4::sign(
            &sigv4::Request { method: "POST", path: &self.path, query: "", headers: &headers, body: &body },
            &self.settings.credentials,
            &self.settings.region,
            SERVICE,
            time,
            &sigv4::Settings::default(),
        );
        // `Host` is signed but not sent: the host derives it from the URL (the same value).
        let mut req = Request::post(format!("{}{}", self.settings.endpoint, self.path_suffix()));
        for (name, value) in headers.into_iter().filter(|(n, _)| n != "Host").chain(signed.headers) {
            req = req.header(name, value);
        }
        req.body(body)
    }

    /// The part of the URL after the endpoint: `/` unless the endpoint already has a path.
    fn path_suffix(&self) -> &'static str {
        if self.settings.endpoint.ends_with('/') || self.path != "/" { "" } else { "/" }
    }

    /// Calls `op` and returns the parsed JSON answer, or the mapped AWS error. `context`
    /// names what is being done for error messages (never a value).
    fn call(
        &self,
        host: &Host<'_>,
        op: Operation,
        body: &Value,
        context: &str,
    ) -> Result<Value, BackendError> {
        let mut retried = false;
        loop {
            let signed_at = self.signing_time(host)?;
            let resp = host.send(&self.signed_request(op, body, &AmzDate::from_unix(signed_at)))?;
            let told = self.observe(&resp);
            if resp.is_success() {
                return resp.json(&format!("{} answer", op.name()));
            }
            let (code, message) = api::error_code(&resp.body, resp.header("x-amzn-ErrorType"));
            let err = api::map_error(resp.status, code.as_deref(), message.as_deref(), context);
            let skewed = told.is_some_and(|t| t.abs_diff(signed_at) > MAX_SKEW_SECS);
            if matches!(err, BackendError::Denied(_)) && skewed && !retried {
                host.debug(&format!("{context}: signed with a stale time; signing again with the server's"));
                retried = true;
                continue;
            }
            host.debug(&format!("{context}: {}", err.kind()));
            return Err(err);
        }
    }

    /// Remembers the time in `resp`'s `Date` header, if it has a valid one, and returns it.
    fn observe(&self, resp: &Response) -> Option<u64> {
        let told = resp.header("Date").and_then(sigv4::parse_http_date)?;
        self.server_time.set(Some(told));
        Some(told)
    }

    /// The time to sign with: the last `Date` the server sent, or, for a fresh instance, the
    /// `Date` of one unsigned `GET` to the endpoint.
    fn signing_time(&self, host: &Host<'_>) -> Result<u64, BackendError> {
        if let Some(t) = self.server_time.get() {
            return Ok(t);
        }
        let probe = host.send(&Request::get(format!("{}{}", self.settings.endpoint, self.path_suffix())))?;
        self.observe(&probe).ok_or_else(|| {
            BackendError::unavailable(format!(
                "{} sent no valid Date header; SigV4 signatures need the current time",
                self.settings.endpoint
            ))
        })
    }

    /// `GetSecretValue` for `loc`.
    fn get_secret(&self, host: &Host<'_>, loc: &Locator) -> Result<SecretValue, BackendError> {
        let context = format!("GetSecretValue {}", loc.secret_id);
        let answer =
            self.call(host, Operation::GetSecretValue, &api::get_secret_value_request(loc), &context)?;
        airlock_guest::json::from_value(answer, "GetSecretValue answer")
    }

    /// A fresh `ClientRequestToken` (the idempotency token raw API calls must send), shaped
    /// as a UUID: HMAC-SHA256 under the secret access key over the secret id, the server time,
    /// a per-instance counter and the value. Keyed, so it reveals nothing about the value;
    /// distinct for distinct writes; equal only for the same value written to the same secret
    /// in the same second with the same counter, which AWS then rightly treats as one write.
    fn request_token(
        &mut self,
        host: &Host<'_>,
        secret_id: &str,
        value: &str,
    ) -> Result<String, BackendError> {
        let time = self.signing_time(host)?;
        self.tokens_issued += 1;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.settings.credentials.secret_access_key.as_bytes())
            .map_err(|_| BackendError::internal("could not key the request-token MAC"))?;
        mac.update(
            format!("airlock-client-request-token\n{secret_id}\n{time}\n{}\n", self.tokens_issued).as_bytes(),
        );
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Ok(api::uuid_from_bytes(bytes))
    }

    /// Writes `text` as the new `AWSCURRENT` `SecretString` of `secret_id`, creating the
    /// secret when it does not exist and `create_missing` is on.
    fn put_string(&mut self, host: &Host<'_>, secret_id: &str, text: &str) -> Result<(), BackendError> {
        let token = self.request_token(host, secret_id, text)?;
        let body = api::put_secret_value_request(secret_id, text, &token);
        match self.call(host, Operation::PutSecretValue, &body, &format!("PutSecretValue {secret_id}")) {
            Err(BackendError::NotFound) if self.settings.create_missing && !secret_id.starts_with("arn:") => {
                let token = self.request_token(host, secret_id, text)?;
                let body = api::create_secret_request(secret_id, text, &token);
                self.call(host, Operation::CreateSecret, &body, &format!("CreateSecret {secret_id}"))
                    .map(drop)
            }
            other => other.map(drop),
        }
    }

    /// Values for locators that read `AWSCURRENT`, with one `BatchGetSecretValue` per 20
    /// distinct secret ids. An id the answer does not cover (e.g. a partial ARN, which the
    /// answer names differently) is read on its own; if the caller may not batch
    /// (`AccessDeniedException` on the batch call) the chunk is read one by one.
    fn batch_current(&self, host: &Host<'_>, locs: &[&Locator]) -> Vec<Result<String, BackendError>> {
        let mut ids: Vec<&str> = Vec::new();
        for loc in locs {
            if !ids.contains(&loc.secret_id.as_str()) {
                ids.push(&loc.secret_id);
            }
        }
        let mut found: Vec<(String, Result<SecretValue, BackendError>)> = Vec::new();
        for chunk in ids.chunks(MAX_BATCH) {
            let context = format!("BatchGetSecretValue ({} secrets)", chunk.len());
            let answer = self
                .call(host, Operation::BatchGetSecretValue, &api::batch_get_request(chunk), &context)
                .and_then(|v| {
                    airlock_guest::json::from_value::<BatchResponse>(v, "BatchGetSecretValue answer")
                });
            match answer {
                Ok(batch) => {
                    for id in chunk {
                        let value = batch.secret_values.iter().find(|v| v.answers(id)).cloned();
                        let error = batch.errors.iter().find(|e| e.secret_id.as_deref() == Some(*id));
                        let result = match (value, error) {
                            (Some(v), _) => Ok(v),
                            (None, Some(e)) => Err(api::map_error(
                                400,
                                e.error_code.as_deref(),
                                e.message.as_deref(),
                                &format!("BatchGetSecretValue {id}"),
                            )),
                            (None, None) => self.get_secret(host, &plain_locator(id)),
                        };
                        found.push((id.to_string(), result));
                    }
                }
                // Only a missing `BatchGetSecretValue` permission is worth retrying one by
                // one; a bad signature or key would fail every single read the same way.
                Err(BackendError::Denied(why)) if why.contains("AccessDeniedException") => {
                    host.debug(&format!("batch read refused ({why}); reading one by one"));
                    for id in chunk {
                        found.push((id.to_string(), self.get_secret(host, &plain_locator(id))));
                    }
                }
                Err(e) => found.extend(chunk.iter().map(|id| (id.to_string(), Err(e.clone())))),
            }
        }
        locs.iter()
            .map(|loc| {
                let (_, result) = found
                    .iter()
                    .find(|(id, _)| *id == loc.secret_id)
                    .ok_or_else(|| BackendError::internal("a batched secret id went missing"))?;
                result.clone().and_then(|v| api::extract(&v, loc.json_key.as_deref()))
            })
            .collect()
    }
}

/// A locator reading `AWSCURRENT` of `secret_id` as a whole.
fn plain_locator(secret_id: &str) -> Locator {
    Locator { secret_id: secret_id.to_string(), version_stage: None, version_id: None, json_key: None }
}

/// The access key id with its middle hidden, for health messages (`AKIA…WXYZ`).
fn masked_key_id(id: &str) -> String {
    match (id.get(..4), id.get(id.len().saturating_sub(4)..)) {
        (Some(head), Some(tail)) if id.len() > 8 => format!("{head}…{tail}"),
        _ => "…".to_string(),
    }
}

impl Backend for AwsSecretsManager {
    fn init(config: &Config, host: &Host<'_>) -> Result<Self, BackendError> {
        let backend = Self::new(Settings::from_config(config)?)?;
        host.debug(&format!(
            "AWS Secrets Manager at {} (region {})",
            backend.settings.endpoint, backend.settings.region
        ));
        Ok(backend)
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let loc = Locator::parse(cred.locator_or_id())?;
        let secret = self.get_secret(host, &loc)?;
        api::extract(&secret, loc.json_key.as_deref())
    }

    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        let parsed: Vec<Result<Locator, BackendError>> =
            creds.iter().map(|c| Locator::parse(c.locator_or_id())).collect();
        let current: Vec<&Locator> =
            parsed.iter().filter_map(|p| p.as_ref().ok()).filter(|l| !l.pins_version()).collect();
        // One credential gains nothing from a batch (and a batch needs an extra permission).
        let mut batched =
            if current.len() > 1 { self.batch_current(host, &current) } else { Vec::new() }.into_iter();
        parsed
            .iter()
            .map(|p| match p {
                Err(e) => Err(e.clone()),
                Ok(loc) if loc.pins_version() || current.len() <= 1 => {
                    self.get_secret(host, loc).and_then(|v| api::extract(&v, loc.json_key.as_deref()))
                }
                Ok(_) => {
                    batched.next().unwrap_or_else(|| Err(BackendError::internal("batch result missing")))
                }
            })
            .collect()
    }

    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        let loc = Locator::parse(cred.locator_or_id())?;
        if loc.pins_version() {
            return Err(BackendError::invalid_config(format!(
                "locator `{}`: store-value writes a new AWSCURRENT version; remove `?stage=`/`?version=`",
                cred.locator_or_id()
            )));
        }
        let text = match &loc.json_key {
            None => value.to_string(),
            Some(key) => match self.get_secret(host, &loc) {
                Ok(current) => {
                    if current.secret_string.is_none() {
                        return Err(BackendError::invalid_config(format!(
                            "{}: holds a SecretBinary, which has no JSON keys to write",
                            loc.secret_id
                        )));
                    }
                    api::with_json_key(current.secret_string.as_deref(), key, value)?
                }
                Err(BackendError::NotFound) => api::with_json_key(None, key, value)?,
                Err(e) => return Err(e),
            },
        };
        let text = Zeroizing::new(text);
        self.put_string(host, &loc.secret_id, &text)
    }

    fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        let loc = Locator::parse(cred.locator_or_id())?;
        if loc.pins_version() {
            return Err(BackendError::invalid_config(format!(
                "locator `{}`: delete-value removes the secret (or one JSON key); remove `?stage=`/`?version=`",
                cred.locator_or_id()
            )));
        }
        match &loc.json_key {
            None => {
                let body = api::delete_secret_request(&loc.secret_id, self.settings.delete_mode);
                self.call(host, Operation::DeleteSecret, &body, &format!("DeleteSecret {}", loc.secret_id))
                    .map(drop)
            }
            Some(key) => {
                let current = self.get_secret(host, &loc)?;
                let Some(text) = current.secret_string.as_deref() else {
                    return Err(BackendError::NotFound);
                };
                let remaining = Zeroizing::new(api::without_json_key(text, key)?);
                self.put_string(host, &loc.secret_id, &remaining)
            }
        }
    }

    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        let where_ = format!("Secrets Manager at {} ({})", self.settings.endpoint, self.settings.region);
        let key = masked_key_id(&self.settings.credentials.access_key_id);
        match self.call(host, Operation::ListSecrets, &serde_json::json!({ "MaxResults": 1 }), "ListSecrets")
        {
            Ok(_) => Ok(format!("{where_}: signed requests accepted for access key {key}")),
            // Authentication passed (AWS checks the signature first); only listing is refused.
            Err(BackendError::Denied(why)) if why.contains("AccessDeniedException") => Ok(format!(
                "{where_}: access key {key} authenticated; ListSecrets is not permitted (reads may still be)"
            )),
            Err(e) => Err(e),
        }
    }
}

airlock_guest::export_backend!(AwsSecretsManager);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("region", "us-east-1"),
            ("access_key_id", "AKIDEXAMPLE"),
            ("secret_access_key", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ];
        pairs.extend_from_slice(extra);
        Config::from_pairs(pairs)
    }

    #[test]
    fn settings_defaults_and_checks() {
        let s = Settings::from_config(&config(&[])).expect("settings");
        assert_eq!(s.endpoint, "https://secretsmanager.us-east-1.amazonaws.com");
        assert_eq!(s.delete_mode, DeleteMode::RecoveryWindow(30));
        assert!(s.create_missing);
        assert!(s.credentials.session_token.is_none());
        let s = Settings::from_config(&config(&[
            ("endpoint", "http://127.0.0.1:5000/"),
            ("session_token", "tok"),
            ("recovery_window_days", "7"),
        ]))
        .expect("settings");
        assert_eq!(s.endpoint, "http://127.0.0.1:5000");
        assert_eq!(s.delete_mode, DeleteMode::RecoveryWindow(7));
        assert!(s.credentials.session_token.is_some());
        assert_eq!(default_endpoint("cn-north-1"), "https://secretsmanager.cn-north-1.amazonaws.com.cn");

        for bad in [
            vec![("recovery_window_days", "3")],
            vec![("recovery_window_days", "7"), ("force_delete_without_recovery", "true")],
            vec![("region", "EU West")],
            vec![("endpoint", "ftp://x")],
            vec![("bogus", "1")],
        ] {
            let e = Settings::from_config(&config(&bad)).expect_err("invalid");
            assert_eq!(e.kind(), "invalid-config", "{bad:?}");
            assert!(!e.message().contains("wJalr"), "{e}");
        }
        let missing = Config::from_pairs([("region", "us-east-1"), ("access_key_id", "AKID")]);
        assert!(Settings::from_config(&missing).is_err());
    }

    #[test]
    fn host_header_drops_default_ports() {
        let hp = |u: &str| host_and_path(u).expect("url");
        assert_eq!(
            hp("https://secretsmanager.us-east-1.amazonaws.com"),
            ("secretsmanager.us-east-1.amazonaws.com".into(), "/".into())
        );
        assert_eq!(hp("https://H:443"), ("h".into(), "/".into()));
        assert_eq!(hp("http://127.0.0.1:5000"), ("127.0.0.1:5000".into(), "/".into()));
        assert_eq!(hp("http://127.0.0.1:80/aws/"), ("127.0.0.1".into(), "/aws/".into()));
    }

    #[test]
    fn signed_requests_carry_target_date_token_and_signature() {
        let mut s = Settings::from_config(&config(&[("session_token", "session-tok")])).expect("settings");
        s.endpoint = "http://127.0.0.1:5000".into();
        let b = AwsSecretsManager::new(s).expect("backend");
        let time = AmzDate::parse("20150830T123600Z").expect("time");
        let req = b.signed_request(Operation::GetSecretValue, &serde_json::json!({"SecretId": "app"}), &time);
        assert_eq!(req.url, "http://127.0.0.1:5000/");
        assert_eq!(req.header_value("X-Amz-Target"), Some("secretsmanager.GetSecretValue"));
        assert_eq!(req.header_value("Content-Type"), Some("application/x-amz-json-1.1"));
        assert_eq!(req.header_value("X-Amz-Date"), Some("20150830T123600Z"));
        assert_eq!(req.header_value("X-Amz-Security-Token"), Some("session-tok"));
        assert_eq!(req.header_value("Host"), None, "the host sets Host from the URL");
        let auth = req.header_value("Authorization").expect("signed");
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        ));
        assert!(!format!("{req:?}").contains("wJalr"));
    }

    /// An [`Http`] that answers from a script and records what it was sent.
    struct Scripted {
        answers: std::cell::RefCell<std::collections::VecDeque<Response>>,
        seen: std::cell::RefCell<Vec<Request>>,
    }

    impl Scripted {
        fn new(answers: Vec<Response>) -> Self {
            Self {
                answers: std::cell::RefCell::new(answers.into()),
                seen: std::cell::RefCell::new(Vec::new()),
            }
        }
    }

    impl airlock_guest::Http for Scripted {
        fn send(&self, req: &Request) -> Result<Response, airlock_guest::HttpError> {
            self.seen.borrow_mut().push(req.clone());
            self.answers
                .borrow_mut()
                .pop_front()
                .ok_or_else(|| airlock_guest::HttpError::Connection("script exhausted".into()))
        }
    }

    fn answer(status: u16, date: Option<&str>, body: &str) -> Response {
        let headers = date.map(|d| vec![("Date".to_string(), d.to_string())]).unwrap_or_default();
        Response { status, headers, body: body.as_bytes().to_vec() }
    }

    fn run(answers: Vec<Response>) -> (Result<String, BackendError>, Vec<Request>) {
        let http = Scripted::new(answers);
        let log = airlock_guest::native::MemoryLog::new();
        let host = Host::new(&http, &log);
        let mut b =
            AwsSecretsManager::init(&config(&[("endpoint", "http://127.0.0.1:9")]), &host).expect("init");
        let got = b.get_value(&host, &CredentialRef::with_locator("c", "app"));
        (got, http.seen.into_inner())
    }

    const T0: &str = "Sun, 30 Aug 2015 12:36:00 GMT";
    const OK: &str = r#"{"Name":"app","SecretString":"v"}"#;

    #[test]
    fn a_fresh_instance_takes_the_time_from_the_server() {
        let (got, seen) = run(vec![answer(404, Some(T0), ""), answer(200, Some(T0), OK)]);
        assert_eq!(got.as_deref(), Ok("v"));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].method, airlock_guest::Method::Get);
        assert!(seen[0].header_value("Authorization").is_none(), "the probe is not signed");
        assert_eq!(seen[1].header_value("X-Amz-Date"), Some("20150830T123600Z"));
    }

    #[test]
    fn a_stale_signature_is_signed_again_with_the_server_time_once() {
        let expired = r#"{"__type":"InvalidSignatureException","message":"Signature expired"}"#;
        let later = "Sun, 30 Aug 2015 13:36:00 GMT";
        let (got, seen) = run(vec![
            answer(404, Some(T0), ""),
            answer(403, Some(later), expired),
            answer(200, Some(later), OK),
        ]);
        assert_eq!(got.as_deref(), Ok("v"));
        assert_eq!(seen[2].header_value("X-Amz-Date"), Some("20150830T133600Z"));

        // Refused again although re-signed: no second retry.
        let (got, seen) = run(vec![
            answer(404, Some(T0), ""),
            answer(403, Some(later), expired),
            answer(403, Some("Sun, 30 Aug 2015 15:36:00 GMT"), expired),
        ]);
        assert_eq!(got.map_err(|e| e.kind()), Err("denied"));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_refusal_without_skew_is_not_retried() {
        let denied = r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
        let (got, seen) = run(vec![answer(404, Some(T0), ""), answer(400, Some(T0), denied)]);
        assert_eq!(got.map_err(|e| e.kind()), Err("denied"));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn no_date_means_no_signature() {
        let (got, _) = run(vec![answer(200, None, "")]);
        assert_eq!(got.map_err(|e| e.kind()), Err("unavailable"));
    }

    #[test]
    fn key_ids_are_masked() {
        assert_eq!(masked_key_id("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(masked_key_id("SHORT"), "…");
    }
}
