//! The rules of a pod as data: a pure function from the options to the contents of
//! Outrigger's four `nat` chains and the two jumps into them, for one IP family.

use std::fmt;

use super::options::Init;

/// Inbound TCP (PREROUTING) enters here; skipped ports return.
pub(crate) const INBOUND: &str = "OUTRIGGER_INBOUND";
/// Redirects to the proxy's inbound port.
pub(crate) const INBOUND_REDIRECT: &str = "OUTRIGGER_INBOUND_REDIRECT";
/// Outbound TCP (OUTPUT) enters here; the proxy's uid, loopback and skips return.
pub(crate) const OUTBOUND: &str = "OUTRIGGER_OUTBOUND";
/// Redirects to the proxy's outbound port.
pub(crate) const OUTBOUND_REDIRECT: &str = "OUTRIGGER_OUTBOUND_REDIRECT";

/// Outrigger's chains, in the order they are created (and deleted).
pub(crate) const CHAINS: [&str; 4] = [INBOUND_REDIRECT, INBOUND, OUTBOUND_REDIRECT, OUTBOUND];

/// IPv4 (`iptables`) or IPv6 (`ip6tables`): the rules differ only in addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The binary that changes rules.
    pub(crate) fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The binary that lists them.
    pub(crate) fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// Every loopback address. A connection that leaves through `lo` to any other
    /// address is going to one of the pod's own addresses.
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
}

/// One rule: the chain it is appended to and the match and target arguments, as
/// iptables takes them after `-A CHAIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: String,
    pub(crate) args: Vec<String>,
}

impl Rule {
    fn new(chain: &str, args: &[&str]) -> Rule {
        Rule {
            chain: chain.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The chain this rule jumps to (`-j`), if any.
    pub(crate) fn target(&self) -> Option<&str> {
        let at = self.args.iter().position(|a| a == "-j")?;
        self.args.get(at + 1).map(String::as_str)
    }
}

/// As `iptables-save` lists it: `-A CHAIN args`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {}", self.chain)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// Everything init writes for one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleSet {
    pub(crate) family: Family,
    /// The contents of Outrigger's chains, in order.
    pub(crate) rules: Vec<Rule>,
    /// The jumps from the built-in chains into Outrigger's, added once.
    pub(crate) jumps: Vec<Rule>,
}

/// The rules of a pod for `family`, from the options.
pub(crate) fn rule_set(init: &Init, family: Family) -> RuleSet {
    let mut rules = Vec::new();

    // The admin port first: probes from the kubelet must reach it even when the user
    // forgot it in --skip-inbound-ports.
    let mut skip_inbound = vec![super::PortRange::single(init.admin_port)];
    skip_inbound.extend(&init.skip_inbound_ports);
    dedup_keep_order(&mut skip_inbound);
    for ports in &skip_inbound {
        let ports = ports.to_string();
        rules.push(Rule::new(
            INBOUND,
            &["-p", "tcp", "--dport", &ports, "-j", "RETURN"],
        ));
    }
    rules.push(Rule::new(INBOUND, &["-p", "tcp", "-j", INBOUND_REDIRECT]));
    let inbound_port = init.inbound_port.to_string();
    rules.push(Rule::new(
        INBOUND_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &inbound_port],
    ));

    // The proxy's own connections go where it sent them; redirecting them would loop
    // them back into the proxy. First, so that the proxy reaches its own app by the pod's
    // IP directly too.
    let uid = init.proxy_uid.to_string();
    rules.push(Rule::new(
        OUTBOUND,
        &["-m", "owner", "--uid-owner", &uid, "-j", "RETURN"],
    ));
    // The app calling its own pod's IP leaves through lo and never passes PREROUTING:
    // send it through the inbound chain, so that it gets what a call from another pod
    // gets (and skipped inbound ports stay skipped).
    rules.push(Rule::new(
        OUTBOUND,
        &["-o", "lo", "!", "-d", family.loopback(), "-j", INBOUND],
    ));
    // The rest of loopback is the pod talking to itself (the app to 127.0.0.1:4140 in
    // explicit mode, to a local database): not the mesh's business.
    rules.push(Rule::new(OUTBOUND, &["-o", "lo", "-j", "RETURN"]));
    let mut skip_outbound = init.skip_outbound_ports.clone();
    dedup_keep_order(&mut skip_outbound);
    for ports in &skip_outbound {
        let ports = ports.to_string();
        rules.push(Rule::new(
            OUTBOUND,
            &["-p", "tcp", "--dport", &ports, "-j", "RETURN"],
        ));
    }
    let mut cidrs: Vec<_> = init
        .skip_outbound_cidrs
        .iter()
        .filter(|cidr| cidr.is_ipv6() == (family == Family::V6))
        .collect();
    dedup_keep_order(&mut cidrs);
    for cidr in cidrs {
        rules.push(Rule::new(
            OUTBOUND,
            &["-d", &cidr.to_string(), "-j", "RETURN"],
        ));
    }
    rules.push(Rule::new(OUTBOUND, &["-p", "tcp", "-j", OUTBOUND_REDIRECT]));
    let outbound_port = init.outbound_port.to_string();
    rules.push(Rule::new(
        OUTBOUND_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &outbound_port],
    ));

    RuleSet {
        family,
        rules,
        jumps: vec![
            Rule::new("PREROUTING", &["-p", "tcp", "-j", INBOUND]),
            Rule::new("OUTPUT", &["-p", "tcp", "-j", OUTBOUND]),
        ],
    }
}

