//! `secrets-manager` mode, run natively against the Secrets Manager fake
//! (`tests/fakes/bitwarden_sm.py`), which serves Bitwarden's published vectors: the vendor's
//! access token logs in, the vendor's payload yields the organisation key, and the vendor's
//! secrets decrypt to the plaintexts the vendor's tests assert.

mod common;

use airlock_guest::native::{MemoryLog, NativeHttp, Recording};
use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Http, Request};
use bitwarden::Bitwarden;
use serde_json::Value;

/// The vendor's secret whose key, value and note are all `TEST`.
const TEST_SECRET: &str = "15744a66-341a-4c62-af50-af960166b6bc";
/// The fake's copy of [`TEST_SECRET`] with one MAC bit flipped.
const TAMPERED: &str = "00000000-0000-4000-8000-0000000000ff";

fn vectors() -> Value {
    let text = std::fs::read_to_string(common::crate_path("tests/data/sm-vectors.json")).expect("vectors");
    serde_json::from_str(&text).expect("json")
}

fn fake(test: &str, extra: &[&str]) -> Option<common::Fake> {
    let path = common::crate_path("tests/data/sm-vectors.json");
    let mut args = vec!["--vectors", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    common::start(test, "bitwarden_sm.py", &args)
}

fn config(url: &str, token: &str) -> Config {
    Config::from_pairs([("mode", "secrets-manager"), ("url", url), ("access_token", token)])
}

fn cred(locator: &str) -> CredentialRef {
    CredentialRef::with_locator("c", locator)
}

fn token() -> String {
    vectors()["access_token"].as_str().expect("token").to_string()
}

/// Runs `f` with a backend initialised (logged in) against the fake.
fn with_backend<T>(url: &str, f: impl FnOnce(&mut Bitwarden, &Host<'_>, &Recording<NativeHttp>) -> T) -> T {
    let http = Recording::new(NativeHttp::new());
    let log = MemoryLog::new();
    let host = Host::new(&http, &log);
    let mut backend = Bitwarden::init(&config(url, &token()), &host).expect("init logs in");
    let out = f(&mut backend, &host, &http);
    for (_, line) in log.lines() {
        assert!(
            !line.contains("C2IgxjjLF7qSshsbwe8JGcbM075YXw"),
            "the client secret reached the log: {line}"
        );
        assert!(
            !line.contains("FERRIS") && !line.contains("TEST"),
            "a decrypted value reached the log: {line}"
        );
    }
    out
}

fn logins(url: &str) -> u64 {
    let resp = NativeHttp::new().send(&Request::get(format!("{url}/control/stats"))).expect("stats");
    let v: Value = serde_json::from_slice(&resp.body).expect("json");
    v["logins"].as_u64().expect("count")
}

#[test]
fn sm_login_and_reads_decrypt_the_vendor_vectors() {
    let Some(sm) = fake("sm_login_and_reads_decrypt_the_vendor_vectors", &[]) else { return };
    let v = vectors();
    with_backend(&sm.url, |b, h, http| {
        assert_eq!(b.get_value(h, &cred(TEST_SECRET)).as_deref(), Ok("TEST"));
        assert_eq!(b.get_value(h, &cred(&format!("{TEST_SECRET}#key"))).as_deref(), Ok("TEST"));
        assert_eq!(
            b.get_value(h, &cred(&format!("{}#note", TEST_SECRET.to_uppercase()))).as_deref(),
            Ok("TEST")
        );
        for secret in v["secrets"].as_array().expect("secrets") {
            let id = secret["id"].as_str().expect("id");
            for (field, expected) in secret["expected"].as_object().expect("expected") {
                let got = b.get_value(h, &cred(&format!("{id}#{field}")));
                assert_eq!(got.as_deref(), Ok(expected.as_str().expect("text")), "{id}#{field}");
            }
        }
        // By key (name): the secret list's keys are decrypted to find the id.
        let ferris_id = v["secrets"][2]["id"].as_str().expect("id");
        let by_id = b.get_value(h, &cred(ferris_id)).expect("FERRIS by id");
        assert_eq!(b.get_value(h, &cred("FERRIS")).as_deref(), Ok(by_id.as_str()));
        assert_eq!(b.get_value(h, &cred("TUX#key")).as_deref(), Ok("TUX"));
        assert_eq!(b.get_value(h, &cred("NO_SUCH_KEY")), Err(BackendError::NotFound));
        assert_eq!(
            b.get_value(h, &cred("00000000-0000-4000-8000-000000000001")),
            Err(BackendError::NotFound)
        );
        assert_eq!(b.get_value(h, &cred("x#password")).expect_err("bad field").kind(), "invalid-config");

        let health = b.health(h).expect("healthy");
        assert!(health.contains("f4e44a7f-1190-432a-9d4a-af96013127cb"), "{health}");

        // The login sent the SDK's form and nothing secret outside the body.
        let login =
            http.requests().into_iter().find(|r| r.url.ends_with("/identity/connect/token")).expect("login");
        assert_eq!(login.header_value("Device-Type"), Some("21"));
        assert!(!format!("{login:?}").contains("C2Igxjj"));
    });
}

#[test]
fn sm_batch_reads_use_get_by_ids() {
    let Some(sm) = fake("sm_batch_reads_use_get_by_ids", &[]) else { return };
    let v = vectors();
    let ids: Vec<&str> =
        v["secrets"].as_array().expect("secrets").iter().map(|s| s["id"].as_str().expect("id")).collect();
    with_backend(&sm.url, |b, h, http| {
        http.clear();
        let creds = [
            cred(ids[0]),
            cred(&format!("{}#key", ids[1])),
            cred(&format!("{}#key", ids[2])),
            cred("bad#field"),
        ];
        let got = b.get_values(h, &creds);
        assert_eq!(got[0].as_deref(), Ok("TEST"));
        assert_eq!(got[1].as_deref(), Ok("btw"));
        assert_eq!(got[2].as_deref(), Ok("FERRIS"));
        assert_eq!(got[3].as_ref().map_err(BackendError::kind), Err("invalid-config"));
        let urls: Vec<String> = http.requests().iter().map(|r| r.url.clone()).collect();
        assert_eq!(urls, [format!("{}/api/secrets/get-by-ids", sm.url)], "one upstream call");

        // Secrets named by key: one listing resolves them all, then one batch.
        http.clear();
        let got = b.get_values(h, &[cred("FERRIS#key"), cred("TUX#key"), cred("NO_SUCH_KEY")]);
        assert_eq!(got[0].as_deref(), Ok("FERRIS"));
        assert_eq!(got[1].as_deref(), Ok("TUX"));
        assert_eq!(got[2], Err(BackendError::NotFound));
        let urls: Vec<String> = http.requests().iter().map(|r| r.url.clone()).collect();
        assert_eq!(
            urls,
            [
                format!("{}/api/organizations/f4e44a7f-1190-432a-9d4a-af96013127cb/secrets", sm.url),
                format!("{}/api/secrets/get-by-ids", sm.url)
            ]
        );

        // An id the account cannot read fails the API's batch; the backend reads one by one.
        let got = b.get_values(h, &[cred(ids[0]), cred("00000000-0000-4000-8000-000000000001")]);
        assert_eq!(got[0].as_deref(), Ok("TEST"));
        assert_eq!(got[1], Err(BackendError::NotFound));
    });
}

#[test]
fn sm_tampered_mac_is_refused() {
    let Some(sm) = fake("sm_tampered_mac_is_refused", &[]) else { return };
    with_backend(&sm.url, |b, h, _| {
        let err = b.get_value(h, &cred(TAMPERED)).expect_err("tampered MAC");
        assert_eq!(err.kind(), "internal", "{err}");
        assert!(err.message().contains("MAC"), "{err}");
        assert!(!err.message().contains("TEST"), "{err}");
        // The untampered fields of the same secret still decrypt.
        assert_eq!(b.get_value(h, &cred(&format!("{TAMPERED}#key"))).as_deref(), Ok("TEST"));
    });

    // A login answer whose payload MAC is altered yields no organisation key.
    let Some(sm) = fake("sm_tampered_mac_is_refused", &["--tamper-payload"]) else { return };
    let http = NativeHttp::new();
    let log = MemoryLog::new();
    let err = Bitwarden::init(&config(&sm.url, &token()), &Host::new(&http, &log)).err().expect("refused");
    assert_eq!(err.kind(), "denied", "{err}");
}

#[test]
fn sm_wrong_client_secret_is_denied_at_init() {
    let Some(sm) = fake("sm_wrong_client_secret_is_denied_at_init", &[]) else { return };
    let wrong = token().replace("C2IgxjjLF7qSshsbwe8JGcbM075YXw", "WrongSecretWrongSecretWrong00");
    let http = NativeHttp::new();
    let log = MemoryLog::new();
    let err = Bitwarden::init(&config(&sm.url, &wrong), &Host::new(&http, &log)).err().expect("refused");
    assert_eq!(err.kind(), "denied", "{err}");
    assert!(err.message().contains("invalid_client"), "{err}");
    assert!(!err.message().contains("WrongSecret"), "{err}");
}

#[test]
fn sm_expired_token_logs_in_again() {
    let Some(sm) = fake("sm_expired_token_logs_in_again", &[]) else { return };
    with_backend(&sm.url, |b, h, _| {
        assert_eq!(b.get_value(h, &cred(TEST_SECRET)).as_deref(), Ok("TEST"));
        assert_eq!(logins(&sm.url), 1);
        let expire = Request::post(format!("{}/control/expire", sm.url)).body(Vec::new());
        assert_eq!(NativeHttp::new().send(&expire).expect("expire").status, 200);
        assert_eq!(b.get_value(h, &cred(TEST_SECRET)).as_deref(), Ok("TEST"));
        assert_eq!(logins(&sm.url), 2, "one new login after the 401");
    });
}

#[test]
fn sm_writes_are_unsupported() {
    let Some(sm) = fake("sm_writes_are_unsupported", &[]) else { return };
    with_backend(&sm.url, |b, h, _| {
        assert_eq!(b.store_value(h, &cred(TEST_SECRET), "x").expect_err("read-only").kind(), "unsupported");
        assert_eq!(b.delete_value(h, &cred(TEST_SECRET)).expect_err("read-only").kind(), "unsupported");
    });
}
