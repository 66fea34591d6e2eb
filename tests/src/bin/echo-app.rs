//! echo-app: the harness's [`EchoApp`] as a process of its own, so that a test can crash
//! it (SIGKILL) or wedge it (SIGSTOP) as it would a real app, apart from its sidecar.
//!
//! ```sh
//! echo-app --name payments-0 --listen 127.0.0.1:20001 --control 127.0.0.1:20002
//! ```
//!
//! The app answers on `--listen`. On `--control`, `PUT /fault` sets the fault it injects
//! into every request, given in the same `x-fault-*` headers a request may carry
//! (`tests/src/faults.rs`); `PUT /fault` without them heals it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outrigger_tests::{EchoApp, Fault};
use tokio::net::TcpListener;

struct Args {
    name: String,
    listen: SocketAddr,
    control: SocketAddr,
}

fn parse() -> Args {
    let (mut name, mut listen, mut control) = (None, None, None);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words
            .next()
            .unwrap_or_else(|| usage(&format!("{word} takes a value")));
        match word.as_str() {
            "--name" => name = Some(value),
            "--listen" => listen = value.parse().ok(),
            "--control" => control = value.parse().ok(),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    match (name, listen, control) {
        (Some(name), Some(listen), Some(control)) => Args {
            name,
            listen,
            control,
        },
        _ => usage("--name, --listen ADDR and --control ADDR are required"),
    }
}

fn usage(error: &str) -> ! {
    eprintln!("error: {error}");
    eprintln!("usage: echo-app --name NAME --listen ADDR --control ADDR");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse();
    let control = TcpListener::bind(args.control)
        .await
        .unwrap_or_else(|e| usage(&format!("cannot listen on {}: {e}", args.control)));
    // The app listens last: once it answers, the control port is there too.
    let app = EchoApp::start_on(&args.name, args.listen).await;
    loop {
        let Ok((stream, _)) = control.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(command(&app, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn command(app: &Arc<EchoApp>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::PUT || req.uri().path() != "/fault" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"try PUT /fault\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let fault = Fault::default().merged_with(req.headers());
    let said = format!("{fault:?}\n");
    app.set_fault(fault);
    Response::new(Full::new(Bytes::from(said)))
}
