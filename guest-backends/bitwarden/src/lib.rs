//! # bitwarden: an airlock credential backend for Bitwarden, in two modes
//!
//! - `serve`: the Bitwarden CLI's Vault Management API (`bw serve`, by default at
//!   `http://localhost:8087`): items by id or name, their login, notes, TOTP and custom
//!   fields; writes by editing the item (`PUT /object/item/{id}`) or creating a login item.
//!   The CLI holds the unlocked vault; this backend never sees a master password.
//! - `secrets-manager`: Bitwarden Secrets Manager with a machine-account access token: the
//!   identity login, the organisation key and every secret are decrypted inside the guest
//!   ([`crypto`]), with no `bws` binary or sidecar. Read-only here (see README.md).
//!
//! Configuration keys are listed in [`KEYS`]; locators in [`serve`] and [`sm`].
//!
//! Invariants: no secret value, access token, client secret, bearer token or key in a log
//! line or an error; `bw serve` requests never carry an `Origin` header (bw serve refuses
//! them); Secrets Manager ciphertexts are authenticated (MAC, constant time) before they are
//! decrypted.

pub mod crypto;
pub mod serve;
pub mod sm;

use airlock_guest::{
    Backend, BackendError, Config, CredentialRef, Host, Request, Response, encode_component,
};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::AccessToken;
use crate::serve::{Field, ItemRef};
use crate::sm::{SecretField, SecretRef, Session};

/// Every configuration key this backend reads.
pub const KEYS: &[&str] = &["mode", "url", "access_token", "identity_url", "api_url"];

/// `bw serve`'s default address.
pub const DEFAULT_SERVE_URL: &str = "http://localhost:8087";
/// Bitwarden's US cloud identity server.
pub const DEFAULT_IDENTITY_URL: &str = "https://identity.bitwarden.com";
/// Bitwarden's US cloud API server.
pub const DEFAULT_API_URL: &str = "https://api.bitwarden.com";

/// The backend: one of the two modes.
pub enum Bitwarden {
    Serve(ServeMode),
    /// Boxed: it holds keys and a session, much larger than serve mode's URL.
    SecretsManager(Box<SecretsManagerMode>),
}

/// `bw serve` mode state.
pub struct ServeMode {
    url: String,
}

/// Secrets Manager mode state: the parsed token and the current session.
pub struct SecretsManagerMode {
    identity_url: String,
    api_url: String,
    token: AccessToken,
    session: Option<Session>,
}

/// Reads `config`. `mode` is `serve` or `secrets-manager`; when absent it is
/// `secrets-manager` if `access_token` is set, else `serve`. `url` is bw serve's address in
/// serve mode, and in secrets-manager mode a self-hosted (or EU) server's base URL, from which
/// `identity_url` = `url/identity` and `api_url` = `url/api` (as `bws --server-url` does);
/// `identity_url`/`api_url` override it, and without any the US cloud is used.
pub fn from_config(config: &Config) -> Result<Bitwarden, BackendError> {
    config.reject_unknown(KEYS)?;
    let mode = match config.optional("mode").map(str::trim) {
        Some("serve") => "serve",
        Some("secrets-manager") => "secrets-manager",
        Some(_) => {
            return Err(BackendError::invalid_config(
                "config key `mode` must be `serve` or `secrets-manager`",
            ));
        }
        None if config.optional("access_token").is_some() => "secrets-manager",
        None => "serve",
    };
    if mode == "serve" {
        for key in ["access_token", "identity_url", "api_url"] {
            if config.optional(key).is_some() {
                return Err(BackendError::invalid_config(format!(
                    "config key `{key}` belongs to mode `secrets-manager`, but `mode` is `serve`"
                )));
            }
        }
        let url = match config.optional("url") {
            Some(_) => config.required_url("url")?,
            None => DEFAULT_SERVE_URL.to_string(),
        };
        return Ok(Bitwarden::Serve(ServeMode { url }));
    }
    let token = AccessToken::parse(config.required("access_token")?).map_err(|e| {
        BackendError::invalid_config(format!(
            "config key `access_token`: {e} (expected 0.<id>.<secret>:<key>)"
        ))
    })?;
    let base = match config.optional("url") {
        Some(_) => Some(config.required_url("url")?),
        None => None,
    };
    let pick = |key: &str, suffix: &str, default: &str| -> Result<String, BackendError> {
        match (config.optional(key), &base) {
            (Some(_), _) => config.required_url(key),
            (None, Some(b)) => Ok(format!("{b}/{suffix}")),
            (None, None) => Ok(default.to_string()),
        }
    };
    Ok(Bitwarden::SecretsManager(Box::new(SecretsManagerMode {
        identity_url: pick("identity_url", "identity", DEFAULT_IDENTITY_URL)?,
        api_url: pick("api_url", "api", DEFAULT_API_URL)?,
        token,
        session: None,
    })))
}

