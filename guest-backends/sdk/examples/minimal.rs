//! The smallest complete backend: values are plain-text documents at
//! `{address}/values/{locator}` on an HTTP server, read with an optional bearer token.
//! `guest-backends/README.md` walks through it; `build.sh` builds it as a component to check
//! the SDK's export glue end to end.

use airlock_guest::{
    Backend, BackendError, Config, CredentialRef, Host, Request, Secret, encode_path, join_url, status_error,
};

/// One instance's state: the settings read at `init`.
pub struct PlainText {
    address: String,
    token: Option<Secret>,
}

impl PlainText {
    fn url(&self, cred: &CredentialRef) -> String {
        join_url(&self.address, &format!("values/{}", encode_path(cred.locator_or_id())))
    }

    fn request(&self, req: Request) -> Request {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {}", t.expose())),
            None => req,
        }
    }
}

impl Backend for PlainText {
    fn init(config: &Config, _host: &Host<'_>) -> Result<Self, BackendError> {
        config.reject_unknown(&["address", "token"])?;
        Ok(Self { address: config.required_url("address")?, token: config.optional_secret("token") })
    }

    fn get_value(&mut self, host: &Host<'_>, cred: &CredentialRef) -> Result<String, BackendError> {
        let resp = host.send(&self.request(Request::get(self.url(cred))))?;
        if !resp.is_success() {
            return Err(status_error(resp.status, "read value", None));
        }
        Ok(resp.text("value")?.to_string())
    }

    fn store_value(
        &mut self,
        host: &Host<'_>,
        cred: &CredentialRef,
        value: &str,
    ) -> Result<(), BackendError> {
        let req = self.request(Request::put(self.url(cred)).body(value.as_bytes().to_vec()));
        host.send(&req)?.error_for_status("store value").map(|_| ())
    }

    fn health(&mut self, host: &Host<'_>) -> Result<String, BackendError> {
        host.send(&self.request(Request::get(join_url(&self.address, "health"))))?
            .error_for_status("health")?;
        Ok(format!("plain-text store at {}", self.address))
    }
}

airlock_guest::export_backend!(PlainText);
