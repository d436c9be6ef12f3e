//! Prometheus metrics: a small registry of labelled counters, histograms and gauges,
//! rendered in the Prometheus text exposition format (version 0.0.4) at `/metrics`.
//!
//! Invariants:
//! - A label value is a route template, a method, a status, a backend or toolkit name, an
//!   outcome code or a limit name: never a credential value, a token, a key or a raw URL
//!   (credential ids are not labels either: they would make one series per credential).
//! - Each family holds at most [`MAX_SERIES`] label sets; past that, new label sets are
//!   counted under the value `other`, so a flood of distinct names cannot grow memory or
//!   the scrape without bound.
//! - One [`Metrics`] per service instance (not a process global), so tests that run
//!   several services in one process read only their own numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outbound::stats::{OutboundStats, StatsSnapshot};
use crate::sandbox::{PoolStats, WasmBackend};

/// Most label sets one family keeps before folding new ones into `other`.
pub const MAX_SERIES: usize = 2_000;

/// Latency buckets in seconds: from 100 µs (a cached or Fernet resolution) to 10 s (a
/// sandboxed backend at its wall-time limit).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Every metric airlock exports.
pub struct Metrics {
    http_requests: CounterFamily,
    http_duration: HistogramFamily,
    http_in_flight: AtomicI64,
    resolutions: CounterFamily,
    resolution_duration: HistogramFamily,
    backend_calls: CounterFamily,
    cache_events: CounterFamily,
    auth_failures: CounterFamily,
    rate_limited: CounterFamily,
    audit_events: CounterFamily,
    /// Sandboxed backends, whose own counters (kept by the sandbox and its outbound
    /// capability, which know nothing of this registry) are read at each scrape.
    sandboxes: Mutex<Vec<SandboxProbe>>,
}

