//! Where a connection was headed before iptables redirected it to this proxy
//! (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`). A connection that was not redirected has
//! none, or reports the listener's own address: it was meant for the proxy itself.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The redirected connection's original destination; `None` when it was not redirected.
pub(crate) fn original_dst(stream: &TcpStream, listener: SocketAddr) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let socket = socket2::SockRef::from(stream);
    let original = if local.is_ipv4() {
        socket.original_dst_v4()
    } else {
        socket.original_dst_v6()
    };
    let original = original.ok()?.as_socket()?;
    // Without a NAT entry, Linux answers with the local address instead of an error.
    let ours = original == local || original == listener;
    (!ours).then_some(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_has_none() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(original_dst(&accepted, addr), None);
    }
}