impl ServeMode {
    /// Sends `req` (never with an `Origin` header) and unwraps bw serve's envelope.
    fn call(&self, host: &Host<'_>, req: Request, context: &str) -> Result<Value, BackendError> {
        let req = req.header("Accept", "application/json");
        debug_assert!(req.header_value("Origin").is_none(), "bw serve refuses requests with Origin");
        let resp = host.send(&req)?;
        serve::unwrap_envelope(resp.status, &resp.body, context)
    }

    fn url(&self, path: &str) -> String {
        airlock_guest::join_url(&self.url, path)
    }

    /// The item `item` names: `GET /object/item/{id}` for ids; for names the items matching
    /// a search, filtered to the exact name (bw's own name lookup is a substring match).
    fn item(&self, host: &Host<'_>, item: &ItemRef) -> Result<Value, BackendError> {
        match item {
            ItemRef::Id(id) => self.call(
                host,
                Request::get(self.url(&format!("/object/item/{}", encode_component(id)))),
                &format!("item {id}"),
            ),
            ItemRef::Name(name) => {
                let url = self.url(&format!("/list/object/items?search={}", encode_component(name)));
                let items = serve::list_items(self.call(
                    host,
                    Request::get(url),
                    &format!("search items `{name}`"),
                )?)?;
                serve::find_item(&items, item).cloned()
            }
        }
    }

    /// The value `loc` names in `item` (TOTP codes from `GET /object/totp/{id}`).
    fn value_of(&self, host: &Host<'_>, item: &Value, loc: &serve::Locator) -> Result<String, BackendError> {
        if loc.field != Field::Totp {
            return serve::field_value(item, &loc.field);
        }
        let id = serve::item_id(item).ok_or_else(|| BackendError::internal("a bw item without an id"))?;
        let data = self.call(
            host,
            Request::get(self.url(&format!("/object/totp/{}", encode_component(id)))),
            &format!("TOTP of item {id}"),
        )?;
        match data.get("data").and_then(Value::as_str) {
            Some(code) => Ok(code.to_string()),
            None => Err(BackendError::internal("bw serve TOTP answer has no code")),
        }
    }

    fn get_value(&self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let loc = serve::Locator::parse(cred.locator_or_id())?;
        let item = self.item(host, &loc.item)?;
        self.value_of(host, &item, &loc)
    }

    /// Several values with one `GET /list/object/items` (bw serve has no multi-get by id):
    /// every locator is resolved in that one list; TOTP codes still need one call each.
    fn get_values(&self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        let locs: Vec<Result<serve::Locator, BackendError>> =
            creds.iter().map(|c| serve::Locator::parse(c.locator_or_id())).collect();
        if locs.iter().filter(|l| l.is_ok()).count() < 2 {
            return creds.iter().map(|c| self.get_value(host, c)).collect();
        }
        let items = self
            .call(host, Request::get(self.url("/list/object/items")), "list items")
            .and_then(serve::list_items);
        locs.into_iter()
            .map(|loc| {
                let loc = loc?;
                let items = items.as_ref().map_err(Clone::clone)?;
                let item = serve::find_item(items, &loc.item)?;
                self.value_of(host, item, &loc)
            })
            .collect()
    }

