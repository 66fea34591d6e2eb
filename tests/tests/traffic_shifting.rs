//! Traffic shifting through real sidecars: a TrafficPolicy's `backends` split a service's
//! requests by weight, per request; a weight change applies live with no failed
//! request; a route can send matching requests (by header) elsewhere; a backend whose
//! every endpoint is ejected gives its share to the others. Each request's answer says
//! which app served it.

use std::sync::Arc;

use outrigger_tests::{
    EchoApp, Fault, Http1, Mesh, START_LIMIT, Sidecar, Traffic, eventually, free_port, loopback,
};

/// payments (app "v1") and payments-v2 (app "v2"), each behind a sidecar, and an orders
/// sidecar to call them through.
struct Shop {
    mesh: Mesh,
    orders: Sidecar,
    v1: Arc<EchoApp>,
    v2: Arc<EchoApp>,
    _sidecars: Vec<Sidecar>,
}

impl Shop {
    async fn start(payments_spec: &str, v2_spec: Option<&str>) -> Shop {
        let (v1, v2) = (EchoApp::start("v1").await, EchoApp::start("v2").await);
        let (p1, p2) = (free_port(), free_port());
        let mut mesh = Mesh::new();
        mesh.add_service("shop", "payments", "shop/payments", &[loopback(p1)]);
        mesh.add_service("shop", "payments-v2", "shop/payments-v2", &[loopback(p2)]);
        mesh.traffic_policy("shop", "payments", payments_spec);
        if let Some(spec) = v2_spec {
            mesh.traffic_policy("shop", "payments-v2", spec);
        }
        mesh.start_control_plane().await;
        let sidecars = vec![
            mesh.sidecar("payments", "shop/payments", Some(v1.addr), p1)
                .await,
            mesh.sidecar("payments-v2", "shop/payments-v2", Some(v2.addr), p2)
                .await,
        ];
        let orders = mesh
            .sidecar("orders", "shop/orders", None, free_port())
            .await;
        Shop {
            mesh,
            orders,
            v1,
            v2,
            _sidecars: sidecars,
        }
    }

    /// Sends `n` requests to payments on one connection; returns how many v2 served.
    async fn served_by_v2(&self, n: usize, headers: &[(&str, &str)]) -> usize {
        let mut conn = Http1::connect(self.orders.outbound).await.expect("connect");
        let mut v2 = 0;
        for _ in 0..n {
            let reply = conn
                .get("payments.shop", "/", headers)
                .await
                .expect("an answer");
            assert_eq!(reply.status, 200, "{}", reply.body);
            match reply.json()["app"].as_str() {
                Some("v2") => v2 += 1,
                Some("v1") => {}
                other => panic!("served by {other:?}"),
            }
        }
        v2
    }

    /// Rewrites payments' TrafficPolicy and waits until orders has applied it.
    async fn set_policy(&self, spec: &str) {
        let before = self.orders.config().await["config_version"].as_u64();
        self.mesh.traffic_policy("shop", "payments", spec);
        let orders = &self.orders;
        eventually(
            "orders applies the new weights",
            START_LIMIT,
            || async move { orders.config().await["config_version"].as_u64() > before },
        )
        .await;
    }
}

fn weights(v1: u32, v2: u32) -> String {
    format!(
        "  backends:\n    - {{service: payments, weight: {v1}}}\n    - {{service: payments-v2, weight: {v2}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_lands_within_statistical_tolerance() {
    let shop = Shop::start(&weights(90, 10), None).await;
    let n = 2_000;
    let v2 = shop.served_by_v2(n, &[]).await;
    // Each request goes to v2 with p = 0.1, independently: a binomial count. Five
    // standard deviations either side of the mean fails a correct proxy about once in
    // 1.7 million runs, and a 85/15 or 95/5 split almost always.
    let (n, p) = (n as f64, 0.1);
    let (mean, sd) = (n * p, (n * p * (1.0 - p)).sqrt());
    let (low, high) = (mean - 5.0 * sd, mean + 5.0 * sd);
    assert!(
        (low..=high).contains(&(v2 as f64)),
        "{v2} of {n} to v2, expected {mean} ± {:.0}",
        5.0 * sd
    );
    assert_eq!(shop.v1.requests() + shop.v2.requests(), 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_change_live_with_no_failed_request() {
    let shop = Shop::start(&weights(100, 0), None).await;
    assert_eq!(shop.served_by_v2(20, &[]).await, 0, "v2 takes nothing at 0");
    let traffic = Traffic::start(shop.orders.outbound, "payments.shop", 100_000);
    for (v1, v2) in [(90, 10), (50, 50), (0, 100)] {
        shop.set_policy(&weights(v1, v2)).await;
        let sent = traffic.sent();
        eventually("traffic flows at the new weights", START_LIMIT, || async {
            traffic.sent() > sent + 50
        })
        .await;
    }
    traffic.expect_no_failures().await;
    assert_eq!(shop.served_by_v2(50, &[]).await, 50, "all to v2 at 0/100");
    assert!(shop.v1.requests() > 0 && shop.v2.requests() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_sends_matching_requests_to_its_own_backends() {
    let spec = "  routes:\n    - match: {headers: {x-canary: \"true\"}}\n      backends: [{service: payments-v2, weight: 100}]\n";
    let shop = Shop::start(spec, None).await;
    assert_eq!(shop.served_by_v2(20, &[("x-canary", "true")]).await, 20);
    assert_eq!(
        shop.served_by_v2(20, &[]).await,
        0,
        "the rest stay on payments"
    );
    assert_eq!(shop.served_by_v2(20, &[("x-canary", "no")]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_every_endpoint_ejected_gives_its_share_away() {
    // v2's own policy: one failure ejects its only endpoint, for longer than the test.
    let v2_breaker = "  circuitBreaker: {consecutiveFailures: 1, maxEjectedPercent: 100, baseEjection: 5m, maxEjection: 10m}\n";
    let shop = Shop::start(&weights(50, 50), Some(v2_breaker)).await;
    shop.v2.set_fault(Fault::status(503));
    // Until v2's breaker opens, some requests reach it and fail (no retry on 503 by
    // default): that is the bounded cost of detection.
    let orders = &shop.orders;
    eventually("v2's endpoint is ejected", START_LIMIT, || async {
        let _ = outrigger_tests::get_h1(orders.outbound, "payments.shop", "/").await;
        orders.circuits().await["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["service"] == "payments-v2.shop"
                    && s["endpoints"][0]["state"].as_str() == Some("open")
            })
    })
    .await;
    let reached_v2 = shop.v2.requests();
    let mut conn = Http1::connect(shop.orders.outbound).await.expect("connect");
    for _ in 0..100 {
        let reply = conn
            .get("payments.shop", "/", &[])
            .await
            .expect("an answer");
        assert_eq!(reply.status, 200, "v1 takes every request: {}", reply.body);
    }
    assert_eq!(
        shop.v2.requests(),
        reached_v2,
        "nothing more was sent to v2"
    );
}
