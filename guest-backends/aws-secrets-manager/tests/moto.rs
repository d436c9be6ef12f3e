//! The backend, run natively, against a real moto server (`pip install 'moto[server]'`) with
//! signature checking on: `INITIAL_NO_AUTH_ACTION_COUNT` lets the setup requests through
//! (an IAM user with an access key and a policy allowing `secretsmanager:*`, a user without
//! any policy, a role assumed for temporary credentials, and the test secrets); every later
//! request is verified by moto with botocore's SigV4 implementation and checked against IAM.
//!
//! Without `moto_server` on PATH the tests print `SKIP: …` and pass, unless
//! `AIRLOCK_REQUIRE_TOOLS=1` (CI, `make test`), where they fail.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_guest::native::{
    ChildGuard, MemoryLog, NativeHttp, Recording, free_port, require_tool, wait_for,
};
use airlock_guest::{Backend, BackendError, Config, CredentialRef, Host, Http, Request};
use aws_secrets_manager::AwsSecretsManager;
use aws_secrets_manager::sigv4::{self, AmzDate, Credentials};
use zeroize::Zeroizing;

/// The requests moto serves without checking signatures: exactly the setup below.
const FREE_ACTIONS: usize = 13;

/// The policy of the permitted user and role.
const ALLOW_SECRETS: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;

/// A key pair moto issued.
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// A moto server on a free loopback port, killed when dropped, with the setup done.
struct Moto {
    _child: ChildGuard,
    endpoint: String,
    /// A user whose policy allows `secretsmanager:*`.
    allowed: Keys,
    /// A user without any policy.
    unprivileged: Keys,
    /// Temporary credentials of a role allowed `secretsmanager:*`.
    role: Keys,
}

