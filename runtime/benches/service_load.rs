//! Load benchmark of `airlock serve` on loopback: resolutions per second and latency
//! percentiles at 1, 16 and 64 concurrent clients.
//!
//! Every scenario runs the real `airlock` binary (built by cargo for this bench, release
//! profile) as a separate process:
//! - `fernet`: resolving one Fernet credential: every request authenticates a toolkit key,
//!   checks the binding, reads and decrypts the token and queues an audit event.
//! - `wasm` / `wasm+cache`: a sandboxed backend — the `minimal` test component
//!   (`tests/guests/dist/minimal.wasm`, pooled instances, `pool_size = 16`) — that fetches
//!   each value over HTTP, through the host's outbound policy and client, from a local
//!   upstream store in this process (its own thread). Each client resolves its own
//!   credential (64 of them), so single-flight does not merge clients' requests: with the
//!   cache off every resolution is a guest call and an upstream round trip; with it on
//!   (60 s TTL) nearly every one is a hit that never enters the sandbox.
//!
//! The clients run on a 1-thread runtime in this process: on a 2-core machine the load
//! generator and the service share the cores, so latencies include the generator's own
//! scheduling.
//!
//! Each client is one keep-alive HTTP/1.1 connection. Rows at `max` send each request as
//! soon as the previous answer arrives: the most the service can do, where latency is
//! mostly queueing (64 clients / throughput). The Fernet scenario adds a row at the
//! target's rate: 64 clients together offering 10,000 requests/s on a fixed schedule, with
//! latency counted without coordinated omission (see [`Run::rate`]).
//!
//! Rate limiting is off and logging is at `warn`: audit rows are still written, audit log
//! *lines* (at `info`) are not; `BENCH_LOG=info` runs the binary with them.
//! `BENCH_SECONDS` sets the measured time per round (default 4), `BENCH_ROUNDS` the rounds
//! per row (default 3; the row shows the round with the median p99), `BENCH_SCENARIOS` a
//! comma-separated subset (`fernet,wasm,wasm+cache`). Every loop is bounded by that time;
//! every server listens on 127.0.0.1 and is stopped at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const LEVELS: [usize; 3] = [1, 16, 64];
/// The target's rate: the paced row offers exactly this many resolutions per second.
const TARGET_RATE: f64 = 10_000.0;
const VALUE: &str = "bench-value-0123456789abcdef0123456789abcdef";
const WARMUP: Duration = Duration::from_millis(500);

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| (1..=120).contains(s))
        .unwrap_or(4);
    let measure = Duration::from_secs(secs);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| (1..=9).contains(r))
        .unwrap_or(3);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    let mut rows = Vec::new();

    let rate_limit_off = "[server.rate_limit]\nrequests_per_second = 0\n";
    let upstream = Upstream::start();
    let minimal =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests/dist/minimal.wasm");
    assert!(
        minimal.is_file(),
        "{} is missing: run `make guests` (make bench does)",
        minimal.display()
    );
    let wasm = |cache: &str| {
        format!(
            "{rate_limit_off}\n[backends.upstream]\nkind = \"wasm\"\ncomponent = {:?}\n\
             allowed_outbound = [\"http://{addr}\"]\nallow_private_networks = true\n\
             pool_size = 16\n{cache}\n[backends.upstream.config]\naddress = \"http://{addr}\"\n",
            minimal.to_str().expect("UTF-8 path"),
            addr = upstream.addr,
        )
    };
    let scenarios: [(&'static str, String, &str, usize); 3] = [
        ("fernet", rate_limit_off.to_owned(), "fernet", 1),
        ("wasm", wasm(""), "upstream", 64),
        (
            "wasm+cache",
            wasm("cache = { ttl_ms = 60000 }\n"),
            "upstream",
            64,
        ),
    ];
    let only = std::env::var("BENCH_SCENARIOS").ok();
    for (label, config, backend, credentials) in scenarios {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|s| s.trim() == label))
        {
            continue;
        }
        let mut server = Server::start(&config);
        let (key, paths) = client_rt.block_on(setup(
            server.addr,
            &server.admin,
            &format!("bench/token.{backend}"),
            backend,
            credentials,
        ));
        let pid = server.child.id();
        let mut runs: Vec<(usize, Option<f64>)> = LEVELS.iter().map(|&c| (c, None)).collect();
        if label == "fernet" {
            runs.push((64, Some(TARGET_RATE)));
        }
        for (clients, rate) in runs {
            let mut rounds: Vec<Row> = (0..rounds)
                .map(|_| {
                    client_rt.block_on(measured(
                        Run {
                            label,
                            addr: server.addr,
                            key: &key,
                            paths: &paths,
                            clients,
                            rate,
                            measure,
                        },
                        &|| process_cpu(pid),
                    ))
                })
                .collect();
            // The round with the median p99: one noisy round (this machine is shared)
            // neither makes nor breaks a row.
            rounds.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
            let mid = rounds.len() / 2;
            rows.push(rounds.swap_remove(mid));
        }
        server.stop();
    }
    upstream.stop();

    println!();
    println!(
        "| backend | clients | offered | requests | resolutions/s | p50 ms | p99 ms | p99.9 ms | \
         server CPU µs/resolution | errors |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.1} | {} |",
            r.label,
            r.clients,
            r.rate
                .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}/s")),
            r.requests,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.server_cpu_us,
            r.errors
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.label == "fernet" && r.clients == 64)
    {
        let met = r.rps >= 0.99 * TARGET_RATE && r.p99_ms <= 5.0 && r.errors == 0;
        println!(
            "target (fernet, 64 clients, offered {}: >= 10000 resolutions/s, p99 <= 5 ms): {}",
            r.rate
                .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}/s")),
            if met { "met" } else { "NOT met" }
        );
    }
}

