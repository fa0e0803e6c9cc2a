//! HTTP bodies with a cap: [`Capped`] passes frames through until the byte limit is passed
//! (then fails with the size error the caller chose) or the deadline is reached (then fails
//! with a timeout). Used for request bodies (the guest's upload) and response bodies (the
//! server's answer, so a 1 GiB response costs the host no more than one frame at a time and
//! the guest no more than the limit).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

/// A body that fails past `limit` bytes or at `deadline`.
pub struct Capped<B> {
    inner: B,
    seen: u64,
    limit: u64,
    too_large: fn(u64) -> Error,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl<B> Capped<B> {
    /// Wraps `inner`; `too_large(limit)` is the error past the limit.
    pub fn new(inner: B, limit: u64, too_large: fn(u64) -> Error, deadline: Instant) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            too_large,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen = self.seen.saturating_add(data.len() as u64);
                    if self.seen > self.limit {
                        self.done = true;
                        return Poll::Ready(Some(Err((self.too_large)(self.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
