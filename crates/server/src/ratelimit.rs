//! Rate limits: token buckets per credential (requests per second) and per tenant (spans and
//! bytes per second). Over the limit a request gets HTTP 429 with `Retry-After`, or gRPC
//! RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` detail, so OTLP exporters back off and retry
//! instead of dropping data.
//!
//! A bucket holds one second's worth. A request larger than that passes when the bucket is full
//! and leaves it in debt, so big batches are not starved while the average rate holds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The configured rates; 0 switches one off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub requests_per_sec: f64,
    pub spans_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl Default for Rates {
    fn default() -> Self {
        // Generous: they stop a runaway client, not normal traffic; operators tune them.
        Rates {
            requests_per_sec: 5_000.0,
            spans_per_sec: 2_000_000.0,
            bytes_per_sec: 1024.0 * 1024.0 * 1024.0,
        }
    }
}

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Requests, per credential.
    Requests,
    /// Spans, per tenant.
    Spans,
    /// Bytes, per tenant.
    Bytes,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Spans => "spans",
            Kind::Bytes => "bytes",
        }
    }

    /// Whose bucket this kind is counted in.
    pub fn per(self) -> &'static str {
        match self {
            Kind::Requests => "credential",
            Kind::Spans | Kind::Bytes => "tenant",
        }
    }
}

/// A refusal for going over a rate: which one, its limit, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct OverRate {
    pub kind: Kind,
    pub rate: f64,
    /// Seconds until the bucket holds the request's cost again.
    pub retry_after: u64,
}

impl std::fmt::Display for OverRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over the rate of {} {} per second per {}; retry in {} s",
            self.rate,
            self.kind.name(),
            self.kind.per(),
            self.retry_after
        )
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets by (kind, key), bounded in number.
pub struct Limiter {
    rates: Rates,
    buckets: Mutex<HashMap<(Kind, String), Bucket>>,
}

const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    pub fn new(rates: Rates) -> Self {
        Limiter {
            rates,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Requests => self.rates.requests_per_sec,
            Kind::Spans => self.rates.spans_per_sec,
            Kind::Bytes => self.rates.bytes_per_sec,
        }
    }

    /// Takes `cost` from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, kind: Kind, key: &str, cost: f64) -> Result<(), u64> {
        let rate = self.rate(kind);
        if rate <= 0.0 || cost <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate limiter lock");
        if map.len() >= MAX_BUCKETS {
            // Full buckets carry no state worth keeping.
            map.retain(|(k, _), b| {
                let r = self.rate(*k);
                b.tokens + r * now.duration_since(b.last).as_secs_f64() < r
            });
        }
        let b = map.entry((kind, key.to_string())).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + rate * now.duration_since(b.last).as_secs_f64()).min(rate);
        b.last = now;
        if b.tokens >= cost.min(rate) {
            b.tokens -= cost;
            Ok(())
        } else {
            let wait = (cost.min(rate) - b.tokens) / rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }

    /// Takes `cost` from `key`'s bucket of `kind`, counting a refusal in /metrics.
    pub fn charge(
        &self,
        kind: Kind,
        key: &str,
        cost: f64,
        metrics: &crate::metrics::Metrics,
    ) -> Result<(), OverRate> {
        self.take(kind, key, cost).map_err(|retry_after| {
            metrics
                .rate_limited
                .get_or_create(&crate::metrics::KindLabels { kind: kind.name() })
                .inc();
            OverRate {
                kind,
                rate: self.rate(kind),
                retry_after,
            }
        })
    }

    pub fn rates(&self) -> Rates {
        self.rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_trips_at_its_rate_and_refills() {
        let l = Limiter::new(Rates {
            requests_per_sec: 10.0,
            spans_per_sec: 0.0,
            bytes_per_sec: 0.0,
        });
        let passed = (0..25)
            .filter(|_| l.take(Kind::Requests, "a", 1.0).is_ok())
            .count();
        assert_eq!(passed, 10);
        assert_eq!(l.take(Kind::Requests, "a", 1.0), Err(1));
        // Another key has its own bucket; a switched-off kind never trips.
        assert!(l.take(Kind::Requests, "b", 1.0).is_ok());
        assert!(l.take(Kind::Spans, "a", 1e12).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(250));
        let again = (0..10)
            .filter(|_| l.take(Kind::Requests, "a", 1.0).is_ok())
            .count();
        assert!((2..=3).contains(&again), "{again}");
    }

    #[test]
    fn a_request_bigger_than_a_second_passes_on_a_full_bucket_and_leaves_debt() {
        let l = Limiter::new(Rates {
            requests_per_sec: 0.0,
            spans_per_sec: 100.0,
            bytes_per_sec: 0.0,
        });
        assert!(l.take(Kind::Spans, "t", 250.0).is_ok());
        assert_eq!(l.take(Kind::Spans, "t", 10.0), Err(2));
    }
}
