//! airlock backend for HashiCorp Vault and OpenBao: the KV secrets engine, v1 and v2.
//!
//! Config keys (all strings, as the host passes them):
//! - `address` (required): base URL, e.g. `https://vault.internal:8200`;
//! - `token`: a Vault token sent as `X-Vault-Token`. Leave it (and AppRole) unset when the
//!   host injects the header for this destination: the guest then sends no token at all;
//! - `role_id` + `secret_id`: AppRole login instead of a token; `approle_mount` (default
//!   `approle`) names the auth mount;
//! - `namespace`: sent as `X-Vault-Namespace` on every request (Vault Enterprise, OpenBao);
//! - `kv_version` (`1` or `2`): skips mount detection; the mount is then the locator's first
//!   path segment. Unset: each mount is detected once through
//!   `sys/internal/ui/mounts/{path}` (multi-segment mounts work) and remembered;
//! - `cas` (default `true`): writes to KV v2 use check-and-set with the version just read, so
//!   a concurrent change is a conflict instead of a lost update.
//!
//! Locators: see [`locator`]. `get-values` reads each distinct (path, version) once.
//!
//! Token lifetime: the sandbox gives the guest no clock, so an AppRole token's expiry is
//! noticed by the 403 Vault answers for an expired token; the guest then logs in again once
//! and repeats the request. A second 403 is a real policy refusal (`denied`).

pub mod api;
pub mod locator;

// BTreeMap, not HashMap: HashMap's RandomState would import wasi:random, which the
// sandbox does not provide (guest-inspect --check refuses such a component).
use std::collections::BTreeMap;

use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Method, Request, Response, Secret};
use serde_json::{Map, Value};

use api::{KvVersion, Mount};
use locator::Locator;

/// Every config key this backend reads.
pub const CONFIG_KEYS: &[&str] =
    &["address", "token", "role_id", "secret_id", "approle_mount", "namespace", "kv_version", "cas"];

/// How requests are authenticated.
enum Auth {
    /// The host injects `X-Vault-Token`; the guest sends none.
    HostInjected,
    /// A configured token.
    Token(Secret),
    /// AppRole: the token from the last login, if any.
    AppRole { mount: String, role_id: Secret, secret_id: Secret, token: Option<Secret> },
}

/// One Vault backend instance: settings, auth state, and the mounts detected so far.
pub struct VaultBackend {
    address: String,
    namespace: Option<String>,
    auth: Auth,
    kv_version: Option<KvVersion>,
    cas: bool,
    mounts: Vec<Mount>,
}

/// A batch read's identity: the full path and the pinned version.
type ReadKey = (String, Option<u64>);

/// Where a locator's secret lives: its mount and path below it.
struct Target {
    mount: Mount,
    rel: String,
}

impl VaultBackend {
    /// Adds the namespace and the token headers (the token only if the guest holds one).
    fn decorate(&self, req: Request) -> Request {
        let token = match &self.auth {
            Auth::HostInjected => None,
            Auth::Token(t) => Some(t.expose()),
            Auth::AppRole { token, .. } => token.as_ref().map(Secret::expose),
        };
        req.header_opt("X-Vault-Namespace", self.namespace.as_deref()).header_opt("X-Vault-Token", token)
    }

    /// Logs in with AppRole (no-op for other auth modes), replacing any held token.
    fn login(&mut self, host: &Host<'_>) -> Result<(), BackendError> {
        let Auth::AppRole { mount, role_id, secret_id, token } = &mut self.auth else {
            return Ok(());
        };
        let context = format!("AppRole login at auth/{mount}");
        let req = api::login_request(&self.address, mount, role_id, secret_id)?
            .header_opt("X-Vault-Namespace", self.namespace.as_deref());
        let resp = host.send(&req)?;
        let login = api::parse_login(resp.status, &resp.body, &context)?;
        host.debug(&format!("{context}: logged in, lease {}", api::human_ttl(login.lease_seconds)));
        *token = Some(login.token);
        Ok(())
    }

