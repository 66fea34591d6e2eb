//! gRPC through both sidecars with a real client and server (tonic and the standard
//! health service): unary and streaming calls pass intact; failures the mesh makes
//! arrive as gRPC statuses (docs/grpc.md); an UNAVAILABLE answer is retried for a
//! `protocol: grpc` service; the caller's `grpc-timeout` reaches the server, shortened.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrigger_tests::{Mesh, Sidecar, free_port, loopback};
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A health service that answers UNAVAILABLE to the first `fail_first` checks, then
/// SERVING, and remembers the `grpc-timeout` each check arrived with.
#[derive(Default)]
struct Scripted {
    fail_first: usize,
    checks: AtomicUsize,
    /// Watches whose stream sends one update, then ends UNAVAILABLE (in its trailers).
    break_first_watches: usize,
    /// Checks never answer.
    hang: bool,
    watches: AtomicUsize,
    timeouts: Mutex<Vec<Option<String>>>,
}

/// What the server holds: the script, shared with the test.
struct App(Arc<Scripted>);

#[tonic::async_trait]
impl Health for App {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let script = &self.0;
        script.timeouts.lock().unwrap().push(timeout);
        if script.hang {
            std::future::pending::<()>().await;
        }
        let n = script.checks.fetch_add(1, Ordering::SeqCst);
        if n < script.fail_first {
            return Err(Status::unavailable("warming up"));
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if self.0.watches.fetch_add(1, Ordering::SeqCst) < self.0.break_first_watches {
            let broken = [
                Ok(HealthCheckResponse {
                    status: ServingStatus::NotServing as i32,
                }),
                Err(Status::unavailable("restarting")),
            ];
            return Ok(Response::new(Box::pin(tokio_stream::iter(broken))));
        }
        let updates = [ServingStatus::NotServing, ServingStatus::Serving].map(|status| {
            Ok(HealthCheckResponse {
                status: status as i32,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(updates))))
    }
}

/// The gRPC server on loopback.
async fn grpc_app(service: Arc<Scripted>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        Server::builder()
            .add_service(HealthServer::new(App(service)))
            .serve_with_incoming(incoming),
    );
    addr
}

/// A client that dials `sidecar`'s outbound port and names `service` as its authority,
/// as an app configured with `payments.shop` and the mesh's outbound port would.
async fn client(sidecar: &Sidecar, service: &str) -> HealthClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", sidecar.outbound))
        .unwrap()
        .origin(format!("http://{service}").parse().unwrap())
        .connect()
        .await
        .expect("connect to the outbound port");
    HealthClient::new(channel)
}

/// orders → payments (protocol: grpc), payments' app being `service`; `server_policy`
/// is the YAML under payments' ServerPolicy spec, if any.
async fn mesh(service: Arc<Scripted>, server_policy: Option<&str>) -> (Mesh, Sidecar, Sidecar) {
    mesh_with(service, server_policy, |_| {}).await
}

/// [`mesh`], with more policy written by `more` before the control plane starts.
async fn mesh_with(
    service: Arc<Scripted>,
    server_policy: Option<&str>,
    more: impl FnOnce(&Mesh),
) -> (Mesh, Sidecar, Sidecar) {
    let app = grpc_app(service).await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.write_policy(
        "payments.yaml",
        &format!(
            "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: payments, namespace: shop}}\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/payments\n  protocol: grpc\n  endpoints:\n    - address: {}\n",
            loopback(port)
        ),
    );
    if let Some(spec) = server_policy {
        mesh.server_policy("shop", "payments", spec);
    }
    more(&mesh);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app), port)
        .await;
    (mesh, orders, payments)
}

