//! End-to-end tests of `airlock serve`: the real binary on 127.0.0.1 (a free port) with a
//! temp data dir, driven over HTTP. Logging is at trace level throughout (see
//! `support::Airlock::command`), and the captured stderr is scanned for values and tokens.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Airlock;
use support::http::{Client, Served, send};

const VALUE_A: &str = "VALUE-A-7c1e-LEAKCANARY";
const VALUE_B: &str = "VALUE-B-93d0-LEAKCANARY";

/// Two toolkits, `a` and `b`, each with one bound credential and a key.
async fn two_tenants(s: &Served) -> (Client, Client, String, String) {
    let admin = s.admin();
    admin
        .create_credential("team-a/github.token", "api.github.com", None)
        .await;
    admin
        .create_credential("team-b/github.token", "api.github.com", None)
        .await;
    admin.store_value("team-a/github.token", VALUE_A).await;
    admin.store_value("team-b/github.token", VALUE_B).await;
    admin.create_toolkit("a").await;
    admin.create_toolkit("b").await;
    admin.bind("a", "team-a/github.token").await;
    admin.bind("b", "team-b/github.token").await;
    let (_, ka) = admin.create_key("a", &[]).await;
    let (_, kb) = admin.create_key("b", &[]).await;
    (s.client(&ka), s.client(&kb), ka, kb)
}

