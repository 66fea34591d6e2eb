//! A recorded API server: a tower `Service` that [`kube::Client::new`] accepts in place
//! of a connection, answering from fixture files in the API server's own formats (a
//! list is one JSON object; a watch is JSON lines, one event each).
//!
//! In a fixture dir, `<resource>.list.<n>.json` is the n-th answer to a list of
//! `<resource>` and `<resource>.watch.<n>.jsonl` the n-th answer to a watch (a file
//! named `*.status` beside either holds another HTTP status, such as `403`). A list
//! with no file left repeats its last answer (or is empty); a watch with no file left,
//! or not yet released by the test ([`MockApi::release`]), stays open with nothing to
//! say, as a quiet API server does. Other requests are answered by [`MockApi::on`].

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use tokio::sync::Semaphore;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The API paths of the resources the control plane watches, by fixture name.
const PATHS: [(&str, &str); 6] = [
    ("meshservices", "/apis/outrigger.dev/v1alpha1/meshservices"),
    (
        "trafficpolicies",
        "/apis/outrigger.dev/v1alpha1/trafficpolicies",
    ),
    (
        "serverpolicies",
        "/apis/outrigger.dev/v1alpha1/serverpolicies",
    ),
    ("services", "/api/v1/services"),
    ("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices"),
    ("pods", "/api/v1/pods"),
];

/// One recorded answer.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    pub(crate) fn json(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            body: body.into(),
        }
    }
}

/// A request the mock received: method, path with query, body.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub method: Method,
    pub uri: String,
    pub body: String,
}

#[derive(Default)]
struct Script {
    lists: BTreeMap<String, VecDeque<Answer>>,
    last_list: BTreeMap<String, Answer>,
    watches: BTreeMap<String, VecDeque<Answer>>,
    /// Other requests: (method, path) → answers in order; the last repeats.
    other: BTreeMap<(Method, String), VecDeque<Answer>>,
}

/// The recorded API server; clone it freely (clones share their script).
#[derive(Clone, Default)]
pub(crate) struct MockApi {
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Watches wait for a permit per resource: the test decides when events come.
    gates: Arc<BTreeMap<String, Arc<Semaphore>>>,
}

impl MockApi {
    /// Answers from the fixture dir `tests/fixtures/kubernetes/<dir>` (none: empty lists).
    pub(crate) fn from_fixtures(dir: Option<&str>) -> MockApi {
        let mut script = Script::default();
        if let Some(dir) = dir {
            let dir = fixtures().join(dir);
            for (resource, _) in PATHS {
                script.lists.insert(
                    resource.into(),
                    read_numbered(&dir, resource, "list", "json"),
                );
                script.watches.insert(
                    resource.into(),
                    read_numbered(&dir, resource, "watch", "jsonl"),
                );
            }
        }
        let gates = PATHS
            .iter()
            .map(|(resource, _)| (resource.to_string(), Arc::new(Semaphore::new(0))))
            .collect();
        MockApi {
            script: Arc::new(Mutex::new(script)),
            received: Arc::default(),
            gates: Arc::new(gates),
        }
    }

    /// Lets the next recorded watch answer of `resource` be sent.
    pub(crate) fn release(&self, resource: &str) {
        self.gates[resource].add_permits(1);
    }

    /// Answers `method path` with `answers` in order (the last repeats).
    pub(crate) fn on(&self, method: Method, path: &str, answers: Vec<Answer>) {
        let mut script = self.script.lock().unwrap();
        script
            .other
            .insert((method, path.to_string()), answers.into());
    }

    /// Every request received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// A client whose every request this mock answers.
    pub(crate) fn client(&self) -> kube::Client {
        let mock = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let mock = mock.clone();
            async move { Ok::<_, Infallible>(mock.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let path = req.uri().path().to_string();
        let watching = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.received.lock().unwrap().push(Received {
            method: method.clone(),
            uri,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let resource = PATHS
            .iter()
            .find(|(_, p)| *p == path)
            .map(|(r, _)| r.to_string());
        match resource {
            Some(resource) if method == Method::GET && watching => self.watch(&resource).await,
            Some(resource) if method == Method::GET => self.list(&resource),
            _ => self.other(&method, &path),
        }
    }

    fn list(&self, resource: &str) -> Response<Body> {
        let mut script = self.script.lock().unwrap();
        let next = script.lists.get_mut(resource).and_then(VecDeque::pop_front);
        let answer = match next {
            Some(answer) => {
                script.last_list.insert(resource.into(), answer.clone());
                answer
            }
            None => script.last_list.get(resource).cloned().unwrap_or_else(|| {
                Answer::json(200, r#"{"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}"#)
            }),
        };
        whole(answer)
    }

    async fn watch(&self, resource: &str) -> Response<Body> {
        let next = self
            .script
            .lock()
            .unwrap()
            .watches
            .get_mut(resource)
            .and_then(VecDeque::pop_front);
        let Some(answer) = next else {
            return open_forever();
        };
        // Held until released; the permit is used up, so each release lets one through.
        if let Ok(permit) = self.gates[resource].acquire().await {
            permit.forget();
        }
        whole(answer)
    }

    fn other(&self, method: &Method, path: &str) -> Response<Body> {
        let mut script = self.script.lock().unwrap();
        let Some(answers) = script.other.get_mut(&(method.clone(), path.to_string())) else {
            return whole(Answer::json(
                404,
                format!(
                    r#"{{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the mock has no answer for {method} {path}", "reason": "NotFound", "code": 404}}"#
                ),
            ));
        };
        let answer = if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        };
        whole(answer.expect("at least one answer"))
    }
}

fn whole(answer: Answer) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)).boxed_unsync());
    *response.status_mut() = answer.status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn open_forever() -> Response<Body> {
    let never = futures::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
    Response::new(StreamBody::new(never).boxed_unsync())
}

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kubernetes")
}

/// `<resource>.<what>.1.<ext>`, `.2.`... until one is missing; a `.status` file beside
/// one holds its HTTP status (200 if absent).
fn read_numbered(dir: &Path, resource: &str, what: &str, ext: &str) -> VecDeque<Answer> {
    let mut answers = VecDeque::new();
    for n in 1.. {
        let path = dir.join(format!("{resource}.{what}.{n}.{ext}"));
        let Ok(body) = std::fs::read_to_string(&path) else {
            break;
        };
        let status = std::fs::read_to_string(path.with_extension(format!("{ext}.status")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(200);
        answers.push_back(Answer::json(status, body));
    }
    answers
}
