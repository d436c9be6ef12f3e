//! The Connect backend's full logic, run natively against the fake Connect server in
//! `tests/fakes/onepassword_connect.py` (written from the Connect API reference; seed data in
//! `tests/fakes/onepassword_connect_seed.json`). Each test starts its own fake on a free
//! 127.0.0.1 port and kills it on drop; the fake also exits by itself after two minutes.
//! Without `python3` a test prints `SKIP: ...` and passes, unless `AIRLOCK_REQUIRE_TOOLS=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use airlock_guest::native::{ChildGuard, MemoryLog, NativeHttp, Recording, require_tool};
use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Http, HttpError, Request, Response};
use onepassword_connect::ConnectBackend;
use serde_json::{Value, json};

const TOKEN: &str = "connect-token-full-access";
const SCOPED: &str = "connect-token-staging-only";
const PRODUCTION: &str = "7vs66j55o6md5btwcph272mva4";
const STAGING: &str = "hfnjvi6aymbsnfc2xeeoheizda";
const DATABASE: &str = "ueq6dbr2ihqoyqcp7nk5dncejq";
/// Every secret value in the seed, for the no-leak checks.
const SEED_VALUES: &[&str] = &[
    "db-admin",
    "db-pass-123",
    "rotate monthly",
    "primary.db.internal",
    "replica.db.internal",
    "replica-pass-456",
    "acct_fake",
    "sk_live_fake_abc",
    "dup-one",
    "dup-two",
    "quoted-title-pass",
    "staging-admin",
    "staging-pass",
];

struct Fake {
    _child: ChildGuard,
    addr: String,
    http: NativeHttp,
}

impl Fake {
    fn start(test: &str) -> Option<Fake> {
        let python = require_tool("python3", test, "Python 3 runs tests/fakes/onepassword_connect.py")?;
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes/onepassword_connect.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--token", TOKEN, "--scoped-token", SCOPED, "--scope", STAGING, "--max-seconds", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the fake Connect server");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(15)).expect("the fake did not start within 15 s");
        let port: u16 =
            line.trim().strip_prefix("LISTENING ").and_then(|p| p.parse().ok()).expect("LISTENING <port>");
        Some(Fake { _child: guard, addr: format!("http://127.0.0.1:{port}"), http: NativeHttp::new() })
    }

    /// Makes the next `count` API requests answer `status`.
    fn fail_next(&self, status: u16, count: u32) {
        let req = Request::post(format!("{}/__fake/fail", self.addr))
            .json(&json!({"status": status, "count": count}))
            .expect("json");
        assert_eq!(self.http.send(&req).expect("control").status, 200);
    }

    /// The API requests the fake has seen: (method, path).
    fn requests(&self) -> Vec<(String, String)> {
        let r = self.http.send(&Request::get(format!("{}/__fake/requests", self.addr))).expect("control");
        let v: Vec<Value> = serde_json::from_slice(&r.body).expect("json");
        v.iter()
            .filter_map(|e| {
                Some((e.get("method")?.as_str()?.to_string(), e.get("path")?.as_str()?.to_string()))
            })
            .filter(|(_, p)| p.starts_with("/v1/"))
            .collect()
    }
}

struct TestHost<H: Http> {
    http: Recording<H>,
    log: MemoryLog,
}

impl TestHost<NativeHttp> {
    fn new() -> Self {
        Self { http: Recording::new(NativeHttp::new()), log: MemoryLog::new() }
    }
}

impl<H: Http> TestHost<H> {
    fn host(&self) -> Host<'_> {
        Host::new(&self.http, &self.log)
    }

    fn assert_no_leak(&self, extra: &[&str]) {
        let secrets: Vec<&str> = SEED_VALUES.iter().chain(extra).copied().collect();
        for (_, line) in self.log.lines() {
            for s in &secrets {
                assert!(!line.contains(s), "log line leaks a secret: {line}");
            }
        }
        for r in self.http.requests() {
            for s in &secrets {
                assert!(!r.url.contains(s), "URL leaks a secret: {}", r.url);
            }
        }
    }
}

fn cred(locator: &str) -> CredentialRef {
    CredentialRef::with_locator("test-credential", locator)
}

fn backend(fake: &Fake, token: Option<&str>, host: &Host<'_>) -> ConnectBackend {
    let mut cfg = vec![("address", fake.addr.as_str())];
    cfg.extend(token.map(|t| ("token", t)));
    ConnectBackend::init(&Config::from_pairs(cfg), host).unwrap_or_else(|e| panic!("init: {e}"))
}

fn assert_clean(e: &BackendError) {
    for s in SEED_VALUES.iter().chain(&[TOKEN, SCOPED]) {
        assert!(!e.message().contains(s), "error leaks a secret: {e}");
    }
}

