//! The `log` import, and the guest's stdout/stderr: diagnostics the host records on the
//! guest's behalf.
//!
//! Invariants:
//! - Every line is tagged by the host with the backend's *configured* name; the guest only
//!   supplies the message, so it cannot make a line look like another backend's.
//! - Control characters (CR, LF, ESC, …) in a message are escaped, so one guest line stays
//!   one log line (no forged follow-up lines, no terminal escape sequences).
//! - Lines are cut to `max_log_line_bytes` (on a UTF-8 boundary, with a marker saying how
//!   much was cut) and rate-limited per instance by a token bucket; dropped lines are
//!   counted and the count is reported with the next line that passes.
//! - The log, stdout and stderr of one instance share one bucket, so switching channels
//!   does not multiply the rate.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::sandbox::bindings::log::{Host, Level};
use crate::sandbox::limits::{LimitHit, Limits};

/// Severity of a guest line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuestLogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Which channel a line arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The `airlock:backend/log` import.
    Log,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error (Rust panics print here).
    Stderr,
    /// Written by the host about the guest (e.g. how many lines were dropped).
    Host,
}

/// One line, after tagging, sanitising and truncation.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// The backend's configured name, set by the host.
    pub backend: &'a str,
    pub level: GuestLogLevel,
    pub source: LogSource,
    pub message: &'a str,
}

/// Where guest lines go. The default is [`TracingLogSink`].
pub trait LogSink: Send + Sync {
    fn record(&self, record: &LogRecord<'_>);
}

/// Emits guest lines as `tracing` events with target `airlock::guest` and fields
/// `backend` and `source`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLogSink;

impl LogSink for TracingLogSink {
    fn record(&self, r: &LogRecord<'_>) {
        let source = match r.source {
            LogSource::Log => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        };
        let (backend, message) = (r.backend, r.message);
        match r.level {
            GuestLogLevel::Trace => {
                tracing::trace!(target: "airlock::guest", backend, source, "{message}")
            }
            GuestLogLevel::Debug => {
                tracing::debug!(target: "airlock::guest", backend, source, "{message}")
            }
            GuestLogLevel::Info => {
                tracing::info!(target: "airlock::guest", backend, source, "{message}")
            }
            GuestLogLevel::Warn => {
                tracing::warn!(target: "airlock::guest", backend, source, "{message}")
            }
            GuestLogLevel::Error => {
                tracing::error!(target: "airlock::guest", backend, source, "{message}")
            }
        }
    }
}

/// Escape control characters and cut `message` to `max` bytes on a character boundary.
/// `already_cut` bytes were discarded before the message reached here; they are counted in
/// the truncation marker.
pub(crate) fn sanitize(message: &str, max: usize, already_cut: usize) -> String {
    let mut out = String::with_capacity(message.len().min(max));
    let mut consumed = 0;
    for ch in message.chars() {
        let piece: String = if ch.is_control() && ch != '\t' {
            ch.escape_default().collect()
        } else {
            ch.to_string()
        };
        if out.len() + piece.len() > max {
            break;
        }
        out.push_str(&piece);
        consumed += ch.len_utf8();
    }
    if consumed < message.len() || already_cut > 0 {
        let marker = format!(
            " …[truncated {} bytes]",
            message.len() - consumed + already_cut
        );
        // Make room for the marker so the line stays within `max`.
        while out.len() + marker.len() > max && !out.is_empty() {
            out.pop();
        }
        out.push_str(&marker);
    }
    out
}

/// Tagging, truncation and rate limiting for one instance's lines.
pub(crate) struct LogGate {
    backend: Arc<str>,
    sink: Arc<dyn LogSink>,
    max_line: usize,
    rate: f64,
    burst: f64,
    tokens: f64,
    last_refill: Instant,
    dropped: u64,
}

impl LogGate {
    pub(crate) fn new(backend: Arc<str>, sink: Arc<dyn LogSink>, limits: &Limits) -> Self {
        LogGate {
            backend,
            sink,
            max_line: limits.max_log_line_bytes,
            rate: f64::from(limits.log_lines_per_second),
            burst: f64::from(limits.log_burst),
            tokens: f64::from(limits.log_burst),
            last_refill: Instant::now(),
            dropped: 0,
        }
    }

    /// Record one line if the bucket allows it; count it as dropped otherwise.
    /// `already_cut` bytes of the line were discarded on the way (stdout assembly).
    pub(crate) fn emit(
        &mut self,
        level: GuestLogLevel,
        source: LogSource,
        message: &str,
        already_cut: usize,
    ) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last_refill = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.dropped > 0 {
            let note = format!(
                "{} log lines dropped: over the rate limit of {} lines per second",
                self.dropped, self.rate
            );
            self.dropped = 0;
            self.sink.record(&LogRecord {
                backend: &self.backend,
                level: GuestLogLevel::Warn,
                source: LogSource::Host,
                message: &note,
            });
        }
        let line = sanitize(message, self.max_line, already_cut);
        self.sink.record(&LogRecord {
            backend: &self.backend,
            level,
            source,
            message: &line,
        });
    }
}

/// Host side of `airlock:backend/log` for one instance.
pub struct LogCapability {
    gate: Arc<Mutex<LogGate>>,
    max_hostcall_bytes: usize,
}

impl LogCapability {
    pub(crate) fn new(gate: Arc<Mutex<LogGate>>, max_hostcall_bytes: usize) -> Self {
        LogCapability {
            gate,
            max_hostcall_bytes,
        }
    }
}

/// Record a line through a shared gate. A poisoned lock only means another line panicked
/// mid-record; the gate's state is still usable.
fn emit_shared(
    gate: &Mutex<LogGate>,
    level: GuestLogLevel,
    source: LogSource,
    message: &str,
    already_cut: usize,
) {
    let mut gate = gate.lock().unwrap_or_else(|p| p.into_inner());
    gate.emit(level, source, message, already_cut);
}

