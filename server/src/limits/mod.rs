//! Limits that protect the server from one client: connections per address, allowed
//! browser origins, the message rate of one connection and the HTTP request rate of one
//! address. Size limits (frames, documents,
//! presence states) are enforced where the bytes are read: the WebSocket codec and the
//! document actor.

pub mod http_rate;
pub mod origin;
pub mod per_ip;
pub mod rate;

pub use http_rate::HttpRate;
pub use per_ip::{IpGuard, PerIp};

/// The address a per-address limit counts `ip` under: an IPv6 client is given a whole /64
/// (it can pick any address in it, and a fresh address would be a fresh budget), and an
/// IPv4 address mapped into IPv6 is the IPv4 address.
pub fn client_address(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::Ipv6Addr::from(prefix).into()
            }
        },
    }
}

/// Counts one refusal by limit `limit` in `tandem_limit_exceeded_total` (WebSocket closes
/// and HTTP answers alike).
pub fn exceeded(limit: &'static str) {
    metrics::counter!("tandem_limit_exceeded_total", "limit" => limit).increment(1);
}
pub use rate::MessageRate;

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::IpAddr;

    /// Every address of one IPv6 /64 counts as one client; IPv4, mapped or not, as itself.
    #[test]
    fn an_ipv6_client_is_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_address(a), client_address(b));
        assert_ne!(client_address(a), client_address(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_address(mapped), v4);
        assert_eq!(client_address(v4), v4);
    }
}
