//! A small HTTP/1.1 client for the service tests (hyper, one connection per request), and
//! a handle on a running `airlock serve` child process.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Airlock;

/// An answer, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "body: {}",
            self.text()
        );
        self
    }
}

/// One request on a fresh connection. `headers` are added as given; `body` is sent as
/// is (no content type is implied).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the service");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("valid request");
    // The connection is driven in this task, not spawned: when the exchange ends the sender
    // drops and the connection closes before `send` returns, so no idle keep-alive
    // connection is left for a later graceful shutdown to wait on (a spawned connection
    // task can sit unpolled while a test blocks its worker thread).
    let exchange = async move {
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        drop(sender);
        (status, headers, body)
    };
    let ((status, headers, body), _closed) = tokio::join!(exchange, conn);
    Resp {
        status,
        headers,
        body,
    }
}

/// Requests to one service with one bearer token.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Client {
        Client {
            addr,
            token: token.map(str::to_owned),
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client::new(self.addr, Some(token))
    }

    async fn go(&self, method: &str, path: &str, json: Option<&Value>) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        if json.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = json.map(|j| serde_json::to_vec(j).unwrap());
        send(self.addr, method, path, &headers, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.go("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.go("DELETE", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.go("POST", path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.go("PUT", path, Some(&body)).await
    }

    pub async fn put_empty(&self, path: &str) -> Resp {
        self.go("PUT", path, None).await
    }

    /// A request with a raw body and explicit headers (besides authorization).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("authorization", a));
        }
        send(self.addr, method, path, &all, Some(body)).await
    }

    // Conveniences over the management API.

    pub async fn create_credential(&self, id: &str, api: &str, backend: Option<&str>) {
        let mut body = serde_json::json!({
            "id": id, "label": format!("Label {id}"), "api_id": api, "auth_type": "bearer",
        });
        if let Some(b) = backend {
            body["backend"] = Value::String(b.into());
        }
        self.post("/v1/credentials", body).await.expect(201);
    }

    pub async fn store_value(&self, id: &str, value: &str) {
        self.put(
            &format!("/v1/credentials/{id}/value"),
            serde_json::json!({ "value": value }),
        )
        .await
        .expect(204);
    }

    pub async fn create_toolkit(&self, id: &str) {
        self.post("/v1/toolkits", serde_json::json!({ "id": id }))
            .await
            .expect(201);
    }

    pub async fn bind(&self, toolkit: &str, credential: &str) {
        let r = self
            .put_empty(&format!("/v1/toolkits/{toolkit}/credentials/{credential}"))
            .await;
        assert!(r.status == 201 || r.status == 200, "bind: {}", r.text());
    }

    /// Issue a key for `toolkit`; returns (key id, key).
    pub async fn create_key(&self, toolkit: &str, cidrs: &[&str]) -> (String, String) {
        let r = self
            .post(
                &format!("/v1/toolkits/{toolkit}/keys"),
                serde_json::json!({ "allowed_cidrs": cidrs }),
            )
            .await
            .expect(201);
        let j = r.json();
        (
            j["id"].as_str().unwrap().to_owned(),
            j["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Audit events matching `query` (a query string without `?`).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/v1/audit?{query}")).await.expect(200);
        r.json()["events"].as_array().unwrap().clone()
    }
}

/// A running `airlock serve`.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin token printed at first start (or given in the environment).
    pub admin: String,
    pub stdout: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn admin(&self) -> Client {
        Client::new(self.addr, Some(&self.admin))
    }

    pub fn anonymous(&self) -> Client {
        Client::new(self.addr, None)
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(self.addr, Some(token))
    }

    /// Everything the service wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Wait (at most `limit`) for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(t) = self.stderr_thread.take() {
                    let _ = t.join();
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then wait for a clean exit; returns all of stderr.
    pub fn stop(mut self) -> String {
        self.terminate();
        let code = self.wait_exit(Duration::from_secs(15));
        assert_eq!(
            code,
            Some(0),
            "service did not exit cleanly: {}",
            self.stderr()
        );
        self.stderr()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Airlock {
    /// Start `airlock serve --listen 127.0.0.1:0` with `args` before `serve` (e.g.
    /// `--config`), wait until it listens, and capture its output.
    pub fn serve(&self, global_args: &[&str]) -> Served {
        let mut args: Vec<&str> = global_args.to_vec();
        args.extend(["serve", "--listen", "127.0.0.1:0"]);
        let mut child = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start airlock serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err_pipe = child.stderr.take().unwrap();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let reader = BufReader::new(out_pipe);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stdout = String::new();
        let mut admin = String::new();
        let mut addr = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = stderr_thread.join();
                    panic!(
                        "airlock serve did not start; stdout: {stdout}\nstderr: {}",
                        String::from_utf8_lossy(&stderr.lock().unwrap())
                    );
                }
            };
            stdout.push_str(&line);
            stdout.push('\n');
            if line.starts_with("at_") {
                admin = line.trim().to_owned();
            }
            if let Some(url) = line.strip_prefix("airlock listening on http://") {
                addr = Some(url.trim().parse::<SocketAddr>().expect("address"));
            } else if let Some(url) = line.strip_prefix("airlock listening on https://") {
                addr = Some(url.trim().parse::<SocketAddr>().expect("address"));
            }
        }
        if admin.is_empty()
            && let Some((_, v)) = self.env.iter().find(|(k, _)| k == "AIRLOCK_ADMIN_TOKEN")
        {
            admin = v.clone();
        }
        Served {
            child,
            addr: addr.unwrap(),
            admin,
            stdout,
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }
}
