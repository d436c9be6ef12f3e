//! The runtime: the seed's three operations over the catalog and the backends.
//!
//! `get_value(credential_id)` looks the credential up and asks the backend that holds it;
//! `get_values_for_api(toolkit, api)` resolves everything that toolkit may use for that
//! API, one batch per backend; `store_value(credential_id, value)` writes through the
//! owning backend. Which backend holds a credential is part of its metadata, so one catalog
//! can mix backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{BackendError, CredentialBackend, CredentialRef};
use crate::backend_loader::{self, Grant, LoadError};
use crate::catalog::{Catalog, CatalogError, Credential, NewCredential};
use crate::config::{BackendConfig, Config};
use crate::database::{Database, DatabaseError};
use crate::fernet_vault::{FERNET, FernetBackend, RotationReport, VaultError};
use crate::keyring::{self, KeyError, KeySource, Keyring};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::value_cache::{CacheSettings, CachedBackend};

/// Runtime failures. Each names the credential and backend involved; none carries a value.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("vault keys: {0}")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("unknown backend '{name}' (configured: {known})")]
    UnknownBackend { name: String, known: String },
    #[error("credential '{credential}' (backend '{backend}'): {source}")]
    Backend {
        credential: String,
        backend: String,
        source: BackendError,
    },
    #[error("a backend named '{0}' is already registered")]
    DuplicateBackend(String),
    #[error("backend '{backend}' returned {got} results for {expected} credentials")]
    BatchMismatch {
        backend: String,
        expected: usize,
        got: usize,
    },
}

/// One credential resolved by `get_values_for_api`.
#[derive(Debug, Serialize)]
pub struct ResolvedCredential {
    pub id: String,
    pub label: String,
    pub api_id: Option<String>,
    pub auth_type: String,
    pub identity: Option<String>,
    pub backend: String,
    /// Broker-facing extras (injection scheme, routes), as in the catalog.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The value, or why this one credential could not be resolved (the others still are).
    #[serde(skip)]
    pub value: Result<Secret, BackendError>,
}

/// The runtime over one data directory.
///
/// Every backend but Fernet is registered wrapped in a [`CachedBackend`] (single-flight
/// always; a value cache when its `[backends.NAME] cache` says so), and the runtime keeps
/// the wrappers so that removing a credential also forgets its cached value.
pub struct Runtime {
    db: Database,
    catalog: Catalog,
    fernet: Arc<FernetBackend>,
    backends: BTreeMap<String, Arc<dyn CredentialBackend>>,
    /// What each sandboxed backend was granted, for `airlock backends list`.
    grants: BTreeMap<String, Grant>,
    caches: BTreeMap<String, Arc<CachedBackend>>,
    backend_configs: BTreeMap<String, BackendConfig>,
    metrics: Arc<Metrics>,
    default_backend: String,
    data_dir: PathBuf,
}

