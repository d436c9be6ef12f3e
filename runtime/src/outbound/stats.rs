//! Counters of what one backend's outbound capability did: requests sent, and every
//! refusal or failure by kind. Cheap (relaxed atomics), shared by reference, read as a
//! [`StatsSnapshot`]; a metrics exporter reads snapshots, the sender only increments.

use std::sync::atomic::{AtomicU64, Ordering};

use super::OutboundError;

/// Live counters for one backend.
#[derive(Debug, Default)]
pub struct OutboundStats {
    sent: AtomicU64,
    denied: AtomicU64,
    blocked_address: AtomicU64,
    invalid_request: AtomicU64,
    too_large: AtomicU64,
    timeout: AtomicU64,
    connection: AtomicU64,
    limit_exceeded: AtomicU64,
}

/// A point-in-time copy of [`OutboundStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests that produced a response (any status).
    pub sent: u64,
    /// Refused by policy (`Denied`), blocked addresses included.
    pub denied: u64,
    /// The subset of `denied` refused because of a literal or resolved address.
    pub blocked_address: u64,
    pub invalid_request: u64,
    pub too_large: u64,
    pub timeout: u64,
    pub connection: u64,
    pub limit_exceeded: u64,
}

impl OutboundStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a failed request by the kind of its error.
    pub fn record_error(&self, error: &OutboundError) {
        let counter = match error {
            OutboundError::Denied(_) => &self.denied,
            OutboundError::InvalidRequest(_) => &self.invalid_request,
            OutboundError::TooLarge(_) => &self.too_large,
            OutboundError::Timeout(_) => &self.timeout,
            OutboundError::Connection(_) => &self.connection,
            OutboundError::LimitExceeded(_) => &self.limit_exceeded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a denial caused by an address (in addition to [`Self::record_error`]).
    pub fn record_blocked_address(&self) {
        self.blocked_address.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            sent: get(&self.sent),
            denied: get(&self.denied),
            blocked_address: get(&self.blocked_address),
            invalid_request: get(&self.invalid_request),
            too_large: get(&self.too_large),
            timeout: get(&self.timeout),
            connection: get(&self.connection),
            limit_exceeded: get(&self.limit_exceeded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let s = OutboundStats::new();
        s.record_sent();
        s.record_error(&OutboundError::Denied("x".into()));
        s.record_blocked_address();
        s.record_error(&OutboundError::Denied("y".into()));
        s.record_error(&OutboundError::TooLarge("z".into()));
        s.record_error(&OutboundError::Timeout("t".into()));
        s.record_error(&OutboundError::Connection("c".into()));
        s.record_error(&OutboundError::InvalidRequest("i".into()));
        s.record_error(&OutboundError::LimitExceeded("l".into()));
        assert_eq!(
            s.snapshot(),
            StatsSnapshot {
                sent: 1,
                denied: 2,
                blocked_address: 1,
                invalid_request: 1,
                too_large: 1,
                timeout: 1,
                connection: 1,
                limit_exceeded: 1,
            }
        );
    }
}
