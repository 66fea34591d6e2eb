//! The dashboard in a real headless Chromium (DevTools protocol): against a running mesh
//! (three services, two callers, one failing service whose breaker opens), the page
//! loads with no console error, shows the services, edges, charts, breakers and proxies,
//! and its numbers follow the traffic while it stays open. It leaves a screenshot in
//! `target/artifacts/` (or `$OUTRIGGER_ARTIFACTS`).

use std::path::PathBuf;

use outrigger_tests::components::require;
use outrigger_tests::{
    Browser, Call, EchoApp, Fault, Mesh, START_LIMIT, eventually, free_port, loopback, send_many,
};

fn artifacts() -> PathBuf {
    std::env::var_os("OUTRIGGER_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts"))
}

/// The text of every row of a table, as the page shows it.
const ROWS: &str =
    r#"(sel) => [...document.querySelectorAll(sel + " tbody tr")].map((tr) => tr.innerText)"#;

#[tokio::test]
async fn dashboard_shows_the_mesh_live() {
    let Some(chromium) = require("chromium", "dashboard_shows_the_mesh_live") else {
        return;
    };
    let payments_app = EchoApp::start("payments").await;
    let inventory_app = EchoApp::start("inventory").await;
    inventory_app.set_delay(std::time::Duration::from_millis(150));
    let search_app = EchoApp::start("search").await;
    search_app.set_fault(Fault::status(503));
    let ports = [free_port(), free_port(), free_port()];
    // Windows of 1 s: the charts get several points while the test runs.
    let mut mesh = Mesh::new().control_plane_args(&["--stats-window", "1s"]);
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(ports[0])]);
    mesh.add_service("shop", "inventory", "shop/inventory", &[loopback(ports[1])]);
    mesh.add_service("shop", "search", "shop/search", &[loopback(ports[2])]);
    mesh.traffic_policy(
        "shop",
        "search",
        "  circuitBreaker: {consecutiveFailures: 3, baseEjection: 5m}\n",
    );
    mesh.start_control_plane().await;
    let often = [("OUTRIGGER_STATS_INTERVAL", "200ms")];
    let sidecars = [
        mesh.spawn_sidecar(
            "payments",
            "shop/payments",
            Some(payments_app.addr),
            ports[0],
            &often,
        ),
        mesh.spawn_sidecar(
            "inventory",
            "shop/inventory",
            Some(inventory_app.addr),
            ports[1],
            &often,
        ),
        mesh.spawn_sidecar(
            "search",
            "shop/search",
            Some(search_app.addr),
            ports[2],
            &often,
        ),
    ];
    let orders = mesh.spawn_sidecar("orders", "shop/orders", None, free_port(), &often);
    let billing = mesh.spawn_sidecar("billing", "shop/billing", None, free_port(), &often);
    for sidecar in sidecars.iter().chain([&orders, &billing]) {
        sidecar.wait_ready().await;
    }
    let payments = Call::get("payments.shop", "/pay").header("x-fault-delay-ms", "1");
    let from_billing = payments.clone().header("x-fault-delay-ms", "4");
    let inventory = Call::get("inventory.shop", "/stock");
    let search = Call::get("search.shop", "/find");
    tokio::join!(
        send_many(orders.outbound, &payments, 120, 4),
        send_many(billing.outbound, &from_billing, 60, 2),
        send_many(orders.outbound, &inventory, 12, 4),
        send_many(orders.outbound, &search, 10, 1),
    );
    eventually("the control plane has every edge", START_LIMIT, || async {
        let stats = mesh.stats("1m").await;
        stats.edges.len() == 4
            && stats
                .services
                .iter()
                .map(|s| s.golden.requests)
                .sum::<u64>()
                == 202
    })
    .await;

    let mut browser = Browser::launch(&chromium, 1440, 900).await;
    browser.open(&format!("http://{}/", mesh.cp_http)).await;
    browser
        .wait_until(
            "three services",
            "document.querySelectorAll('#services tbody tr').length === 3",
        )
        .await;
    let services = browser.eval(&format!("({ROWS})('#services')")).await;
    let text = services.to_string();
    for name in ["payments.shop", "inventory.shop", "search.shop"] {
        assert!(text.contains(name), "{text}");
    }
    let edges = browser
        .eval(&format!("({ROWS})('#edges')"))
        .await
        .to_string();
    for edge in [
        "shop/orders\\tpayments.shop",
        "shop/billing\\tpayments.shop",
        "shop/orders\\tsearch.shop",
    ] {
        assert!(edges.contains(edge), "{edge} in {edges}");
    }
    // The failing service and the slow one stand out; the healthy one does not.
    let class = |service: &str| {
        format!("document.querySelector('#services tr[data-service=\"{service}\"]').className")
    };
    assert_eq!(browser.eval(&class("search.shop")).await, "bad");
    assert_eq!(browser.eval(&class("inventory.shop")).await, "warn");
    assert_eq!(browser.eval(&class("payments.shop")).await, "ok");
    // The topology draws one line per edge; a chart per service; search's breaker is open.
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#topology path').length")
            .await,
        4
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#charts .chart svg').length")
            .await,
        3
    );
    browser
        .wait_until(
            "an open breaker",
            "[...document.querySelectorAll('#resilience .state.open')].length === 1",
        )
        .await;
    let updated = browser
        .eval("document.getElementById('updated').textContent")
        .await;
    assert!(
        updated.to_string().contains("updated"),
        "{updated} {:?}",
        browser.problems()
    );
    let proxies = browser
        .eval(&format!("({ROWS})('#proxies')"))
        .await
        .to_string();
    assert_eq!(proxies.matches("current").count(), 5, "{proxies}");
    assert!(
        browser
            .eval("document.getElementById('mesh-state').textContent")
            .await
            .to_string()
            .contains("converged"),
    );

    // Traffic flows while the page stays open: its numbers follow.
    let before =
        "document.querySelector('#services tr[data-service=\"payments.shop\"]').dataset.requests";
    assert_eq!(browser.eval(before).await, "180");
    send_many(orders.outbound, &payments, 40, 4).await;
    browser
        .wait_until("the new requests", &format!("{before} === '220'"))
        .await;

    browser.screenshot(&artifacts().join("dashboard.png")).await;
    assert_eq!(
        browser.problems(),
        &[] as &[String],
        "the page logged problems"
    );
}
