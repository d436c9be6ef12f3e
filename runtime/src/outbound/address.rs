//! IP addresses as the outbound policy sees them: canonical form, networks (CIDR) and the
//! class of network an address belongs to.
//!
//! Pure code. Invariant: every comparison the policy makes between an address and a rule,
//! or an address and a blocked range, goes through [`canonical`] first, so an IPv4 address
//! cannot slip past an IPv4 check by being spelled as IPv6 (`::ffff:169.254.169.254`,
//! `::169.254.169.254`, `64:ff9b::a9fe:a9fe`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address an IPv6 spelling stands for when it embeds an IPv4 address, else itself.
///
/// Handles IPv4-mapped (`::ffff:a.b.c.d`, the kernel connects to the IPv4 host on dual-stack
/// sockets), IPv4-compatible (`::a.b.c.d`, deprecated but still parsed) and the NAT64
/// well-known prefix (`64:ff9b::/96`, which a NAT64 gateway translates to the embedded IPv4
/// host). `::` and `::1` are not treated as IPv4-compatible: they are the IPv6 unspecified
/// and loopback addresses.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] && u32::from(low) > 1 {
        return IpAddr::V4(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(low);
    }
    ip
}

/// A network in CIDR notation: an address whose host bits are zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused. The caller adds which entry it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    NotAnAddress(String),
    #[error("prefix length `{0}` is not a number")]
    BadPrefix(String),
    #[error("prefix length /{prefix} is longer than the address ({max} bits)")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("{network}/{prefix} has host bits set; the network is {expected}/{prefix}")]
    HostBitsSet {
        network: IpAddr,
        prefix: u8,
        expected: IpAddr,
    },
}

impl IpNet {
    /// A network from an address and a prefix length. Refuses host bits: `10.1.2.3/16` is
    /// almost always a typo for a single host or for `10.1.0.0/16`, and guessing which
    /// would widen or narrow what the operator granted.
    ///
    /// An IPv4-mapped network (`::ffff:10.0.0.0/104`) is stored as the IPv4 network it
    /// stands for (`10.0.0.0/8`), matching how addresses are compared.
    pub fn new(network: IpAddr, prefix: u8) -> Result<IpNet, CidrError> {
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (network, prefix),
            },
            _ => (network, prefix),
        };
        let max = bits(network);
        if prefix > max {
            return Err(CidrError::PrefixTooLong { prefix, max });
        }
        let expected = mask(network, prefix);
        if expected != network {
            return Err(CidrError::HostBitsSet {
                network,
                prefix,
                expected,
            });
        }
        Ok(IpNet { network, prefix })
    }

    /// Parse `address/prefix`. IPv6 addresses may be bracketed (`[fd00::]/8`).
    pub fn parse(text: &str) -> Result<IpNet, CidrError> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError::BadPrefix(String::new()))?;
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::NotAnAddress(addr.to_owned()))?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix(prefix.to_owned()));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| CidrError::BadPrefix(prefix.to_owned()))?;
        IpNet::new(ip, prefix)
    }

    /// Whether `ip` (in canonical form) lies in this network. An IPv4 network never
    /// contains a native IPv6 address and vice versa.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        bits(ip) == bits(self.network) && mask(ip, self.prefix) == self.network
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// The kind of network an address is in, as far as outbound policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Cloud instance-metadata endpoints. Always blocked: they hand out the host's own
    /// cloud credentials, the classic SSRF prize.
    Metadata,
    /// Link-local (169.254.0.0/16, fe80::/10). Always blocked: metadata services and other
    /// host-only services live here and nothing legitimate a backend needs does.
    LinkLocal,
    /// Loopback (127.0.0.0/8, ::1): the host's own services, airlock included.
    Loopback,
    /// RFC 1918 private ranges.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT shared address space (also used by some clouds for
    /// internal services, e.g. 100.100.100.200).
    SharedAddressSpace,
    /// fc00::/7 unique local addresses (and deprecated fec0::/10 site-local).
    UniqueLocal,
    /// 0.0.0.0/8 and `::`: on Linux, connecting to them reaches the local host.
    Unspecified,
    Multicast,
    Broadcast,
    /// Documentation and benchmarking ranges: never a real destination.
    Documentation,
    /// Everything else the IANA special-purpose registries set aside (240/4, 192.0.0/24,
    /// 6to4 relay anycast, discard-only, Teredo, ORCHID, local-use NAT64...).
    Reserved,
    /// A globally routable address.
    Public,
}

impl AddressClass {
    /// Blocked whatever the configuration says.
    pub fn always_blocked(self) -> bool {
        matches!(self, AddressClass::Metadata | AddressClass::LinkLocal)
    }

    /// A short name for messages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Metadata => "a cloud metadata address",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "a private network address",
            AddressClass::SharedAddressSpace => "carrier-grade NAT shared address space",
            AddressClass::UniqueLocal => "an IPv6 unique local address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "a documentation/benchmarking range",
            AddressClass::Reserved => "a reserved range",
            AddressClass::Public => "public",
        }
    }
}