fn ids(list: &Value) -> Vec<String> {
    list["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn write_config(al: &Airlock, text: &str) -> String {
    let path = al.dir.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_read_list_or_resolve_each_others_credentials() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let (a, b, _, _) = two_tenants(&s).await;

    let got = a
        .get("/v1/credentials/team-a/github.token/value")
        .await
        .expect(200);
    assert_eq!(got.json()["value"], VALUE_A);
    assert_eq!(got.header("cache-control").as_deref(), Some("no-store"));
    // B's credential, an id that does not exist, and a near miss: the same 403.
    let mut messages = Vec::new();
    for id in ["team-b/github.token", "team-c/none", "team-a/github.token2"] {
        let r = a
            .get(&format!("/v1/credentials/{id}/value"))
            .await
            .expect_error(403, "forbidden");
        assert!(!r.text().contains(VALUE_B));
        messages.push(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .replace(id, "ID"),
        );
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    // Metadata: listing and reading are scoped the same way, without locators.
    let listed = a.get("/v1/credentials").await.expect(200).json();
    assert_eq!(ids(&listed), ["team-a/github.token"]);
    assert!(listed["credentials"][0].get("locator").is_none());
    a.get("/v1/credentials?toolkit=b")
        .await
        .expect_error(403, "forbidden");
    a.get("/v1/credentials/team-b/github.token")
        .await
        .expect_error(403, "forbidden");
    a.get("/v1/credentials/team-a/github.token")
        .await
        .expect(200);
    // The per-API resolution: only for its own toolkit, only its own credentials.
    a.get("/v1/toolkits/b/apis/api.github.com/credentials")
        .await
        .expect_error(403, "forbidden");
    a.get("/v1/toolkits/nope/apis/api.github.com/credentials")
        .await
        .expect_error(403, "forbidden");
    let mine = a
        .get("/v1/toolkits/a/apis/api.github.com/credentials")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&mine), ["team-a/github.token"]);
    assert_eq!(mine["credentials"][0]["value"], VALUE_A);
    let theirs = b
        .get("/v1/toolkits/b/apis/api.github.com/credentials")
        .await
        .expect(200);
    assert!(!theirs.text().contains(VALUE_A));
    // Toolkit keys cannot manage; the admin token cannot resolve.
    a.post(
        "/v1/credentials",
        json!({"id": "x", "label": "x", "auth_type": "bearer"}),
    )
    .await
    .expect_error(403, "forbidden");
    a.put_empty("/v1/toolkits/a/credentials/team-b/github.token")
        .await
        .expect_error(403, "forbidden");
    a.get("/v1/audit").await.expect_error(403, "forbidden");
    a.get("/v1/toolkits").await.expect_error(403, "forbidden");
    s.admin()
        .get("/v1/credentials/team-a/github.token/value")
        .await
        .expect_error(403, "forbidden");
    // Denials are audited.
    let denied = s.admin().audit("toolkit=a&outcome=forbidden").await;
    assert!(denied.len() >= 6, "{denied:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_revoked_keys_are_401_and_wrong_networks_403() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let (a, _, ka, _) = two_tenants(&s).await;
    let path = "/v1/credentials/team-a/github.token/value";

    let r = s
        .anonymous()
        .get(path)
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"airlock\"")
    );
    s.client(
        "tk_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
    )
    .get(path)
    .await
    .expect_error(401, "unauthorized");
    s.client("not-a-token")
        .get(path)
        .await
        .expect_error(401, "unauthorized");
    // The right id with a wrong secret.
    let mut wrong = ka.clone();
    let last = if wrong.ends_with('0') { '1' } else { '0' };
    wrong.pop();
    wrong.push(last);
    s.client(&wrong)
        .get(path)
        .await
        .expect_error(401, "unauthorized");
    let basic = send(
        s.addr,
        "GET",
        path,
        &[("authorization", &format!("Basic {ka}"))],
        None,
    )
    .await;
    assert_eq!(basic.status, 401);

    // Revoked over the API: 401 from the next request on.
    a.get(path).await.expect(200);
    let key_id = &ka[3..19];
    s.admin()
        .delete(&format!("/v1/toolkits/a/keys/{key_id}"))
        .await
        .expect(204);
    let r = a.get(path).await.expect_error(401, "unauthorized");
    assert!(r.text().contains("revoked"));
    // Revoking through the wrong toolkit is not found; twice is fine.
    s.admin()
        .delete(&format!("/v1/toolkits/b/keys/{key_id}"))
        .await
        .expect_error(404, "not_found");
    s.admin()
        .delete(&format!("/v1/toolkits/a/keys/{key_id}"))
        .await
        .expect(204);

    // A key made with the CLI beside the running service, then revoked with the CLI.
    let made = al
        .run(&["toolkits", "key", "create", "a", "--label", "cli"])
        .ok();
    let cli_key = made.stdout.lines().nth(1).unwrap().trim().to_owned();
    assert!(cli_key.starts_with("tk_"), "{}", made.stdout);
    let c = s.client(&cli_key);
    c.get(path).await.expect(200);
    let listed = al.run(&["toolkits", "key", "list", "a"]).ok();
    assert!(listed.stdout.contains("revoked") && listed.stdout.contains("active"));
    assert!(
        !listed.stdout.contains(&cli_key[20..]),
        "list never shows keys"
    );
    al.run(&["toolkits", "key", "revoke", &cli_key[3..19]]).ok();
    c.get(path).await.expect_error(401, "unauthorized");

    // Network restrictions: 403 outside, 200 inside.
    let admin = s.admin();
    let (_, far) = admin.create_key("a", &["10.0.0.0/8"]).await;
    s.client(&far)
        .get(path)
        .await
        .expect_error(403, "forbidden");
    let (_, near) = admin.create_key("a", &["127.0.0.1"]).await;
    s.client(&near).get(path).await.expect(200);
    admin
        .post(
            "/v1/toolkits/a/keys",
            json!({"allowed_cidrs": ["10.1.2.3/8"]}),
        )
        .await
        .expect_error(422, "validation_failed");
    let keys = admin.get("/v1/toolkits/a/keys").await.expect(200);
    assert!(
        !keys.text().contains(&far[20..]),
        "listing never shows keys"
    );
    let cli_events = admin.audit("actor=cli").await;
    let actions: Vec<&str> = cli_events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.revoke", "key.create"]);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_slashes_dots_and_encoded_segments() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let admin = s.admin();
    admin.create_toolkit("agents").await;
    let (_, key) = admin.create_key("agents", &[]).await;
    let agent = s.client(&key);
    // (id as stored, id as written in a path)
    let cases = [
        ("a/b.c", "a/b.c"),
        ("github/main.token", "github/main.token"),
        ("deep/er/still.deeper/x", "deep/er/still.deeper/x"),
        ("value", "value"),
        ("foo/value", "foo%2Fvalue"),
        ("100%", "100%25"),
        ("..", "%2E%2E"),
        ("api:8443@host", "api:8443@host"),
    ];
    for (i, (id, in_path)) in cases.iter().enumerate() {
        let value = format!("v{i}-{id}");
        admin
            .post(
                "/v1/credentials",
                json!({"id": id, "label": "L", "auth_type": "bearer", "api_id": "api"}),
            )
            .await
            .expect(201);
        admin
            .put(
                &format!("/v1/credentials/{in_path}/value"),
                json!({ "value": value }),
            )
            .await
            .expect(204);
        admin
            .put_empty(&format!("/v1/toolkits/agents/credentials/{in_path}"))
            .await
            .expect(201);
        let meta = admin
            .get(&format!("/v1/credentials/{in_path}"))
            .await
            .expect(200);
        assert_eq!(meta.json()["id"], *id);
        let got = agent
            .get(&format!("/v1/credentials/{in_path}/value"))
            .await
            .expect(200);
        assert_eq!(got.json()["id"], *id, "{in_path}");
        assert_eq!(got.json()["value"], value, "{in_path}");
    }
    let listed = admin
        .get("/v1/toolkits/agents/credentials")
        .await
        .expect(200);
    assert_eq!(ids(&listed.json()).len(), cases.len());
    // `foo` does not exist, so `/v1/credentials/foo/value` is about `foo`, not `foo/value`.
    admin
        .get("/v1/credentials/foo/value")
        .await
        .expect_error(403, "forbidden");
    admin
        .get("/v1/credentials/foo")
        .await
        .expect_error(404, "not_found");
    admin
        .get("/v1/credentials/bad%zz")
        .await
        .expect_error(400, "invalid_path");
    // Toolkit and api ids are single segments: `/` is written %2F.
    admin
        .post("/v1/toolkits", json!({"id": "org/team"}))
        .await
        .expect(201);
    admin.get("/v1/toolkits/org%2Fteam").await.expect(200);
    admin.delete("/v1/credentials/a/b.c").await.expect(204);
    admin
        .get("/v1/credentials/a/b.c")
        .await
        .expect_error(404, "not_found");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_update_delete_and_resolve_through_fernet() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let admin = s.admin();
    admin.create_credential("svc/db.password", "db", None).await;
    admin.create_toolkit("app").await;
    admin.bind("app", "svc/db.password").await;
    let (_, key) = admin.create_key("app", &[]).await;
    let app = s.client(&key);
    let path = "/v1/credentials/svc/db.password/value";

    app.get(path).await.expect_error(404, "value_not_found");
    admin.store_value("svc/db.password", "first").await;
    assert_eq!(app.get(path).await.expect(200).json()["value"], "first");
    admin.store_value("svc/db.password", "second").await;
    assert_eq!(app.get(path).await.expect(200).json()["value"], "second");
    // The CLI sees the same vault.
    assert_eq!(al.reveal("svc/db.password"), "second");
    // GET of metadata never carries the value.
    let meta = admin
        .get("/v1/credentials/svc/db.password")
        .await
        .expect(200);
    assert!(!meta.text().contains("second"));
    assert!(!admin.get("/v1/credentials").await.text().contains("second"));
    // Replace metadata; moving backends is refused.
    admin
        .put(
            "/v1/credentials/svc/db.password",
            json!({"label": "DB", "auth_type": "basic", "identity": "app", "api_id": "db"}),
        )
        .await
        .expect(200);
    let r = app.get(path).await.expect(200).json();
    assert_eq!(
        (r["auth_type"].as_str(), r["identity"].as_str()),
        (Some("basic"), Some("app"))
    );
    admin
        .put(
            "/v1/credentials/svc/db.password",
            json!({"label": "DB", "auth_type": "basic", "backend": "vault"}),
        )
        .await
        .expect_error(409, "conflict");
    admin
        .put(
            "/v1/credentials/new/one",
            json!({"label": "New", "auth_type": "bearer"}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/credentials",
            json!({"id": "elsewhere", "label": "E", "auth_type": "bearer", "backend": "nope"}),
        )
        .await
        .expect_error(422, "validation_failed");
    admin
        .post(
            "/v1/credentials",
            json!({"id": "svc/db.password", "label": "dup", "auth_type": "bearer"}),
        )
        .await
        .expect_error(409, "conflict");
    // Delete the value, then the credential.
    admin.delete(path).await.expect(204);
    app.get(path).await.expect_error(404, "value_not_found");
    admin
        .delete(path)
        .await
        .expect_error(404, "value_not_found");
    admin
        .delete("/v1/credentials/svc/db.password")
        .await
        .expect(204);
    app.get(path).await.expect_error(403, "forbidden");
    // Toolkits: update, list, remove (not default).
    admin
        .put(
            "/v1/toolkits/app",
            json!({"name": "The app", "description": "d"}),
        )
        .await
        .expect(200);
    let tks = admin.get("/v1/toolkits").await.expect(200).json();
    assert_eq!(tks["toolkits"].as_array().unwrap().len(), 2);
    admin
        .delete("/v1/toolkits/default")
        .await
        .expect_error(422, "validation_failed");
    admin.delete("/v1/toolkits/app").await.expect(204);
    // Its keys went with it.
    app.get(path).await.expect_error(401, "unauthorized");
    let backends = admin.get("/v1/backends").await.expect(200).json();
    assert_eq!(backends["backends"][0]["name"], "fernet");
    assert_eq!(backends["backends"][0]["healthy"], true);
    assert_eq!(backends["backends"][0]["default"], true);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_clear_4xx_and_audited() {
    let al = Airlock::new();
    let config = write_config(&al, "[server]\nmax_body_bytes = 4096\n");
    let s = al.serve(&["--config", &config]);
    let admin = s.admin();
    admin.create_credential("c", "api", None).await;
    let json_ct = [("content-type", "application/json")];
    /// (method, path, headers, body, expected status, expected code)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            b"{\"id\": \"x\",".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            b"".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            b"[1,2]".to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            br#"{"id":"x","label":"x","auth_type":"bearer","colour":"red"}"#.to_vec(),
            400,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            br#"{"id":"x"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/credentials",
            vec![("content-type", "text/plain")],
            br#"{"id":"x","label":"x","auth_type":"bearer"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/credentials",
            vec![],
            br#"{"id":"x","label":"x","auth_type":"bearer"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "PUT",
            "/v1/credentials/c/value",
            json_ct.to_vec(),
            format!("{{\"value\":\"{}\"}}", "v".repeat(5000)).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "PUT",
            "/v1/credentials/c/value",
            json_ct.to_vec(),
            br#"{"value":""}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "PUT",
            "/v1/credentials/c/value",
            json_ct.to_vec(),
            br#"{"value":"ok","extra":1}"#.to_vec(),
            400,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/credentials",
            json_ct.to_vec(),
            br#"{"id":"has space","label":"x","auth_type":"bearer"}"#.to_vec(),
            422,
            "validation_failed",
        ),
    ];
    for (method, path, headers, body, status, code) in &cases {
        let r = admin.raw(method, path, headers, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (*status, code.to_string()),
            "{method} {path} {}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            r.text()
        );
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Without a Content-Length (chunked), the limit holds while reading.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "PUT /v1/credentials/c/value HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            s.admin
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("3e8\r\n{}\r\n", "v".repeat(1000));
        for _ in 0..6 {
            if conn.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"));
    }
    // Unknown routes and methods are JSON as well.
    admin
        .get("/v1/nothing")
        .await
        .expect_error(404, "not_found");
    admin
        .raw("POST", "/v1/bindings", &json_ct, b"{}".to_vec())
        .await
        .expect_error(405, "method_not_allowed");
    admin
        .get("/v1/audit?colour=red")
        .await
        .expect_error(400, "invalid_query");
    admin
        .get("/v1/audit?since=yesterday")
        .await
        .expect_error(400, "invalid_query");
    // Each refused write is an audit row with its code.
    let rows = admin.audit("action=credential.create&limit=50").await;
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    for code in [
        "malformed_json",
        "unknown_field",
        "invalid_field",
        "unsupported_media_type",
        "validation_failed",
    ] {
        assert!(outcomes.contains(&code), "{code} not audited: {outcomes:?}");
    }
    let stores = admin.audit("action=credential.store_value").await;
    let outcomes: Vec<&str> = stores
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"payload_too_large"), "{outcomes:?}");
    assert!(stores.iter().all(|r| r["status"].as_u64().unwrap() >= 400));
    // Unauthenticated garbage is refused before the body is read, and not audited.
    s.anonymous()
        .raw("POST", "/v1/credentials", &json_ct, b"{".to_vec())
        .await
        .expect_error(401, "unauthorized");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_writes_and_resolutions_with_filters() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let (a, b, ka, _) = two_tenants(&s).await;
    let admin = s.admin();
    for _ in 0..3 {
        a.get("/v1/credentials/team-a/github.token/value")
            .await
            .expect(200);
    }
    b.get("/v1/credentials/team-b/github.token/value")
        .await
        .expect(200);
    a.get("/v1/credentials/team-b/github.token/value")
        .await
        .expect(403);

    let resolved = admin
        .audit("toolkit=a&action=credential.resolve&outcome=ok")
        .await;
    assert_eq!(resolved.len(), 3);
    let e = &resolved[0];
    assert_eq!(e["actor"], "toolkit");
    assert_eq!(e["credential_id"], "team-a/github.token");
    assert_eq!(e["backend"], "fernet");
    assert_eq!(e["status"], 200);
    assert_eq!(e["key_id"], &ka[3..19]);
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert!(e["latency_us"].as_i64().unwrap() > 0);
    assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    let by_cred = admin.audit("credential=team-b/github.token").await;
    assert!(
        by_cred
            .iter()
            .any(|e| e["outcome"] == "forbidden" && e["toolkit"] == "a")
    );
    assert!(
        by_cred
            .iter()
            .any(|e| e["action"] == "credential.store_value" && e["actor"] == "admin")
    );
    // Every management write of the setup is there.
    let writes = admin.audit("actor=admin&limit=1000").await;
    let mut actions: Vec<&str> = writes
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.sort();
    actions.dedup();
    assert_eq!(
        actions,
        [
            "binding.create",
            "credential.create",
            "credential.store_value",
            "key.create",
            "toolkit.create"
        ]
    );
    // Paging: newest first, before_id continues.
    let page1 = admin.get("/v1/audit?limit=2").await.expect(200).json();
    let next = page1["next_before_id"].as_i64().unwrap();
    let page2 = admin
        .get(&format!("/v1/audit?limit=2&before_id={next}"))
        .await
        .expect(200)
        .json();
    assert!(page2["events"][0]["id"].as_i64().unwrap() < next);
    let since_future = admin.audit("since=2999-01-01").await;
    assert!(since_future.is_empty());
    // Audit rows never carry a value, and neither do the other responses.
    let all = admin.get("/v1/audit?limit=1000").await.text();
    assert!(!all.contains(VALUE_A) && !all.contains(VALUE_B));
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_or_token_in_any_log_line() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let (a, b, ka, kb) = two_tenants(&s).await;
    let admin = s.admin();
    for _ in 0..5 {
        a.get("/v1/credentials/team-a/github.token/value")
            .await
            .expect(200);
        b.get("/v1/toolkits/b/apis/api.github.com/credentials")
            .await
            .expect(200);
    }
    a.get("/v1/credentials/team-b/github.token/value")
        .await
        .expect(403);
    // Values in refused bodies, and in a body too large.
    admin
        .raw(
            "PUT",
            "/v1/credentials/team-a/github.token/value",
            &[("content-type", "application/json")],
            format!("{{\"value\": \"{VALUE_A}\", \"extra\": \"{VALUE_B}\"}}").into_bytes(),
        )
        .await
        .expect_error(400, "unknown_field");
    admin
        .raw(
            "PUT",
            "/v1/credentials/team-a/github.token/value",
            &[("content-type", "application/json")],
            format!("{{\"value\": 12{VALUE_A}}}").into_bytes(),
        )
        .await
        .expect(400);
    admin
        .raw(
            "PUT",
            "/v1/credentials/team-a/github.token/value",
            &[("content-type", "text/plain")],
            VALUE_A.as_bytes().to_vec(),
        )
        .await
        .expect(415);
    admin.store_value("team-a/github.token", VALUE_A).await;
    let metrics = s.anonymous().get("/metrics").await.expect(200).text();
    let audit = admin.get("/v1/audit?limit=1000").await.text();
    let admin_token = s.admin.clone();
    let stderr = s.stop();
    assert!(stderr.contains("TRACE"), "logging ran at trace level");
    assert!(stderr.contains("audit"), "audit events are logged");
    assert!(stderr.contains("credential.resolve"));
    for (what, secret) in [
        ("value A", VALUE_A),
        ("value B", VALUE_B),
        ("toolkit key A", &ka),
        ("toolkit key B", &kb),
        ("admin token", &admin_token),
        ("key A's secret half", &ka[20..]),
    ] {
        assert!(!stderr.contains(secret), "{what} leaked into the log");
        assert!(!metrics.contains(secret), "{what} leaked into metrics");
        assert!(!audit.contains(secret), "{what} leaked into the audit log");
    }
    // Nor anywhere in the database files in clear text.
    for file in ["airlock.db", "airlock.db-wal"] {
        let bytes = std::fs::read(al.data_dir().join(file)).unwrap_or_default();
        for secret in [VALUE_A, VALUE_B, &ka, &admin_token] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_and_every_documented_route_exists() {
    let al = Airlock::new();
    let s = al.serve(&[]);
    let (a, _, _, _) = two_tenants(&s).await;
    a.get("/v1/credentials/team-a/github.token/value")
        .await
        .expect(200);
    a.get("/v1/credentials/team-b/github.token/value")
        .await
        .expect(403);
    let anon = s.anonymous();
    assert_eq!(
        anon.get("/healthz").await.expect(200).json()["status"],
        "ok"
    );
    let ready = anon.get("/readyz").await.expect(200).json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["backends"][0]["name"], "fernet");
    let metrics = anon.get("/metrics").await.expect(200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for needle in [
        "airlock_http_requests_total{route=\"/v1/credentials/{*id}\",method=\"GET\",status=\"200\"}",
        "airlock_resolutions_total{backend=\"fernet\",outcome=\"ok\"} 1",
        "airlock_resolution_duration_seconds_bucket{backend=\"fernet\",le=\"+Inf\"} 1",
        "airlock_http_request_duration_seconds_count{route=\"/v1/credentials\"}",
        "airlock_auth_failures_total{status=\"403\",reason=\"not_bound\"} 1",
        "# TYPE airlock_sandbox_traps_total counter",
        "# TYPE airlock_sandbox_limit_hits_total counter",
        "# TYPE airlock_outbound_requests_total counter",
        "# TYPE airlock_sandbox_instances_total counter",
        "# TYPE airlock_cache_events_total counter",
        "airlock_http_requests_in_flight 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let doc = anon.get("/openapi.json").await.expect(200).json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented route is served: unauthenticated, /v1 answers 401 (not 404/405).
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "some/cred.id")
                .replace("{toolkit}", "a")
                .replace("{credential}", "c/d")
                .replace("{key_id}", "0123456789abcdef")
                .replace("{api_id}", "api.x");
            let r = send(s.addr, &method.to_uppercase(), &concrete, &[], None).await;
            if path.starts_with("/v1/") {
                assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
                let security = &item[method]["security"];
                assert!(
                    !security.as_array().unwrap().is_empty(),
                    "{path} documents auth"
                );
            } else {
                assert_eq!(r.status, 200, "{method} {path}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, airlock::service::router::ROUTES.len());
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let al = Airlock::new();
    let mut s = al.serve(&[]);
    let admin = s.admin();
    admin.create_credential("slow", "api", None).await;
    let body = b"{\"value\": \"written-during-shutdown\"}";
    let head = format!(
        "PUT /v1/credentials/slow/value HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.admin,
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The listener is closed: new clients are refused while the request finishes.
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
    conn.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the in-flight request got its answer and the connection closed"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        s.stderr()
    );
    assert!(s.stderr().contains("airlock service stopped"));
    assert_eq!(al.reveal("slow"), "written-during-shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_toolkit_has_its_own_rate_limit() {
    let al = Airlock::new();
    let config = write_config(
        &al,
        "[server.rate_limit]\nrequests_per_second = 0.5\nburst = 3\n\n\
         [server.rate_limit.toolkits.b]\nrequests_per_second = 0\n",
    );
    let s = al.serve(&["--config", &config]);
    let (a, b, _, _) = two_tenants(&s).await;
    let path_a = "/v1/credentials/team-a/github.token/value";
    for _ in 0..3 {
        a.get(path_a).await.expect(200);
    }
    let r = a.get(path_a).await.expect_error(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // b is unlimited; the admin API is not rate limited.
    for _ in 0..20 {
        b.get("/v1/credentials/team-b/github.token/value")
            .await
            .expect(200);
    }
    s.admin().get("/v1/credentials").await.expect(200);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    a.get(path_a).await.expect(200);
    let limited = s.admin().audit("toolkit=a&outcome=rate_limited").await;
    assert_eq!(limited.len(), 1);
    let metrics = s.anonymous().get("/metrics").await.text();
    assert!(metrics.contains("airlock_rate_limited_total{toolkit=\"a\"} 1"));
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_certificate_and_key_files() {
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls;
    let al = Airlock::new();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(al.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        al.dir.path().join("key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    let config = write_config(
        &al,
        "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    );
    let s = al.serve(&["--config", &config]);
    assert!(
        s.stdout.contains("airlock listening on https://"),
        "{}",
        s.stdout
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/v1/credentials")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", s.admin))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn(async move { send(s.addr, "GET", "/healthz", &[], None).await }),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(ref r)) if r.status == 200));

    // A broken key file is refused at start, naming the file and not its contents.
    std::fs::write(
        al.dir.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
    )
    .unwrap();
    let run = al.run(&["--config", &config, "serve", "--listen", "127.0.0.1:0"]);
    let run = run.fails_with("key.pem");
    assert!(!run.stderr.contains("AAAA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_from_the_environment_and_rotation() {
    let env_token = "e".repeat(48);
    let al = Airlock::new().with_env("AIRLOCK_ADMIN_TOKEN", &env_token);
    let s = al.serve(&[]);
    assert!(!s.stdout.contains("generated the admin token"));
    s.client(&env_token)
        .get("/v1/credentials")
        .await
        .expect(200);
    s.client(&"e".repeat(47))
        .get("/v1/credentials")
        .await
        .expect_error(401, "unauthorized");
    s.stop();
    let short = Airlock::new().with_env("AIRLOCK_ADMIN_TOKEN", "too-short");
    short
        .run(&["serve", "--listen", "127.0.0.1:0"])
        .fails_with("at least 32");

    // Generated once, kept across restarts, replaced by rotation.
    let al = Airlock::new();
    let s = al.serve(&[]);
    let first = s.admin.clone();
    assert!(first.starts_with("at_"), "{}", s.stdout);
    s.stop();
    let s = al.serve(&[]);
    assert!(
        !s.stdout.contains("generated"),
        "printed once: {}",
        s.stdout
    );
    s.client(&first).get("/v1/credentials").await.expect(200);
    let rotated = al.run(&["admin-token", "rotate"]).ok();
    let second = rotated.stdout.lines().nth(1).unwrap().to_owned();
    s.client(&first)
        .get("/v1/credentials")
        .await
        .expect_error(401, "unauthorized");
    s.client(&second).get("/v1/credentials").await.expect(200);
    s.stop();
}

#[test]
fn serve_without_config_listens_on_the_default_address() {
    if std::net::TcpListener::bind("127.0.0.1:8900").is_err() {
        eprintln!("SKIP: 127.0.0.1:8900 is in use on this machine");
        return;
    }
    use std::io::BufRead;
    let al = Airlock::new();
    let mut child = al
        .command(&["serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for _ in 0..3 {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("airlock listening") {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        seen.contains("airlock listening on http://127.0.0.1:8900"),
        "{seen}"
    );
    assert!(status.success());
    assert!(
        al.data_dir().join("airlock.db").exists(),
        "Fernet default in the data dir"
    );
}