    /// Sends `req` authenticated. With AppRole: logs in first if no token is held, and on a
    /// 403 logs in again once and repeats the request (an expired token looks like a 403).
    fn send(&mut self, host: &Host<'_>, req: Request) -> Result<Response, BackendError> {
        let approle = matches!(self.auth, Auth::AppRole { .. });
        if matches!(self.auth, Auth::AppRole { token: None, .. }) {
            self.login(host)?;
        }
        let resp = host.send(&self.decorate(req.clone()))?;
        if resp.status == 403 && approle {
            host.info("Vault answered 403: logging in again with AppRole and retrying once");
            self.login(host)?;
            return host.send(&self.decorate(req));
        }
        Ok(resp)
    }

    /// The mount serving `path` and the path below it: from config, from the detected-mount
    /// cache, or by asking Vault once.
    fn target(&mut self, host: &Host<'_>, path: &str) -> Result<Target, BackendError> {
        if let Some(version) = self.kv_version {
            let (mount, rel) = api::first_segment_mount(path, version)?;
            return Ok(Target { mount, rel });
        }
        if let Some(t) = self.cached_target(path) {
            return Ok(t);
        }
        let context = format!("detect the mount of `{path}`");
        let resp = self.send(host, Request::get(api::mount_info_url(&self.address, path)))?;
        if !resp.is_success() {
            return Err(api::vault_error(resp.status, &context, &resp.body));
        }
        let mount = api::parse_mount_info(&resp.body, path)?;
        host.debug(&format!("mount `{}/` is KV {:?}", mount.path, mount.version));
        self.mounts.push(mount);
        self.cached_target(path).ok_or_else(|| {
            BackendError::invalid_config(format!(
                "Vault locator path `{path}` names a mount, not a secret below it"
            ))
        })
    }

    fn cached_target(&self, path: &str) -> Option<Target> {
        self.mounts
            .iter()
            .find_map(|m| m.relative(path).map(|rel| Target { mount: m.clone(), rel: rel.to_string() }))
    }

    /// Reads the secret at `t` (a version of it, if given); a missing secret is
    /// `SecretRead { data: None, .. }`, not an error.
    fn read(
        &mut self,
        host: &Host<'_>,
        t: &Target,
        version: Option<u64>,
    ) -> Result<api::SecretRead, BackendError> {
        if version.is_some() && t.mount.version == KvVersion::V1 {
            return Err(BackendError::invalid_config(format!(
                "mount `{}/` is KV v1, which has no versions: drop `?version=` from the locator",
                t.mount.path
            )));
        }
        let context = format!("read `{}/{}`", t.mount.path, t.rel);
        let resp =
            self.send(host, Request::get(api::secret_url(&self.address, &t.mount, &t.rel, version)))?;
        api::parse_read(resp.status, &resp.body, &t.mount, &context)
    }