/// One measured row: who, how many clients, and how hard they push.
struct Run<'a> {
    label: &'static str,
    addr: SocketAddr,
    key: &'a str,
    paths: &'a [String],
    clients: usize,
    /// `None`: every client sends its next request as soon as the previous one is
    /// answered (the most the service can do). `Some(r)`: the clients together offer `r`
    /// requests per second on a fixed schedule; a request held back because the previous
    /// answer was late counts from its scheduled time, so a stall counts against every
    /// request it delayed (no coordinated omission).
    rate: Option<f64>,
    measure: Duration,
}

struct Row {
    label: &'static str,
    clients: usize,
    rate: Option<f64>,
    /// CPU time the service spent per resolution (all its threads), in µs.
    server_cpu_us: f64,
    requests: usize,
    errors: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

/// `clients` connections, client `i` resolving `paths[i % len]` for `measure` (after a
/// warm-up), back to back or on the schedule `run.rate` sets.
async fn load(run: &Run<'_>) -> Row {
    let auth = Arc::<str>::from(format!("Bearer {}", run.key));
    let start = Instant::now() + WARMUP;
    let end = start + run.measure;
    // Paced: client i sends at t0 + i·gap/clients + k·gap, so the sends interleave evenly.
    let gap = run
        .rate
        .map(|r| Duration::from_secs_f64(run.clients as f64 / r));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..run.clients {
        let auth = auth.clone();
        let path = run.paths[i % run.paths.len()].clone();
        let addr = run.addr;
        let clients = run.clients as u32;
        set.spawn(async move {
            let mut sender = connect(addr).await;
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let first = Instant::now() + gap.map_or(Duration::ZERO, |g| g * i as u32 / clients);
            let mut k: u32 = 0;
            let mut prev_done = Instant::now();
            loop {
                // When latency counts from: the request's scheduled time if the previous
                // answer came after it (the service held this request up), otherwise the
                // moment it is sent (tokio's timer wakes up to a millisecond late, and that
                // is the generator's delay, not the service's).
                let (due, from) = match gap {
                    Some(g) => {
                        let due = first + g * k;
                        k += 1;
                        tokio::time::sleep_until(due.into()).await;
                        (due, if prev_done > due { due } else { Instant::now() })
                    }
                    None => {
                        let now = Instant::now();
                        (now, now)
                    }
                };
                if due >= end {
                    break;
                }
                let req = hyper::Request::builder()
                    .uri(path.as_str())
                    .header("host", "bench")
                    .header("authorization", &*auth)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let good = resp.status() == 200;
                        let body = resp.into_body().collect().await;
                        good && body.is_ok()
                    }
                    Err(_) => false,
                };
                prev_done = Instant::now();
                let took = prev_done.duration_since(from);
                if due >= start {
                    lat.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    if !ok {
                        errors += 1;
                    }
                }
                if !ok {
                    sender = connect(addr).await;
                }
            }
            (lat, errors)
        });
    }
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for (lat, e) in set.join_all().await {
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[i]) / 1000.0
    };
    Row {
        label: run.label,
        clients: run.clients,
        rate: run.rate,
        server_cpu_us: 0.0,
        requests: all.len(),
        errors,
        rps: all.len() as f64 / run.measure.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
    }
}

