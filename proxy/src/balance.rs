//! Choosing one endpoint of a service per request, as its TrafficPolicy's `loadBalancer`
//! says: power of two choices over peak-EWMA cost (the default), power of two choices
//! over requests in flight (`least-request`), or `round-robin`.
//!
//! A pick reads atomics only: no lock, no allocation. Endpoints that are not usable (an
//! open circuit breaker) are skipped through [`Balanced::is_usable`].

mod load;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::time::Instant;

use outrigger_api::LoadBalancer;

pub(crate) use load::{InFlight, Load};

/// What a balancer needs to know about an endpoint.
pub(crate) trait Balanced {
    fn load(&self) -> &Load;

    /// Whether requests may go there now. The place for a circuit breaker's gate.
    fn is_usable(&self) -> bool {
        true
    }
}

impl<T: Balanced> Balanced for Arc<T> {
    fn load(&self) -> &Load {
        T::load(self)
    }
    fn is_usable(&self) -> bool {
        T::is_usable(self)
    }
}

/// The balancer of one service (one per target; its endpoints are passed to each pick).
pub(crate) struct Balancer {
    policy: LoadBalancer,
    /// Round-robin position.
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(policy: LoadBalancer) -> Self {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoint for the next request, or `None` if none is usable.
    pub(crate) fn pick<'a, E: Balanced>(
        &self,
        endpoints: &'a [E],
        rng: &mut fastrand::Rng,
        now: Instant,
    ) -> Option<&'a E> {
        match self.policy {
            LoadBalancer::PeakEwma => p2c(endpoints, rng, |e| e.load().cost(now)),
            LoadBalancer::LeastRequest => p2c(endpoints, rng, |e| f64::from(e.load().in_flight())),
            LoadBalancer::RoundRobin => {
                let start = self.next.fetch_add(1, Relaxed);
                first_usable(endpoints, start)
            }
        }
    }
}

/// Power of two choices: two distinct endpoints at random, the cheaper one wins. Cheap
/// and, unlike "the cheapest of all", it does not send every new request to the same
/// endpoint while the costs it sees are a moment old.
fn p2c<'a, E: Balanced>(
    endpoints: &'a [E],
    rng: &mut fastrand::Rng,
    cost: impl Fn(&E) -> f64,
) -> Option<&'a E> {
    let n = endpoints.len();
    if n < 2 {
        return endpoints.first().filter(|e| e.is_usable());
    }
    let a = rng.usize(..n);
    let mut b = rng.usize(..n - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (&endpoints[a], &endpoints[b]);
    match (a.is_usable(), b.is_usable()) {
        (true, true) => Some(if cost(b) < cost(a) { b } else { a }),
        (true, false) => Some(a),
        (false, true) => Some(b),
        // Both unusable: rare (breakers open), so a scan is fine here.
        (false, false) => endpoints
            .iter()
            .filter(|e| e.is_usable())
            .min_by(|x, y| cost(x).total_cmp(&cost(y))),
    }
}