impl Host for LogCapability {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if message.len() > self.max_hostcall_bytes {
            return Err(LimitHit::HostcallData {
                call: "log.log",
                bytes: message.len(),
                max: self.max_hostcall_bytes,
            }
            .into());
        }
        let level = match level {
            Level::Trace => GuestLogLevel::Trace,
            Level::Debug => GuestLogLevel::Debug,
            Level::Info => GuestLogLevel::Info,
            Level::Warn => GuestLogLevel::Warn,
            Level::Error => GuestLogLevel::Error,
        };
        emit_shared(&self.gate, level, LogSource::Log, &message, 0);
        Ok(())
    }
}

/// The guest's stdout or stderr: complete lines go to the [`LogGate`].
#[derive(Clone)]
pub(crate) struct GuestStdio {
    gate: Arc<Mutex<LogGate>>,
    source: LogSource,
    max_line: usize,
}

impl GuestStdio {
    pub(crate) fn new(gate: Arc<Mutex<LogGate>>, source: LogSource, max_line: usize) -> Self {
        GuestStdio {
            gate,
            source,
            max_line,
        }
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(AsyncLineWriter(LineWriter::new(self.clone())))
    }
}

/// Most bytes the host accepts in one stdout/stderr write (`check-write`'s answer). Output
/// past a line's `max_log_line_bytes` is discarded as it arrives, so a guest printing a
/// gigabyte costs the host this much memory at most.
const STDIO_WRITE_CHUNK: usize = 64 << 10;

/// Assembles lines from stdout/stderr writes; flushes a partial line when dropped.
struct LineWriter {
    out: GuestStdio,
    line: Vec<u8>,
    /// Bytes of the current line discarded past `max_line`.
    cut: usize,
}

impl LineWriter {
    fn new(out: GuestStdio) -> Self {
        LineWriter {
            out,
            line: Vec::new(),
            cut: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (chunk, rest, newline) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = self.out.max_line.saturating_sub(self.line.len());
            let keep = chunk.len().min(room);
            self.line.extend_from_slice(&chunk[..keep]);
            self.cut += chunk.len() - keep;
            if newline {
                self.finish_line();
            }
            bytes = rest;
        }
    }

    fn finish_line(&mut self) {
        if self.line.is_empty() && self.cut == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let level = match self.out.source {
            LogSource::Stderr => GuestLogLevel::Warn,
            _ => GuestLogLevel::Info,
        };
        emit_shared(&self.out.gate, level, self.out.source, &text, self.cut);
        self.line.clear();
        self.cut = 0;
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.finish_line();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDIO_WRITE_CHUNK)
    }
}

/// The same line assembly behind tokio's `AsyncWrite` (used by WASI p3 bindings).
struct AsyncLineWriter(LineWriter);

impl tokio::io::AsyncWrite for AsyncLineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects records as `backend|source|message` strings.
    #[derive(Default)]
    pub(crate) struct MemorySink(pub Mutex<Vec<String>>);

    impl LogSink for MemorySink {
        fn record(&self, r: &LogRecord<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}|{:?}|{}", r.backend, r.source, r.message));
        }
    }

    fn gate(sink: &Arc<MemorySink>, limits: &Limits) -> Arc<Mutex<LogGate>> {
        Arc::new(Mutex::new(LogGate::new(
            "vault-prod".into(),
            sink.clone(),
            limits,
        )))
    }

    #[test]
    fn sanitize_escapes_control_characters_and_truncates_on_char_boundaries() {
        assert_eq!(sanitize("a\nb\r\u{1b}[31m", 100, 0), "a\\nb\\r\\u{1b}[31m");
        let long = "é".repeat(100);
        let cut = sanitize(&long, 64, 0);
        assert!(cut.len() <= 64, "{cut}");
        assert!(cut.ends_with("bytes]"), "{cut}");
        assert!(cut.starts_with("éé"));
    }

    #[test]
    fn lines_are_tagged_by_the_host_and_rate_limited() {
        let sink = Arc::new(MemorySink::default());
        let limits = Limits {
            log_burst: 2,
            log_lines_per_second: 1,
            ..Limits::default()
        };
        let gate = gate(&sink, &limits);
        for i in 0..5 {
            emit_shared(
                &gate,
                GuestLogLevel::Info,
                LogSource::Log,
                &format!("other-backend| line {i}"),
                0,
            );
        }
        let lines = sink.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            vec![
                "vault-prod|Log|other-backend| line 0",
                "vault-prod|Log|other-backend| line 1"
            ]
        );
        assert_eq!(gate.lock().unwrap().dropped, 3);
    }

    #[test]
    fn stdout_is_split_into_lines_and_long_lines_are_cut() {
        let sink = Arc::new(MemorySink::default());
        let limits = Limits {
            max_log_line_bytes: 64,
            ..Limits::default()
        };
        let stdio = GuestStdio::new(gate(&sink, &limits), LogSource::Stderr, 64);
        {
            let mut w = LineWriter::new(stdio);
            w.push(b"panicked at src/lib.rs:1\nsecond ");
            w.push(&[b'x'; 200]);
            w.push(b"\npartial");
        }
        let lines = sink.0.lock().unwrap().clone();
        assert_eq!(lines[0], "vault-prod|Stderr|panicked at src/lib.rs:1");
        assert!(
            lines[1].starts_with("vault-prod|Stderr|second xxx"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].len() <= "vault-prod|Stderr|".len() + 64,
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("truncated"), "{}", lines[1]);
        assert_eq!(lines[2], "vault-prod|Stderr|partial");
    }
}