/// Known cloud metadata endpoints. 169.254.169.254 (AWS, GCP, Azure IMDS, OpenStack...),
/// fd00:ec2::254 (AWS over IPv6) and 168.63.129.16 (Azure WireServer, which sits in public
/// space, so the range rules alone would let it through).
const METADATA: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
];

/// Classify an address (after [`canonical`]).
pub fn classify(ip: IpAddr) -> AddressClass {
    let ip = canonical(ip);
    if METADATA.contains(&ip) {
        return AddressClass::Metadata;
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let m = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & m == u32::from(Ipv4Addr::from(net)) & m
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let table: [([u8; 4], u32, AddressClass); 18] = [
        ([169, 254, 0, 0], 16, LinkLocal),
        ([127, 0, 0, 0], 8, Loopback),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([255, 255, 255, 255], 32, Broadcast),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([198, 18, 0, 0], 15, Documentation),
        ([192, 31, 196, 0], 24, Reserved),
        ([192, 52, 193, 0], 24, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(Public, |(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let m = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & m == u128::from(Ipv6Addr::from(net)) & m
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16..48 that a relay will reach:
    // judge it by that address, and treat the 6to4 wrapper itself as reserved at best.
    let s = ip.segments();
    if s[0] == 0x2002 {
        let embedded = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        let class = classify(IpAddr::V4(embedded));
        return if class == Public { Reserved } else { class };
    }
    let table: [([u16; 8], u32, AddressClass); 12] = [
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, UniqueLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Reserved),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, Reserved),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, Reserved),
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0x0064, 0xff9b, 0x1, 0, 0, 0, 0, 0], 48, Reserved),
    ];
    if let Some((_, _, class)) = table.iter().find(|(net, p, _)| in_v6(ip, *net, *p)) {
        return *class;
    }
    // Only 2000::/3 is allocated as global unicast; anything else is reserved.
    if s[0] & 0xe000 != 0x2000 {
        return Reserved;
    }
    Public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_unwraps_embedded_ipv4() {
        for (spelled, expected) in [
            ("::ffff:169.254.169.254", "169.254.169.254"),
            ("::ffff:a9fe:a9fe", "169.254.169.254"),
            ("::169.254.169.254", "169.254.169.254"),
            ("64:ff9b::169.254.169.254", "169.254.169.254"),
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("::", "::"),
            ("2001:db8::1", "2001:db8::1"),
            ("10.0.0.1", "10.0.0.1"),
        ] {
            assert_eq!(canonical(ip(spelled)), ip(expected), "{spelled}");
        }
    }

    #[test]
    fn classification_table() {
        use AddressClass::*;
        for (addr, class) in [
            ("169.254.169.254", Metadata),
            ("::ffff:169.254.169.254", Metadata),
            ("::169.254.169.254", Metadata),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("fd00:ec2::254", Metadata),
            ("168.63.129.16", Metadata),
            ("2002:a9fe:a9fe::1", Metadata),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("2002:c0a8:0101::1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fec0::1", UniqueLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Documentation),
            ("198.19.255.255", Documentation),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.88.99.1", Reserved),
            ("2001::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("2002:0808:0808::1", Reserved),
            ("4000::1", Reserved),
            ("8.8.8.8", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("169.255.0.1", Public),
            ("2606:4700::1111", Public),
            ("64:ff9b::808:808", Public),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn only_metadata_and_link_local_are_always_blocked() {
        assert!(AddressClass::Metadata.always_blocked());
        assert!(AddressClass::LinkLocal.always_blocked());
        assert!(!AddressClass::Loopback.always_blocked());
        assert!(!AddressClass::Private.always_blocked());
        assert!(!AddressClass::Public.always_blocked());
    }

    #[test]
    fn cidr_parse_and_contains() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.0.1")));
        assert!(net.contains(ip("10.1.255.255")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("fd00::1")));
        assert_eq!(net.to_string(), "10.1.0.0/16");

        let v6 = IpNet::parse("[fd00::]/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let v6 = IpNet::parse("fd00:ec2::/32").unwrap();
        assert!(v6.contains(ip("fd00:ec2::254")));

        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let host = IpNet::parse("127.0.0.1/32").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let mapped = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped.network(), ip("10.0.0.0"));
        assert_eq!(mapped.prefix(), 8);
    }

    #[test]
    fn cidr_errors() {
        assert!(matches!(
            IpNet::parse("10.1.2.3/16"),
            Err(CidrError::HostBitsSet { .. })
        ));
        assert!(matches!(
            IpNet::parse("10.0.0.0/33"),
            Err(CidrError::PrefixTooLong {
                prefix: 33,
                max: 32
            })
        ));
        assert!(matches!(
            IpNet::parse("fd00::/129"),
            Err(CidrError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            IpNet::parse("10.0.0.0/"),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            IpNet::parse("10.0.0.0/+8"),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            IpNet::parse("10.0.0.0/1000"),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            IpNet::parse("vault/8"),
            Err(CidrError::NotAnAddress(_))
        ));
        assert!(matches!(
            IpNet::parse("10.0.0.0"),
            Err(CidrError::BadPrefix(_))
        ));
    }
}
