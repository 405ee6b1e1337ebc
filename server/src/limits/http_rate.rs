//! `--max-http-requests-per-ip` / `--http-request-burst-per-ip`: a token bucket per remote
//! address (`governor`, keyed) for the HTTP requests that reach a document's actor (posted
//! updates and presence, long-polls). A WebSocket's messages are limited per connection;
//! these requests belong to no connection, so without this one address could post as fast
//! as HTTP goes and monopolise a document.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::{DefaultKeyedRateLimiter, RateLimiter};

/// Checks between two sweeps of the addresses whose bucket is full again (they would be
/// allowed their whole burst anyway, so forgetting them changes nothing but memory).
const SWEEP_EVERY: u32 = 4096;

/// The request budget of every remote address.
pub struct HttpRate {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_second: u32,
    checks: AtomicU32,
}

impl HttpRate {
    /// Buckets refilled at `per_second` holding at most `burst` requests; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Some(Self {
            limiter: RateLimiter::keyed(super::rate::quota(per_second, burst)?),
            per_second,
            checks: AtomicU32::new(0),
        })
    }

    /// Takes one request from the bucket of `ip` (of its /64 for IPv6, see
    /// [`super::client_address`]); `false` when it is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let ip = super::client_address(ip);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&ip).is_ok()
    }

    /// The configured rate, for the answer's reason.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Addresses with a bucket not yet full again.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each address has its own bucket: one address flooding leaves another its burst.
    #[test]
    fn each_address_has_its_own_bucket() {
        let rate = HttpRate::new(10, 50).unwrap();
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let allowed = (0..200).filter(|_| rate.allow(a)).count();
        assert!((50..=52).contains(&allowed), "{allowed}");
        assert!((0..50).all(|_| rate.allow(b)), "b keeps its whole burst");
        assert!(HttpRate::new(0, 10).is_none());
    }

    /// Addresses seen once are forgotten once their bucket has refilled, so a stream of
    /// new addresses does not grow the map for ever.
    #[test]
    fn refilled_addresses_are_forgotten() {
        let rate = HttpRate::new(1_000_000, 1_000_000).unwrap();
        for i in 0..(2 * SWEEP_EVERY) {
            rate.allow(IpAddr::from(i.to_be_bytes()));
        }
        assert!(
            rate.tracked() < SWEEP_EVERY as usize + 1,
            "{} addresses kept",
            rate.tracked()
        );
    }
}
