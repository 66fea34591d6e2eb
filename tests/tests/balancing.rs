//! Load balancing across a service's instances, as the caller's sidecar does it: an even
//! spread with round-robin and with the default (power of two choices over peak-EWMA),
//! and a slowed-down instance getting clearly less than its share with the default.
//! Assertions are on request counts, with wide margins, never on times.

use std::time::Duration;

use outrigger_tests::{Cluster, Http1, PAYMENTS};

/// Requests per test, and how many are in flight at once: enough that the balancer has a
/// real choice (costs include requests in flight), few enough for a shared machine.
const REQUESTS: usize = 300;
const CONCURRENCY: usize = 10;

/// Sends [`REQUESTS`] requests, [`CONCURRENCY`] at a time, each worker on one kept-alive
/// connection; every one must succeed. Returns how many each instance received.
async fn spread(cluster: &Cluster) -> Vec<usize> {
    let before = cluster.received();
    let outbound = cluster.orders.outbound;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Http1::connect(outbound).await.expect("connect");
                for _ in 0..REQUESTS / CONCURRENCY {
                    let reply = client.get(PAYMENTS, "/", &[]).await;
                    let reply = reply.expect("an answer");
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let counts: Vec<usize> = cluster
        .received()
        .into_iter()
        .zip(before)
        .map(|(now, before)| now - before)
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), REQUESTS, "{counts:?}");
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_instance_its_third() {
    let cluster = Cluster::start(3, Some("  loadBalancer: round-robin\n")).await;
    let counts = spread(&cluster).await;
    for count in &counts {
        assert!((90..=110).contains(count), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_spreads_equal_instances_fairly() {
    let cluster = Cluster::start(3, None).await;
    // The same work on each instance, long enough that a scheduling hiccup of the shared
    // machine does not make one look much slower than the others.
    for app in &cluster.apps {
        app.set_delay(Duration::from_millis(10));
    }
    let counts = spread(&cluster).await;
    for count in &counts {
        assert!(*count >= REQUESTS / 6, "each gets a fair share: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_sends_a_slow_instance_clearly_less() {
    let cluster = Cluster::start(3, None).await;
    cluster.apps[2].set_delay(Duration::from_millis(50));
    let counts = spread(&cluster).await;
    assert!(
        counts[2] * 6 < REQUESTS,
        "the slow instance gets clearly less than its third: {counts:?}"
    );
    assert!(
        counts[0] > counts[2] * 2 && counts[1] > counts[2] * 2,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ignores_speed() {
    // The contrast that shows the test above measures the balancer, not the setup.
    let cluster = Cluster::start(3, Some("  loadBalancer: round-robin\n")).await;
    cluster.apps[2].set_delay(Duration::from_millis(50));
    let counts = spread(&cluster).await;
    assert!((90..=110).contains(&counts[2]), "{counts:?}");
}
