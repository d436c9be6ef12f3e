//! A well-behaved minimal credential backend, for the sandbox's tests and benchmark.
//!
//! Settings (`config`): `address` (required), the base URL of a store that answers
//! `GET {address}/secret/{locator}` with the value as the body (404 when absent),
//! `PUT` to store and `DELETE` to delete, and `GET {address}/health`.
//! The locator defaults to the credential id.
//!
//! `health` reports how many times `init` ran in this instance and how many calls it
//! served, so tests can tell pooled instances from fresh ones.

use std::cell::RefCell;

use airlock::backend::config;
use airlock::backend::http::{self, HttpError, Method, Request, Response};
use airlock::backend::log::{self, Level};
use airlock::backend::types::{BackendError, CredentialRef};
use exports::airlock::backend::backend::Guest;

wit_bindgen::generate!({
    world: "credential-backend",
    path: "../../../wit",
});

struct State {
    address: String,
    inits: u32,
    calls: u32,
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State { address: String::new(), inits: 0, calls: 0 })
    };
}

fn address() -> String {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.calls += 1;
        s.address.clone()
    })
}

fn http_error(e: HttpError) -> BackendError {
    match e {
        HttpError::Denied(m) => BackendError::Denied(format!("request denied: {m}")),
        HttpError::Timeout(m) => BackendError::Unavailable(format!("timeout: {m}")),
        HttpError::Connection(m) => BackendError::Unavailable(format!("connection: {m}")),
        HttpError::TooLarge(m) => BackendError::Internal(format!("too large: {m}")),
        HttpError::InvalidRequest(m) => {
            BackendError::InvalidConfig(format!("invalid request: {m}"))
        }
        HttpError::LimitExceeded(m) => BackendError::Unavailable(format!("limit exceeded: {m}")),
    }
}

fn send(method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Response, BackendError> {
    let request = Request {
        method,
        url: format!("{}{path}", address()),
        headers: vec![("accept".into(), "text/plain".into())],
        body,
    };
    http::send(&request).map_err(http_error)
}

fn status_error(status: u16) -> BackendError {
    match status {
        404 => BackendError::NotFound,
        401 | 403 => BackendError::Denied(format!("upstream status {status}")),
        _ => BackendError::Unavailable(format!("upstream status {status}")),
    }
}

fn locator(cred: &CredentialRef) -> &str {
    cred.locator.as_deref().unwrap_or(&cred.id)
}

struct Minimal;

impl Guest for Minimal {
    fn init() -> Result<(), BackendError> {
        let address = config::get("address").ok_or_else(|| {
            BackendError::InvalidConfig("config key `address` is required".into())
        })?;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.address = address.trim_end_matches('/').to_owned();
            s.inits += 1;
        });
        log::log(Level::Info, "minimal backend initialised");
        Ok(())
    }

    fn get_value(cred: CredentialRef) -> Result<String, BackendError> {
        let resp = send(Method::Get, &format!("/secret/{}", locator(&cred)), None)?;
        if resp.status != 200 {
            return Err(status_error(resp.status));
        }
        String::from_utf8(resp.body).map_err(|_| {
            BackendError::Internal("the store returned a value that is not UTF-8".into())
        })
    }

    fn get_values(creds: Vec<CredentialRef>) -> Vec<Result<String, BackendError>> {
        creds.into_iter().map(Self::get_value).collect()
    }

    fn store_value(cred: CredentialRef, value: String) -> Result<(), BackendError> {
        let path = format!("/secret/{}", locator(&cred));
        let resp = send(Method::Put, &path, Some(value.into_bytes()))?;
        match resp.status {
            200 | 204 => Ok(()),
            s => Err(status_error(s)),
        }
    }

    fn delete_value(cred: CredentialRef) -> Result<(), BackendError> {
        let resp = send(Method::Delete, &format!("/secret/{}", locator(&cred)), None)?;
        match resp.status {
            200 | 204 => Ok(()),
            s => Err(status_error(s)),
        }
    }

    fn health() -> Result<String, BackendError> {
        let resp = send(Method::Get, "/health", None)?;
        if resp.status != 200 {
            return Err(status_error(resp.status));
        }
        Ok(STATE.with(|s| {
            let s = s.borrow();
            format!("ok inits={} calls={}", s.inits, s.calls)
        }))
    }
}

export!(Minimal);
