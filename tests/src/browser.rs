//! A real headless Chromium, driven over the DevTools protocol (one page, JSON over a
//! WebSocket): open a URL, evaluate JavaScript in the page, take a screenshot, and
//! collect every uncaught exception, console error and failed load the page caused.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::client::get_h1;
use crate::process::{Process, START_LIMIT, eventually};

/// How long one DevTools command may take before the test gives up on the browser.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

pub struct Browser {
    // Dropped in order: the connection, then the browser, then its profile directory.
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    _process: Process,
    _profile: tempfile::TempDir,
    next_id: u64,
    problems: Vec<String>,
}

impl Browser {
    /// Starts `chromium` headless with a window of `width`×`height` and attaches to its
    /// first page.
    pub async fn launch(chromium: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut command = Command::new(chromium);
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ]);
        let process = Process::spawn("chromium", command, profile.path());
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        eventually("chromium's DevTools port", START_LIMIT, || {
            let port_file = port_file.clone();
            async move { std::fs::read_to_string(port_file).is_ok_and(|t| t.contains('\n')) }
        })
        .await;
        let port: u16 = std::fs::read_to_string(&port_file)
            .expect("DevToolsActivePort")
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a port in DevToolsActivePort");
        // The WebSocket addresses it answers with are built from the Host header.
        let devtools = SocketAddr::from(([127, 0, 0, 1], port));
        let targets = get_h1(devtools, &devtools.to_string(), "/json/list")
            .await
            .expect("GET /json/list")
            .json();
        let url = targets
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page" && t["url"] == "about:blank")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no blank page among {targets}"))
            .to_string();
        let (socket, _) = connect_async(url.as_str())
            .await
            .expect("DevTools WebSocket");
        let mut browser = Browser {
            socket,
            _process: process,
            _profile: profile,
            next_id: 0,
            problems: Vec::new(),
        };
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for_event("Page.loadEventFired").await;
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`.
    pub async fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        while self.eval(expression).await != Value::Bool(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "page never showed {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page as it is drawn now.
    pub async fn screenshot(&mut self, file: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(file, png).expect("write screenshot");
    }

    /// Uncaught exceptions, console errors and warnings, and failed loads, so far.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("send DevTools command");
        loop {
            let message = self.next_message(method).await;
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    async fn wait_for_event(&mut self, event: &str) {
        while self.next_message(event).await["method"] != event {}
    }

    /// The next message; events among them are checked for problems on the way.
    async fn next_message(&mut self, waiting_for: &str) -> Value {
        loop {
            let frame = tokio::time::timeout(COMMAND_LIMIT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer from chromium to {waiting_for}"))
                .expect("DevTools connection open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).expect("DevTools JSON");
            self.note(&message);
            return message;
        }
    }

    fn note(&mut self, message: &Value) {
        let params = &message["params"];
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("exception");
                self.problems.push(format!("uncaught: {text}"));
            }
            Some("Runtime.consoleAPICalled")
                if matches!(
                    params["type"].as_str(),
                    Some("error" | "warning" | "assert")
                ) =>
            {
                self.problems
                    .push(format!("console.{}: {}", params["type"], params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                self.problems.push(format!(
                    "{}: {} ({})",
                    entry["source"], entry["text"], entry["url"]
                ));
            }
            _ => {}
        }
    }
}
