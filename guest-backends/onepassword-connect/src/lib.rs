//! airlock backend for a 1Password Connect server.
//!
//! Config keys:
//! - `address` (required): the Connect server's base URL, e.g. `http://op-connect:8080`;
//! - `token`: the Connect access token, sent as `Authorization: Bearer …`. Leave it unset
//!   when the host injects the header for this destination: the guest then sends none.
//!
//! Locators: `op://vault/item/field` or `op://vault/item/section/field` (see [`locator`]);
//! vault and item by name or id, field by id, label or purpose keyword (see
//! [`api::select_field`]).
//!
//! Operations: `get-value`, `get-values` (one item fetch per distinct vault/item),
//! `store-value` (JSON Patch of the field's value; a field that does not exist yet is added
//! as a concealed field, in the named section if any — items are never created),
//! `delete-value` (JSON Patch removing the field; the item itself is never deleted), and
//! `health` (`/health` plus an authenticated vault listing).
//!
//! Vault names are resolved once per instance and remembered; item titles are resolved on
//! every read (items are renamed more often than vaults, and a stale id would read the wrong
//! secret silently).

pub mod api;
pub mod locator;

// BTreeMap, not HashMap: HashMap's RandomState would import wasi:random, which the
// sandbox does not provide (guest-inspect --check refuses such a component).
use std::collections::BTreeMap;

use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Request, Response, Secret};

use api::Item;
use locator::Locator;

/// Every config key this backend reads.
pub const CONFIG_KEYS: &[&str] = &["address", "token"];

/// One Connect backend instance.
pub struct ConnectBackend {
    address: String,
    token: Option<Secret>,
    /// Vault name (or id) as written in locators ⇒ vault id.
    vault_ids: BTreeMap<String, String>,
}

