//! A future cut off at an optional instant: what the whole-request deadline and the
//! per-try timeout both need. The error is built only when the time is up, so the common
//! case allocates nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Says what a cut-off future fails with.
pub(crate) trait Expiry {
    type Error;
    fn error(&self) -> Self::Error;
}

pin_project! {
    /// `inner`, unless `at` passes first (polled first, as `tokio::time::timeout`).
    pub(crate) struct CutOff<F, X> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        expiry: X,
    }
}

impl<F, X> CutOff<F, X> {
    pub(crate) fn new(inner: F, at: Option<Instant>, expiry: X) -> Self {
        CutOff {
            inner,
            sleep: at.map(tokio::time::sleep_until),
            expiry,
        }
    }
}

impl<F, T, X> Future for CutOff<F, X>
where
    F: Future<Output = Result<T, X::Error>>,
    X: Expiry,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        Poll::Ready(Err(this.expiry.error()))
    }
}
