//! The open-file limit. Every API connection is a file descriptor, and the soft limit is
//! often 1,024 (systemd's default, and many shells'), which 1,000 watching proxies
//! would exhaust; the hard limit is usually far higher. So the control plane raises its
//! soft limit to the hard one at start, as servers commonly do, and says so.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft limit before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (`None` is unlimited).
pub fn raise_to_hard_limit() -> std::io::Result<Raised> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if before == limit.maximum {
        return Ok(Raised {
            before,
            after: before,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(Raised {
        before,
        after: getrlimit(Resource::Nofile).current,
    })
}

/// File descriptors the process may hold now (`None`: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let raised = raise_to_hard_limit().unwrap();
        assert_eq!(raised.after, getrlimit(Resource::Nofile).maximum);
        assert_eq!(raise_to_hard_limit().unwrap().before, raised.after);
        assert_eq!(soft_limit(), raised.after);
    }
}