#[test]
fn reads_by_names_ids_sections_and_purposes() {
    let Some(fake) = Fake::start("reads_by_names_ids_sections_and_purposes") else { return };
    let t = TestHost::new();
    let h = t.host();
    let mut b = backend(&fake, Some(TOKEN), &h);
    let ok = [
        ("op://Production/Database/password", "db-pass-123"),
        ("op://Production/Database/username", "db-admin"),
        ("op://Production/Database/notes", "rotate monthly"),
        ("op://Production/Database/Replica/password", "replica-pass-456"),
        ("op://Production/Database/Primary/host", "primary.db.internal"),
        ("op://Production/Database/Section_replica5zfbydwiloqe3y/host", "replica.db.internal"),
        (&format!("op://{PRODUCTION}/{DATABASE}/password"), "db-pass-123"),
        ("op://Production/Stripe/credential", "sk_live_fake_abc"),
        ("op://Production/Say \"hi\" & more/password", "quoted-title-pass"),
        ("op://Staging/Database/password", "staging-pass"),
    ];
    for (locator, want) in ok {
        assert_eq!(b.get_value(&h, &cred(locator)).as_deref(), Ok(want), "{locator}");
    }
    let errors = [
        ("op://Production/Database/host", "invalid-config"),
        ("op://Production/Duplicate/password", "invalid-config"),
        ("op://Production/Nope/password", "not-found"),
        ("op://Nope/Database/password", "not-found"),
        ("op://Production/Database/nope", "not-found"),
        ("op://Production/Database/empty field", "not-found"),
        ("op://Production/Database/Nope/host", "not-found"),
        ("Production/Database/password", "invalid-config"),
        ("op://Production/Database/password?attribute=otp", "invalid-config"),
    ];
    for (locator, kind) in errors {
        let e = b.get_value(&h, &cred(locator)).expect_err(locator);
        assert_eq!(e.kind(), kind, "{locator}: {e}");
        assert_clean(&e);
    }
    // Vault names are looked up once per instance.
    let lookups = fake.requests().iter().filter(|(_, p)| p.starts_with("/v1/vaults?filter=")).count();
    assert_eq!(lookups, 3, "Production, Staging and the missing `Nope` (not cached)");
    t.assert_no_leak(&[TOKEN]);
}

#[test]
fn scoped_and_invalid_tokens_are_denied() {
    let Some(fake) = Fake::start("scoped_and_invalid_tokens_are_denied") else { return };
    let t = TestHost::new();
    let h = t.host();
    let mut scoped = backend(&fake, Some(SCOPED), &h);
    assert_eq!(scoped.get_value(&h, &cred("op://Staging/Database/password")).as_deref(), Ok("staging-pass"));
    let e = scoped
        .get_value(&h, &cred(&format!("op://{PRODUCTION}/Database/password")))
        .expect_err("out of scope");
    assert_eq!(e.kind(), "denied", "{e}");
    assert!(e.message().contains("is not in scope"), "{e}");
    // Out-of-scope vaults are not listed to the token, so by name they are simply absent.
    assert_eq!(scoped.get_value(&h, &cred("op://Production/Database/password")), Err(BackendError::NotFound));
    assert!(scoped.health(&h).expect("health").contains("1 vault(s) visible"));

    let mut bad = backend(&fake, Some("not-a-connect-token"), &h);
    let e = bad.get_value(&h, &cred("op://Staging/Database/password")).expect_err("bad token");
    assert_eq!((e.kind(), e.message()), ("denied", "find vault by name: HTTP 401: Invalid token signature"));
    assert_eq!(bad.health(&h).expect_err("bad token health").kind(), "denied");
    t.assert_no_leak(&[SCOPED, "not-a-connect-token"]);
}

#[test]
fn store_and_delete_patch_fields_and_never_create_items() {
    let Some(fake) = Fake::start("store_and_delete_patch_fields_and_never_create_items") else { return };
    let t = TestHost::new();
    let h = t.host();
    let mut b = backend(&fake, Some(TOKEN), &h);

    b.store_value(&h, &cred("op://Production/Stripe/credential"), "sk_live_rotated").expect("update");
    assert_eq!(b.get_value(&h, &cred("op://Production/Stripe/credential")).as_deref(), Ok("sk_live_rotated"));
    b.store_value(&h, &cred("op://Production/Stripe/webhook secret"), "whsec_new").expect("add field");
    assert_eq!(b.get_value(&h, &cred("op://Production/Stripe/webhook secret")).as_deref(), Ok("whsec_new"));
    b.store_value(&h, &cred("op://Production/Database/Replica/port"), "5433").expect("add field in section");
    assert_eq!(b.get_value(&h, &cred("op://Production/Database/Replica/port")).as_deref(), Ok("5433"));
    assert_eq!(b.get_value(&h, &cred("op://Production/Database/Primary/port")), Err(BackendError::NotFound));
    b.store_value(&h, &cred("op://Production/Database/empty field"), "now set").expect("set an empty field");
    assert_eq!(b.get_value(&h, &cred("op://Production/Database/empty field")).as_deref(), Ok("now set"));

    assert_eq!(b.store_value(&h, &cred("op://Production/Nope/x"), "v"), Err(BackendError::NotFound));
    assert_eq!(b.store_value(&h, &cred("op://Production/Database/Nope/x"), "v"), Err(BackendError::NotFound));
    assert_eq!(
        b.store_value(&h, &cred("op://Production/Database/host"), "v").expect_err("ambiguous").kind(),
        "invalid-config"
    );

    b.delete_value(&h, &cred("op://Production/Stripe/webhook secret")).expect("delete field");
    assert_eq!(b.get_value(&h, &cred("op://Production/Stripe/webhook secret")), Err(BackendError::NotFound));
    assert_eq!(
        b.delete_value(&h, &cred("op://Production/Stripe/webhook secret")),
        Err(BackendError::NotFound)
    );
    assert_eq!(b.get_value(&h, &cred("op://Production/Stripe/credential")).as_deref(), Ok("sk_live_rotated"));
    let patches = fake.requests().iter().filter(|(m, _)| m == "PATCH").count();
    assert_eq!(patches, 5);
    assert!(
        fake.requests().iter().all(|(m, _)| m == "GET" || m == "PATCH"),
        "never POST (create) or DELETE (item)"
    );
    t.assert_no_leak(&[TOKEN, "sk_live_rotated", "whsec_new", "now set"]);
}

