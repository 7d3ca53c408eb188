//! [`IpNet`]: an IP network in CIDR notation, as used by authorization `ipBlocks`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network: a network address and a prefix length.
///
/// Parsed from `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a single-host network,
/// `/32` or `/128`). Host bits are cleared on construction, so `10.1.2.3/8` is `10.0.0.0/8`.
/// Serializes in CIDR notation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a string or address/prefix pair is not an IP network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpNetError {
    /// The address part is not an IP address.
    #[error("invalid ip network {0:?}: expected an address or CIDR like 10.0.0.0/8")]
    Syntax(String),
    /// The prefix length is too long for the address family.
    #[error("prefix length {len} is longer than {max} bits")]
    PrefixLen {
        /// The given prefix length.
        len: u32,
        /// The address family's bit width.
        max: u8,
    },
}

// === impl IpNet ===

impl IpNet {
    /// Builds the network `addr/prefix_len`, clearing host bits.
    pub fn new(addr: IpAddr, prefix_len: u32) -> Result<Self, IpNetError> {
        let max = max_len(addr);
        let len =
            u8::try_from(prefix_len)
                .ok()
                .filter(|l| *l <= max)
                .ok_or(IpNetError::PrefixLen {
                    len: prefix_len,
                    max,
                })?;
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(len))),
        };
        Ok(Self {
            addr,
            prefix_len: len,
        })
    }

    /// The single-host network containing only `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            prefix_len: max_len(addr),
        }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as
    /// dual-stack sockets report IPv4 peers) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix_len) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix_len) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, IpNetError> {
        let syntax = || IpNetError::Syntax(s.to_owned());
        match s.split_once('/') {
            None => Ok(Self::host(s.parse().map_err(|_| syntax())?)),
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
                // Reject "+8" and friends that `parse` would take.
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let len: u32 = len.parse().map_err(|_| syntax())?;
                Self::new(addr, len)
            }
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> Self {
        Self::host(addr)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("::/0").prefix_len(), 0);
    }

    #[test]
    fn rejects_junk() {
        for s in [
            "",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
        ] {
            assert!(
                matches!(s.parse::<IpNet>(), Err(IpNetError::Syntax(_))),
                "{s:?}"
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(IpNetError::PrefixLen { len: 33, max: 32 })
        );
        assert_eq!(
            "::/129".parse::<IpNet>(),
            Err(IpNetError::PrefixLen { len: 129, max: 128 })
        );
        assert!("10.0.0.0/99999999999".parse::<IpNet>().is_err());
    }

    #[test]
    fn contains() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.1.1")));
        assert!(!n.contains(ip("2001:db8::1")));
        assert!(net("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("1.2.3.4").contains(ip("1.2.3.4")));
        assert!(!net("1.2.3.4").contains(ip("1.2.3.5")));
    }

    #[test]
    fn serde_as_cidr_string() {
        let n = net("192.168.0.0/16");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"192.168.0.0/16\"");
        assert_eq!(
            serde_json::from_str::<IpNet>("\"192.168.0.0/16\"").unwrap(),
            n
        );
        assert!(serde_json::from_str::<IpNet>("\"192.168.0.0/40\"").is_err());
    }
}
