//! One backend instance's lifecycle, independent of how it is reached (WIT exports or a
//! native test), so the rules below are tested natively.

use crate::{Backend, BackendError, Config, CredentialRef, Host};

/// Holds the state of one backend instance between calls.
///
/// Rules: every operation before a successful `init` is `internal` (the host must call
/// `init` first); a failed `init` leaves the instance uninitialised; `get_values` always
/// returns exactly one result per credential.
pub struct Instance<B> {
    state: Option<B>,
}

impl<B> Default for Instance<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Instance<B> {
    /// An instance before `init`.
    pub const fn new() -> Self {
        Self { state: None }
    }
}

fn not_initialised() -> BackendError {
    BackendError::internal("the host called the backend before a successful init")
}

impl<B: Backend> Instance<B> {
    /// Runs [`Backend::init`], replacing any previous state; on error the instance is left
    /// uninitialised.
    pub fn init(&mut self, config: &Config, host: &Host<'_>) -> Result<(), BackendError> {
        self.state = None;
        self.state = Some(B::init(config, host)?);
        Ok(())
    }

    /// The initialised backend, or `internal` before `init`.
    pub fn backend(&mut self) -> Result<&mut B, BackendError> {
        self.state.as_mut().ok_or_else(not_initialised)
    }

    /// [`Backend::get_value`].
    pub fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        self.backend()?.get_value(host, cred)
    }

    /// [`Backend::get_values`], with the length invariant enforced.
    pub fn get_values(
        &mut self,
        host: &Host<'_>,
        creds: &[CredentialRef],
    ) -> Vec<Result<String, BackendError>> {
        let Some(backend) = self.state.as_mut() else {
            return creds.iter().map(|_| Err(not_initialised())).collect();
        };
        let results = backend.get_values(host, creds);
        if results.len() == creds.len() {
            results
        } else {
            let msg = format!(
                "backend bug: get-values returned {} results for {} credentials",
                results.len(),
                creds.len()
            );
            creds.iter().map(|_| Err(BackendError::internal(msg.clone()))).collect()
        }
    }

    /// [`Backend::store_value`].
    pub fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        self.backend()?.store_value(host, cred, value)
    }

    /// [`Backend::delete_value`].
    pub fn delete_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<(), BackendError> {
        self.backend()?.delete_value(host, cred)
    }

    /// [`Backend::health`].
    pub fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        self.backend()?.health(host)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::native::{MemoryLog, NativeHttp};

    struct Short;
    impl Backend for Short {
        fn init(config: &Config, _host: &Host<'_>) -> Result<Self, BackendError> {
            config.reject_unknown(&[])?;
            Ok(Short)
        }
        fn get_value(&mut self, _host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
            Ok(cred.locator_or_id().to_string())
        }
        fn get_values(
            &mut self,
            _host: &Host<'_>,
            _creds: &[CredentialRef],
        ) -> Vec<Result<String, BackendError>> {
            vec![Ok("only one".into())]
        }
        fn health(&mut self, _host: &Host<'_>) -> Result<String, BackendError> {
            Ok("fine".into())
        }
    }

    #[test]
    fn lifecycle_rules() {
        let http = NativeHttp::new();
        let log = MemoryLog::new();
        let host = Host::new(&http, &log);
        let mut inst: Instance<Short> = Instance::new();
        let cred = CredentialRef::with_locator("a", "loc");
        assert_eq!(inst.get_value(&host, &cred).expect_err("no init").kind(), "internal");
        assert_eq!(inst.get_values(&host, &[cred.clone(), cred.clone()]).len(), 2);

        assert!(inst.init(&Config::from_pairs([("bogus", "1")]), &host).is_err());
        assert!(inst.health(&host).is_err(), "failed init leaves it uninitialised");

        inst.init(&Config::default(), &host).expect("init");
        assert_eq!(inst.get_value(&host, &cred).ok().as_deref(), Some("loc"));
        let three = inst.get_values(&host, &[cred.clone(), cred.clone(), cred.clone()]);
        assert_eq!(three.len(), 3);
        assert!(three.iter().all(|r| r.as_ref().is_err_and(|e| e.message().contains("backend bug"))));
        assert_eq!(inst.store_value(&host, &cred, "v").expect_err("read-only").kind(), "unsupported");
        assert_eq!(inst.delete_value(&host, &cred).expect_err("read-only").kind(), "unsupported");
    }
}
