//! The stack below the route, driven with paused time against a scripted connection:
//! what each try meets is written in advance, so retries, deadlines, budgets and breaker
//! accounting are checked without sockets, sleeps or a clock that runs.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use outrigger_api::{EndpointView, Protocol, ServiceView, TrafficPolicySpec};
use outrigger_certs::{CaPaths, TrustBundle, init_ca};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{Picked, Routed, TryError, resilient};
use crate::body::held::Held;
use crate::body::held::tests::Script;
use crate::error::{ErrorCode, ProxyError};
use crate::identity::Identity;
use crate::mesh::ServiceEntry;
use crate::metrics::ProxyMetrics;
use crate::outbound::{Target, TargetContext};
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::TryOutcome;
use crate::transport::mesh_client_config;

/// What one try meets.
#[derive(Clone, Copy, Debug)]
enum Step {
    Answer(u16),
    /// Answers after this long (the clock is paused, so "long" costs nothing).
    AnswerAfter(Duration, u16),
    ConnectFailure,
    Reset,
    /// The peer sidecar's own 502, naming its failure in `outrigger-error`.
    PeerError(&'static str),
    /// Never answers.
    Hang,
    /// A gRPC answer: HTTP 200, a message of this many bytes, then trailers with this
    /// `grpc-status`.
    Grpc(usize, u16),
}

/// A connection that plays a script, one step per try, and notes where each try went.
#[derive(Clone, Default)]
struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
    tries: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Scripted {
    fn new(steps: &[Step]) -> Scripted {
        Scripted {
            steps: Arc::new(Mutex::new(steps.iter().copied().collect())),
            ..Scripted::default()
        }
    }

    fn tries(&self) -> Vec<SocketAddr> {
        self.tries.lock().unwrap().clone()
    }
}

impl<'a> Service<Picked<'a>> for Scripted {
    type Response = Response<Script>;
    type Error = TryError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Script>, TryError>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Picked<'a>) -> Self::Future {
        let addr = req.endpoint.addr();
        self.tries.lock().unwrap().push(addr);
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .expect("a step per try");
        let mut in_flight = req.in_flight;
        Box::pin(async move {
            in_flight.dispatched(Instant::now());
            let answer = |status| {
                let mut response = Response::new(Script::default());
                *response.status_mut() = StatusCode::from_u16(status).expect("a status");
                Ok(response)
            };
            let grpc = |size, status| {
                let mut response = Response::new(Script::grpc(size, status));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                Ok(response)
            };
            let failed = |code, outcome| {
                let error = ProxyError::new(code, format!("{addr}: scripted"));
                Err(TryError::new(error, Some(outcome)))
            };
            let result = match step {
                Step::Answer(status) => answer(status),
                Step::AnswerAfter(delay, status) => {
                    tokio::time::sleep(delay).await;
                    answer(status)
                }
                Step::ConnectFailure => {
                    failed(ErrorCode::ConnectFailed, TryOutcome::ConnectFailure)
                }
                Step::Reset => failed(ErrorCode::UpstreamReset, TryOutcome::Reset),
                Step::PeerError(code) => answer(502).map(|mut response| {
                    response.headers_mut().insert(
                        crate::error::ERROR_HEADER,
                        http::HeaderValue::from_static(code),
                    );
                    response
                }),
                Step::Hang => std::future::pending().await,
                Step::Grpc(size, status) => grpc(size, status),
            };
            in_flight.finish(result.is_ok(), Instant::now());
            result
        })
    }
}

/// A target `payments.shop` with `endpoints` loopback addresses (never dialled) and this
/// TrafficPolicy (the spec's fields besides targetRef, as JSON).
pub(in crate::outbound) struct Fixture {
    pub(in crate::outbound) target: Target,
    _dir: tempfile::TempDir,
}

pub(in crate::outbound) fn target(endpoints: u16, policy: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    init_ca(dir.path(), "cluster.local").expect("CA");
    let pem = std::fs::read_to_string(CaPaths::new(dir.path()).trust_anchor()).expect("PEM");
    let metrics = ProxyMetrics::new();
    let identity = Identity::new(
        TrustBundle::from_pem(&pem).expect("bundle"),
        "cluster.local",
        metrics.clone(),
    );
    let spec: TrafficPolicySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "MeshService", "name": "payments"},
    }))
    .expect("a minimal policy");
    let mut spec = serde_json::to_value(spec).expect("as JSON");
    let extra: serde_json::Value = serde_json::from_str(policy).expect("the test's policy is JSON");
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let view = ServiceView {
        addresses: vec![],
        name: "payments".into(),
        namespace: "shop".into(),
        identity: "spiffe://cluster.local/ns/shop/sa/payments".into(),
        protocol: Protocol::Http,
        endpoints: (1..=endpoints)
            .map(|i| EndpointView {
                address: format!("127.0.0.1:{}", 10_000 + i),
            })
            .collect(),
        traffic_policy: Some(serde_json::from_value(spec).expect("a valid TrafficPolicy")),
    };
    let context = TargetContext {
        tls: mesh_client_config(&identity).expect("TLS config"),
        metrics,
        connect_timeout: Duration::from_secs(1),
    };
    let entry = Arc::new(ServiceEntry::from_view(&view).expect("entry"));
    Fixture {
        target: Target::build(entry, None, &context, Instant::now()),
        _dir: dir,
    }
}

