//! Per-toolkit rate limits: one token bucket per toolkit, refilled continuously.
//!
//! Why: one misbehaving agent (a retry loop, a leaked key) must not be able to starve the
//! other toolkits of the service or hammer an upstream vault through it. A bucket holds at
//! most `burst` tokens and gains `per_second` tokens a second; each request by a toolkit
//! key takes one. A toolkit with no tokens left gets 429 with the time until its next
//! token.
//!
//! Buckets are created only for toolkits that authenticated with a valid key, so their
//! number is bounded by the catalog, not by what clients send.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Whether a request may go ahead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    default: Option<Rate>,
    overrides: BTreeMap<String, Option<Rate>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `default` applies to every toolkit without an override; `None` means unlimited.
    pub fn new(default: Option<Rate>, overrides: BTreeMap<String, Option<Rate>>) -> RateLimiter {
        RateLimiter {
            default,
            overrides,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The rate that applies to `toolkit`.
    pub fn rate_for(&self, toolkit: &str) -> Option<Rate> {
        match self.overrides.get(toolkit) {
            Some(r) => *r,
            None => self.default,
        }
    }

    /// Take one token from `toolkit`'s bucket.
    pub fn check(&self, toolkit: &str) -> Decision {
        self.check_at(toolkit, Instant::now())
    }

    fn check_at(&self, toolkit: &str, now: Instant) -> Decision {
        let Some(rate) = self.rate_for(toolkit) else {
            return Decision::Allowed;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = match buckets.get_mut(toolkit) {
            Some(b) => b,
            None => buckets.entry(toolkit.to_owned()).or_insert(Bucket {
                tokens: rate.burst,
                last: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / rate.per_second;
            Decision::Limited {
                retry_after: Duration::from_secs_f64(wait.clamp(0.001, 3600.0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_toolkit() {
        let mut overrides = BTreeMap::new();
        overrides.insert("free".to_owned(), None);
        overrides.insert(
            "slow".to_owned(),
            Some(Rate {
                per_second: 1.0,
                burst: 1.0,
            }),
        );
        let rl = RateLimiter::new(
            Some(Rate {
                per_second: 10.0,
                burst: 3.0,
            }),
            overrides,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.check_at("a", t0), Decision::Allowed);
        }
        let Decision::Limited { retry_after } = rl.check_at("a", t0) else {
            panic!("burst exhausted")
        };
        assert!(retry_after <= Duration::from_millis(100));
        // Another toolkit has its own bucket.
        assert_eq!(rl.check_at("b", t0), Decision::Allowed);
        // 100 ms later one token is back.
        assert_eq!(
            rl.check_at("a", t0 + Duration::from_millis(100)),
            Decision::Allowed
        );
        assert!(matches!(
            rl.check_at("a", t0 + Duration::from_millis(100)),
            Decision::Limited { .. }
        ));
        for _ in 0..1000 {
            assert_eq!(rl.check_at("free", t0), Decision::Allowed);
        }
        assert_eq!(rl.check_at("slow", t0), Decision::Allowed);
        assert!(matches!(rl.check_at("slow", t0), Decision::Limited { .. }));
    }
}
