//! End to end, per guest backend: a real `airlock.toml` (or, for Bitwarden, Jentic Mini's
//! environment settings and no file) ⇒ `airlock credentials add --backend X --locator …` ⇒
//! `airlock credentials get-value --reveal` prints the upstream value. The real `airlock`
//! binary runs the real components from `guest-backends/dist/` in its sandbox, with the
//! allow-list naming the upstream's 127.0.0.1 port; the upstreams are a real OpenBao dev server,
//! a real moto server verifying SigV4, and the Python fakes of 1Password Connect, `bw serve`
//! and Bitwarden Secrets Manager.
//!
//! Every airlock run has `AIRLOCK_LOG=debug`; every run is checked (by `e2e_support::Session`)
//! for secret values in stderr and in any stdout but `get-value --reveal`'s, and for tokens and
//! keys in any output; the data directory is checked for both at the end. `AIRLOCK_E2E_LOG=trace`
//! runs the same checks at trace level (much slower: the component compile is traced).
//!
//! Missing `bao`/`moto_server`/`python3`: SKIP, or a failure with `AIRLOCK_REQUIRE_TOOLS=1`.
//! Missing `guest-backends/dist/*.wasm`: SKIP, or a failure with `AIRLOCK_REQUIRE_GUESTS=1`.

mod e2e_support;
mod support;

use e2e_support::servers::{Bao, Moto, python_fake, repo_path};
use e2e_support::{Session, dist_dir, guest, http, toml_str, unique};
use serde_json::{Value, json};

/// A `[backends.NAME]` section for a wasm component allowed to reach `url`, with `config`
/// (`key = value` TOML lines) and optional extra TOML after it.
fn section(
    name: &str,
    component: &std::path::Path,
    url: &str,
    config: &[String],
    extra: &str,
) -> String {
    let component = toml_str(component.to_str().expect("UTF-8 path"));
    let url = toml_str(url);
    let mut s = format!(
        "[backends.{name}]\nkind = \"wasm\"\ncomponent = {component}\nallowed_outbound = [{url}]\n\n\
         [backends.{name}.config]\n"
    );
    for line in config {
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(extra);
    s
}

/// `backends list` (text and JSON) shows `host` for `backend`, and (checked by the session)
/// no token.
#[track_caller]
fn assert_listed(s: &Session, backend: &str, host: &str) {
    let text = s.run(&["backends", "list"]).ok().stdout;
    assert!(text.contains(backend), "{text}");
    assert!(text.contains(host), "outbound host missing:\n{text}");
    let json: Value = serde_json::from_str(&s.run(&["backends", "list", "--json"]).ok().stdout)
        .expect("backends list --json");
    let entry = json
        .as_array()
        .expect("array")
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("{backend} not listed: {json}"));
    assert_eq!(entry["kind"], "wasm", "{entry}");
    assert!(
        entry["grant"]["allowed_outbound"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h == host)),
        "{entry}"
    );
}

/// `backends check NAME` succeeds.
#[track_caller]
fn assert_check_ok(s: &Session, backend: &str) -> String {
    let out = s.run(&["backends", "check", backend]).ok().stdout;
    assert!(
        out.contains(&format!("backend '{backend}' (wasm): ok")),
        "{out}"
    );
    out
}