    fn store_value(&self, host: &Host<'_>, cred: &CredentialRef, value: &str) -> Result<(), BackendError> {
        let loc = serve::Locator::parse(cred.locator_or_id())?;
        match self.item(host, &loc.item) {
            Ok(item) => self.put_item(host, item, &loc, Some(value)),
            Err(BackendError::NotFound) => match &loc.item {
                ItemRef::Name(name) => {
                    let field = if loc.field == Field::Default { Field::Password } else { loc.field.clone() };
                    let new = serve::new_login_item(name, &field, value)?;
                    let req = Request::post(self.url("/object/item")).json(&new)?;
                    self.call(host, req, &format!("create item `{name}`")).map(drop)
                }
                ItemRef::Id(_) => Err(BackendError::NotFound),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes `item` back with `loc`'s field set to `value` (or cleared).
    fn put_item(
        &self,
        host: &Host<'_>,
        item: Value,
        loc: &serve::Locator,
        value: Option<&str>,
    ) -> Result<(), BackendError> {
        let id = serve::item_id(&item)
            .ok_or_else(|| BackendError::internal("a bw item without an id"))?
            .to_string();
        let edited = Zeroizing::new(
            serde_json::to_vec(&serve::with_field(item, &loc.field, value)?)
                .map_err(|_| BackendError::internal("could not serialize the edited item"))?,
        );
        let req = Request::put(self.url(&format!("/object/item/{}", encode_component(&id))))
            .header("Content-Type", "application/json")
            .body(edited.to_vec());
        self.call(host, req, &format!("edit item {id}")).map(drop)
    }

    fn delete_value(&self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        let loc = serve::Locator::parse(cred.locator_or_id())?;
        let item = self.item(host, &loc.item)?;
        if loc.field == Field::Default {
            // The whole item goes to the trash (bw keeps it 30 days; `bw restore` undoes it).
            let id =
                serve::item_id(&item).ok_or_else(|| BackendError::internal("a bw item without an id"))?;
            let req = Request::delete(self.url(&format!("/object/item/{}", encode_component(id))));
            return self.call(host, req, &format!("delete item {id}")).map(drop);
        }
        self.put_item(host, item, &loc, None)
    }

    fn health(&self, host: &Host<'_>) -> Result<String, BackendError> {
        let status = serve::parse_status(&self.call(host, Request::get(self.url("/status")), "status")?)?;
        match status.status.as_str() {
            "unlocked" => Ok(format!(
                "bw serve at {}: vault unlocked{}",
                self.url,
                status.last_sync.map(|s| format!(", last sync {s}")).unwrap_or_default()
            )),
            "locked" => {
                Err(BackendError::unavailable(format!("bw serve at {}: {}", self.url, serve::UNLOCK_HINT)))
            }
            "unauthenticated" => Err(BackendError::denied(format!(
                "bw serve at {}: bw is not logged in: run `bw login` on the bw serve host",
                self.url
            ))),
            other => {
                Err(BackendError::internal(format!("bw serve at {}: unknown status `{other}`", self.url)))
            }
        }
    }
}

impl SecretsManagerMode {
    /// Logs in with the access token (identity `connect/token`, client credentials) and keeps
    /// the session.
    fn login(&mut self, host: &Host<'_>) -> Result<(), BackendError> {
        let form = sm::login_form(&self.token);
        let req = Request::post(airlock_guest::join_url(&self.identity_url, "/connect/token"))
            .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
            .header("Accept", "application/json")
            .header("Device-Type", sm::DEVICE_TYPE_SDK)
            .body(form.as_bytes().to_vec());
        let resp = host.send(&req)?;
        if !resp.is_success() {
            return Err(sm::login_error(resp.status, &resp.body));
        }
        let session = sm::session_from_login(&resp.body, &self.token)?;
        host.debug(&format!(
            "Secrets Manager login ok (access token {}, organisation {})",
            self.token.access_token_id,
            session.organization_id.as_deref().unwrap_or("unknown")
        ));
        self.session = Some(session);
        Ok(())
    }

    /// Sends an API request with the bearer token, logging in first when there is no
    /// session and once more when the API answers 401 (the token expired).
    fn api(&mut self, host: &Host<'_>, build: impl Fn(String) -> Request) -> Result<Response, BackendError> {
        for attempt in 0..2 {
            if self.session.is_none() {
                self.login(host)?;
            }
            let bearer = match &self.session {
                Some(s) => Zeroizing::new(format!("Bearer {}", s.bearer.as_str())),
                None => return Err(BackendError::internal("no session after login")),
            };
            let req = build(self.api_url.clone())
                .header("Authorization", bearer.as_str())
                .header("Accept", "application/json");
            let resp = host.send(&req)?;
            if resp.status == 401 && attempt == 0 {
                host.debug("Secrets Manager answered 401: logging in again");
                self.session = None;
                continue;
            }
            return Ok(resp);
        }
        Err(BackendError::denied("Secrets Manager refused a fresh login's token (HTTP 401)"))
    }

    fn org_key(&self) -> Result<&crypto::SymmetricKey, BackendError> {
        self.session.as_ref().map(|s| &s.org_key).ok_or_else(|| BackendError::internal("no session"))
    }

    /// The id `secret` names: itself, or the one secret whose decrypted key matches.
    fn secret_id(&mut self, host: &Host<'_>, secret: &SecretRef) -> Result<String, BackendError> {
        match secret {
            SecretRef::Id(id) => Ok(id.clone()),
            SecretRef::Key(wanted) => {
                let list = self.list_secrets(host)?;
                sm::find_by_key(&list, wanted, self.org_key()?)
            }
        }
    }

    /// The ids and encrypted keys of every secret the machine account can read
    /// (`GET /organizations/{org}/secrets`).
    fn list_secrets(&mut self, host: &Host<'_>) -> Result<Vec<sm::SecretIdentifier>, BackendError> {
        if self.session.is_none() {
            self.login(host)?;
        }
        let org =
            self.session.as_ref().and_then(|s| s.organization_id.clone()).ok_or_else(|| {
                BackendError::internal("the login token names no organisation; use secret ids")
            })?;
        let resp = self.api(host, |api| {
            Request::get(airlock_guest::join_url(
                &api,
                &format!("/organizations/{}/secrets", encode_component(&org)),
            ))
        })?;
        let list: sm::SecretIdentifiers = resp.error_for_status("list secrets")?.json("secret list")?;
        Ok(list.secrets)
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let loc = sm::Locator::parse(cred.locator_or_id())?;
        let id = self.secret_id(host, &loc.secret)?;
        let resp = self.api(host, |api| {
            Request::get(airlock_guest::join_url(&api, &format!("/secrets/{}", encode_component(&id))))
        })?;
        let resp = resp.error_for_status(&format!("secret {id}"))?;
        let secret: sm::EncryptedSecret = resp.json("secret")?;
        sm::decrypt_field(&secret, loc.field, self.org_key()?)
    }

    /// Several values with one `POST /secrets/get-by-ids`.
    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        let locs: Vec<Result<sm::Locator, BackendError>> =
            creds.iter().map(|c| sm::Locator::parse(c.locator_or_id())).collect();
        // Secrets named by key: one listing of the organisation's secrets serves them all.
        let needs_list = locs.iter().flatten().any(|l| matches!(l.secret, SecretRef::Key(_)));
        let listing = if needs_list { Some(self.list_secrets(host)) } else { None };
        let resolved: Vec<Result<(String, SecretField), BackendError>> = locs
            .into_iter()
            .map(|loc| {
                let loc = loc?;
                let id = match (&loc.secret, &listing) {
                    (SecretRef::Id(id), _) => id.clone(),
                    (SecretRef::Key(wanted), Some(list)) => {
                        sm::find_by_key(list.as_ref().map_err(Clone::clone)?, wanted, self.org_key()?)?
                    }
                    (SecretRef::Key(_), None) => return Err(BackendError::internal("secret list missing")),
                };
                Ok((id, loc.field))
            })
            .collect();
        let mut ids: Vec<&str> = Vec::new();
        for (id, _) in resolved.iter().flatten() {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
        if ids.len() < 2 {
            return creds.iter().map(|c| self.get_value(host, c)).collect();
        }
        let body = sm::get_by_ids_body(&ids);
        let fetched = self
            .api(host, |api| {
                Request::post(airlock_guest::join_url(&api, "/secrets/get-by-ids"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string().into_bytes())
            })
            .and_then(|r| r.error_for_status("get secrets by ids"))
            .and_then(|r| r.json::<sm::SecretsList>("secrets by ids"));
        let fetched = match fetched {
            // One inaccessible id fails the whole batch: read them one by one instead.
            Err(BackendError::NotFound) => return creds.iter().map(|c| self.get_value(host, c)).collect(),
            other => other,
        };
        let key = self.org_key().cloned();
        resolved
            .into_iter()
            .map(|r| {
                let (id, field) = r?;
                let list = fetched.as_ref().map_err(Clone::clone)?;
                let secret = list
                    .data
                    .iter()
                    .find(|s| s.id.eq_ignore_ascii_case(&id))
                    .ok_or(BackendError::NotFound)?;
                sm::decrypt_field(secret, field, key.as_ref().map_err(Clone::clone)?)
            })
            .collect()
    }

    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        self.session = None;
        self.login(host)?;
        let org = self.session.as_ref().and_then(|s| s.organization_id.clone());
        if let Some(org) = &org {
            let resp = self.api(host, |api| {
                Request::get(airlock_guest::join_url(
                    &api,
                    &format!("/organizations/{}/secrets", encode_component(org)),
                ))
            })?;
            resp.error_for_status("list secrets")?;
        }
        Ok(format!(
            "Bitwarden Secrets Manager at {}: machine account {} logged in{}",
            self.api_url,
            self.token.access_token_id,
            org.map(|o| format!(" for organisation {o}")).unwrap_or_default()
        ))
    }
}

/// Why Secrets Manager mode does not write.
const SM_READ_ONLY: &str = "Secrets Manager mode is read-only in this backend: writing needs fresh random IVs, \
    and the sandbox promises guests no randomness source; use the Bitwarden web app or `bws`";

impl Backend for Bitwarden {
    fn init(config: &Config, host: &Host<'_>) -> Result<Self, BackendError> {
        let mut backend = from_config(config)?;
        match &mut backend {
            Bitwarden::Serve(s) => host.debug(&format!("bw serve mode at {}", s.url)),
            // Log in now so a wrong token fails `init`, as the contract asks.
            Bitwarden::SecretsManager(s) => s.login(host)?,
        }
        Ok(backend)
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        match self {
            Bitwarden::Serve(s) => s.get_value(host, cred),
            Bitwarden::SecretsManager(s) => s.get_value(host, cred),
        }
    }

    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        match self {
            Bitwarden::Serve(s) => s.get_values(host, creds),
            Bitwarden::SecretsManager(s) => s.get_values(host, creds),
        }
    }

    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        match self {
            Bitwarden::Serve(s) => s.store_value(host, cred, value),
            Bitwarden::SecretsManager(_) => Err(BackendError::unsupported(SM_READ_ONLY)),
        }
    }

    fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        match self {
            Bitwarden::Serve(s) => s.delete_value(host, cred),
            Bitwarden::SecretsManager(_) => Err(BackendError::unsupported(SM_READ_ONLY)),
        }
    }

    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        match self {
            Bitwarden::Serve(s) => s.health(host),
            Bitwarden::SecretsManager(s) => s.health(host),
        }
    }
}

