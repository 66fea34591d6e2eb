//! Handing one watch line to the connection, within a deadline. The stream's channel
//! holds one line; hyper takes it only when its write buffer has room, which it has only
//! when TLS and the kernel's socket buffers drain, which they do only when the proxy
//! reads. So a line that cannot be handed over for `--watch-stall-timeout` means every
//! buffer on the way is full and the proxy is not reading: a stopped or stuck proxy,
//! or a client that opened a stream to hold memory. Its stream is cut (`watch.rs`).
//!
//! What a watcher can hold meanwhile is bounded: a line in the channel, the line being
//! sent, hyper's write buffer (about 400 KiB), rustls' (64 KiB) and the kernel's.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// What became of a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// The connection took it.
    Over,
    /// The stream is gone (the client went away).
    Gone,
    /// Not taken within the deadline: the client stopped reading.
    Stalled,
}

/// Puts `line` in the stream's channel, waiting at most `stall` for room.
pub(crate) async fn hand_over(tx: &mpsc::Sender<Bytes>, line: Bytes, stall: Duration) -> Handed {
    match tokio::time::timeout(stall, tx.send(line)).await {
        Ok(Ok(())) => Handed::Over,
        Ok(Err(_)) => Handed::Gone,
        Err(_) => Handed::Stalled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_up_gets_every_line() {
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::spawn(async move {
            let mut lines = 0;
            // Slow, but never as slow as the deadline.
            while rx.recv().await.is_some() {
                lines += 1;
                tokio::time::sleep(STALL - Duration::from_secs(1)).await;
            }
            lines
        });
        for n in 0..5 {
            let handed = hand_over(&tx, Bytes::from(format!("{n}\n")), STALL).await;
            assert_eq!(handed, Handed::Over);
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_found_out_after_the_deadline_exactly() {
        let (tx, mut rx) = mpsc::channel(1);
        assert_eq!(
            hand_over(&tx, Bytes::from("1\n"), STALL).await,
            Handed::Over
        );
        // The channel's one place is taken, and nobody reads.
        let started = tokio::time::Instant::now();
        assert_eq!(
            hand_over(&tx, Bytes::from("2\n"), STALL).await,
            Handed::Stalled
        );
        assert_eq!(started.elapsed(), STALL);
        // Reading again frees the place; a reader gone means the stream is gone.
        assert!(rx.recv().await.is_some());
        assert_eq!(
            hand_over(&tx, Bytes::from("3\n"), STALL).await,
            Handed::Over
        );
        drop(rx);
        assert_eq!(
            hand_over(&tx, Bytes::from("4\n"), STALL).await,
            Handed::Gone
        );
    }
}