fn check() -> Request<HealthCheckRequest> {
    Request::new(HealthCheckRequest {
        service: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_cross_the_mesh() {
    let service = Arc::new(Scripted::default());
    let (_mesh, orders, payments) = mesh(service.clone(), None).await;
    let mut health = client(&orders, "payments.shop").await;

    let answer = health.check(check()).await.expect("a unary call");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);

    let mut stream = health.watch(check()).await.expect("a stream").into_inner();
    let mut seen = Vec::new();
    while let Some(update) = stream.message().await.expect("stream messages") {
        seen.push(update.status);
    }
    assert_eq!(
        seen,
        [
            ServingStatus::NotServing as i32,
            ServingStatus::Serving as i32
        ],
        "every message, in order, then the trailers' OK"
    );
    // Both answers ended in trailers with grpc-status 0, read as they passed.
    assert_eq!(grpc_answers(&orders, "outbound", "OK").await, 2.0);
    assert_eq!(grpc_answers(&payments, "inbound", "OK").await, 2.0);
}

/// `outrigger_grpc_responses_total` of one direction and status on `sidecar`.
async fn grpc_answers(sidecar: &Sidecar, direction: &str, status: &str) -> f64 {
    sidecar
        .metric_sum(
            "outrigger_grpc_responses_total",
            &[("direction", direction), ("grpc_status", status)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_failures_arrive_as_grpc_statuses() {
    let service = Arc::new(Scripted::default());
    let deny = "  authorization: {default: deny}\n";
    let (_mesh, orders, _payments) = mesh(service, Some(deny)).await;

    // No such service: UNAVAILABLE from the caller's own sidecar.
    let mut nowhere = client(&orders, "nowhere.shop").await;
    let status = nowhere.check(check()).await.expect_err("no such service");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no MeshService"), "{status:?}");
    assert_eq!(
        status.metadata().get("outrigger-error").unwrap(),
        "unknown-service"
    );

    // Refused by payments' ServerPolicy: PERMISSION_DENIED from the callee's sidecar.
    let mut payments = client(&orders, "payments.shop").await;
    let status = payments.check(check()).await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.metadata().get("outrigger-error").unwrap(),
        "unauthorized"
    );
}

/// The other mesh failures a gRPC client meets, each as its status (docs/grpc.md): a
/// route timeout as DEADLINE_EXCEEDED, the callee's rate limit as RESOURCE_EXHAUSTED, and
/// an instance nobody listens on as UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_limits_and_dead_instances_arrive_as_their_grpc_statuses() {
    let service = Arc::new(Scripted {
        hang: true,
        ..Scripted::default()
    });
    let limit = "  rateLimit: {requestsPerSecond: 1, burst: 1}\n";
    let dead = loopback(free_port());
    let (_mesh, orders, _payments) = mesh_with(service, Some(limit), |mesh| {
        mesh.traffic_policy(
            "shop",
            "payments",
            "  timeouts: {request: 300ms}\n  retries: {attempts: 0}\n",
        );
        mesh.write_policy(
            "down.yaml",
            &format!(
                "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: down, namespace: shop}}\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/down\n  protocol: grpc\n  endpoints:\n    - address: {dead}\n"
            ),
        );
    })
    .await;
    let mut payments = client(&orders, "payments.shop").await;

    // The app hangs; the route's 300 ms run out in the caller's sidecar.
    let status = payments.check(check()).await.expect_err("a timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.metadata().get("outrigger-error").unwrap(), "timeout");

    // The first call spent the burst of 1: the next ones find the callee's limit.
    let status = payments.check(check()).await.expect_err("limited");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.metadata().get("outrigger-error").unwrap(),
        "rate-limited"
    );

    // Nothing listens at down's one endpoint.
    let mut down = client(&orders, "down.shop").await;
    let status = down.check(check()).await.expect_err("no one there");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.metadata().get("outrigger-error").unwrap(),
        "connect-failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_and_the_deadline_travels() {
    let service = Arc::new(Scripted {
        fail_first: 1,
        ..Scripted::default()
    });
    let (_mesh, orders, payments) = mesh(service.clone(), None).await;
    let mut health = client(&orders, "payments.shop").await;

    let mut request = check();
    request.set_timeout(Duration::from_secs(5));
    let answer = health.check(request).await.expect("retried to success");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
    assert_eq!(service.checks.load(Ordering::SeqCst), 2, "one retry");
    // The app's two answers, a 200 each: one UNAVAILABLE, one OK. The caller saw OK.
    assert_eq!(grpc_answers(&payments, "inbound", "UNAVAILABLE").await, 1.0);
    assert_eq!(grpc_answers(&payments, "inbound", "OK").await, 1.0);
    assert_eq!(grpc_answers(&orders, "outbound", "OK").await, 1.0);
    assert_eq!(grpc_answers(&orders, "outbound", "UNAVAILABLE").await, 0.0);

    let timeouts = service.timeouts.lock().unwrap().clone();
    for timeout in &timeouts {
        let timeout = timeout.as_deref().expect("grpc-timeout reaches the server");
        let millis = grpc_timeout_millis(timeout);
        assert!(
            millis > 0 && millis <= 5_000,
            "what is left of the caller's 5 s, never more: {timeout}"
        );
    }
}

/// UNAVAILABLE after a message, in the trailers: the caller's sidecar holds a small answer
/// until its trailers (docs/grpc.md), so it can still retry, and the app's client sees
/// only the good stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_in_the_trailers_of_a_small_answer_is_retried() {
    let service = Arc::new(Scripted {
        break_first_watches: 1,
        ..Scripted::default()
    });
    let (_mesh, orders, payments) = mesh(service.clone(), None).await;
    let mut health = client(&orders, "payments.shop").await;
    let mut stream = health.watch(check()).await.expect("a stream").into_inner();
    let mut updates = Vec::new();
    while let Some(update) = stream.message().await.expect("no error reaches the client") {
        updates.push(update.status);
    }
    assert_eq!(
        updates,
        [
            ServingStatus::NotServing as i32,
            ServingStatus::Serving as i32
        ],
        "the second try's stream, and nothing of the first"
    );
    assert_eq!(service.watches.load(Ordering::SeqCst), 2, "one retry");
    assert_eq!(grpc_answers(&payments, "inbound", "UNAVAILABLE").await, 1.0);
    assert_eq!(grpc_answers(&orders, "outbound", "UNAVAILABLE").await, 0.0);
    assert_eq!(grpc_answers(&orders, "outbound", "OK").await, 1.0);
}

/// A `grpc-timeout` value (`<digits><unit>`) in milliseconds.
fn grpc_timeout_millis(value: &str) -> u64 {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().expect("digits");
    match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1_000,
        "m" => n,
        "u" => n / 1_000,
        "n" => n / 1_000_000,
        other => panic!("unit {other}"),
    }
}