#[test]
fn vault_openbao_kv2_read_store_injected_token_check_and_list() {
    const TEST: &str = "vault_openbao_kv2_read_store_injected_token_check_and_list";
    let Some(component) = guest(TEST, "hashicorp-vault") else {
        return;
    };
    let Some(bao) = Bao::start(TEST) else {
        return;
    };
    let value = unique("vault-app-password");
    let written = unique("vault-written-api-key");
    let updated = unique("vault-updated-password");
    bao.write_kv2("app", json!({ "password": value, "user": "svc-user" }));

    let url = bao.url();
    let address = format!("address = {}", toml_str(url));
    let token_cfg = "token = \"${env:VAULT_TOKEN}\"".to_owned();
    let inject = format!(
        "[[backends.vault-injected.inject_headers]]\ndestination = {}\nname = \"X-Vault-Token\"\nvalue = \"${{env:VAULT_TOKEN}}\"\n\n",
        toml_str(url)
    );
    let config = [
        section("vault", &component, url, &[address.clone(), token_cfg], ""),
        // The guest gets no token; the host adds X-Vault-Token to its requests.
        section(
            "vault-injected",
            &component,
            url,
            std::slice::from_ref(&address),
            &inject,
        ),
        // Neither: OpenBao must refuse it, which shows the injection above is what works.
        section("vault-no-token", &component, url, &[address], ""),
    ]
    .concat();
    let mut s = Session::with_config(&config).env("VAULT_TOKEN", &bao.root_token);
    s.token(&bao.root_token);
    for v in [&value, &written, &updated] {
        s.secret(v);
    }

    assert_listed(&s, "vault", url);
    let list = s.run(&["backends", "list"]).ok().stdout;
    assert!(
        list.contains(&format!("injects header: X-Vault-Token for {url}")),
        "{list}"
    );
    let health = assert_check_ok(&s, "vault");
    assert!(health.contains("token valid"), "{health}");
    assert_check_ok(&s, "vault-injected");

    // Read: a KV v2 secret written through OpenBao's API.
    s.add("vault/app", Some("vault"), "secret/app#password");
    assert_eq!(s.reveal("vault/app"), value);
    s.assert_resolves_quietly("vault/app", &value);
    let show = s.run(&["credentials", "show", "vault/app"]).ok().stdout;
    assert!(show.contains("secret/app#password"), "{show}");

    // The host-injected token reads the same secret.
    s.add(
        "vault/app-injected",
        Some("vault-injected"),
        "secret/app#password",
    );
    assert_eq!(s.reveal("vault/app-injected"), value);

    // No token at all: refused upstream, reported as denied, exit code 1.
    s.add(
        "vault/app-no-token",
        Some("vault-no-token"),
        "secret/app#password",
    );
    let run = s
        .run(&["credentials", "get-value", "vault/app-no-token", "--reveal"])
        .fails_with("denied");
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // Store: set-value through airlock creates a secret; OpenBao's API reads it back.
    s.add("vault/written", Some("vault"), "secret/written#api_key");
    s.set_value("vault/written", &written);
    assert_eq!(bao.read_kv2("written"), json!({ "api_key": written }));
    assert_eq!(s.reveal("vault/written"), written);

    // Store through the injected token into an existing secret: the other key is kept.
    s.set_value("vault/app-injected", &updated);
    assert_eq!(
        bao.read_kv2("app"),
        json!({ "password": updated, "user": "svc-user" })
    );
    assert_eq!(s.reveal("vault/app"), updated);

    // A missing path is reported as such.
    s.add("vault/missing", Some("vault"), "secret/nothing-here#x");
    s.run(&["credentials", "get-value", "vault/missing"])
        .fails_with("no value stored");

    s.assert_data_dir_clean();
}

#[test]
fn aws_secrets_manager_moto_signed_reads_store_and_wrong_key_denied() {
    const TEST: &str = "aws_secrets_manager_moto_signed_reads_store_and_wrong_key_denied";
    let Some(component) = guest(TEST, "aws-secrets-manager") else {
        return;
    };
    let password = unique("aws-db-password");
    let plain = unique("aws-plain-value");
    let stored = unique("aws-stored-value");
    let db_secret = json!({ "user": "db-admin-user", "password": password }).to_string();
    let Some(moto) = Moto::start(TEST, &[("app/db", &db_secret), ("app/plain", &plain)]) else {
        return;
    };
    let wrong_secret = "wRoNgSeCrEtKeY0000000000000000000000000000";

    let url = moto.url();
    let cfg = |secret_env: &str| {
        vec![
            "region = \"us-east-1\"".to_owned(),
            format!("endpoint = {}", toml_str(url)),
            "access_key_id = \"${env:E2E_AWS_KEY_ID}\"".to_owned(),
            format!("secret_access_key = \"${{env:{secret_env}}}\""),
        ]
    };
    let config = [
        section("aws", &component, url, &cfg("E2E_AWS_SECRET"), ""),
        section(
            "aws-wrong-key",
            &component,
            url,
            &cfg("E2E_AWS_WRONG_SECRET"),
            "",
        ),
    ]
    .concat();
    let mut s = Session::with_config(&config)
        .env("E2E_AWS_KEY_ID", &moto.keys.access_key_id)
        .env("E2E_AWS_SECRET", &moto.keys.secret_access_key)
        .env("E2E_AWS_WRONG_SECRET", wrong_secret);
    s.token(&moto.keys.secret_access_key);
    s.token(wrong_secret);
    for v in [&password, &plain, &stored] {
        s.secret(v);
    }

    // A wrong secret key: moto recomputes the signature and refuses it. This also shows the
    // free actions are spent, so every request below is verified.
    s.add("aws/wrong", Some("aws-wrong-key"), "app/db#password");
    let run = s
        .run(&["credentials", "get-value", "aws/wrong", "--reveal"])
        .fails_with("denied");
    assert_ne!(run.code, 0);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    s.run(&["backends", "check", "aws-wrong-key"])
        .fails_with("denied");

    assert_listed(&s, "aws", url);
    assert_check_ok(&s, "aws");

    // `name#json-key` and a plain SecretString.
    s.add("aws/db-password", Some("aws"), "app/db#password");
    assert_eq!(s.reveal("aws/db-password"), password);
    s.assert_resolves_quietly("aws/db-password", &password);
    s.add("aws/db-user", Some("aws"), "app/db#user");
    assert_eq!(s.reveal("aws/db-user"), "db-admin-user");
    s.add("aws/plain", Some("aws"), "app/plain");
    assert_eq!(s.reveal("aws/plain"), plain);

    // Store: a secret that does not exist yet is created (PutSecretValue, then CreateSecret).
    s.add("aws/stored", Some("aws"), "app/stored");
    s.set_value("aws/stored", &stored);
    assert_eq!(s.reveal("aws/stored"), stored);

    s.add("aws/missing", Some("aws"), "app/missing");
    s.run(&["credentials", "get-value", "aws/missing"])
        .fails_with("no value stored");

    s.assert_data_dir_clean();
}