impl Moto {
    /// Starts moto (bounded readiness wait) and runs the setup; `None` when moto is missing
    /// and tools are not required.
    fn start(test: &str) -> Option<Moto> {
        let bin = require_tool("moto_server", test, "pip install 'moto[server]'")?;
        let port = free_port().expect("free port");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", FREE_ACTIONS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let child = ChildGuard(child);
        let addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
            TcpStream::connect(&addr).ok().map(drop)
        })
        .expect("moto_server listens within 60 s");
        let endpoint = format!("http://{addr}");

        let mut setup = Setup { endpoint: endpoint.clone(), actions: 0 };
        let allowed = setup.user_with_key("airlock-reader");
        let policy = setup.iam(&[
            ("Action", "CreatePolicy"),
            ("PolicyName", "airlock-secrets"),
            ("PolicyDocument", ALLOW_SECRETS),
        ]);
        let policy_arn = tag(&policy, "Arn").expect("policy ARN");
        setup.iam(&[
            ("Action", "AttachUserPolicy"),
            ("UserName", "airlock-reader"),
            ("PolicyArn", &policy_arn),
        ]);
        let unprivileged = setup.user_with_key("airlock-nobody");

        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
        let role = setup.iam(&[
            ("Action", "CreateRole"),
            ("RoleName", "airlock-role"),
            ("AssumeRolePolicyDocument", trust),
        ]);
        let role_arn = tag(&role, "Arn").expect("role ARN");
        setup.iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", "airlock-role"),
            ("PolicyName", "secrets"),
            ("PolicyDocument", ALLOW_SECRETS),
        ]);
        let assumed = setup.query(
            "sts",
            "2011-06-15",
            &[("Action", "AssumeRole"), ("RoleArn", &role_arn), ("RoleSessionName", "airlock-test")],
        );
        let role = Keys {
            access_key_id: tag(&assumed, "AccessKeyId").expect("role key id"),
            secret_access_key: tag(&assumed, "SecretAccessKey").expect("role secret"),
            session_token: Some(tag(&assumed, "SessionToken").expect("session token")),
        };

        setup.secrets("CreateSecret", r#"{"Name":"app/plain","SecretString":"plain-v1"}"#);
        setup.secrets("PutSecretValue", r#"{"SecretId":"app/plain","SecretString":"plain-v2"}"#);
        setup.secrets(
            "CreateSecret",
            r#"{"Name":"app/json","SecretString":"{\"user\":\"admin\",\"password\":\"pw-123\",\"port\":5432}"}"#,
        );
        // SecretBinary is a blob: base64 in the JSON protocol. These are the bytes 00 01 02 ff.
        setup.secrets("CreateSecret", r#"{"Name":"app/binary","SecretBinary":"AAEC/w=="}"#);
        assert_eq!(setup.actions, FREE_ACTIONS, "the setup must use exactly the free actions");

        Some(Moto { _child: child, endpoint, allowed, unprivileged, role })
    }

    /// Config for the backend with `keys` (and optionally a different secret key).
    fn config(&self, keys: &Keys, secret_override: Option<&str>) -> Config {
        let mut pairs = vec![
            ("region".to_string(), "us-east-1".to_string()),
            ("endpoint".to_string(), self.endpoint.clone()),
            ("access_key_id".to_string(), keys.access_key_id.clone()),
            ("secret_access_key".to_string(), secret_override.unwrap_or(&keys.secret_access_key).to_string()),
            ("recovery_window_days".to_string(), "7".to_string()),
        ];
        if let Some(token) = &keys.session_token {
            pairs.push(("session_token".to_string(), token.clone()));
        }
        Config::from_pairs(pairs)
    }
}

/// The setup requests, during moto's free actions. They are SigV4-signed with a placeholder
/// key only because moto picks the service from the credential scope; moto does not check
/// them.
struct Setup {
    endpoint: String,
    actions: usize,
}

impl Setup {
    fn send(&mut self, service: &str, target: Option<&str>, content_type: &str, body: &str) -> String {
        self.actions += 1;
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let mut headers =
            vec![("Content-Type".to_string(), content_type.to_string()), ("Host".to_string(), host)];
        if let Some(t) = target {
            headers.push(("X-Amz-Target".to_string(), t.to_string()));
        }
        let creds = Credentials {
            access_key_id: "AKIAPLACEHOLDER00000".into(),
            secret_access_key: Zeroizing::new("placeholder".into()),
            session_token: None,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: body.as_bytes(),
            },
            &creds,
            "us-east-1",
            service,
            &AmzDate::from_unix(now),
            &sigv4::Settings::default(),
        );
        let mut req = Request::post(format!("{}/", self.endpoint));
        for (n, v) in headers.into_iter().filter(|(n, _)| n != "Host").chain(signed.headers) {
            req = req.header(n, v);
        }
        let resp = NativeHttp::new().send(&req.body(body.as_bytes().to_vec())).expect("setup request");
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert!(resp.is_success(), "setup {service} {target:?}: HTTP {}: {text}", resp.status);
        text
    }

    fn query(&mut self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        let mut body = format!("Version={version}");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", airlock_guest::encode_component(v)));
        }
        self.send(service, None, "application/x-www-form-urlencoded; charset=utf-8", &body)
    }

    fn iam(&mut self, params: &[(&str, &str)]) -> String {
        self.query("iam", "2010-05-08", params)
    }

    fn user_with_key(&mut self, name: &str) -> Keys {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        let created = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        Keys {
            access_key_id: tag(&created, "AccessKeyId").expect("key id"),
            secret_access_key: tag(&created, "SecretAccessKey").expect("secret"),
            session_token: None,
        }
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

/// The text of the first `<name>…</name>` in an XML answer.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_string())
}

fn cred(locator: &str) -> CredentialRef {
    CredentialRef::with_locator(format!("cred-{locator}"), locator)
}

