//! `serve` mode, run natively against the `bw serve` fake (`tests/fakes/bw_serve.py`):
//! reads by id and name, login/notes/TOTP/custom fields, the locked vault, batching in one
//! list call, writes, and the rule that no request carries an `Origin` header.

mod common;

use airlock_guest::native::{MemoryLog, NativeHttp, Recording};
use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Http, Request};
use bitwarden::Bitwarden;

const GITHUB: &str = "2b5b9f2e-1111-4a2b-9c3d-abcdefabcdef";

fn fake(test: &str, locked: bool) -> Option<common::Fake> {
    let items = common::crate_path("tests/data/bw-items.json");
    let items = items.to_str().expect("utf-8 path");
    let mut args = vec!["--items", items];
    if locked {
        args.push("--locked");
    }
    common::start(test, "bw_serve.py", &args)
}

fn cred(locator: &str) -> CredentialRef {
    CredentialRef::with_locator("c", locator)
}

/// Runs `f` against an initialised serve-mode backend at `url`; afterwards checks that no
/// request carried an `Origin` header and that no value reached the log.
fn with_backend<T>(url: &str, f: impl FnOnce(&mut Bitwarden, &Host<'_>, &Recording<NativeHttp>) -> T) -> T {
    let http = Recording::new(NativeHttp::new());
    let log = MemoryLog::new();
    let host = Host::new(&http, &log);
    let config = Config::from_pairs([("mode", "serve"), ("url", url)]);
    let mut backend = Bitwarden::init(&config, &host).expect("init");
    let out = f(&mut backend, &host, &http);
    for req in http.requests() {
        assert!(req.header_value("Origin").is_none(), "bw serve refuses Origin: {req:?}");
    }
    for (_, line) in log.lines() {
        for secret in
            ["gh-pass-1", "gh-api-key", "custom-pw", "deploy-note-text", "sk_test_stripe", "new-pass"]
        {
            assert!(!line.contains(secret), "a value reached the log: {line}");
        }
    }
    out
}

/// Sends `POST path` with a JSON body straight to the fake (what an operator's `bw` would do).
fn post(url: &str, path: &str, body: &str) -> u16 {
    let req = Request::post(format!("{url}{path}"))
        .header("Content-Type", "application/json")
        .body(body.as_bytes().to_vec());
    NativeHttp::new().send(&req).expect("request").status
}

#[test]
fn serve_reads_items_by_id_and_name_with_every_field() {
    let Some(bw) = fake("serve_reads_items_by_id_and_name_with_every_field", false) else { return };
    with_backend(&bw.url, |b, h, _| {
        assert_eq!(b.get_value(h, &cred(GITHUB)).as_deref(), Ok("gh-pass-1"));
        assert_eq!(b.get_value(h, &cred("GitHub")).as_deref(), Ok("gh-pass-1"));
        assert_eq!(b.get_value(h, &cred("github#username")).as_deref(), Ok("octo"));
        assert_eq!(b.get_value(h, &cred("GitHub#notes")).as_deref(), Ok("github-notes"));
        assert_eq!(b.get_value(h, &cred("GitHub#uri")).as_deref(), Ok("https://github.com"));
        assert_eq!(b.get_value(h, &cred("GitHub#api_key")).as_deref(), Ok("gh-api-key"));
        assert_eq!(b.get_value(h, &cred("GitHub#custom:password")).as_deref(), Ok("custom-pw"));
        let code = b.get_value(h, &cred("GitHub#totp")).expect("totp");
        assert!(code.len() == 6 && code.bytes().all(|c| c.is_ascii_digit()), "TOTP code, not the seed");
        assert_eq!(b.get_value(h, &cred("Deploy notes")).as_deref(), Ok("deploy-note-text"));
        assert_eq!(b.get_value(h, &cred("Stripe#totp")).expect_err("no totp").kind(), "internal");
        assert_eq!(b.get_value(h, &cred("Stripe#username")), Err(BackendError::NotFound));
        assert_eq!(b.get_value(h, &cred("GitHub#no_such_field")), Err(BackendError::NotFound));
        assert_eq!(b.get_value(h, &cred("No such item")), Err(BackendError::NotFound));
        assert_eq!(
            b.get_value(h, &cred("00000000-0000-4000-8000-000000000000")),
            Err(BackendError::NotFound)
        );
        assert_eq!(b.get_value(h, &cred("Shared")).expect_err("two items").kind(), "invalid-config");
        assert_eq!(b.get_value(h, &cred("Visa")).expect_err("card needs a field").kind(), "invalid-config");
        let health = b.health(h).expect("healthy");
        assert!(health.contains("vault unlocked"), "{health}");
    });
}

#[test]
fn serve_locked_vault_is_unavailable_and_says_how_to_unlock() {
    let Some(bw) = fake("serve_locked_vault_is_unavailable_and_says_how_to_unlock", true) else { return };
    with_backend(&bw.url, |b, h, _| {
        let err = b.get_value(h, &cred("GitHub")).expect_err("locked");
        assert_eq!(err.kind(), "unavailable", "{err}");
        assert!(err.message().contains("bw unlock"), "{err}");
        let err = b.health(h).expect_err("locked health");
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().contains("bw unlock"), "{err}");
        assert_eq!(
            b.get_values(h, &[cred("GitHub"), cred("Stripe")])[1].as_ref().map_err(BackendError::kind),
            Err("unavailable")
        );

        assert_eq!(post(&bw.url, "/unlock", r#"{"password":"wrong"}"#), 400);
        assert_eq!(post(&bw.url, "/unlock", r#"{"password":"correct horse battery staple"}"#), 200);
        assert_eq!(b.get_value(h, &cred("GitHub")).as_deref(), Ok("gh-pass-1"));
        assert_eq!(post(&bw.url, "/lock", "{}"), 200);
        assert_eq!(b.get_value(h, &cred("GitHub")).expect_err("locked again").kind(), "unavailable");
    });
}

#[test]
fn serve_batch_reads_use_one_list_call() {
    let Some(bw) = fake("serve_batch_reads_use_one_list_call", false) else { return };
    with_backend(&bw.url, |b, h, http| {
        http.clear();
        let creds = [
            cred(GITHUB),
            cred("Stripe"),
            cred("Deploy notes"),
            cred("GitHub#api_key"),
            cred("nope"),
            cred("x#"),
        ];
        let got = b.get_values(h, &creds);
        assert_eq!(got[0].as_deref(), Ok("gh-pass-1"));
        assert_eq!(got[1].as_deref(), Ok("sk_test_stripe"));
        assert_eq!(got[2].as_deref(), Ok("deploy-note-text"));
        assert_eq!(got[3].as_deref(), Ok("gh-api-key"));
        assert_eq!(got[4], Err(BackendError::NotFound));
        assert_eq!(got[5].as_ref().map_err(BackendError::kind), Err("invalid-config"));
        let urls: Vec<String> = http.requests().iter().map(|r| r.url.clone()).collect();
        assert_eq!(urls, [format!("{}/list/object/items", bw.url)], "one upstream call");
    });
}

#[test]
fn serve_writes_edit_create_and_delete() {
    let Some(bw) = fake("serve_writes_edit_create_and_delete", false) else { return };
    with_backend(&bw.url, |b, h, _| {
        b.store_value(h, &cred("GitHub"), "new-pass").expect("edit password");
        assert_eq!(b.get_value(h, &cred(GITHUB)).as_deref(), Ok("new-pass"));
        assert_eq!(b.get_value(h, &cred("GitHub#username")).as_deref(), Ok("octo"), "other fields kept");
        b.store_value(h, &cred("GitHub#api_key"), "gh-api-key-2").expect("edit custom field");
        assert_eq!(b.get_value(h, &cred("GitHub#api_key")).as_deref(), Ok("gh-api-key-2"));
        b.store_value(h, &cred("GitHub#webhook_secret"), "whsec").expect("add custom field");
        assert_eq!(b.get_value(h, &cred("GitHub#webhook_secret")).as_deref(), Ok("whsec"));
        b.store_value(h, &cred("Deploy notes"), "new notes").expect("edit note");
        assert_eq!(b.get_value(h, &cred("Deploy notes")).as_deref(), Ok("new notes"));

        // A name that no item has: a login item is created.
        b.store_value(h, &cred("OpenAI#api_key"), "sk-openai").expect("create");
        assert_eq!(b.get_value(h, &cred("OpenAI#api_key")).as_deref(), Ok("sk-openai"));
        // An id that no item has cannot be created.
        assert_eq!(
            b.store_value(h, &cred("00000000-0000-4000-8000-000000000000"), "x"),
            Err(BackendError::NotFound)
        );

        // Deleting a field clears it; deleting without a field trashes the item.
        b.delete_value(h, &cred("GitHub#webhook_secret")).expect("delete field");
        assert_eq!(b.get_value(h, &cred("GitHub#webhook_secret")), Err(BackendError::NotFound));
        assert_eq!(b.delete_value(h, &cred("GitHub#webhook_secret")), Err(BackendError::NotFound));
        b.delete_value(h, &cred("OpenAI")).expect("delete item");
        assert_eq!(b.get_value(h, &cred("OpenAI#api_key")), Err(BackendError::NotFound));
        assert_eq!(b.delete_value(h, &cred("OpenAI")), Err(BackendError::NotFound));
    });
}

#[test]
fn serve_fake_refuses_origin_like_bw_serve() {
    let Some(bw) = fake("serve_fake_refuses_origin_like_bw_serve", false) else { return };
    // The fake applies bw serve's origin protection: the same request with an Origin header
    // is refused. The backend's requests (checked in every test above) never carry one.
    let plain = NativeHttp::new().send(&Request::get(format!("{}/status", bw.url))).expect("status");
    assert_eq!(plain.status, 200);
    let with_origin = NativeHttp::new()
        .send(&Request::get(format!("{}/status", bw.url)).header("Origin", "https://evil.example"))
        .expect("status");
    assert_eq!(with_origin.status, 403);
    assert!(with_origin.body.is_empty());
    assert_eq!(
        bitwarden::serve::unwrap_envelope(403, &with_origin.body, "status").expect_err("403").kind(),
        "denied"
    );
}
