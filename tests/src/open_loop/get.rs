//! One GET on a kept-alive HTTP/1.1 connection, and how it ended, told apart finely
//! enough to say why a request failed: its status (and the proxy's `outrigger-error`), a
//! connection that broke before the response head, or one that broke within the body.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A kept-alive HTTP/1.1 connection for GETs.
pub type Connection = http1::SendRequest<Empty<Bytes>>;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A whole response: its status, and the `outrigger-error` of a response the proxy
    /// made itself.
    Answered {
        status: u16,
        mesh_error: Option<String>,
    },
    /// The connection broke after the request was sent and before the response head.
    NoHead(String),
    /// The response head arrived, then the body broke off.
    Truncated { status: u16, error: String },
    /// No connection could be made to the target.
    Unreachable(String),
    /// No whole answer within the client's timeout.
    TimedOut,
}

impl Outcome {
    /// A 200 with its whole body.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Answered { status: 200, .. })
    }

    /// Why it failed, in a few words that group alike failures: `503 (app)`,
    /// `502 connect-failed`, `reset before the head`, `truncated 200`, `client timeout`.
    pub fn cause(&self) -> String {
        match self {
            Outcome::Answered {
                status,
                mesh_error: Some(code),
            } => format!("{status} {code}"),
            Outcome::Answered {
                status,
                mesh_error: None,
            } => format!("{status} (app)"),
            Outcome::NoHead(_) => "reset before the head".to_string(),
            Outcome::Truncated { status, .. } => format!("truncated {status}"),
            Outcome::Unreachable(_) => "caller's sidecar unreachable".to_string(),
            Outcome::TimedOut => "client timeout".to_string(),
        }
    }

    /// The error text behind a transport failure, for the report's examples.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::NoHead(error)
            | Outcome::Truncated { error, .. }
            | Outcome::Unreachable(error) => Some(error),
            _ => None,
        }
    }
}

/// What became of a request given to a connection.
pub enum Sent {
    Done(Outcome),
    /// The connection had closed before the request was written: it never left, and
    /// may go out on another connection.
    NotSent,
}

pub async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `GET path` with `Host: host` on `connection`, its body read whole.
pub async fn get(connection: &mut Connection, host: &str, path: &str) -> Sent {
    if connection.ready().await.is_err() {
        return Sent::NotSent;
    }
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::new())
        .expect("a GET from a valid host and path");
    match connection.try_send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let mesh_error = response
                .headers()
                .get("outrigger-error")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match response.into_body().collect().await {
                Ok(_) => Sent::Done(Outcome::Answered { status, mesh_error }),
                Err(error) => Sent::Done(Outcome::Truncated {
                    status,
                    error: error_chain(&error),
                }),
            }
        }
        Err(mut failed) => match failed.take_message() {
            Some(_) => Sent::NotSent,
            None => Sent::Done(Outcome::NoHead(error_chain(failed.error()))),
        },
    }
}

/// An error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