    /// Writes `data` to `t`, with check-and-set `cas` on KV v2.
    fn write(
        &mut self,
        host: &Host<'_>,
        t: &Target,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<(), BackendError> {
        let context = format!("write `{}/{}`", t.mount.path, t.rel);
        let resp = self.send(host, api::write_request(&self.address, &t.mount, &t.rel, data, cas)?)?;
        if resp.is_success() { Ok(()) } else { Err(api::vault_error(resp.status, &context, &resp.body)) }
    }

    /// The check-and-set version for a write: the locator's pinned version (which must still
    /// be current), else the version just read when `cas` is on.
    fn cas_for_write(&self, t: &Target, loc: &Locator, current: u64) -> Result<Option<u64>, BackendError> {
        if t.mount.version == KvVersion::V1 {
            return match loc.version {
                Some(_) => Err(BackendError::invalid_config(format!(
                    "mount `{}/` is KV v1, which has no versions: drop `?version=` from the locator",
                    t.mount.path
                ))),
                None => Ok(None),
            };
        }
        match loc.version {
            Some(pinned) if pinned != current => Err(BackendError::invalid_config(format!(
                "check-and-set conflict: the locator pins version {pinned} of `{}/{}` but the current version is {current}",
                t.mount.path, t.rel
            ))),
            Some(pinned) => Ok(Some(pinned)),
            None if self.cas => Ok(Some(current)),
            None => Ok(None),
        }
    }

    fn token_description(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        let resp = self.send(host, Request::get(format!("{}/v1/auth/token/lookup-self", self.address)))?;
        if !resp.is_success() {
            return Err(api::vault_error(resp.status, "token lookup-self", &resp.body));
        }
        let info = api::parse_token_info(&resp.body)?;
        let how = match self.auth {
            Auth::HostInjected => "host-injected token",
            Auth::Token(_) => "token",
            Auth::AppRole { .. } => "AppRole token",
        };
        Ok(format!(
            "{how} valid, ttl {}, policies [{}]",
            api::human_ttl(info.ttl_seconds),
            info.policies.join(", ")
        ))
    }
}

impl Backend for VaultBackend {
    fn init(config: &Config, host: &Host<'_>) -> Result<Self, BackendError> {
        config.reject_unknown(CONFIG_KEYS)?;
        let address = config.required_url("address")?;
        let token = config.optional_secret("token");
        let role_id = config.optional_secret("role_id");
        let secret_id = config.optional_secret("secret_id");
        let auth = match (token, role_id, secret_id) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(BackendError::invalid_config(
                    "set either `token` or `role_id` + `secret_id`, not both",
                ));
            }
            (Some(t), None, None) if t.expose().is_empty() => {
                return Err(BackendError::invalid_config("config key `token` is empty"));
            }
            (Some(t), None, None) => Auth::Token(t),
            (None, Some(role_id), Some(secret_id)) => Auth::AppRole {
                mount: config.optional("approle_mount").unwrap_or("approle").trim_matches('/').to_string(),
                role_id,
                secret_id,
                token: None,
            },
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(BackendError::invalid_config("AppRole needs both `role_id` and `secret_id`"));
            }
            (None, None, None) => Auth::HostInjected,
        };
        if config.optional("approle_mount").is_some() && !matches!(auth, Auth::AppRole { .. }) {
            return Err(BackendError::invalid_config("`approle_mount` is set but AppRole is not configured"));
        }
        let kv_version =
            config.optional_parse::<u8>("kv_version", "1 or 2")?.map(KvVersion::from_config).transpose()?;
        let mut backend = VaultBackend {
            address,
            namespace: config.optional("namespace").map(str::to_string).filter(|n| !n.is_empty()),
            auth,
            kv_version,
            cas: config.bool_or("cas", true)?,
            mounts: Vec::new(),
        };
        backend.login(host)?;
        Ok(backend)
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let t = self.target(host, &loc.path)?;
        let read = self.read(host, &t, loc.version)?;
        let data = read.data.ok_or(BackendError::NotFound)?;
        api::select_field(&data, loc.field.as_deref(), &loc.path)
    }

    /// One read per distinct (path, version); fields of the same secret share it.
    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        let mut reads: BTreeMap<ReadKey, Result<Map<String, Value>, BackendError>> = BTreeMap::new();
        creds
            .iter()
            .map(|cred| {
                let loc = locator::parse(cred.locator_or_id())?;
                let key = (loc.path.clone(), loc.version);
                if !reads.contains_key(&key) {
                    let read = self
                        .target(host, &loc.path)
                        .and_then(|t| self.read(host, &t, loc.version))
                        .and_then(|r| r.data.ok_or(BackendError::NotFound));
                    reads.insert(key.clone(), read);
                }
                match reads.get(&key) {
                    Some(Ok(data)) => api::select_field(data, loc.field.as_deref(), &loc.path),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(BackendError::internal("batch read bookkeeping lost a result")),
                }
            })
            .collect()
    }

    /// Sets one key (the locator's field, the secret's only key, or `value` for a new
    /// secret), keeping the secret's other keys: a read-modify-write, protected on KV v2 by
    /// check-and-set (see [`VaultBackend::cas_for_write`]).
    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let t = self.target(host, &loc.path)?;
        let current = self.read(host, &t, None)?;
        let mut data = current.data.unwrap_or_default();
        let field = api::field_for_write(&data, loc.field.as_deref(), &loc.path)?;
        let cas = self.cas_for_write(&t, &loc, current.version)?;
        data.insert(field, Value::String(value.to_string()));
        self.write(host, &t, &data, cas)
    }

    /// `?version=N` (KV v2): soft-deletes that version, whatever keys it holds (a named
    /// `#field` must exist in it). Otherwise, `#field` on a secret with other keys removes
    /// that key (a new version on KV v2); and a secret left with one key (or named without
    /// `#field` while holding one) is removed: KV v2 soft-deletes the latest version, KV v1
    /// deletes the path. `not-found` when nothing was there.
    fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let t = self.target(host, &loc.path)?;
        let current = self.read(host, &t, loc.version)?;
        let mut data = current.data.ok_or(BackendError::NotFound)?;
        if let Some(field) = &loc.field
            && !data.contains_key(field)
        {
            return Err(BackendError::NotFound);
        }
        if loc.version.is_none() {
            match &loc.field {
                Some(field) if data.len() > 1 => {
                    data.remove(field);
                    let cas = self.cas_for_write(&t, &loc, current.version)?;
                    return self.write(host, &t, &data, cas);
                }
                None if data.len() > 1 => return Err(api::several_keys(&data, &loc.path)),
                _ => {}
            }
        }
        let context = format!("delete `{}/{}`", t.mount.path, t.rel);
        let req = match (t.mount.version, loc.version) {
            (KvVersion::V2, Some(n)) => api::delete_versions_request(&self.address, &t.mount, &t.rel, n)?,
            _ => Request::new(Method::Delete, api::secret_url(&self.address, &t.mount, &t.rel, None)),
        };
        let resp = self.send(host, req)?;
        if resp.is_success() { Ok(()) } else { Err(api::vault_error(resp.status, &context, &resp.body)) }
    }

    /// `sys/health` (sealed ⇒ `unavailable`) then `auth/token/lookup-self`.
    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        // sys/health is unauthenticated and served by the root namespace only.
        let resp = host.send(&Request::get(api::health_url(&self.address)))?;
        let version = api::parse_health(resp.status, &resp.body)?;
        let token = self.token_description(host)?;
        let kv = match self.kv_version {
            Some(KvVersion::V1) => "KV v1 (configured)",
            Some(KvVersion::V2) => "KV v2 (configured)",
            None => "KV version detected per mount",
        };
        let ns = self.namespace.as_deref().map(|n| format!(", namespace `{n}`")).unwrap_or_default();
        Ok(format!("Vault {version} at {}{ns}; {kv}; {token}", self.address))
    }
}