/// The first usable endpoint at or after position `start` (wrapping).
fn first_usable<E: Balanced>(endpoints: &[E], start: usize) -> Option<&E> {
    let n = endpoints.len();
    (0..n)
        .map(|i| &endpoints[(start.wrapping_add(i)) % n])
        .find(|e| e.is_usable())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Fake {
        load: Load,
        usable: bool,
    }

    impl Balanced for Fake {
        fn load(&self) -> &Load {
            &self.load
        }
        fn is_usable(&self) -> bool {
            self.usable
        }
    }

    fn fakes(n: usize, t0: Instant) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                load: Load::new(t0),
                usable: true,
            })
            .collect()
    }

    /// Teaches an endpoint that it answers in `rtt`.
    fn answers_in(fake: &Fake, at: Instant, rtt: Duration) {
        fake.load.start(at).finish(true, at + rtt);
    }

    fn index_of(endpoints: &[Fake], picked: &Fake) -> usize {
        endpoints
            .iter()
            .position(|e| std::ptr::eq(e, picked))
            .expect("picked one of them")
    }

    /// How many of `picks` picks each endpoint gets, each pick held in flight.
    fn spread(balancer: &Balancer, endpoints: &[Fake], picks: usize, now: Instant) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0; endpoints.len()];
        let mut held = Vec::new();
        for _ in 0..picks {
            let picked = balancer.pick(endpoints, &mut rng, now).expect("a pick");
            counts[index_of(endpoints, picked)] += 1;
            held.push(picked.load.start(now));
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns_and_skips_unusable_endpoints() {
        let t0 = Instant::now();
        let mut endpoints = fakes(3, t0);
        let balancer = Balancer::new(LoadBalancer::RoundRobin);
        let mut rng = fastrand::Rng::with_seed(1);
        let order: Vec<usize> = (0..6)
            .map(|_| index_of(&endpoints, balancer.pick(&endpoints, &mut rng, t0).unwrap()))
            .collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);

        endpoints[1].usable = false;
        let order: Vec<usize> = (0..4)
            .map(|_| index_of(&endpoints, balancer.pick(&endpoints, &mut rng, t0).unwrap()))
            .collect();
        assert_eq!(order, [0, 2, 2, 0]);
    }

    #[test]
    fn p2c_ewma_prefers_the_faster_endpoint_but_spreads_load() {
        let t0 = Instant::now();
        let endpoints = fakes(3, t0);
        answers_in(&endpoints[0], t0, Duration::from_millis(2));
        answers_in(&endpoints[1], t0, Duration::from_millis(2));
        answers_in(&endpoints[2], t0, Duration::from_millis(40));
        let now = t0 + Duration::from_millis(50);
        let balancer = Balancer::new(LoadBalancer::PeakEwma);
        let counts = spread(&balancer, &endpoints, 30, now);
        assert!(counts[2] <= 2, "the slow one is avoided: {counts:?}");
        assert!(
            counts[0] >= 10 && counts[1] >= 10,
            "the fast ones share: {counts:?}"
        );
    }

    #[test]
    fn p2c_ewma_with_equal_endpoints_is_fair() {
        let t0 = Instant::now();
        let endpoints = fakes(3, t0);
        for e in &endpoints {
            answers_in(e, t0, Duration::from_millis(5));
        }
        let balancer = Balancer::new(LoadBalancer::PeakEwma);
        let counts = spread(&balancer, &endpoints, 60, t0 + Duration::from_millis(5));
        for count in &counts {
            assert!((17..=23).contains(count), "{counts:?}");
        }
    }

    #[test]
    fn a_new_endpoint_gets_a_request_at_once() {
        let t0 = Instant::now();
        let endpoints = fakes(2, t0);
        answers_in(&endpoints[0], t0, Duration::from_millis(1));
        let balancer = Balancer::new(LoadBalancer::PeakEwma);
        let mut rng = fastrand::Rng::with_seed(3);
        let picked = balancer.pick(&endpoints, &mut rng, t0 + Duration::from_millis(1));
        assert_eq!(index_of(&endpoints, picked.unwrap()), 1);
    }

    #[test]
    fn least_request_follows_requests_in_flight() {
        let t0 = Instant::now();
        let endpoints = fakes(2, t0);
        let balancer = Balancer::new(LoadBalancer::LeastRequest);
        let _busy: Vec<_> = (0..3).map(|_| endpoints[0].load.start(t0)).collect();
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..3 {
            let picked = balancer.pick(&endpoints, &mut rng, t0).unwrap();
            assert_eq!(index_of(&endpoints, picked), 1);
        }
    }

    #[test]
    fn unusable_endpoints_are_skipped_and_none_usable_is_none() {
        let t0 = Instant::now();
        let mut endpoints = fakes(3, t0);
        endpoints[0].usable = false;
        endpoints[2].usable = false;
        let mut rng = fastrand::Rng::with_seed(9);
        for policy in [LoadBalancer::PeakEwma, LoadBalancer::LeastRequest] {
            let balancer = Balancer::new(policy);
            for _ in 0..20 {
                let picked = balancer.pick(&endpoints, &mut rng, t0).unwrap();
                assert_eq!(index_of(&endpoints, picked), 1);
            }
        }
        endpoints[1].usable = false;
        for policy in [
            LoadBalancer::PeakEwma,
            LoadBalancer::LeastRequest,
            LoadBalancer::RoundRobin,
        ] {
            assert!(
                Balancer::new(policy)
                    .pick(&endpoints, &mut rng, t0)
                    .is_none()
            );
        }
        assert!(
            Balancer::new(LoadBalancer::PeakEwma)
                .pick::<Fake>(&[], &mut rng, t0)
                .is_none()
        );
    }
}