/// A GET through the stack below the route, as the route layer would hand it on.
async fn get(target: &Target, connection: Scripted) -> Result<Response<Held<Script>>, ProxyError> {
    send(target, connection, Method::GET).await
}

async fn send(
    target: &Target,
    connection: Scripted,
    method: Method,
) -> Result<Response<Held<Script>>, ProxyError> {
    let (head, ()) = Request::builder()
        .method(method.clone())
        .uri("http://payments.shop/")
        .body(())
        .expect("a request")
        .into_parts();
    let route =
        target
            .resolved
            .route_at(target.resolved.route(&method, "/", &http::HeaderMap::new()));
    let routed = Routed {
        head,
        body: OutboundBody::Buffered(None),
        route,
        may_retry: route.retry.attempts > 0 && crate::resilience::retry_on::idempotent(&method),
        limit: route.request_timeout,
        started: Instant::now(),
        deadline: None,
    };
    resilient(target, target, connection).oneshot(routed).await
}

#[tokio::test(start_paused = true)]
async fn a_connect_failure_is_retried_on_another_endpoint() {
    let f = target(2, "{}");
    let connection = Scripted::new(&[Step::ConnectFailure, Step::Answer(200)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 200);
    let tries = connection.tries();
    assert_eq!(tries.len(), 2);
    assert_ne!(tries[0], tries[1], "the retry went elsewhere");
    assert_eq!(f.target.metrics.resilience.retries.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_cannot_reach_its_app_is_retried_on_another_endpoint() {
    // The default policy: the peer's sidecar could not connect to its (crashed) app, so
    // the request reached no app; another instance answers it.
    let f = target(3, "{}");
    let connection = Scripted::new(&[Step::PeerError("connect-failed"), Step::Answer(200)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 200);
    let tries = connection.tries();
    assert_eq!(tries.len(), 2);
    assert_ne!(tries[0], tries[1], "the retry went elsewhere");

    // An app's own 502 is an answer, not retried by default.
    let connection = Scripted::new(&[Step::Answer(502)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 502);
    assert_eq!(connection.tries().len(), 1);

    // Nor is a POST, as after a connect failure of our own.
    let connection = Scripted::new(&[Step::PeerError("connect-failed")]);
    let response = send(&f.target, connection.clone(), Method::POST)
        .await
        .expect("answered");
    assert_eq!(response.status(), 502);
    assert_eq!(connection.tries().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn attempts_bound_the_tries_and_the_last_answer_is_returned() {
    let f = target(1, r#"{"retries": {"attempts": 2, "retryOn": ["5xx"]}}"#);
    let connection = Scripted::new(&[Step::Answer(503), Step::Answer(500), Step::Answer(502)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 502, "the third try's answer");
    assert_eq!(connection.tries().len(), 3, "one try and two retries");
}

#[tokio::test(start_paused = true)]
async fn conditions_not_in_retry_on_are_not_retried() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 3, "retryOn": ["gateway-error"]}}"#,
    );
    let connection = Scripted::new(&[Step::Answer(500)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 500);
    assert_eq!(connection.tries().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_retried_unless_the_route_says_so() {
    let f = target(2, "{}");
    let connection = Scripted::new(&[Step::Reset]);
    let error = send(&f.target, connection.clone(), Method::POST)
        .await
        .expect_err("the reset is the answer");
    assert_eq!(error.code, ErrorCode::UpstreamReset);
    assert_eq!(connection.tries().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_refuses_the_retry_and_counts_it() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 2, "budget": {"ratio": 0.0, "minPerSecond": 0, "window": "10s"}}}"#,
    );
    let connection = Scripted::new(&[Step::ConnectFailure]);
    let error = get(&f.target, connection.clone())
        .await
        .expect_err("no retry");
    assert_eq!(error.code, ErrorCode::ConnectFailed);
    assert_eq!(connection.tries().len(), 1);
    assert_eq!(f.target.metrics.resilience.budget_exhausted.get(), 1);
    assert_eq!(f.target.metrics.resilience.retries.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_ends_the_try_and_the_retry_answers() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 1, "perTryTimeout": "100ms", "retryOn": ["gateway-error"]}}"#,
    );
    let connection = Scripted::new(&[
        Step::Hang,
        Step::AnswerAfter(Duration::from_millis(50), 200),
    ]);
    let started = Instant::now();
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(connection.tries().len(), 2);
    // Paused time: the clock moved exactly as the timers said, no more.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(
        took <= Duration::from_millis(150 + 250),
        "backoff is at most 250ms: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_ends_every_try_with_a_timeout() {
    let f = target(
        2,
        r#"{"timeouts": {"request": "300ms"}, "retries": {"attempts": 5, "perTryTimeout": "200ms", "retryOn": ["gateway-error"]}}"#,
    );
    let connection = Scripted::new(&[Step::Hang, Step::Hang, Step::Hang]);
    let started = Instant::now();
    let error = get(&f.target, connection.clone())
        .await
        .expect_err("out of time");
    assert_eq!(error.code, ErrorCode::Timeout);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "the deadline, not later"
    );
    assert!(connection.tries().len() <= 2, "{:?}", connection.tries());
}

#[tokio::test(start_paused = true)]
async fn failed_tries_open_the_breaker_and_the_next_request_is_refused() {
    let f = target(
        1,
        r#"{"retries": {"attempts": 0}, "circuitBreaker": {"consecutiveFailures": 3, "maxEjectedPercent": 100}}"#,
    );
    for _ in 0..3 {
        let response = get(&f.target, Scripted::new(&[Step::Answer(503)]))
            .await
            .expect("answered");
        assert_eq!(response.status(), 503);
    }
    // The breaker's task counts off the request path; let it run.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let connection = Scripted::new(&[]);
    let error = get(&f.target, connection.clone())
        .await
        .expect_err("refused");
    assert_eq!(error.code, ErrorCode::CircuitOpen);
    assert!(connection.tries().is_empty(), "the endpoint was spared");
    assert_eq!(f.target.metrics.resilience.circuits.enforced.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn answers_below_500_and_timeouts_of_the_whole_request_do_not_count_as_failures() {
    let f = target(
        1,
        r#"{"timeouts": {"request": "100ms"}, "retries": {"attempts": 0}, "circuitBreaker": {"consecutiveFailures": 1, "maxEjectedPercent": 100}}"#,
    );
    let response = get(&f.target, Scripted::new(&[Step::Answer(404)]))
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    // Abandoned by the request's own deadline: says nothing about the endpoint.
    let error = get(&f.target, Scripted::new(&[Step::Hang]))
        .await
        .expect_err("out of time");
    assert_eq!(error.code, ErrorCode::Timeout);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let response = get(&f.target, Scripted::new(&[Step::Answer(200)]))
        .await
        .expect("still closed");
    assert_eq!(response.status(), 200);
}

/// The `grpc-status` in the trailers of an answer, read to its end.
async fn trailer_status(response: Response<Held<Script>>) -> Option<String> {
    use http_body_util::BodyExt as _;
    let collected = response.into_body().collect().await.expect("the body");
    let trailers = collected.trailers()?;
    Some(trailers.get("grpc-status")?.to_str().ok()?.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_grpc_status_in_the_trailers_of_a_small_answer_is_retried() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 2, "retryOn": ["unavailable"]}}"#,
    );
    let connection = Scripted::new(&[Step::Grpc(100, 14), Step::Grpc(100, 0)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(connection.tries().len(), 2, "UNAVAILABLE was retried");
    assert_eq!(trailer_status(response).await.as_deref(), Some("0"));
    assert_eq!(f.target.metrics.resilience.retries.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_answer_larger_than_the_retry_buffer_goes_to_the_caller_as_it_is() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 2, "retryOn": ["unavailable"]}}"#,
    );
    let large = crate::resilience::policy::MAX_RETRY_BODY + 1;
    let connection = Scripted::new(&[Step::Grpc(large, 14)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(
        connection.tries().len(),
        1,
        "its data may have reached the caller"
    );
    assert_eq!(trailer_status(response).await.as_deref(), Some("14"));
}

#[tokio::test(start_paused = true)]
async fn a_grpc_status_not_in_retry_on_is_not_retried() {
    let f = target(
        2,
        r#"{"retries": {"attempts": 2, "retryOn": ["unavailable"]}}"#,
    );
    let connection = Scripted::new(&[Step::Grpc(10, 5)]);
    let response = get(&f.target, connection.clone()).await.expect("answered");
    assert_eq!(connection.tries().len(), 1);
    assert_eq!(trailer_status(response).await.as_deref(), Some("5"));
}
