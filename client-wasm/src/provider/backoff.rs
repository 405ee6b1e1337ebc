//! Reconnect delays: exponential from 100 ms, capped at 30 s, with jitter so a server
//! restart is not followed by every client reconnecting in the same millisecond.

/// First delay.
pub const BASE_MS: f64 = 100.0;
/// Longest delay.
pub const CAP_MS: f64 = 30_000.0;

/// The delay before attempt `attempt` (0 = the first retry), given a uniform random
/// number in `[0, 1)`: a random point in the upper half of the exponential window
/// ("equal jitter"), never above the cap.
pub fn delay_ms(attempt: u32, random: f64) -> u32 {
    let window = (BASE_MS * 2f64.powi(attempt.min(20) as i32)).min(CAP_MS);
    let random = random.clamp(0.0, 1.0);
    (window / 2.0 + random * window / 2.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_stops_at_the_cap() {
        assert_eq!(delay_ms(0, 0.0), 50);
        assert_eq!(delay_ms(0, 1.0), 100);
        assert_eq!(delay_ms(3, 0.0), 400);
        assert_eq!(delay_ms(3, 1.0), 800);
        for attempt in 0..100 {
            for r in [0.0, 0.3, 0.999] {
                let d = delay_ms(attempt, r);
                assert!(d <= 30_000, "attempt {attempt}: {d}");
                assert!(d >= delay_ms(attempt.saturating_sub(1), r) || attempt == 0);
            }
        }
        assert_eq!(delay_ms(50, 1.0), 30_000);
        assert_eq!(delay_ms(50, 0.0), 15_000);
    }
}