airlock_guest::export_backend!(Bitwarden);

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str =
        "0.ec2c1d46-6a4b-4751-a310-af9601317f2d.C2IgxjjLF7qSshsbwe8JGcbM075YXw:X8vbvA0bduihIDe/qrzIQQ==";

    #[test]
    fn modes_are_chosen_and_checked() {
        match from_config(&Config::default()) {
            Ok(Bitwarden::Serve(s)) => assert_eq!(s.url, DEFAULT_SERVE_URL),
            _ => panic!("serve by default"),
        }
        match from_config(&Config::from_pairs([("access_token", TOKEN)])) {
            Ok(Bitwarden::SecretsManager(s)) => {
                assert_eq!(s.identity_url, DEFAULT_IDENTITY_URL);
                assert_eq!(s.api_url, DEFAULT_API_URL);
            }
            _ => panic!("secrets-manager with a token"),
        }
        match from_config(&Config::from_pairs([
            ("access_token", TOKEN),
            ("url", "https://vault.example.eu/"),
        ])) {
            Ok(Bitwarden::SecretsManager(s)) => {
                assert_eq!(s.identity_url, "https://vault.example.eu/identity");
                assert_eq!(s.api_url, "https://vault.example.eu/api");
            }
            _ => panic!("self-hosted base"),
        }
        let bad = [
            vec![("mode", "serve"), ("access_token", TOKEN)],
            vec![("mode", "vault")],
            vec![("mode", "secrets-manager")],
            vec![("access_token", "0.nope:AAAA")],
            vec![("colour", "blue")],
        ];
        for pairs in bad {
            let e = from_config(&Config::from_pairs(pairs.clone())).err().expect("invalid");
            assert_eq!(e.kind(), "invalid-config", "{pairs:?}");
            assert!(!e.message().contains("C2Igxjj"), "{e}");
        }
    }
}
