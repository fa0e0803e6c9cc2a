//! The conventional status for an oversized request: tonic refuses a request message over its
//! decoding limit with `OUT_OF_RANGE` ("decoded message length too large"); gRPC's convention
//! (and what other servers and clients expect) is `RESOURCE_EXHAUSTED`. [`RequestLimit`] wraps
//! a service and rewrites exactly that refusal into `RESOURCE_EXHAUSTED` with a message that
//! names the size and the limit. Every other response passes through untouched (including
//! the `OUT_OF_RANGE` that `StreamLogs` answers for a cursor past the log).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};

/// The prefix of tonic's message for a request over the decoding limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// A service whose over-limit refusals are `RESOURCE_EXHAUSTED` naming `limit`.
#[derive(Debug, Clone)]
pub struct RequestLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> RequestLimit<S> {
    /// Wraps `inner`, whose decoding limit is `limit` bytes.
    pub fn new(inner: S, limit: usize) -> Self {
        Self { inner, limit }
    }
}

impl<S: NamedService> NamedService for RequestLimit<S> {
    const NAME: &'static str = S::NAME;
}

/// The conventional status for tonic's refusal `status`, or `None` when it is something else.
pub fn conventional(status: &Status, limit: usize) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    let found = status.message().strip_prefix(TONIC_TOO_LARGE)?;
    let size = found
        .split_once(' ')
        .map_or(found, |(size, _)| size)
        .parse::<u64>()
        .ok()?;
    Some(Status::resource_exhausted(format!(
        "the request message is {size} bytes; this server accepts at most {limit} bytes per message"
    )))
}

impl<S, B, R> Service<http::Request<B>> for RequestLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            let mut response = response.await?;
            // A refusal before the handler ran is a headers-only response carrying the status.
            let replaced = Status::from_header_map(response.headers())
                .and_then(|status| conventional(&status, limit));
            if let Some(status) = replaced {
                let headers = response.headers_mut();
                headers.remove(Status::GRPC_STATUS_DETAILS);
                // Both headers are plain ASCII here, so adding them cannot fail.
                let _ = status.add_header(headers);
                response.extensions_mut().insert(status);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_decoding_limit_refusal_is_rewritten() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 200012 bytes, the limit is: 65536 bytes",
        );
        let status = conventional(&tonic, 65536).expect("rewritten");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request message is 200012 bytes; this server accepts at most 65536 bytes per message"
        );
        let cursor = Status::out_of_range("cursor 9 is past the end of the log of run x (5)");
        assert!(conventional(&cursor, 65536).is_none());
        let other = Status::internal(tonic.message().to_owned());
        assert!(conventional(&other, 65536).is_none());
    }
}