#[test]
fn upstream_failures_are_unavailable_and_recover() {
    let Some(fake) = Fake::start("upstream_failures_are_unavailable_and_recover") else { return };
    let t = TestHost::new();
    let h = t.host();
    let mut b = backend(&fake, Some(TOKEN), &h);
    for status in [503, 429, 500] {
        fake.fail_next(status, 1);
        let e = b.get_value(&h, &cred("op://Production/Database/password")).expect_err("failing");
        assert_eq!(e.kind(), "unavailable", "{status}: {e}");
        assert!(e.message().contains(&format!("HTTP {status}")), "{e}");
        assert_eq!(b.get_value(&h, &cred("op://Production/Database/password")).as_deref(), Ok("db-pass-123"));
    }
    // A server that is not there at all is unavailable too.
    let gone = airlock_guest::native::free_port().expect("port");
    let t2 = TestHost::new();
    let h2 = t2.host();
    let mut b2 = ConnectBackend::init(
        &Config::from_pairs([("address", format!("http://127.0.0.1:{gone}")), ("token", TOKEN.into())]),
        &h2,
    )
    .expect("init");
    assert_eq!(
        b2.get_value(&h2, &cred("op://Production/Database/password")).expect_err("down").kind(),
        "unavailable"
    );
    t.assert_no_leak(&[TOKEN]);
}

#[test]
fn get_values_fetches_each_item_once_and_keeps_order() {
    let Some(fake) = Fake::start("get_values_fetches_each_item_once_and_keeps_order") else { return };
    let t = TestHost::new();
    let h = t.host();
    let mut b = backend(&fake, Some(TOKEN), &h);
    let creds: Vec<CredentialRef> = [
        "op://Production/Database/username",
        "op://Production/Database/password",
        "op://Production/Stripe/credential",
        "op://Production/Database/Replica/password",
        "not a locator",
        "op://Production/Nope/password",
        "op://Staging/Database/password",
    ]
    .into_iter()
    .map(cred)
    .collect();
    let results = b.get_values(&h, &creds);
    let results: Vec<Result<&str, &str>> =
        results.iter().map(|r| r.as_ref().map(String::as_str).map_err(BackendError::kind)).collect();
    assert_eq!(
        results,
        vec![
            Ok("db-admin"),
            Ok("db-pass-123"),
            Ok("sk_live_fake_abc"),
            Ok("replica-pass-456"),
            Err("invalid-config"),
            Err("not-found"),
            Ok("staging-pass")
        ]
    );
    let item_gets = fake.requests().iter().filter(|(m, p)| m == "GET" && p.contains("/items/")).count();
    assert_eq!(item_gets, 3, "Database, Stripe, Staging Database: one fetch each");
    t.assert_no_leak(&[TOKEN]);
}

/// Adds the bearer token the way the host injects an operator-held header.
struct InjectingHost {
    inner: NativeHttp,
}

impl Http for InjectingHost {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        if req.header_value("Authorization").is_some() {
            return Err(HttpError::Denied("the guest may not set an injected header".into()));
        }
        self.inner.send(&req.clone().header("Authorization", format!("Bearer {TOKEN}")))
    }
}

#[test]
fn host_injected_token_and_health() {
    let Some(fake) = Fake::start("host_injected_token_and_health") else { return };
    let t =
        TestHost { http: Recording::new(InjectingHost { inner: NativeHttp::new() }), log: MemoryLog::new() };
    let h = t.host();
    let mut b = backend(&fake, None, &h);
    assert_eq!(b.get_value(&h, &cred("op://Production/Database/password")).as_deref(), Ok("db-pass-123"));
    let health = b.health(&h).expect("health");
    assert_eq!(
        health,
        format!(
            "1Password Connect API 1.7.3 at {}; host-injected token valid, 2 vault(s) visible",
            fake.addr
        )
    );
    assert!(t.http.requests().iter().all(|r| r.header_value("Authorization").is_none()));
}