/// Runs `f` with an initialised backend over a recording native HTTP client.
fn with_backend<T>(
    config: &Config,
    f: impl FnOnce(&mut AwsSecretsManager, &Host<'_>, &Recording<NativeHttp>) -> T,
) -> T {
    let http = Recording::new(NativeHttp::new());
    let log = MemoryLog::new();
    let host = Host::new(&http, &log);
    let mut backend = AwsSecretsManager::init(config, &host).expect("init");
    let out = f(&mut backend, &host, &http);
    for (_, line) in log.lines() {
        for secret in ["plain-v1", "plain-v2", "pw-123", "AAEC/w==", "stored-value", "rotated"] {
            assert!(!line.contains(secret), "a value reached the log: {line}");
        }
    }
    out
}

#[test]
fn moto_signed_reads_json_keys_binary_versions_and_errors() {
    let Some(moto) = Moto::start("moto_signed_reads_json_keys_binary_versions_and_errors") else { return };

    // First, a wrong secret key: moto recomputes the signature and refuses it. This also
    // proves the free actions are spent, so everything below is verified.
    with_backend(&moto.config(&moto.allowed, Some("not-the-right-secret-key-000000000000000")), |b, h, _| {
        let err = b.get_value(h, &cred("app/plain")).expect_err("wrong key");
        assert_eq!(err.kind(), "denied", "{err}");
        assert!(err.message().contains("SignatureDoesNotMatch"), "{err}");
        assert!(!err.message().contains("not-the-right"), "{err}");
        assert_eq!(b.health(h).expect_err("health with a wrong key").kind(), "denied");
    });

    with_backend(&moto.config(&moto.allowed, None), |b, h, _| {
        assert_eq!(b.get_value(h, &cred("app/plain")).as_deref(), Ok("plain-v2"));
        assert_eq!(b.get_value(h, &cred("app/plain?stage=AWSPREVIOUS")).as_deref(), Ok("plain-v1"));
        assert_eq!(b.get_value(h, &cred("app/plain?stage=AWSCURRENT")).as_deref(), Ok("plain-v2"));
        assert_eq!(b.get_value(h, &cred("app/json#password")).as_deref(), Ok("pw-123"));
        assert_eq!(b.get_value(h, &cred("app/json#port")).as_deref(), Ok("5432"));
        assert_eq!(b.get_value(h, &cred("app/json#missing")), Err(BackendError::NotFound));
        assert_eq!(b.get_value(h, &cred("app/binary")).as_deref(), Ok("AAEC/w=="));
        assert_eq!(b.get_value(h, &cred("app/binary#k")).expect_err("binary key").kind(), "invalid-config");
        assert_eq!(b.get_value(h, &cred("app/missing")), Err(BackendError::NotFound));
        assert_eq!(b.get_value(h, &cred("app/plain?stage=NOSUCHSTAGE")), Err(BackendError::NotFound));
        // No locator: the credential id is the secret id.
        let by_id = CredentialRef { locator: None, ..CredentialRef::with_locator("app/plain", "") };
        assert_eq!(b.get_value(h, &by_id).as_deref(), Ok("plain-v2"));
        let health = b.health(h).expect("healthy");
        assert!(health.contains("signed requests accepted"), "{health}");
        assert!(!health.contains(&moto.allowed.secret_access_key));
    });

    // A user moto authenticates but whose (empty) policy allows nothing.
    with_backend(&moto.config(&moto.unprivileged, None), |b, h, _| {
        let err = b.get_value(h, &cred("app/plain")).expect_err("no policy");
        assert_eq!(err.kind(), "denied", "{err}");
        assert!(err.message().contains("AccessDenied"), "{err}");
    });

    // Temporary credentials: moto checks X-Amz-Security-Token against the assumed role's.
    with_backend(&moto.config(&moto.role, None), |b, h, _| {
        assert_eq!(b.get_value(h, &cred("app/json#user")).as_deref(), Ok("admin"));
    });
    let mut wrong_token = moto.config(&moto.role, None);
    wrong_token = Config::from_pairs(
        wrong_token
            .keys()
            .map(|k| {
                let v =
                    if k == "session_token" { "wrong-token" } else { wrong_token.optional(k).unwrap_or("") };
                (k.to_string(), v.to_string())
            })
            .collect::<Vec<_>>(),
    );
    with_backend(&wrong_token, |b, h, _| {
        let err = b.get_value(h, &cred("app/plain")).expect_err("wrong token");
        assert_eq!(err.kind(), "denied", "{err}");
    });
}

#[test]
fn moto_batch_reads_use_one_batch_call() {
    let Some(moto) = Moto::start("moto_batch_reads_use_one_batch_call") else { return };
    with_backend(&moto.config(&moto.allowed, None), |b, h, http| {
        http.clear();
        let creds = [
            cred("app/plain"),
            cred("app/json#user"),
            cred("app/binary"),
            cred("app/missing"),
            cred("app/json#password"),
            cred("app/plain?stage=AWSPREVIOUS"),
            cred("bad?stage="),
        ];
        let got = b.get_values(h, &creds);
        assert_eq!(got.len(), creds.len());
        assert_eq!(got[0].as_deref(), Ok("plain-v2"));
        assert_eq!(got[1].as_deref(), Ok("admin"));
        assert_eq!(got[2].as_deref(), Ok("AAEC/w=="));
        assert_eq!(got[3], Err(BackendError::NotFound));
        assert_eq!(got[4].as_deref(), Ok("pw-123"));
        assert_eq!(got[5].as_deref(), Ok("plain-v1"));
        assert_eq!(got[6].as_ref().map_err(BackendError::kind), Err("invalid-config"));
        let targets: Vec<String> = http
            .requests()
            .iter()
            .filter_map(|r| r.header_value("X-Amz-Target").map(str::to_string))
            .collect();
        // Four distinct current secrets in one batch; the pinned version on its own.
        assert_eq!(
            targets,
            ["secretsmanager.BatchGetSecretValue", "secretsmanager.GetSecretValue"],
            "{targets:?}"
        );
    });
}

#[test]
fn moto_store_then_read_create_and_delete() {
    let Some(moto) = Moto::start("moto_store_then_read_create_and_delete") else { return };
    with_backend(&moto.config(&moto.allowed, None), |b, h, _| {
        // Overwrite an existing secret, then read it back; the old value becomes AWSPREVIOUS.
        b.store_value(h, &cred("app/plain"), "rotated").expect("put");
        assert_eq!(b.get_value(h, &cred("app/plain")).as_deref(), Ok("rotated"));
        assert_eq!(b.get_value(h, &cred("app/plain?stage=AWSPREVIOUS")).as_deref(), Ok("plain-v2"));

        // One key of a JSON secret; the others are kept.
        b.store_value(h, &cred("app/json#password"), "stored-value").expect("put key");
        assert_eq!(b.get_value(h, &cred("app/json#password")).as_deref(), Ok("stored-value"));
        assert_eq!(b.get_value(h, &cred("app/json#user")).as_deref(), Ok("admin"));

        // A secret that does not exist is created.
        b.store_value(h, &cred("app/new"), "fresh").expect("create");
        assert_eq!(b.get_value(h, &cred("app/new")).as_deref(), Ok("fresh"));
        b.store_value(h, &cred("app/newjson#token"), "t-1").expect("create json");
        assert_eq!(b.get_value(h, &cred("app/newjson#token")).as_deref(), Ok("t-1"));

        // Writing a pinned version is refused.
        assert_eq!(
            b.store_value(h, &cred("app/plain?stage=AWSPREVIOUS"), "x").expect_err("pinned").kind(),
            "invalid-config"
        );

        // Delete one key, then whole secrets (scheduled deletion: reads become not-found).
        b.delete_value(h, &cred("app/json#password")).expect("delete key");
        assert_eq!(b.get_value(h, &cred("app/json#password")), Err(BackendError::NotFound));
        assert_eq!(b.get_value(h, &cred("app/json#user")).as_deref(), Ok("admin"));
        assert_eq!(b.delete_value(h, &cred("app/json#password")), Err(BackendError::NotFound));
        b.delete_value(h, &cred("app/new")).expect("delete secret");
        assert_eq!(b.get_value(h, &cred("app/new")), Err(BackendError::NotFound));
        assert_eq!(b.delete_value(h, &cred("app/never-existed")), Err(BackendError::NotFound));
    });

    // Writes are signed and verified too: the unprivileged user may not write.
    with_backend(&moto.config(&moto.unprivileged, None), |b, h, _| {
        assert_eq!(b.store_value(h, &cred("app/plain"), "nope").expect_err("denied").kind(), "denied");
    });
}
