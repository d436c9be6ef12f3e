//! The `config` import: the operator's settings for one backend instance.
//!
//! Invariants: the values are the host's already-resolved strings (`${env:…}`/`${file:…}`
//! expanded before the guest exists), shared read-only between the instances of one backend
//! and never with another backend; a guest can read only its own backend's keys and cannot
//! name an environment variable or a file itself. `keys()` is sorted (a `BTreeMap`).
//! Values may be secrets (resolved from `${env:…}`), so they never appear in host logs or
//! `Debug` output.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sandbox::bindings::config::Host;
use crate::sandbox::limits::LimitHit;

/// Host side of `airlock:backend/config` for one instance.
pub struct ConfigCapability {
    values: Arc<BTreeMap<String, String>>,
    max_hostcall_bytes: usize,
}

impl ConfigCapability {
    pub(crate) fn new(values: Arc<BTreeMap<String, String>>, max_hostcall_bytes: usize) -> Self {
        ConfigCapability {
            values,
            max_hostcall_bytes,
        }
    }
}

impl std::fmt::Debug for ConfigCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigCapability")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Host for ConfigCapability {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        if key.len() > self.max_hostcall_bytes {
            return Err(LimitHit::HostcallData {
                call: "config.get",
                bytes: key.len(),
                max: self.max_hostcall_bytes,
            }
            .into());
        }
        Ok(self.values.get(&key).cloned())
    }

    async fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.values.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_only_configured_keys_in_order() {
        let values: BTreeMap<String, String> = [("mount", "secret"), ("address", "http://x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut cap = ConfigCapability::new(Arc::new(values), 16);
        assert_eq!(cap.keys().await.unwrap(), vec!["address", "mount"]);
        assert_eq!(
            cap.get("mount".into()).await.unwrap().as_deref(),
            Some("secret")
        );
        assert_eq!(cap.get("HOME".into()).await.unwrap(), None);
        let err = cap.get("k".repeat(17)).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit::HostcallData {
                call: "config.get",
                bytes: 17,
                max: 16
            })
        ));
        assert!(!format!("{cap:?}").contains("http://x"));
    }
}
