//! From the rules init wants and the table as it is, the iptables commands to run: to
//! write the rules (idempotently) or to remove them. Pure; [`super::run`] executes them.

use std::fmt;

use super::rules::{CHAINS, Family, Rule, RuleSet};
use super::table::NatTable;

/// One iptables command on the `nat` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) family: Family,
    /// The arguments after `-t nat`.
    pub(crate) args: Vec<String>,
}

impl Step {
    fn new(family: Family, op: &str, chain: &str, args: &[String]) -> Step {
        let mut all = vec![op.to_string(), chain.to_string()];
        all.extend_from_slice(args);
        Step { family, args: all }
    }

    /// Every argument given to the binary. `-w`: wait for the xtables lock rather than
    /// fail when another program (kube-proxy, a CNI plugin) changes rules at the time.
    pub(crate) fn argv(&self) -> Vec<&str> {
        let mut argv = vec!["-w", "-t", "nat"];
        argv.extend(self.args.iter().map(String::as_str));
        argv
    }
}

/// The command as it could be pasted into a shell.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.family.iptables())?;
        for arg in self.argv() {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:!=,".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Writes `set` over whatever init wrote before: Outrigger's chains are created or
/// flushed, then filled, then each jump is added unless one is there already (a second
/// copy, left by hand or by a crash, is removed). Jumps come last, so that traffic only
/// enters chains that are complete.
pub(crate) fn apply(set: &RuleSet, current: &NatTable) -> Vec<Step> {
    let family = set.family;
    let mut steps = Vec::new();
    for chain in CHAINS {
        let op = if current.has_chain(chain) { "-F" } else { "-N" };
        steps.push(Step::new(family, op, chain, &[]));
    }
    for rule in &set.rules {
        steps.push(Step::new(family, "-A", &rule.chain, &rule.args));
    }
    for jump in &set.jumps {
        let existing: Vec<&Rule> = current
            .jumps_in()
            .filter(|r| r.chain == jump.chain && r.target() == jump.target())
            .collect();
        match existing.split_first() {
            None => steps.push(Step::new(family, "-A", &jump.chain, &jump.args)),
            Some((_kept, extra)) => {
                for rule in extra {
                    steps.push(Step::new(family, "-D", &rule.chain, &rule.args));
                }
            }
        }
    }
    steps
}

/// Removes every jump into Outrigger's chains, then the chains themselves; nothing
/// else. On a table where init never ran, there is nothing to do.
pub(crate) fn cleanup(family: Family, current: &NatTable) -> Vec<Step> {
    let mut steps: Vec<Step> = current
        .jumps_in()
        .map(|rule| Step::new(family, "-D", &rule.chain, &rule.args))
        .collect();
    let ours: Vec<&str> = CHAINS
        .into_iter()
        .filter(|c| current.has_chain(c))
        .collect();
    // All flushed before any is deleted: a chain still referenced cannot be deleted,
    // and Outrigger's chains jump into each other.
    for chain in &ours {
        steps.push(Step::new(family, "-F", chain, &[]));
    }
    for chain in &ours {
        steps.push(Step::new(family, "-X", chain, &[]));
    }
    steps
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::options::Init;
    use super::super::rules::rule_set;
    use super::*;

    const EMPTY: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE
-A OUTPUT -d 10.9.9.9/32 -p tcp -j DNAT --to-destination 10.1.1.1:80
COMMIT
";

    fn set(args: &[&str]) -> RuleSet {
        let init = Init::try_parse_from(std::iter::once("init").chain(args.iter().copied()))
            .expect("valid options");
        rule_set(&init, Family::V4)
    }

    /// What the kernel would hold after `steps`, modelled on the table; panics where
    /// iptables would refuse, so that a plan that cannot run fails here.
    fn simulate(mut table: NatTable, steps: &[Step]) -> NatTable {
        for step in steps {
            let (op, chain, args) = (&step.args[0], step.args[1].clone(), &step.args[2..]);
            match op.as_str() {
                "-N" => {
                    assert!(!table.has_chain(&chain), "{step}: exists");
                    table.chains.push(chain);
                }
                "-F" => table.rules.retain(|r| r.chain != chain),
                "-X" => {
                    assert!(
                        table.rules.iter().all(|r| r.chain != chain),
                        "{step}: not empty"
                    );
                    assert!(
                        table.rules.iter().all(|r| r.target() != Some(&chain)),
                        "{step}: in use"
                    );
                    table.chains.retain(|c| *c != chain);
                }
                "-A" => {
                    assert!(table.has_chain(&chain), "{step}: no chain");
                    let rule = Rule {
                        chain,
                        args: args.to_vec(),
                    };
                    if let Some(target) = rule.target() {
                        let builtin =
                            ["RETURN", "REDIRECT", "MASQUERADE", "DNAT"].contains(&target);
                        assert!(builtin || table.has_chain(target), "{step}: no target");
                    }
                    table.rules.push(rule);
                }
                "-D" => {
                    let at = table
                        .rules
                        .iter()
                        .position(|r| r.chain == chain && r.args == args)
                        .unwrap_or_else(|| panic!("{step}: no such rule"));
                    table.rules.remove(at);
                }
                other => panic!("unexpected {other}"),
            }
        }
        table
    }

    /// The table with its chains sorted: the kernel keeps rules in order within a chain,
    /// but the order of chains in a listing says nothing.
    fn by_chain(mut table: NatTable) -> NatTable {
        table.chains.sort();
        table.rules.sort_by(|a, b| a.chain.cmp(&b.chain));
        table
    }

    #[test]
    fn fresh_table_gets_chains_rules_then_jumps() {
        let steps = apply(&set(&[]), &NatTable::parse(EMPTY));
        let lines: Vec<String> = steps.iter().map(Step::to_string).collect();
        assert_eq!(lines[0], "iptables -w -t nat -N OUTRIGGER_INBOUND_REDIRECT");
        assert_eq!(lines.iter().filter(|l| l.contains(" -N ")).count(), 4);
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "iptables -w -t nat -A PREROUTING -p tcp -j OUTRIGGER_INBOUND",
                "iptables -w -t nat -A OUTPUT -p tcp -j OUTRIGGER_OUTBOUND",
            ]
        );
        let own_ip =
            "iptables -w -t nat -A OUTRIGGER_OUTBOUND -o lo ! -d 127.0.0.0/8 -j OUTRIGGER_INBOUND";
        assert!(lines.iter().any(|l| l == own_ip), "{lines:#?}");
    }

    #[test]
    fn second_run_leaves_one_set() {
        let set = set(&["--skip-outbound-ports=22"]);
        let once = simulate(
            NatTable::parse(EMPTY),
            &apply(&set, &NatTable::parse(EMPTY)),
        );
        let steps = apply(&set, &once);
        assert!(
            steps.iter().all(|s| s.args[0] != "-N"),
            "chains exist: flushed"
        );
        let twice = simulate(once.clone(), &steps);
        assert_eq!(by_chain(twice.clone()), by_chain(once));
        assert_eq!(twice.jumps_in().count(), 2);
    }

    #[test]
    fn a_duplicate_jump_is_removed() {
        let set = set(&[]);
        let mut table = simulate(
            NatTable::parse(EMPTY),
            &apply(&set, &NatTable::parse(EMPTY)),
        );
        table.rules.push(set.jumps[1].clone());
        let fixed = simulate(table.clone(), &apply(&set, &table));
        assert_eq!(fixed.jumps_in().count(), 2);
    }

    #[test]
    fn cleanup_restores_the_table() {
        let before = NatTable::parse(EMPTY);
        let set = set(&[
            "--skip-outbound-cidrs=10.0.0.0/8",
            "--skip-inbound-ports=22",
        ]);
        let after = simulate(before.clone(), &apply(&set, &before));
        let steps = cleanup(Family::V4, &after);
        assert_eq!(by_chain(simulate(after, &steps)), by_chain(before.clone()));
        // Nothing to remove where init never ran; others' rules are never touched.
        assert!(cleanup(Family::V4, &before).is_empty());
    }

    #[test]
    fn dry_run_cleanup_of_an_installed_set() {
        let set = set(&[]);
        let steps = cleanup(Family::V4, &NatTable::installed(&set));
        let lines: Vec<String> = steps.iter().map(Step::to_string).collect();
        assert_eq!(
            lines[0],
            "iptables -w -t nat -D PREROUTING -p tcp -j OUTRIGGER_INBOUND"
        );
        assert_eq!(
            lines[1],
            "iptables -w -t nat -D OUTPUT -p tcp -j OUTRIGGER_OUTBOUND"
        );
        assert_eq!(lines.iter().filter(|l| l.contains(" -X ")).count(), 4);
        assert_eq!(lines.len(), 10);
    }
}