impl Runtime {
    /// Open the data directory named by `config` (creating it on first use), its database
    /// and vault keys, and the configured backends.
    pub fn open(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, RuntimeError> {
        let db = Database::open_in(&config.data_dir)?;
        let keys = Keyring::load(&config.data_dir, env)?;
        let fernet = Arc::new(FernetBackend::new(db.clone(), keys));
        let mut backends: BTreeMap<String, Arc<dyn CredentialBackend>> = BTreeMap::new();
        backends.insert(FERNET.to_owned(), fernet.clone());
        let mut runtime = Runtime {
            catalog: Catalog::new(db.clone()),
            db,
            fernet,
            backends,
            grants: BTreeMap::new(),
            caches: BTreeMap::new(),
            backend_configs: config.backends.clone(),
            metrics: Arc::new(Metrics::new()),
            default_backend: config.default_backend.clone(),
            data_dir: config.data_dir.clone(),
        };
        if !config.backends.is_empty() {
            // One engine per process; created only when a sandboxed backend is configured.
            let engine = backend_loader::engine(&config.data_dir)?;
            for (name, section) in &config.backends {
                let loaded = backend_loader::load(&engine, name, section, &config.base_dir(), env)?;
                runtime
                    .metrics
                    .watch_sandbox(name, loaded.backend.clone(), loaded.outbound);
                // Behind the value cache and single-flight its section configures.
                runtime.insert_backend(name, loaded.backend)?;
                runtime.grants.insert(name.clone(), loaded.grant);
            }
        }
        runtime.backend(&config.default_backend)?;
        Ok(runtime)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The database the catalog, the vault, keys and the audit log share.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The metrics registry backends and the service record into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Register a backend under `name` with the cache settings its `[backends.NAME]`
    /// section gives (none: single-flight only). This is how the sandbox (and tests)
    /// plug backends in.
    pub fn insert_backend(
        &mut self,
        name: &str,
        backend: Arc<dyn CredentialBackend>,
    ) -> Result<Arc<CachedBackend>, RuntimeError> {
        let settings = self.cache_settings(name);
        self.insert_backend_with_cache(name, backend, settings)
    }

    /// Register a backend with explicit cache settings. `fernet` and names already taken
    /// are refused: a backend can never shadow another one's credentials.
    pub fn insert_backend_with_cache(
        &mut self,
        name: &str,
        backend: Arc<dyn CredentialBackend>,
        settings: CacheSettings,
    ) -> Result<Arc<CachedBackend>, RuntimeError> {
        if self.backends.contains_key(name) {
            return Err(RuntimeError::DuplicateBackend(name.to_owned()));
        }
        crate::catalog::validate_id("backend name", name)?;
        let cached = Arc::new(CachedBackend::new(backend, settings, self.metrics.clone()));
        self.backends.insert(name.to_owned(), cached.clone());
        self.caches.insert(name.to_owned(), cached.clone());
        Ok(cached)
    }

    /// The cache settings configured for backend `name` (default: off).
    pub fn cache_settings(&self, name: &str) -> CacheSettings {
        self.backend_configs
            .get(name)
            .map(|b| b.cache.settings())
            .unwrap_or_default()
    }

    /// The `[backends.NAME]` section for `name`, if the config has one.
    pub fn backend_config(&self, name: &str) -> Option<&BackendConfig> {
        self.backend_configs.get(name)
    }

    /// The configured `[backends.NAME]` sections.
    pub fn backend_configs(&self) -> &BTreeMap<String, BackendConfig> {
        &self.backend_configs
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn database_path(&self) -> &Path {
        self.db.path()
    }

    pub fn default_backend(&self) -> &str {
        &self.default_backend
    }

    pub fn fernet(&self) -> &FernetBackend {
        &self.fernet
    }

    /// The configured backends by name.
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Arc<dyn CredentialBackend>)> {
        self.backends.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// What the sandboxed backend `name` was granted (`None` for the Fernet vault).
    pub fn grant(&self, name: &str) -> Option<&Grant> {
        self.grants.get(name)
    }

    /// The backend called `name`, or an error listing the configured ones.
    pub fn backend(&self, name: &str) -> Result<&Arc<dyn CredentialBackend>, RuntimeError> {
        self.backends
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownBackend {
                name: name.to_owned(),
                known: self.backends.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Create a credential's metadata after checking its backend exists.
    pub fn add_credential(&self, new: &NewCredential) -> Result<Credential, RuntimeError> {
        self.backend(&new.backend)?;
        Ok(self.catalog.add_credential(new)?)
    }

    /// Remove a credential's metadata. A Fernet value goes with it (it lives nowhere else);
    /// a value in another backend is deleted there only with `delete_value`, because an
    /// upstream vault's secret may be shared with other systems.
    pub async fn remove_credential(
        &self,
        id: &str,
        delete_value: bool,
    ) -> Result<Credential, RuntimeError> {
        let cred = self.catalog.get_credential(id)?;
        if delete_value && cred.backend != FERNET {
            let backend = self.backend(&cred.backend)?;
            match backend.delete_value(&credential_ref(&cred)).await {
                Ok(()) | Err(BackendError::NotFound) => {}
                Err(source) => return Err(backend_error(&cred, source)),
            }
        }
        let removed = self.catalog.remove_credential(id)?;
        // The id may be reused; a cached value of the removed credential must not
        // answer for its successor.
        if let Some(cache) = self.caches.get(&removed.backend) {
            cache.invalidate(&removed.id);
        }
        Ok(removed)
    }

    /// Delete a credential's value in its backend (the metadata stays).
    pub async fn delete_value(&self, credential_id: &str) -> Result<Credential, RuntimeError> {
        let cred = self.catalog.get_credential(credential_id)?;
        let backend = self.backend(&cred.backend)?;
        backend
            .delete_value(&credential_ref(&cred))
            .await
            .map_err(|source| backend_error(&cred, source))?;
        Ok(cred)
    }

    /// The value of a credential whose metadata the caller already holds (the service
    /// looks it up together with the toolkit check, in one query).
    pub async fn value_of(&self, cred: &Credential) -> Result<Secret, RuntimeError> {
        let backend = self.backend(&cred.backend)?;
        backend
            .get_value(&credential_ref(cred))
            .await
            .map_err(|source| backend_error(cred, source))
    }

    /// The value of one credential, from the backend that holds it.
    pub async fn get_value(&self, credential_id: &str) -> Result<Secret, RuntimeError> {
        let cred = self.catalog.get_credential(credential_id)?;
        let backend = self.backend(&cred.backend)?;
        backend
            .get_value(&credential_ref(&cred))
            .await
            .map_err(|source| backend_error(&cred, source))
    }

    /// Every credential `toolkit_id` may use for `api_id`, each with its value or the
    /// reason it could not be resolved. Credentials are grouped by backend and each group
    /// is fetched in one batch call. The `default` toolkit sees every credential.
    pub async fn get_values_for_api(
        &self,
        toolkit_id: &str,
        api_id: &str,
    ) -> Result<Vec<ResolvedCredential>, RuntimeError> {
        let creds = self.catalog.credentials_for_api(toolkit_id, api_id)?;
        let mut groups: BTreeMap<&str, Vec<&Credential>> = BTreeMap::new();
        for cred in &creds {
            groups.entry(cred.backend.as_str()).or_default().push(cred);
        }
        let mut values: BTreeMap<&str, Result<Secret, BackendError>> = BTreeMap::new();
        for (backend_name, group) in groups {
            let refs: Vec<CredentialRef> = group.iter().map(|c| credential_ref(c)).collect();
            let results = match self.backend(backend_name) {
                Ok(backend) => {
                    let results = backend.get_values(&refs).await;
                    if results.len() != refs.len() {
                        return Err(RuntimeError::BatchMismatch {
                            backend: backend_name.to_owned(),
                            expected: refs.len(),
                            got: results.len(),
                        });
                    }
                    results
                }
                Err(e) => refs
                    .iter()
                    .map(|_| Err(BackendError::InvalidConfig(e.to_string())))
                    .collect(),
            };
            for (cred, result) in group.into_iter().zip(results) {
                values.insert(cred.id.as_str(), result);
            }
        }
        Ok(creds
            .iter()
            .map(|c| ResolvedCredential {
                id: c.id.clone(),
                label: c.label.clone(),
                api_id: c.api_id.clone(),
                auth_type: c.auth_type.clone(),
                identity: c.identity.clone(),
                backend: c.backend.clone(),
                attributes: c.attributes.clone(),
                value: values
                    .remove(c.id.as_str())
                    .unwrap_or(Err(BackendError::NotFound)),
            })
            .collect())
    }

    /// Write a credential's value through the backend that holds it.
    pub async fn store_value(
        &self,
        credential_id: &str,
        value: &Secret,
    ) -> Result<(), RuntimeError> {
        let cred = self.catalog.get_credential(credential_id)?;
        let backend = self.backend(&cred.backend)?;
        backend
            .store_value(&credential_ref(&cred), value)
            .await
            .map_err(|source| backend_error(&cred, source))
    }

    /// Rotate the Fernet vault's key: put a fresh key first in the key file (or, with keys
    /// from the environment, take the newest listed one) and re-encrypt every value under
    /// it in one transaction. With `drop_old`, the key file keeps only the new key
    /// afterwards. Returns the number of values re-encrypted and where the keys live.
    pub fn rotate_keys(&self, drop_old: bool) -> Result<(RotationReport, KeySource), RuntimeError> {
        if let Some(problem) = self.fernet.key_problem() {
            return Err(RuntimeError::Backend {
                credential: "*".into(),
                backend: FERNET.into(),
                source: BackendError::InvalidConfig(problem.to_owned()),
            });
        }
        let source = self.fernet.keyring().source().clone();
        let keyring = match &source {
            KeySource::File(path) => keyring::prepend_new_key(path)?,
            KeySource::Env(_) => self.fernet.keyring().clone(),
        };
        let report = FernetBackend::reencrypt_all(&self.db, &keyring)?;
        if let (true, KeySource::File(path)) = (drop_old, &source) {
            let newest = keyring::key_text_at(path, 0)?;
            keyring::keep_only_newest(path, &newest)?;
        }
        Ok((report, source))
    }
}

/// The metadata a backend is given for a credential.
pub fn credential_ref(cred: &Credential) -> CredentialRef {
    CredentialRef {
        id: cred.id.clone(),
        label: cred.label.clone(),
        api_id: cred.api_id.clone(),
        auth_type: cred.auth_type.clone(),
        locator: cred.locator.clone(),
    }
}

fn backend_error(cred: &Credential, source: BackendError) -> RuntimeError {
    RuntimeError::Backend {
        credential: cred.id.clone(),
        backend: cred.backend.clone(),
        source,
    }
}
