//! The options of `outrigger-proxy init`, and the port ranges and CIDRs they take.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Parser;

/// Write (or remove) the iptables rules that redirect a pod's TCP to its sidecar.
#[derive(Clone, Debug, Parser)]
#[command(name = "outrigger-proxy init", version)]
pub struct Init {
    /// Port of the proxy's inbound listener: TCP arriving at the pod goes there.
    #[arg(long, default_value_t = 4143, value_parser = clap::value_parser!(u16).range(1..))]
    pub inbound_port: u16,

    /// Port of the proxy's outbound listener: TCP leaving the pod goes there.
    #[arg(long, default_value_t = 4140, value_parser = clap::value_parser!(u16).range(1..))]
    pub outbound_port: u16,

    /// Port of the proxy's admin listener; never redirected, so that probes reach it.
    #[arg(long, default_value_t = 4191, value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: u16,

    /// The uid the proxy runs as; its own connections are never redirected.
    #[arg(long, default_value_t = 2102)]
    pub proxy_uid: u32,

    /// Inbound ports (or ranges, `8000-8100`) that reach the app directly, comma-separated.
    /// The admin port is always among them.
    #[arg(long, value_delimiter = ',')]
    pub skip_inbound_ports: Vec<PortRange>,

    /// Destination ports (or ranges) that the app reaches directly, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub skip_outbound_ports: Vec<PortRange>,

    /// Destination networks (`10.0.0.0/8`, `fd00::/8`, or one address) that the app
    /// reaches directly, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub skip_outbound_cidrs: Vec<Cidr>,

    /// Write IPv4 rules only, even when `ip6tables` is installed.
    #[arg(long)]
    pub no_ipv6: bool,

    /// Remove the chains and jumps that init adds, and nothing else.
    #[arg(long)]
    pub cleanup: bool,

    /// Print the iptables commands instead of running them (no privileges needed).
    #[arg(long)]
    pub dry_run: bool,
}

/// One port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range holding `port` alone.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "`{s}` is not a port (1-65535) or a range `first-last`"
            )),
            Ok(port) => Ok(port),
        };
        // `-` as users write ranges; `:` as iptables prints them.
        let (first, last) = match s.split_once(['-', ':']) {
            Some((first, last)) => (port(first)?, port(last)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!("`{s}`: the range ends before it starts"));
        }
        Ok(PortRange { first, last })
    }
}

/// As iptables' `--dport` takes it: `80` or `8000:8100`.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether this is an IPv6 network.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("`{s}` is not an address or a network like 10.0.0.0/8");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // One address alone is a network of one.
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        assert_eq!("22".parse::<PortRange>().unwrap().to_string(), "22");
        assert_eq!(
            "8000-8100".parse::<PortRange>().unwrap().to_string(),
            "8000:8100"
        );
        assert_eq!("9:9".parse::<PortRange>().unwrap().to_string(), "9");
        for bad in ["0", "65536", "x", "10-5", "", "-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.is_ipv6());
        assert_eq!(v6.to_string(), "fd00::/8");
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "x/8", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_lists() {
        let init = Init::try_parse_from([
            "init",
            "--skip-outbound-ports",
            "22,5432",
            "--skip-outbound-cidrs",
            "10.0.0.0/8,fd00::/8",
        ])
        .unwrap();
        assert_eq!(
            (init.inbound_port, init.outbound_port, init.admin_port),
            (4143, 4140, 4191)
        );
        assert_eq!(init.proxy_uid, 2102);
        assert_eq!(init.skip_outbound_ports.len(), 2);
        assert_eq!(init.skip_outbound_cidrs.len(), 2);
        assert!(!init.cleanup && !init.dry_run && !init.no_ipv6);
        assert!(Init::try_parse_from(["init", "--inbound-port", "0"]).is_err());
    }
}