/// Where a sandboxed backend's counters are read from.
struct SandboxProbe {
    backend: String,
    pool: Arc<WasmBackend>,
    outbound: Arc<OutboundStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            http_requests: CounterFamily::new(
                "airlock_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: HistogramFamily::new(
                "airlock_http_request_duration_seconds",
                "Time from request to response head, by route template.",
                &["route"],
            ),
            http_in_flight: AtomicI64::new(0),
            resolutions: CounterFamily::new(
                "airlock_resolutions_total",
                "Credential resolutions, by backend and outcome (ok or an error code).",
                &["backend", "outcome"],
            ),
            resolution_duration: HistogramFamily::new(
                "airlock_resolution_duration_seconds",
                "Time to resolve one credential's value, by backend.",
                &["backend"],
            ),
            backend_calls: CounterFamily::new(
                "airlock_backend_calls_total",
                "Calls that reached a backend (after cache and single-flight), by backend, \
                 operation and outcome.",
                &["backend", "operation", "outcome"],
            ),
            cache_events: CounterFamily::new(
                "airlock_cache_events_total",
                "Value cache events by backend: hit, miss, coalesced (joined a call in \
                 flight), stale (served after a transient failure), invalidated, full.",
                &["backend", "event"],
            ),
            auth_failures: CounterFamily::new(
                "airlock_auth_failures_total",
                "Requests refused by authentication (401) or authorization (403), by reason.",
                &["status", "reason"],
            ),
            rate_limited: CounterFamily::new(
                "airlock_rate_limited_total",
                "Requests refused by a toolkit's rate limit, by toolkit.",
                &["toolkit"],
            ),
            audit_events: CounterFamily::new(
                "airlock_audit_events_total",
                "Audit events by result: written, or failed (could not be stored).",
                &["result"],
            ),
            sandboxes: Mutex::new(Vec::new()),
        }
    }

    /// Export the counters of sandboxed backend `name`: its pool's traps and limit hits,
    /// its outbound requests by result.
    pub fn watch_sandbox(&self, name: &str, pool: Arc<WasmBackend>, outbound: Arc<OutboundStats>) {
        let mut list = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        list.push(SandboxProbe {
            backend: name.to_owned(),
            pool,
            outbound,
        });
    }

    /// One answered HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.http_requests.inc(&[route, method, &status], 1);
        self.http_duration.observe(&[route], elapsed);
    }

    /// A request started (`+1`) or finished (`-1`).
    pub fn http_in_flight(&self, delta: i64) {
        self.http_in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// One credential resolved (or not) by the service.
    pub fn resolution(&self, backend: &str, outcome: &str, elapsed: Duration) {
        self.resolutions.inc(&[backend, outcome], 1);
        self.resolution_duration.observe(&[backend], elapsed);
    }

    /// One call that reached a backend.
    pub fn backend_call(&self, backend: &str, operation: &str, outcome: &str) {
        self.backend_calls.inc(&[backend, operation, outcome], 1);
    }

    /// `n` value-cache events of one kind.
    pub fn cache_event(&self, backend: &str, event: &str, n: u64) {
        if n > 0 {
            self.cache_events.inc(&[backend, event], n);
        }
    }

    pub fn auth_failure(&self, status: u16, reason: &str) {
        let status = status.to_string();
        self.auth_failures.inc(&[&status, reason], 1);
    }

    pub fn rate_limited(&self, toolkit: &str) {
        self.rate_limited.inc(&[toolkit], 1);
    }

    pub fn audit_event(&self, result: &str, n: u64) {
        if n > 0 {
            self.audit_events.inc(&[result], n);
        }
    }

    /// The value of one counter series (for tests and status output); 0 when absent.
    pub fn counter(&self, family: &str, labels: &[&str]) -> u64 {
        let f = match family {
            "airlock_http_requests_total" => &self.http_requests,
            "airlock_resolutions_total" => &self.resolutions,
            "airlock_backend_calls_total" => &self.backend_calls,
            "airlock_cache_events_total" => &self.cache_events,
            "airlock_auth_failures_total" => &self.auth_failures,
            "airlock_rate_limited_total" => &self.rate_limited,
            "airlock_audit_events_total" => &self.audit_events,
            _ => return 0,
        };
        f.get(labels)
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.http_requests.render(&mut out);
        self.http_duration.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP airlock_http_requests_in_flight HTTP requests being handled.\n\
             # TYPE airlock_http_requests_in_flight gauge\n\
             airlock_http_requests_in_flight {}",
            self.http_in_flight.load(Ordering::Relaxed)
        );
        for family in [
            &self.resolutions,
            &self.backend_calls,
            &self.cache_events,
            &self.auth_failures,
            &self.rate_limited,
            &self.audit_events,
        ] {
            family.render(&mut out);
        }
        self.resolution_duration.render(&mut out);
        self.render_sandboxes(&mut out);
        out
    }

    /// The sandbox families, from each watched backend's live counters.
    fn render_sandboxes(&self, out: &mut String) {
        let list = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        let samples: Vec<(String, PoolStats, StatsSnapshot)> = list
            .iter()
            .map(|p| {
                let name = label_key(&["backend"], &[&p.backend]);
                (name, p.pool.stats(), p.outbound.snapshot())
            })
            .collect();
        drop(list);
        let mut family = |name: &str, help: &str, rows: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            rows(out);
        };
        family(
            "airlock_sandbox_traps_total",
            "Calls into sandboxed backends that ended in a trap other than a limit (the \
             instance is discarded), by backend.",
            &mut |out| {
                for (b, pool, _) in &samples {
                    let _ = writeln!(out, "airlock_sandbox_traps_total{{{b}}} {}", pool.traps);
                }
            },
        );
        family(
            "airlock_sandbox_limit_hits_total",
            "Calls into sandboxed backends stopped at a sandbox limit, by backend and limit \
             (cpu, memory, wall_time, stack, hostcall_data, table).",
            &mut |out| {
                for (b, pool, _) in &samples {
                    for (limit, n) in pool.limit_hits() {
                        let _ = writeln!(
                            out,
                            "airlock_sandbox_limit_hits_total{{{b},limit=\"{limit}\"}} {n}"
                        );
                    }
                }
            },
        );
        family(
            "airlock_sandbox_instances_total",
            "Sandbox instances by event: created (ran init), discarded (after a failure).",
            &mut |out| {
                for (b, pool, _) in &samples {
                    for (event, n) in [("created", pool.created), ("discarded", pool.discarded)] {
                        let _ = writeln!(
                            out,
                            "airlock_sandbox_instances_total{{{b},event=\"{event}\"}} {n}"
                        );
                    }
                }
            },
        );
        family(
            "airlock_outbound_requests_total",
            "Outbound HTTP requests of sandboxed backends, by backend and result: sent (a \
             response came back) or why not (denied by policy, blocked_address — the part of \
             denied refused for its address —, invalid_request, too_large, timeout, \
             connection, limit_exceeded).",
            &mut |out| {
                for (b, _, o) in &samples {
                    for (result, n) in [
                        ("sent", o.sent),
                        ("denied", o.denied),
                        ("blocked_address", o.blocked_address),
                        ("invalid_request", o.invalid_request),
                        ("too_large", o.too_large),
                        ("timeout", o.timeout),
                        ("connection", o.connection),
                        ("limit_exceeded", o.limit_exceeded),
                    ] {
                        let _ = writeln!(
                            out,
                            "airlock_outbound_requests_total{{{b},result=\"{result}\"}} {n}"
                        );
                    }
                }
            },
        );
    }
}

