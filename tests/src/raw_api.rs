//! The control plane's API spoken byte by byte over real TLS, for what no well-behaved
//! client does: announce a body and never send it, send more than any limit, open a watch
//! stream and never read it. Replies are read as text, head and body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One TLS connection to the API.
pub struct RawApi {
    stream: TlsStream<TcpStream>,
}

impl RawApi {
    /// Connects and finishes the handshake; an error if the server closes it first.
    pub async fn connect(api: SocketAddr, tls: Arc<ClientConfig>) -> std::io::Result<RawApi> {
        let tcp = TcpStream::connect(api).await?;
        RawApi::handshake(tcp, tls).await
    }

    /// [`RawApi::connect`] with a receive buffer of about `bytes`: a reader that will
    /// never read fills it, and then the server's buffers, soon.
    pub async fn connect_with_receive_buffer(
        api: SocketAddr,
        tls: Arc<ClientConfig>,
        bytes: u32,
    ) -> std::io::Result<RawApi> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        let tcp = socket.connect(api).await?;
        RawApi::handshake(tcp, tls).await
    }

    async fn handshake(tcp: TcpStream, tls: Arc<ClientConfig>) -> std::io::Result<RawApi> {
        let name = ServerName::try_from("control-plane").expect("name");
        let stream = TlsConnector::from(tls).connect(name, tcp).await?;
        Ok(RawApi { stream })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Everything until the server closes the connection (or `limit` passes: then
    /// `None`; only a broken build waits that long).
    pub async fn read_to_close(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        let read = tokio::time::timeout(limit, async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        read.ok().map(|()| all)
    }

    /// The whole connection, for reading and writing at once.
    pub fn into_inner(self) -> TlsStream<TcpStream> {
        self.stream
    }
}

/// A request head for `path` on the API.
pub fn request_head(method: &str, path: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: control-plane\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The status code and body of the first response in `bytes` (text up to the close).
pub fn status_and_body(bytes: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
