//! `--max-messages-per-second` / `--message-burst`: a token bucket per connection
//! (`governor`), so a runaway or hostile client cannot monopolise its document's actor.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A bucket refilled at `per_second` holding `burst` (at least one second's worth);
/// `None` when `per_second` is 0 (no limit). Shared with [`super::HttpRate`].
pub(super) fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The message budget of one connection.
pub struct MessageRate {
    limiter: DefaultDirectRateLimiter,
    per_second: u32,
}

impl MessageRate {
    /// A bucket refilled at `per_second` holding at most `burst` messages; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Some(Self {
            limiter: RateLimiter::direct(quota(per_second, burst)?),
            per_second,
        })
    }

    /// Takes one message from the bucket; `false` when it is empty.
    pub fn allow(&self) -> bool {
        self.limiter.check().is_ok()
    }

    /// The configured rate, for the close reason.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::MessageRate;

    /// A burst larger than the bucket is cut off at the bucket's size.
    #[test]
    fn a_burst_beyond_the_bucket_is_refused() {
        let rate = MessageRate::new(10, 50).unwrap();
        let allowed = (0..200).filter(|_| rate.allow()).count();
        assert!((50..=52).contains(&allowed), "{allowed}");
        assert!(MessageRate::new(0, 10).is_none());
    }
}