/// `name="value",…` with Prometheus escaping; the family's key for one label set.
fn label_key(names: &[&str], values: &[&str]) -> String {
    let mut key = String::with_capacity(64);
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c if c.is_control() => key.push('?'),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key
}

fn other_key(names: &[&str]) -> String {
    let others: Vec<&str> = names.iter().map(|_| "other").collect();
    label_key(names, &others)
}

struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<String, u64>>,
}

impl CounterFamily {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        CounterFamily {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn inc(&self, values: &[&str], n: u64) {
        let key = label_key(self.labels, values);
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = series.get_mut(&key) {
            *v += n;
            return;
        }
        let key = if series.len() >= MAX_SERIES {
            other_key(self.labels)
        } else {
            key
        };
        *series.entry(key).or_insert(0) += n;
    }

    fn get(&self, values: &[&str]) -> u64 {
        let key = label_key(self.labels, values);
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, value) in series.iter() {
            let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
        }
    }
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<String, Histogram>>,
}

impl HistogramFamily {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        HistogramFamily {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn observe(&self, values: &[&str], elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let key = label_key(self.labels, values);
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let key = if series.len() >= MAX_SERIES && !series.contains_key(&key) {
            other_key(self.labels)
        } else {
            key
        };
        let h = series.entry(key).or_default();
        h.count += 1;
        h.sum += secs;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, h) in series.iter() {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{}_bucket{{{labels},le=\"{bound}\"}} {cumulative}",
                    self.name
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{{{labels},le=\"+Inf\"}} {}",
                self.name, h.count
            );
            let _ = writeln!(out, "{}_sum{{{labels}}} {}", self.name, h.sum);
            let _ = writeln!(out, "{}_count{{{labels}}} {}", self.name, h.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escapes_labels() {
        let m = Metrics::new();
        m.http_request("/v1/credentials", "GET", 200, Duration::from_micros(300));
        m.http_request("/v1/credentials", "GET", 200, Duration::from_millis(20));
        m.resolution("vault \"prod\"\n", "ok", Duration::from_micros(50));
        let text = m.render();
        assert!(
            text.contains(
                "airlock_http_requests_total{route=\"/v1/credentials\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "airlock_http_request_duration_seconds_bucket{route=\"/v1/credentials\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "airlock_http_request_duration_seconds_bucket{route=\"/v1/credentials\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("backend=\"vault \\\"prod\\\"\\n\",outcome=\"ok\"} 1"));
        assert!(text.contains("# TYPE airlock_sandbox_traps_total counter"));
        assert_eq!(
            m.counter(
                "airlock_http_requests_total",
                &["/v1/credentials", "GET", "200"]
            ),
            2
        );
    }

    #[test]
    fn series_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 50 {
            m.rate_limited(&format!("toolkit-{i}"));
        }
        assert_eq!(m.counter("airlock_rate_limited_total", &["other"]), 50);
        let lines = m
            .render()
            .lines()
            .filter(|l| l.starts_with("airlock_rate_limited_total{"))
            .count();
        assert_eq!(lines, MAX_SERIES + 1);
    }
}
