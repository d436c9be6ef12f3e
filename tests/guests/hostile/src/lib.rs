//! A hostile credential backend: `get-value` attacks the sandbox in the way the credential
//! id names. Each attack must be contained: the host keeps serving, the guest gets nothing
//! it was not granted, and the caller sees a precise error.
//!
//! | id | attack |
//! |---|---|
//! | `spin` | an endless loop (CPU budget) |
//! | `grow` | allocates until memory runs out (memory limit) |
//! | `recurse` | unbounded recursion (stack limit) |
//! | `panic` | panics (a trap; the message goes to stderr, i.e. the log) |
//! | `exit` | calls `exit(3)` (WASI 0.2 carries only failure, so the host sees 1) |
//! | `read-file` | opens `/etc/passwd` (fails: nothing is preopened) |
//! | `tcp` | connects a TCP socket to 127.0.0.1 (fails: sockets denied) |
//! | `dns` | resolves `localhost` (fails: name lookup denied) |
//! | `env` | reads the environment, arguments and working directory (all empty) |
//! | `many-requests` | sends requests until the host refuses one |
//! | `huge-url` | passes a 3 MiB URL to the http import (hostcall data limit) |
//! | `huge-log` | passes a 3 MiB log message (hostcall data limit) |
//! | `log-flood` | writes 1000 log lines and 1000 stdout lines (rate limit) |
//! | `big-value` | returns a 2 MiB value (more than a secret may hold) |
//! | `sleep` | sleeps 60 s through WASI clocks (wall-time limit) |
//! | `count` | counts calls in this instance (state between pooled calls) |
//!
//! `get-values` answers a list whose first id is `wrong-length` with no results at all.
//! `init` fails when the config key `fail_init` is set.

use std::cell::Cell;
use std::hint::black_box;

use airlock::backend::config;
use airlock::backend::http::{self, HttpError, Method, Request};
use airlock::backend::log::{self, Level};
use airlock::backend::types::{BackendError, CredentialRef};
use exports::airlock::backend::backend::Guest;

wit_bindgen::generate!({
    world: "credential-backend",
    path: "../../../wit",
});

thread_local! {
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let below = recurse(black_box(n - 1));
    black_box(below) + 1
}

fn http_error(e: &HttpError) -> String {
    match e {
        HttpError::Denied(m) => format!("denied: {m}"),
        HttpError::Timeout(m) => format!("timeout: {m}"),
        HttpError::Connection(m) => format!("connection: {m}"),
        HttpError::TooLarge(m) => format!("too-large: {m}"),
        HttpError::InvalidRequest(m) => format!("invalid-request: {m}"),
        HttpError::LimitExceeded(m) => format!("limit-exceeded: {m}"),
    }
}

fn get(url: String) -> Request {
    Request {
        method: Method::Get,
        url,
        headers: Vec::new(),
        body: None,
    }
}

fn attack(id: &str) -> Result<String, BackendError> {
    match id {
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[4096] = 1;
                hoard.push(black_box(chunk));
            }
        }
        "recurse" => Ok(recurse(black_box(u64::MAX)).to_string()),
        "panic" => panic!("hostile guest panicked on purpose"),
        "exit" => std::process::exit(3),
        "read-file" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Ok(text),
            Err(e) => Err(BackendError::Denied(format!(
                "open /etc/passwd failed: {e}"
            ))),
        },
        "tcp" => match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok("connected".into()),
            Err(e) => Err(BackendError::Denied(format!("tcp connect failed: {e}"))),
        },
        "dns" => match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
            Ok(addrs) => Ok(format!("resolved {} addresses", addrs.count())),
            Err(e) => Err(BackendError::Denied(format!("name lookup failed: {e}"))),
        },
        "env" => {
            let vars = std::env::vars().count();
            let args = std::env::args().count();
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("error: {e}"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() > 0)
                .unwrap_or(false);
            let random = std::collections::hash_map::RandomState::new();
            black_box(random);
            Ok(format!("vars={vars} args={args} cwd={cwd} clock={now}"))
        }
        "many-requests" => {
            let address = config::get("address").unwrap_or_default();
            for i in 1..=1000 {
                if let Err(e) = http::send(&get(format!("{address}/secret/x"))) {
                    return Err(BackendError::Unavailable(format!(
                        "request {i} refused: {}",
                        http_error(&e)
                    )));
                }
            }
            Ok("every request was sent".into())
        }
        "huge-url" => {
            let url = format!("http://127.0.0.1/{}", "a".repeat(3 << 20));
            match http::send(&get(url)) {
                Ok(_) => Ok("sent".into()),
                Err(e) => Err(BackendError::Internal(http_error(&e))),
            }
        }
        "huge-log" => {
            log::log(Level::Info, &"x".repeat(3 << 20));
            Ok("logged".into())
        }
        "log-flood" => {
            for i in 0..1000 {
                log::log(
                    Level::Warn,
                    &format!("flood line {i}\nforged-backend: fake line"),
                );
                println!("stdout line {i}");
            }
            Ok("flooded".into())
        }
        "big-value" => Ok("v".repeat(2 << 20)),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            Ok("woke up".into())
        }
        "count" => {
            let n = CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            Ok(format!("call {n}"))
        }
        other => {
            log::log(Level::Debug, &format!("no attack named {other}"));
            Err(BackendError::NotFound)
        }
    }
}

struct Hostile;

impl Guest for Hostile {
    fn init() -> Result<(), BackendError> {
        if config::get("fail_init").is_some() {
            return Err(BackendError::InvalidConfig(
                "init refused on purpose".into(),
            ));
        }
        Ok(())
    }

    fn get_value(cred: CredentialRef) -> Result<String, BackendError> {
        attack(&cred.id)
    }

    fn get_values(creds: Vec<CredentialRef>) -> Vec<Result<String, BackendError>> {
        if creds.first().is_some_and(|c| c.id == "wrong-length") {
            return Vec::new();
        }
        creds.iter().map(|c| attack(&c.id)).collect()
    }

    fn store_value(_cred: CredentialRef, _value: String) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "the hostile backend stores nothing".into(),
        ))
    }

    fn delete_value(_cred: CredentialRef) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "the hostile backend deletes nothing".into(),
        ))
    }

    fn health() -> Result<String, BackendError> {
        Ok("hostile and proud".into())
    }
}

export!(Hostile);