const OP_PRODUCTION: &str = "7vs66j55o6md5btwcph272mva4";
const OP_DATABASE: &str = "ueq6dbr2ihqoyqcp7nk5dncejq";

#[test]
fn onepassword_connect_fake_op_reference_read_store_and_injected_token() {
    const TEST: &str = "onepassword_connect_fake_op_reference_read_store_and_injected_token";
    let Some(component) = guest(TEST, "onepassword-connect") else {
        return;
    };
    let token = unique("e2e-connect-token");
    let Some(fake) = python_fake(
        TEST,
        "tests/fakes/onepassword_connect.py",
        &["--token", &token, "--max-seconds", "900"],
    ) else {
        return;
    };
    let url = fake.url.as_str();
    let address = format!("address = {}", toml_str(url));
    let inject = format!(
        "[[backends.op-injected.inject_headers]]\ndestination = {}\nname = \"Authorization\"\nvalue = \"Bearer ${{env:OP_CONNECT_TOKEN}}\"\n\n",
        toml_str(url)
    );
    let config = [
        section(
            "op",
            &component,
            url,
            &[
                address.clone(),
                "token = \"${env:OP_CONNECT_TOKEN}\"".into(),
            ],
            "",
        ),
        section("op-injected", &component, url, &[address], &inject),
    ]
    .concat();
    let stored = unique("op-stored-password");
    let mut s = Session::with_config(&config).env("OP_CONNECT_TOKEN", &token);
    s.token(&token);
    for v in [
        "db-pass-123",
        "replica-pass-456",
        "sk_live_fake_abc",
        &stored,
    ] {
        s.secret(v);
    }

    assert_listed(&s, "op", url);
    let health = assert_check_ok(&s, "op");
    assert!(health.contains("token valid"), "{health}");
    assert_check_ok(&s, "op-injected");

    s.add("op/db", Some("op"), "op://Production/Database/password");
    assert_eq!(s.reveal("op/db"), "db-pass-123");
    s.assert_resolves_quietly("op/db", "db-pass-123");
    s.add(
        "op/replica",
        Some("op"),
        "op://Production/Database/Replica/password",
    );
    assert_eq!(s.reveal("op/replica"), "replica-pass-456");
    s.add(
        "op/stripe",
        Some("op-injected"),
        "op://Production/Stripe/credential",
    );
    assert_eq!(s.reveal("op/stripe"), "sk_live_fake_abc");
    s.add(
        "op/by-id",
        Some("op-injected"),
        &format!("op://{OP_PRODUCTION}/{OP_DATABASE}/username"),
    );
    assert_eq!(s.reveal("op/by-id"), "db-admin");

    // Store: a PATCH of the field; the fake's API shows the new value.
    s.set_value("op/db", &stored);
    let item = http::send(
        "GET",
        &format!("{url}/v1/vaults/{OP_PRODUCTION}/items/{OP_DATABASE}"),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .expect("read the item back");
    assert_eq!(item.status, 200, "{}", item.text());
    let fields = item.json()["fields"].clone();
    let password = fields
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["id"] == "password")
        .expect("password field");
    assert_eq!(password["value"], stored.as_str());
    assert_eq!(s.reveal("op/db"), stored);

    s.add(
        "op/missing",
        Some("op"),
        "op://Production/Database/no-such-field",
    );
    s.run(&["credentials", "get-value", "op/missing"])
        .fails_with("no value stored");

    s.assert_data_dir_clean();
}

