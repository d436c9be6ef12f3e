//! The Vault/OpenBao HTTP API as pure functions: URL and body building, response parsing,
//! error mapping. No I/O here, so all of it is unit-tested natively.
//!
//! Invariant: error messages carry paths, key names, statuses and Vault's own error strings
//! (written for operators), never a secret value or a token. Vault's `lookup-self` answer
//! contains the token itself (`data.id`): it is parsed into [`TokenInfo`], which has no field
//! for it.

use airlock_guest::{BackendError, Request, Secret, encode_path, json, sanitize_detail, status_error};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The key a value is stored under when a new secret is written without `#field`.
pub const DEFAULT_FIELD: &str = "value";

/// The KV secrets engine version of a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    /// From the config value `1` / `2`.
    pub fn from_config(n: u8) -> Result<Self, BackendError> {
        match n {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            _ => Err(BackendError::invalid_config("config key `kv_version` must be 1 or 2")),
        }
    }
}

/// A KV mount: its path (no trailing `/`) and engine version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub path: String,
    pub version: KvVersion,
}

impl Mount {
    /// The path of `full` below this mount, if `full` is inside it and not the mount itself.
    pub fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.path.as_str())?.strip_prefix('/').filter(|r| !r.is_empty())
    }
}

/// The mount of `full` when the KV version is configured rather than detected: its first
/// path segment (multi-segment mounts such as `team/kv` need detection).
pub fn first_segment_mount(full: &str, version: KvVersion) -> Result<(Mount, String), BackendError> {
    match full.split_once('/') {
        Some((mount, rel)) if !rel.is_empty() => {
            Ok((Mount { path: mount.to_string(), version }, rel.to_string()))
        }
        _ => Err(BackendError::invalid_config(format!(
            "Vault locator path `{full}` must be `mount/path` (a secret below a mount)"
        ))),
    }
}

/// `GET /v1/sys/internal/ui/mounts/{path}`: which mount serves `path`, and its options.
pub fn mount_info_url(base: &str, full: &str) -> String {
    format!("{base}/v1/sys/internal/ui/mounts/{}", encode_path(full))
}

/// Parses the mount-info answer into a [`Mount`]; a non-KV engine is `invalid-config`.
pub fn parse_mount_info(body: &[u8], full: &str) -> Result<Mount, BackendError> {
    #[derive(Deserialize)]
    struct Answer {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        path: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        options: Option<Map<String, Value>>,
    }
    let a: Answer = json::parse(body, "Vault mount information")?;
    let path = a.data.path.trim_end_matches('/').to_string();
    let version = match a.data.kind.as_str() {
        "kv" => match a.data.options.as_ref().and_then(|o| o.get("version")).and_then(Value::as_str) {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        },
        // The pre-KV name of the v1 engine, still served by Vault.
        "generic" => KvVersion::V1,
        other => {
            return Err(BackendError::invalid_config(format!(
                "`{full}` is served by mount `{path}/` of type `{other}`, not a KV secrets engine"
            )));
        }
    };
    Ok(Mount { path, version })
}

/// The URL reading (or writing) a secret: KV v2 `/{mount}/data/{rel}[?version=N]`,
/// KV v1 `/{mount}/{rel}`.
pub fn secret_url(base: &str, mount: &Mount, rel: &str, version: Option<u64>) -> String {
    let m = encode_path(&mount.path);
    let r = encode_path(rel);
    match (mount.version, version) {
        (KvVersion::V2, Some(n)) => format!("{base}/v1/{m}/data/{r}?version={n}"),
        (KvVersion::V2, None) => format!("{base}/v1/{m}/data/{r}"),
        (KvVersion::V1, _) => format!("{base}/v1/{m}/{r}"),
    }
}

/// KV v2 soft delete of specific versions: `POST /v1/{mount}/delete/{rel}`.
pub fn delete_versions_request(
    base: &str,
    mount: &Mount,
    rel: &str,
    version: u64,
) -> Result<Request, BackendError> {
    Request::post(format!("{base}/v1/{}/delete/{}", encode_path(&mount.path), encode_path(rel)))
        .json(&serde_json::json!({ "versions": [version] }))
}