/// `load`, also measuring the CPU time `cpu()` reports across the run.
async fn measured(run: Run<'_>, cpu: &dyn Fn() -> Duration) -> Row {
    let before = cpu();
    let mut row = load(&run).await;
    let spent = cpu().saturating_sub(before);
    // The warm-up's requests are not counted; scale the CPU to the measured share.
    let share = run.measure.as_secs_f64() / (run.measure + WARMUP).as_secs_f64();
    if row.requests > 0 {
        row.server_cpu_us = spent.as_secs_f64() * share * 1e6 / row.requests as f64;
    }
    let offered = run
        .rate
        .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}/s"));
    eprintln!(
        "{:>15} {:>3} clients, offered {offered:>8}: {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  \
         server CPU {:.1} µs/req  errors {}",
        run.label, run.clients, row.rps, row.p50_ms, row.p99_ms, row.server_cpu_us, row.errors
    );
    row
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// user + system CPU time from a /proc/…/stat line.
fn stat_cpu(stat: &str) -> Duration {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND)
}

fn process_cpu(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| stat_cpu(&s))
        .unwrap_or_default()
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One request with a JSON body (setup only).
async fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: Option<&str>) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    if status >= 300 {
        panic!(
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    if path.ends_with("/keys") {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        KEY.lock()
            .unwrap()
            .replace(v["key"].as_str().expect("key").to_owned());
    }
    status
}

static KEY: Mutex<Option<String>> = Mutex::new(None);

/// Create `count` credentials `PREFIX.N` in `backend`, store their values, bind them to
/// toolkit `bench`, and issue a key. Returns the key and the value paths.
async fn setup(
    addr: SocketAddr,
    admin: &str,
    prefix: &str,
    backend: &str,
    count: usize,
) -> (String, Vec<String>) {
    call(
        addr,
        admin,
        "POST",
        "/v1/toolkits",
        Some(r#"{"id":"bench"}"#),
    )
    .await;
    let mut paths = Vec::new();
    for n in 0..count {
        let id = format!("{prefix}.{n}");
        call(
            addr,
            admin,
            "POST",
            "/v1/credentials",
            Some(&format!(
                r#"{{"id":"{id}","label":"bench","api_id":"bench.api","auth_type":"bearer","backend":"{backend}"}}"#
            )),
        )
        .await;
        call(
            addr,
            admin,
            "PUT",
            &format!("/v1/credentials/{id}/value"),
            Some(&format!(r#"{{"value":"{VALUE}"}}"#)),
        )
        .await;
        call(
            addr,
            admin,
            "PUT",
            &format!("/v1/toolkits/bench/credentials/{id}"),
            None,
        )
        .await;
        paths.push(format!("/v1/credentials/{id}/value"));
    }
    call(addr, admin, "POST", "/v1/toolkits/bench/keys", Some("{}")).await;
    (KEY.lock().unwrap().take().expect("key issued"), paths)
}

/// The real binary with `config` as its `airlock.toml`, logging at warn.
struct Server {
    child: Child,
    addr: SocketAddr,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config_text: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("airlock.toml");
        std::fs::write(&config, config_text).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .current_dir(dir.path())
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(
                "AIRLOCK_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("AIRLOCK_ADMIN_TOKEN")
            .env_remove("AIRLOCK_VAULT_KEY")
            .env_remove("AIRLOCK_VAULT_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start airlock serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut admin, mut addr) = (String::new(), None);
        for _ in 0..20 {
            let Some(Ok(line)) = lines.next() else { break };
            if line.starts_with("at_") {
                admin = line.trim().to_owned();
            }
            if let Some(a) = line.strip_prefix("airlock listening on http://") {
                addr = a.trim().parse().ok();
                break;
            }
        }
        Server {
            child,
            addr: addr.expect("airlock serve printed its address"),
            admin,
            _dir: dir,
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A local upstream secret store on its own runtime: answers every `GET` (the minimal
/// guest's `/secret/{id}` and `/health`) with the value, every other method with 204 (a
/// store: the value is already there).
struct Upstream {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Upstream {
    fn start() -> Upstream {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind upstream");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                tokio::pin!(stopped);
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stopped => break,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|req| async move {
                            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                                VALUE.as_bytes(),
                            )));
                            if req.method() != hyper::Method::GET {
                                *resp.status_mut() = hyper::StatusCode::NO_CONTENT;
                                *resp.body_mut() = Full::new(Bytes::new());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Upstream {
            addr: addr_rx.recv().expect("upstream address"),
            stop,
            thread,
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