/// Drops repeated entries, keeping the first of each: a port given twice is one rule.
fn dedup_keep_order<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(items.len());
    items.retain(|item| {
        let new = !seen.contains(item);
        if new {
            seen.push(item.clone());
        }
        new
    });
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn listing(args: &[&str], family: Family) -> Vec<String> {
        let init = Init::try_parse_from(std::iter::once("init").chain(args.iter().copied()))
            .expect("valid options");
        let set = rule_set(&init, family);
        set.rules
            .iter()
            .chain(&set.jumps)
            .map(Rule::to_string)
            .collect()
    }

    #[test]
    fn default_options() {
        assert_eq!(
            listing(&[], Family::V4),
            [
                "-A OUTRIGGER_INBOUND -p tcp --dport 4191 -j RETURN",
                "-A OUTRIGGER_INBOUND -p tcp -j OUTRIGGER_INBOUND_REDIRECT",
                "-A OUTRIGGER_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4143",
                "-A OUTRIGGER_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
                "-A OUTRIGGER_OUTBOUND -o lo ! -d 127.0.0.0/8 -j OUTRIGGER_INBOUND",
                "-A OUTRIGGER_OUTBOUND -o lo -j RETURN",
                "-A OUTRIGGER_OUTBOUND -p tcp -j OUTRIGGER_OUTBOUND_REDIRECT",
                "-A OUTRIGGER_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4140",
                "-A PREROUTING -p tcp -j OUTRIGGER_INBOUND",
                "-A OUTPUT -p tcp -j OUTRIGGER_OUTBOUND",
            ]
        );
    }

    #[test]
    fn ipv6_differs_only_in_loopback() {
        let v4 = listing(&[], Family::V4);
        let v6 = listing(&[], Family::V6);
        let differ: Vec<_> = v4.iter().zip(&v6).filter(|(a, b)| a != b).collect();
        assert_eq!(differ.len(), 1);
        assert!(differ[0].1.contains("! -d ::1/128"), "{:?}", differ[0]);
    }

    #[test]
    fn ports_uid_and_skips() {
        let rules = listing(
            &[
                "--inbound-port=5143",
                "--outbound-port=5140",
                "--proxy-uid=999",
                "--skip-inbound-ports=22,4191,8000-8100,22",
                "--skip-outbound-ports=5432",
                "--skip-outbound-cidrs=10.96.0.0/12,fd00::/8,169.254.169.254",
            ],
            Family::V4,
        );
        let has = |line: &str| rules.iter().filter(|r| *r == line).count();
        // The admin port once, although given again; 22 once, although given twice.
        assert_eq!(has("-A OUTRIGGER_INBOUND -p tcp --dport 4191 -j RETURN"), 1);
        assert_eq!(has("-A OUTRIGGER_INBOUND -p tcp --dport 22 -j RETURN"), 1);
        assert_eq!(
            has("-A OUTRIGGER_INBOUND -p tcp --dport 8000:8100 -j RETURN"),
            1
        );
        assert_eq!(
            has("-A OUTRIGGER_OUTBOUND -p tcp --dport 5432 -j RETURN"),
            1
        );
        assert_eq!(has("-A OUTRIGGER_OUTBOUND -d 10.96.0.0/12 -j RETURN"), 1);
        assert_eq!(
            has("-A OUTRIGGER_OUTBOUND -d 169.254.169.254/32 -j RETURN"),
            1
        );
        assert_eq!(
            has("-A OUTRIGGER_OUTBOUND -m owner --uid-owner 999 -j RETURN"),
            1
        );
        assert_eq!(
            has("-A OUTRIGGER_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 5143"),
            1
        );
        assert_eq!(
            has("-A OUTRIGGER_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 5140"),
            1
        );
        assert!(!rules.iter().any(|r| r.contains("fd00::")), "{rules:?}");
        // Every skip comes before the redirect that it is an exception to.
        let at = |line: &str| rules.iter().position(|r| r == line).unwrap();
        assert!(
            at("-A OUTRIGGER_OUTBOUND -d 10.96.0.0/12 -j RETURN")
                < at("-A OUTRIGGER_OUTBOUND -p tcp -j OUTRIGGER_OUTBOUND_REDIRECT")
        );
        assert!(
            at("-A OUTRIGGER_INBOUND -p tcp --dport 8000:8100 -j RETURN")
                < at("-A OUTRIGGER_INBOUND -p tcp -j OUTRIGGER_INBOUND_REDIRECT")
        );

        let v6 = listing(&["--skip-outbound-cidrs=10.96.0.0/12,fd00::/8"], Family::V6);
        assert!(v6.contains(&"-A OUTRIGGER_OUTBOUND -d fd00::/8 -j RETURN".to_string()));
        assert!(!v6.iter().any(|r| r.contains("10.96")), "{v6:?}");
    }

    #[test]
    fn every_rule_stays_in_outrigger_chains() {
        let init = Init::try_parse_from(["init"]).unwrap();
        let set = rule_set(&init, Family::V4);
        assert!(set.rules.iter().all(|r| CHAINS.contains(&r.chain.as_str())));
        assert!(
            set.jumps
                .iter()
                .all(|j| CHAINS.contains(&j.target().unwrap()))
        );
    }
}