const BW_GITHUB: &str = "2b5b9f2e-1111-4a2b-9c3d-abcdefabcdef";
const BW_VALUES: &[&str] = &[
    "gh-pass-1",
    "gh-api-key",
    "custom-pw",
    "deploy-note-text",
    "sk_test_stripe",
];

fn bw_serve(test: &str) -> Option<e2e_support::Server> {
    let items = repo_path("guest-backends/bitwarden/tests/data/bw-items.json");
    python_fake(
        test,
        "guest-backends/bitwarden/tests/fakes/bw_serve.py",
        &[
            "--items",
            items.to_str().expect("UTF-8 path"),
            "--lifetime",
            "900",
        ],
    )
}

#[test]
fn bitwarden_serve_mode_from_config_file() {
    const TEST: &str = "bitwarden_serve_mode_from_config_file";
    let Some(component) = guest(TEST, "bitwarden") else {
        return;
    };
    let Some(bw) = bw_serve(TEST) else {
        return;
    };
    let url = bw.url.as_str();
    let config = section(
        "bw",
        &component,
        url,
        &[
            "mode = \"serve\"".into(),
            format!("url = {}", toml_str(url)),
        ],
        "",
    );
    let stored = unique("bw-stored-api-key");
    let mut s = Session::with_config(&config);
    for v in BW_VALUES.iter().copied().chain([stored.as_str()]) {
        s.secret(v);
    }

    assert_listed(&s, "bw", url);
    assert_check_ok(&s, "bw");

    s.add("bw/github", Some("bw"), "GitHub");
    assert_eq!(s.reveal("bw/github"), "gh-pass-1");
    s.assert_resolves_quietly("bw/github", "gh-pass-1");
    s.add("bw/github-api", Some("bw"), &format!("{BW_GITHUB}#api_key"));
    assert_eq!(s.reveal("bw/github-api"), "gh-api-key");
    s.add("bw/notes", Some("bw"), "Deploy notes");
    assert_eq!(s.reveal("bw/notes"), "deploy-note-text");

    // Store: the item is edited (PUT); bw serve's own API shows the new field value.
    s.set_value("bw/github-api", &stored);
    let item = http::send("GET", &format!("{url}/object/item/{BW_GITHUB}"), &[], None)
        .expect("read the item back");
    assert_eq!(item.status, 200, "{}", item.text());
    let fields = item.json()["data"]["fields"].clone();
    assert!(
        fields
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f["name"] == "api_key" && f["value"] == stored.as_str()),
        "{fields}"
    );
    assert_eq!(s.reveal("bw/github-api"), stored);

    s.add("bw/missing", Some("bw"), "No such item");
    s.run(&["credentials", "get-value", "bw/missing"])
        .fails_with("no value stored");

    s.assert_data_dir_clean();
}

/// Jentic Mini's settings only: no config file, no `--backend`.
fn jentic_session(url: &str) -> Session {
    Session::without_config()
        .env("JENTIC_CREDENTIAL_BACKEND", "bitwarden")
        .env("JENTIC_BITWARDEN_URL", url)
        .env(
            "AIRLOCK_COMPONENT_DIR",
            dist_dir().to_str().expect("UTF-8 path"),
        )
}

/// `credentials add` without `--backend` lands in bitwarden (Jentic's default).
#[track_caller]
fn add_default(s: &Session, id: &str, locator: &str) {
    let out = s.add(id, None, locator).stdout;
    assert!(out.contains("(backend bitwarden)"), "{out}");
    let show = s.run(&["credentials", "show", id]).ok().stdout;
    assert!(
        show.lines()
            .any(|l| l.starts_with("backend:") && l.trim_end().ends_with("bitwarden")),
        "{show}"
    );
}

