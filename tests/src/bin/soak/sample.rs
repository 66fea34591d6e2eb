//! What a sidecar holds at one moment: resident memory, open file descriptors and
//! threads (from /proc), and the tasks alive in its runtime (its admin `/metrics`).

use outrigger_tests::{Sidecar, procstat};

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    pub(crate) rss: u64,
    pub(crate) fds: u64,
    pub(crate) threads: u64,
    /// `outrigger_runtime_alive_tasks`; the scrape that reads it is one of them.
    pub(crate) tasks: u64,
}

/// The quantities a soak watches, each with how it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quantity {
    Rss,
    Fds,
    Threads,
    Tasks,
}

impl Quantity {
    pub(crate) const ALL: [Quantity; 4] = [
        Quantity::Rss,
        Quantity::Fds,
        Quantity::Threads,
        Quantity::Tasks,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Quantity::Rss => "RSS (MiB)",
            Quantity::Fds => "open fds",
            Quantity::Threads => "threads",
            Quantity::Tasks => "tokio tasks",
        }
    }

    pub(crate) fn of(self, sample: &Sample) -> f64 {
        match self {
            Quantity::Rss => sample.rss as f64 / (1024.0 * 1024.0),
            Quantity::Fds => sample.fds as f64,
            Quantity::Threads => sample.threads as f64,
            Quantity::Tasks => sample.tasks as f64,
        }
    }
}

pub(crate) async fn take(sidecar: &Sidecar) -> Sample {
    let pid = sidecar.process.pid();
    Sample {
        rss: procstat::rss(pid),
        fds: procstat::open_fds(pid),
        threads: procstat::threads(pid),
        tasks: sidecar
            .metric("outrigger_runtime_alive_tasks")
            .await
            .unwrap_or(0.0) as u64,
    }
}
