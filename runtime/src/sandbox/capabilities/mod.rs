//! What a guest can reach, one module per import it is granted: `http` (policy-checked
//! outbound requests), `config` (its own settings), `log` (tagged, truncated, rate-limited
//! diagnostics), and `wasi` (the WASI p2 context that grants nothing).

pub mod config;
pub mod http;
pub mod log;
pub mod wasi;