#[test]
fn bitwarden_serve_mode_from_jentic_environment_without_config() {
    const TEST: &str = "bitwarden_serve_mode_from_jentic_environment_without_config";
    if guest(TEST, "bitwarden").is_none() {
        return;
    }
    let Some(bw) = bw_serve(TEST) else {
        return;
    };
    let mut s = jentic_session(&bw.url);
    assert!(
        !s.airlock.dir.path().join("airlock.toml").exists(),
        "no config file in the working directory"
    );
    for v in BW_VALUES {
        s.secret(v);
    }
    let list = s.run(&["backends", "list"]).ok().stdout;
    assert!(list.contains("bitwarden (default): wasm"), "{list}");
    assert!(list.contains(&bw.url), "{list}");
    assert_check_ok(&s, "bitwarden");

    add_default(&s, "jentic/stripe", "Stripe");
    assert_eq!(s.reveal("jentic/stripe"), "sk_test_stripe");
    add_default(&s, "jentic/github-user", "GitHub#username");
    assert_eq!(s.reveal("jentic/github-user"), "octo");
    s.assert_data_dir_clean();
}

#[test]
fn bitwarden_serve_mode_from_jentic_environment_with_localhost_url() {
    const TEST: &str = "bitwarden_serve_mode_from_jentic_environment_with_localhost_url";
    if guest(TEST, "bitwarden").is_none() {
        return;
    }
    let Some(bw) = bw_serve(TEST) else {
        return;
    };
    // Jentic's documented default is `http://localhost:8087`: the host grants the addresses
    // localhost resolves to, so the name works although loopback is otherwise closed.
    let url = format!("http://localhost:{}", bw.port);
    let mut s = jentic_session(&url);
    for v in BW_VALUES {
        s.secret(v);
    }
    add_default(&s, "jentic/github", "GitHub");
    assert_eq!(s.reveal("jentic/github"), "gh-pass-1");
    s.assert_data_dir_clean();
}

/// Bitwarden's published SDK vectors (see guest-backends/bitwarden/tests/data/README.md).
fn sm_vectors() -> Value {
    let path = repo_path("guest-backends/bitwarden/tests/data/sm-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("sm-vectors.json")).expect("JSON")
}

#[test]
fn bitwarden_secrets_manager_from_jentic_environment() {
    const TEST: &str = "bitwarden_secrets_manager_from_jentic_environment";
    if guest(TEST, "bitwarden").is_none() {
        return;
    }
    let vectors_path = repo_path("guest-backends/bitwarden/tests/data/sm-vectors.json");
    let Some(sm) = python_fake(
        TEST,
        "guest-backends/bitwarden/tests/fakes/bitwarden_sm.py",
        &[
            "--vectors",
            vectors_path.to_str().expect("UTF-8 path"),
            "--lifetime",
            "900",
        ],
    ) else {
        return;
    };
    let v = sm_vectors();
    let text = |key: &str| v[key].as_str().expect(key).to_owned();
    let access_token = text("access_token");
    let secrets = v["secrets"].as_array().expect("secrets");
    // The vendor's secret whose key, value and note are all `TEST`.
    let test_id = secrets[0]["id"].as_str().expect("id");
    assert_eq!(secrets[0]["expected"]["value"], "TEST");
    let ferris_id = secrets[2]["id"].as_str().expect("id");

    // URL + token: Secrets Manager against the self-hosted-style base URL (url/identity,
    // url/api), exactly the destination granted.
    let mut s = jentic_session(&sm.url).env("JENTIC_BITWARDEN_TOKEN", &access_token);
    for t in [
        access_token.clone(),
        text("client_secret"),
        text("identity_access_token"),
        text("derived_key_b64"),
    ] {
        s.token(&t);
    }
    s.secret("TEST");

    let list = s.run(&["backends", "list"]).ok().stdout;
    assert!(list.contains("bitwarden (default): wasm"), "{list}");
    assert!(list.contains(&sm.url), "{list}");
    assert!(list.contains("access_token"), "config key listed: {list}");
    assert_check_ok(&s, "bitwarden");

    add_default(&s, "sm/test", test_id);
    assert_eq!(s.reveal("sm/test"), "TEST");
    add_default(&s, "sm/test-note", &format!("{test_id}#note"));
    assert_eq!(s.reveal("sm/test-note"), "TEST");
    // By key (the secret's name), found by decrypting the listed keys.
    add_default(&s, "sm/ferris-by-id", ferris_id);
    let ferris = s.reveal("sm/ferris-by-id");
    assert!(!ferris.is_empty());
    add_default(&s, "sm/ferris-by-key", "FERRIS");
    assert_eq!(s.reveal("sm/ferris-by-key"), ferris);
    s.secret(&ferris);

    // Read-only mode: a write is refused as unsupported, and changes nothing.
    s.run_with_stdin(&["credentials", "set-value", "sm/test"], b"new-sm-value")
        .fails_with("not supported");
    assert_eq!(s.reveal("sm/test"), "TEST");

    s.assert_data_dir_clean();
}