impl ConnectBackend {
    fn send(&self, host: &Host<'_>, req: Request) -> Result<Response, BackendError> {
        let req = match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {}", t.expose())),
            None => req,
        };
        host.send(&req)
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        host: &Host<'_>,
        url: String,
        context: &str,
    ) -> Result<T, BackendError> {
        let resp = self.send(host, Request::get(url))?;
        api::parse_ok(resp.status, &resp.body, context)
    }

    /// The id of the vault `name_or_id`: an id-shaped string is tried as an id first, then
    /// as a name (a vault may be named like an id).
    fn vault_id(&mut self, host: &Host<'_>, name_or_id: &str) -> Result<String, BackendError> {
        if let Some(id) = self.vault_ids.get(name_or_id) {
            return Ok(id.clone());
        }
        if api::is_id(name_or_id) {
            match self.get::<api::Vault>(host, api::vault_url(&self.address, name_or_id), "get vault") {
                Ok(v) => {
                    self.vault_ids.insert(name_or_id.to_string(), v.id.clone());
                    return Ok(v.id);
                }
                Err(BackendError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let vaults: Vec<api::Vault> =
            self.get(host, api::vaults_by_name_url(&self.address, name_or_id), "find vault by name")?;
        let exact: Vec<api::Vault> = vaults.into_iter().filter(|v| v.name == name_or_id).collect();
        let vault = api::exactly_one(exact, &format!("vaults named `{name_or_id}`"))?;
        self.vault_ids.insert(name_or_id.to_string(), vault.id.clone());
        Ok(vault.id)
    }

    /// The full item `name_or_id` in vault `vault_id` (id first when id-shaped, then title).
    fn item(&self, host: &Host<'_>, vault_id: &str, name_or_id: &str) -> Result<Item, BackendError> {
        if api::is_id(name_or_id) {
            match self.get::<Item>(host, api::item_url(&self.address, vault_id, name_or_id), "get item") {
                Err(BackendError::NotFound) => {}
                other => return other,
            }
        }
        let items: Vec<api::ItemSummary> = self.get(
            host,
            api::items_by_title_url(&self.address, vault_id, name_or_id),
            "find item by title",
        )?;
        let exact: Vec<api::ItemSummary> = items.into_iter().filter(|i| i.title == name_or_id).collect();
        let summary = api::exactly_one(exact, &format!("items titled `{name_or_id}`"))?;
        self.get(host, api::item_url(&self.address, vault_id, &summary.id), "get item")
    }

    /// The vault id and full item a locator names.
    fn resolve(&mut self, host: &Host<'_>, loc: &Locator) -> Result<(String, Item), BackendError> {
        let vault_id = self.vault_id(host, &loc.vault)?;
        let item = self.item(host, &vault_id, &loc.item)?;
        Ok((vault_id, item))
    }

    fn patch(&self, host: &Host<'_>, req: Request, context: &str) -> Result<(), BackendError> {
        let resp = self.send(host, req)?;
        api::parse_ok::<Item>(resp.status, &resp.body, context).map(|_| ())
    }
}

impl Backend for ConnectBackend {
    fn init(config: &Config, _host: &Host<'_>) -> Result<Self, BackendError> {
        config.reject_unknown(CONFIG_KEYS)?;
        let address = config.required_url("address")?;
        let token = match config.optional("token") {
            None => None,
            Some(_) => Some(config.required_secret("token")?),
        };
        Ok(Self { address, token, vault_ids: BTreeMap::new() })
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let (_, item) = self.resolve(host, &loc)?;
        api::select_field(&item, loc.section.as_deref(), &loc.field).and_then(api::field_value)
    }

    /// One item fetch per distinct (vault, item); fields of the same item share it.
    fn get_values(&mut self, host: &Host<'_>, creds: &[CredentialRef]) -> Vec<Result<String, BackendError>> {
        let mut items: BTreeMap<(String, String), Result<Item, BackendError>> = BTreeMap::new();
        creds
            .iter()
            .map(|cred| {
                let loc = locator::parse(cred.locator_or_id())?;
                let key = (loc.vault.clone(), loc.item.clone());
                if !items.contains_key(&key) {
                    let fetched = self.resolve(host, &loc).map(|(_, item)| item);
                    items.insert(key.clone(), fetched);
                }
                match items.get(&key) {
                    Some(Ok(item)) => {
                        api::select_field(item, loc.section.as_deref(), &loc.field).and_then(api::field_value)
                    }
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(BackendError::internal("batch read bookkeeping lost a result")),
                }
            })
            .collect()
    }

    /// Sets the field's value; a field that does not exist yet is added (concealed, labelled
    /// with the locator's field name, in the locator's section if given). A missing vault or
    /// item is `not-found`: this backend never creates items.
    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let (vault_id, item) = self.resolve(host, &loc)?;
        let url = api::item_url(&self.address, &vault_id, &item.id);
        let req = match api::select_field(&item, loc.section.as_deref(), &loc.field) {
            Ok(field) => api::set_value_patch(url, &field.id, value)?,
            Err(BackendError::NotFound) => {
                let section = api::section_for_new_field(&item, loc.section.as_deref())?;
                api::add_field_patch(url, &loc.field, section.as_deref(), value)?
            }
            Err(e) => return Err(e),
        };
        self.patch(host, req, "update item field")
    }

    /// Removes the field from the item (the item stays). `not-found` when the field is
    /// absent or already empty.
    fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        let loc = locator::parse(cred.locator_or_id())?;
        let (vault_id, item) = self.resolve(host, &loc)?;
        let field = api::select_field(&item, loc.section.as_deref(), &loc.field)?;
        if field.value.is_none() {
            return Err(BackendError::NotFound);
        }
        let url = api::item_url(&self.address, &vault_id, &item.id);
        self.patch(host, api::remove_field_patch(url, &field.id)?, "remove item field")
    }

    /// `/health` (server version, dependencies) then `GET /v1/vaults` with the token.
    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        let resp = host.send(&Request::get(format!("{}/health", self.address)))?;
        let health: api::Health = api::parse_ok(resp.status, &resp.body, "Connect health")?;
        let vaults: Vec<api::Vault> = self.get(host, api::vaults_url(&self.address), "list vaults")?;
        let degraded: Vec<String> = health
            .dependencies
            .iter()
            .filter(|d| d.status != "ACTIVE")
            .map(|d| format!("{}: {}", d.service, d.status))
            .collect();
        let deps = if degraded.is_empty() {
            String::new()
        } else {
            format!("; dependencies {}", degraded.join(", "))
        };
        let how = if self.token.is_some() { "token" } else { "host-injected token" };
        Ok(format!(
            "{} {} at {}; {how} valid, {} vault(s) visible{deps}",
            if health.name.is_empty() { "1Password Connect" } else { &health.name },
            health.version,
            self.address,
            vaults.len()
        ))
    }
}

airlock_guest::export_backend!(ConnectBackend);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use airlock_guest::native::{MemoryLog, NativeHttp};

    #[test]
    fn init_validates_config() {
        let (http, log) = (NativeHttp::new(), MemoryLog::new());
        let host = Host::new(&http, &log);
        let ok = |pairs: &[(&str, &str)]| {
            ConnectBackend::init(&Config::from_pairs(pairs.iter().copied()), &host).is_ok()
        };
        assert!(ok(&[("address", "http://127.0.0.1:8080")]));
        assert!(ok(&[("address", "http://127.0.0.1:8080"), ("token", "t")]));
        for bad in [
            &[][..],
            &[("address", "op-connect:8080")],
            &[("address", "http://h"), ("vault", "x")],
            &[("address", "http://h"), ("token", "")],
        ] {
            let e =
                ConnectBackend::init(&Config::from_pairs(bad.iter().copied()), &host).err().map(|e| e.kind());
            assert_eq!(e, Some("invalid-config"), "{bad:?}");
        }
    }
}