/// The write request for `data`: KV v2 `POST .../data/...` with `{"data": .., "options":
/// {"cas": N}}` (cas only when given), KV v1 `PUT` of the map itself.
pub fn write_request(
    base: &str,
    mount: &Mount,
    rel: &str,
    data: &Map<String, Value>,
    cas: Option<u64>,
) -> Result<Request, BackendError> {
    let url = secret_url(base, mount, rel, None);
    match mount.version {
        KvVersion::V2 => {
            let mut body = serde_json::json!({ "data": data });
            if let Some(n) = cas {
                body["options"] = serde_json::json!({ "cas": n });
            }
            Request::post(url).json(&body)
        }
        KvVersion::V1 => Request::put(url).json(data),
    }
}

/// A secret as read: its keys (if it currently holds data) and the version the answer is
/// about (KV v2; 0 for KV v1 or a secret that never existed).
#[derive(Clone, Debug, PartialEq)]
pub struct SecretRead {
    /// `None` when there is no live data: never written, soft-deleted or destroyed.
    pub data: Option<Map<String, Value>>,
    pub version: u64,
}

/// Parses a KV read answer for any status. KV v2 answers 404 for a deleted version *with*
/// metadata (so the current version is known, which a check-and-set write needs) and plain
/// `{"errors":[]}` for a path never written.
pub fn parse_read(
    status: u16,
    body: &[u8],
    mount: &Mount,
    context: &str,
) -> Result<SecretRead, BackendError> {
    if status == 404 {
        let version = match mount.version {
            KvVersion::V2 => json::parse::<Value>(body, "Vault read answer")
                .ok()
                .and_then(|v| v.pointer("/data/metadata/version").and_then(Value::as_u64))
                .unwrap_or(0),
            KvVersion::V1 => 0,
        };
        return Ok(SecretRead { data: None, version });
    }
    if !(200..300).contains(&status) {
        return Err(vault_error(status, context, body));
    }
    let v: Value = json::parse(body, "Vault read answer")?;
    match mount.version {
        KvVersion::V2 => {
            let version = v.pointer("/data/metadata/version").and_then(Value::as_u64).unwrap_or(0);
            let data = match json::pointer(&v, "/data/data", "Vault KV v2 read answer")? {
                Value::Object(m) => Some(m.clone()),
                Value::Null => None,
                _ => {
                    return Err(BackendError::internal(
                        "Vault KV v2 read answer: `data.data` is not an object",
                    ));
                }
            };
            Ok(SecretRead { data, version })
        }
        KvVersion::V1 => match json::pointer(&v, "/data", "Vault KV v1 read answer")? {
            Value::Object(m) => Ok(SecretRead { data: Some(m.clone()), version: 0 }),
            _ => Err(BackendError::internal("Vault KV v1 read answer: `data` is not an object")),
        },
    }
}

/// The value of `field` in `data`, or of its only key when `field` is `None`.
///
/// A missing field is `not-found` (nothing at the locator); an unnamed field in a secret with
/// several keys is `invalid-config` naming the keys (key names are not secret, values are).
pub fn select_field(
    data: &Map<String, Value>,
    field: Option<&str>,
    path: &str,
) -> Result<String, BackendError> {
    match field {
        Some(f) => data.get(f).map(json::value_to_text).unwrap_or(Err(BackendError::NotFound)),
        None => {
            let mut it = data.iter();
            match (it.next(), it.next()) {
                (None, _) => Err(BackendError::NotFound),
                (Some((_, v)), None) => json::value_to_text(v),
                (Some(_), Some(_)) => Err(several_keys(data, path)),
            }
        }
    }
}

/// `invalid-config` for a secret with several keys and no `#field` in the locator.
pub fn several_keys(data: &Map<String, Value>, path: &str) -> BackendError {
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    BackendError::invalid_config(format!(
        "secret `{path}` holds {} keys ({}); the locator must name one with `#field`",
        keys.len(),
        keys.join(", ")
    ))
}

/// The key a write of a single value goes to: the locator's field, else the secret's only
/// key, else [`DEFAULT_FIELD`] for a new (empty) secret.
pub fn field_for_write(
    data: &Map<String, Value>,
    field: Option<&str>,
    path: &str,
) -> Result<String, BackendError> {
    if let Some(f) = field {
        return Ok(f.to_string());
    }
    let mut keys = data.keys();
    match (keys.next(), keys.next()) {
        (None, _) => Ok(DEFAULT_FIELD.to_string()),
        (Some(k), None) => Ok(k.clone()),
        (Some(_), Some(_)) => Err(several_keys(data, path)),
    }
}

