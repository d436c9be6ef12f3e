//! The WASI p2 context a guest gets: enough for a language runtime to start, and nothing
//! that reaches outside the sandbox.
//!
//! Invariants of [`deny_all_context`]:
//! - environment and arguments are empty, there is no initial working directory, and
//!   nothing is inherited from the host process;
//! - no directory is preopened, so every filesystem open fails inside the guest;
//! - TCP, UDP and name lookup are switched off and every socket address is refused, so
//!   every socket operation fails inside the guest (airlock's `http` import is the only way
//!   out, and it is policy-checked);
//! - stdin is closed; stdout and stderr go to the backend's log, line by line, truncated
//!   and rate-limited;
//! - clocks and randomness are the host's (a guest needs them for request signing, e.g.
//!   SigV4 timestamps, and for nonces and hash seeds); one random request is capped.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::log::{GuestStdio, LogGate, LogSource};

/// Most bytes one `get-random-bytes` call may ask for. The host allocates the buffer
/// before filling it, so the cap stops a guest from making the host allocate gigabytes in
/// one call (wasmtime-wasi's own default is 64 MiB). 1 MiB is far beyond any key or nonce.
pub const MAX_RANDOM_BYTES_PER_CALL: u64 = 1 << 20;

/// A WASI context that grants nothing but clocks, randomness and a logged stdout/stderr.
pub(crate) fn deny_all_context(gate: &Arc<Mutex<LogGate>>, max_log_line: usize) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(GuestStdio::new(
            gate.clone(),
            LogSource::Stdout,
            max_log_line,
        ))
        .stderr(GuestStdio::new(
            gate.clone(),
            LogSource::Stderr,
            max_log_line,
        ))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .max_random_size(MAX_RANDOM_BYTES_PER_CALL);
    builder.build()
}