airlock_guest::export_backend!(VaultBackend);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use airlock_guest::native::{MemoryLog, NativeHttp};

    fn init_err(pairs: &[(&str, &str)]) -> BackendError {
        let (http, log) = (NativeHttp::new(), MemoryLog::new());
        match VaultBackend::init(&Config::from_pairs(pairs.iter().copied()), &Host::new(&http, &log)) {
            Ok(_) => panic!("init accepted {pairs:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn init_rejects_bad_config_without_quoting_values() {
        let a = ("address", "http://127.0.0.1:8200");
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("address", "vault:8200")],
            &[a, ("tokn", "s.x")],
            &[a, ("token", "hunter2"), ("role_id", "r"), ("secret_id", "s")],
            &[a, ("role_id", "r")],
            &[a, ("secret_id", "hunter2")],
            &[a, ("token", "hunter2"), ("approle_mount", "x")],
            &[a, ("token", "hunter2"), ("kv_version", "3")],
            &[a, ("token", "hunter2"), ("cas", "maybe")],
        ];
        for pairs in cases {
            let e = init_err(pairs);
            assert_eq!(e.kind(), "invalid-config", "{pairs:?}: {e}");
            assert!(!e.message().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn token_and_host_injected_modes_need_no_server_at_init() {
        let (http, log) = (NativeHttp::new(), MemoryLog::new());
        let host = Host::new(&http, &log);
        for pairs in
            [vec![("address", "http://127.0.0.1:1")], vec![("address", "http://127.0.0.1:1"), ("token", "t")]]
        {
            assert!(VaultBackend::init(&Config::from_pairs(pairs), &host).is_ok());
        }
    }
}