/// Vault's `{"errors": [..]}` texts, joined, if the body has them.
pub fn error_detail(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let errs: Vec<&str> = v.get("errors")?.as_array()?.iter().filter_map(Value::as_str).collect();
    if errs.is_empty() { None } else { Some(sanitize_detail(&errs.join("; "))) }
}

/// Maps a Vault error answer: the SDK's status mapping, plus Vault specifics — 412 (a
/// performance standby not yet caught up) is `unavailable`; a 400 about check-and-set is a
/// conflict (`unavailable`: a retry re-reads the current version) or a mount that requires
/// check-and-set (`invalid-config`).
pub fn vault_error(status: u16, context: &str, body: &[u8]) -> BackendError {
    let detail = error_detail(body);
    let d = detail.as_deref().unwrap_or_default();
    match status {
        400 if d.contains("check-and-set parameter did not match") => BackendError::unavailable(format!(
            "{context}: check-and-set conflict (the secret changed since it was read); retry"
        )),
        400 if d.contains("check-and-set parameter required") => BackendError::invalid_config(format!(
            "{context}: the mount requires check-and-set; set config `cas = true`"
        )),
        412 => BackendError::unavailable(format!("{context}: HTTP 412: {d}")),
        _ => status_error(status, context, detail.as_deref()),
    }
}

/// The AppRole login request: `POST /v1/auth/{mount}/login`.
pub fn login_request(
    base: &str,
    approle_mount: &str,
    role_id: &Secret,
    secret_id: &Secret,
) -> Result<Request, BackendError> {
    Request::post(format!("{base}/v1/auth/{}/login", encode_path(approle_mount)))
        .json(&serde_json::json!({ "role_id": role_id.expose(), "secret_id": secret_id.expose() }))
}

/// A login answer: the client token and its lease in seconds (0 = no expiry).
#[derive(Debug)]
pub struct Login {
    pub token: Secret,
    pub lease_seconds: u64,
}

/// Parses a login answer of any status. Any refusal (Vault answers 400 "invalid role or
/// secret ID", 403 for a wrong mount) is `denied`: the configured identity was not accepted.
pub fn parse_login(status: u16, body: &[u8], context: &str) -> Result<Login, BackendError> {
    if matches!(status, 400 | 401 | 403) {
        let d = error_detail(body).unwrap_or_default();
        return Err(BackendError::denied(format!("{context}: HTTP {status}: {d}")));
    }
    if !(200..300).contains(&status) {
        return Err(vault_error(status, context, body));
    }
    #[derive(Deserialize)]
    struct Answer {
        auth: Auth,
    }
    #[derive(Deserialize)]
    struct Auth {
        client_token: String,
        #[serde(default)]
        lease_duration: u64,
    }
    let a: Answer = json::parse(body, "Vault login answer")?;
    Ok(Login { token: Secret::new(a.auth.client_token), lease_seconds: a.auth.lease_duration })
}

/// What `auth/token/lookup-self` says, without the token itself.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub ttl_seconds: u64,
    pub policies: Vec<String>,
}

/// Parses `lookup-self` (2xx only; the caller maps errors first).
pub fn parse_token_info(body: &[u8]) -> Result<TokenInfo, BackendError> {
    #[derive(Deserialize)]
    struct Answer {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(default)]
        ttl: u64,
        #[serde(default)]
        policies: Vec<String>,
    }
    let a: Answer = json::parse(body, "Vault token lookup answer")?;
    Ok(TokenInfo { ttl_seconds: a.data.ttl, policies: a.data.policies })
}

/// `GET /v1/sys/health`, with standbys counted as healthy (they serve reads).
pub fn health_url(base: &str) -> String {
    format!("{base}/v1/sys/health?standbyok=true&perfstandbyok=true")
}

