//! `--max-connections-per-ip`: one address cannot take every connection slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open WebSocket and SSE connections per remote address (cheap to clone).
#[derive(Clone, Default)]
pub struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerIp {
    /// Counts one more connection from `ip` (from its /64 for IPv6, see
    /// [`super::client_address`]) unless it has `max` already (`0`: no limit).
    pub fn try_add(&self, ip: IpAddr, max: usize) -> Option<IpGuard> {
        let ip = super::client_address(ip);
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            if *count == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpGuard {
            counts: self.0.clone(),
            ip,
        })
    }

    /// Connections open now from `ip` (from its /64 for IPv6).
    pub fn current(&self, ip: IpAddr) -> usize {
        let ip = super::client_address(ip);
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

/// Un-counts the connection when dropped.
pub struct IpGuard {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit holds per address, a closed connection frees its slot, and the map
    /// forgets addresses with no connection left (it must not grow with every visitor).
    #[test]
    fn counts_per_address_and_frees_on_drop() {
        let per_ip = PerIp::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let g1 = per_ip.try_add(a, 2).unwrap();
        let _g2 = per_ip.try_add(a, 2).unwrap();
        assert!(per_ip.try_add(a, 2).is_none());
        assert!(per_ip.try_add(b, 2).is_some());
        drop(g1);
        assert!(per_ip.try_add(a, 2).is_some());
        assert_eq!(per_ip.current(b), 0);
        assert!(per_ip.0.lock().unwrap().get(&b).is_none());
    }

    /// An IPv6 client may pick any address of its /64: all of them share its slots.
    #[test]
    fn an_ipv6_prefix_shares_its_slots() {
        let per_ip = PerIp::default();
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let other: IpAddr = "2001:db8::2:3".parse().unwrap();
        let _g = per_ip.try_add(one, 1).unwrap();
        assert!(per_ip.try_add(other, 1).is_none());
        assert_eq!(per_ip.current(other), 1);
    }
}