/// Parses `sys/health` of any status: the server version when it is usable, else
/// `unavailable` saying why (sealed, not initialised, DR secondary).
pub fn parse_health(status: u16, body: &[u8]) -> Result<String, BackendError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Health {
        initialized: bool,
        sealed: bool,
        version: String,
    }
    let h: Health = serde_json::from_slice(body).unwrap_or_default();
    match status {
        200..=299 => Ok(h.version),
        503 if h.sealed => Err(BackendError::unavailable("Vault is sealed")),
        501 if !h.initialized => Err(BackendError::unavailable("Vault is not initialised")),
        472 => Err(BackendError::unavailable("Vault is a disaster-recovery secondary")),
        _ => Err(vault_error(status, "Vault health check", body)),
    }
}

/// `3h4m5s`-style duration, `no expiry` for 0.
pub fn human_ttl(seconds: u64) -> String {
    if seconds == 0 {
        return "no expiry".into();
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Mount {
        Mount { path: "secret".into(), version: KvVersion::V2 }
    }
    fn v1() -> Mount {
        Mount { path: "team/kv".into(), version: KvVersion::V1 }
    }

    #[test]
    fn urls() {
        assert_eq!(secret_url("http://h", &v2(), "a b/c", None), "http://h/v1/secret/data/a%20b/c");
        assert_eq!(secret_url("http://h", &v2(), "a", Some(3)), "http://h/v1/secret/data/a?version=3");
        assert_eq!(secret_url("http://h", &v1(), "a", Some(3)), "http://h/v1/team/kv/a");
        assert_eq!(mount_info_url("http://h", "team/kv/x"), "http://h/v1/sys/internal/ui/mounts/team/kv/x");
        let d = delete_versions_request("http://h", &v2(), "a", 2).expect("req");
        assert_eq!(
            (d.url.as_str(), d.body.as_deref()),
            ("http://h/v1/secret/delete/a", Some(&br#"{"versions":[2]}"#[..]))
        );
    }

    #[test]
    fn mounts() {
        assert_eq!(v1().relative("team/kv/app/x"), Some("app/x"));
        assert_eq!(v1().relative("team/kv"), None);
        assert_eq!(v1().relative("team/kvx/a"), None);
        let (m, rel) = first_segment_mount("secret/a/b", KvVersion::V2).expect("split");
        assert_eq!((m.path.as_str(), rel.as_str()), ("secret", "a/b"));
        assert!(first_segment_mount("secret", KvVersion::V2).is_err());
        let info = br#"{"data":{"path":"team/kv/","type":"kv","options":{"version":"2"}}}"#;
        assert_eq!(
            parse_mount_info(info, "team/kv/x").ok(),
            Some(Mount { path: "team/kv".into(), version: KvVersion::V2 })
        );
        let info = br#"{"data":{"path":"kv1/","type":"kv","options":null}}"#;
        assert_eq!(parse_mount_info(info, "kv1/x").map(|m| m.version).ok(), Some(KvVersion::V1));
        let info = br#"{"data":{"path":"pki/","type":"pki","options":{}}}"#;
        assert_eq!(parse_mount_info(info, "pki/x").expect_err("pki").kind(), "invalid-config");
    }

    #[test]
    fn write_bodies() {
        let mut data = Map::new();
        data.insert("k".into(), Value::String("v".into()));
        let r = write_request("http://h", &v2(), "a", &data, Some(4)).expect("req");
        let body: Value = serde_json::from_slice(r.body.as_deref().unwrap_or_default()).expect("json");
        assert_eq!(body, serde_json::json!({"data": {"k": "v"}, "options": {"cas": 4}}));
        let r = write_request("http://h", &v2(), "a", &data, None).expect("req");
        assert_eq!(r.body.as_deref(), Some(&br#"{"data":{"k":"v"}}"#[..]));
        let r = write_request("http://h", &v1(), "a", &data, Some(4)).expect("req");
        assert_eq!((r.method.as_str(), r.body.as_deref()), ("PUT", Some(&br#"{"k":"v"}"#[..])));
    }

    #[test]
    fn reads() {
        let ok = br#"{"data":{"data":{"password":"p1","user":"u"},"metadata":{"version":1}}}"#;
        let r = parse_read(200, ok, &v2(), "read").expect("read");
        assert_eq!(r.version, 1);
        let data = r.data.expect("data");
        assert_eq!(select_field(&data, Some("password"), "secret/a").ok().as_deref(), Some("p1"));
        assert_eq!(select_field(&data, Some("nope"), "secret/a"), Err(BackendError::NotFound));
        let e = select_field(&data, None, "secret/a").expect_err("two keys");
        assert_eq!(
            e.message(),
            "secret `secret/a` holds 2 keys (password, user); the locator must name one with `#field`"
        );
        assert!(!e.message().contains("p1"));

        let deleted = br#"{"data":{"data":null,"metadata":{"deletion_time":"x","version":3}}}"#;
        assert_eq!(parse_read(404, deleted, &v2(), "read").ok(), Some(SecretRead { data: None, version: 3 }));
        assert_eq!(
            parse_read(404, br#"{"errors":[]}"#, &v2(), "read").ok(),
            Some(SecretRead { data: None, version: 0 })
        );
        let v1ok = br#"{"data":{"k":"v"},"lease_duration":2764800}"#;
        assert_eq!(parse_read(200, v1ok, &v1(), "read").ok().and_then(|r| r.data).map(|d| d.len()), Some(1));
        assert_eq!(
            parse_read(503, br#"{"errors":["Vault is sealed"]}"#, &v2(), "read")
                .expect_err("sealed")
                .message(),
            "read: HTTP 503: Vault is sealed"
        );
        assert_eq!(
            parse_read(403, br#"{"errors":["permission denied"]}"#, &v2(), "read").expect_err("403").kind(),
            "denied"
        );
        assert_eq!(parse_read(429, b"", &v2(), "read").expect_err("429").kind(), "unavailable");
    }

    #[test]
    fn write_fields() {
        let mut data = Map::new();
        assert_eq!(field_for_write(&data, None, "p").ok().as_deref(), Some("value"));
        data.insert("only".into(), Value::Null);
        assert_eq!(field_for_write(&data, None, "p").ok().as_deref(), Some("only"));
        data.insert("second".into(), Value::Null);
        assert_eq!(field_for_write(&data, None, "p").expect_err("two").kind(), "invalid-config");
        assert_eq!(field_for_write(&data, Some("f"), "p").ok().as_deref(), Some("f"));
    }

    #[test]
    fn cas_errors_are_clear() {
        let body = br#"{"errors":["check-and-set parameter did not match the current version"]}"#;
        let e = vault_error(400, "write secret/a", body);
        assert_eq!(e.kind(), "unavailable");
        assert!(e.message().contains("check-and-set conflict"));
        let body = br#"{"errors":["check-and-set parameter required for this call"]}"#;
        assert_eq!(vault_error(400, "w", body).kind(), "invalid-config");
        assert_eq!(vault_error(400, "w", br#"{"errors":["other"]}"#).kind(), "internal");
    }

    #[test]
    fn login_and_token_info() {
        let ok = br#"{"auth":{"client_token":"s.abc","lease_duration":3600,"renewable":true}}"#;
        let l = parse_login(200, ok, "login").expect("login");
        assert_eq!((l.token.expose(), l.lease_seconds), ("s.abc", 3600));
        assert!(!format!("{l:?}").contains("s.abc"));
        let e = parse_login(400, br#"{"errors":["invalid role or secret ID"]}"#, "login").expect_err("bad");
        assert_eq!(e.message(), "login: HTTP 400: invalid role or secret ID");
        assert_eq!(parse_login(503, b"{}", "login").expect_err("sealed").kind(), "unavailable");
        let info = br#"{"data":{"id":"hvs.SECRET","ttl":7200,"policies":["default","reader"]}}"#;
        let t = parse_token_info(info).expect("info");
        assert_eq!(t, TokenInfo { ttl_seconds: 7200, policies: vec!["default".into(), "reader".into()] });
        assert!(!format!("{t:?}").contains("SECRET"));
    }

    #[test]
    fn health() {
        assert_eq!(
            parse_health(200, br#"{"initialized":true,"sealed":false,"version":"2.7.2"}"#).ok().as_deref(),
            Some("2.7.2")
        );
        assert_eq!(
            parse_health(503, br#"{"initialized":true,"sealed":true}"#).expect_err("sealed").message(),
            "Vault is sealed"
        );
        assert_eq!(parse_health(501, br#"{"initialized":false}"#).expect_err("uninit").kind(), "unavailable");
        assert_eq!(human_ttl(0), "no expiry");
        assert_eq!(human_ttl(59), "59s");
        assert_eq!(human_ttl(3725), "1h2m5s");
    }
}
