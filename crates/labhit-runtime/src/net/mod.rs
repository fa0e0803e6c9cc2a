//! Outbound network of extensions: `wasi:http/outgoing-handler` requests checked against the
//! manifest's `capabilities.network` allow-list, one job per module:
//!
//! | module | job |
//! |---|---|
//! | [`addr`] | which IP addresses are special (loopback, private, link-local, …) |
//! | [`policy`] | the check of one request: scheme, normalised host, port, allow-list, DNS resolution and the server-side request forgery guard; the addresses it may connect to |
//! | [`body`] | request and response bodies capped in size and by the step's deadline |
//! | [`send`] | connecting to a checked address (never resolving again) and sending over HTTP/1.1 |
//! | [`tls`] | TLS of `https` requests: the trust roots, the server name, handshake errors |
//!
//! The glue to wasmtime-wasi-http is [`crate::host::http`].

pub mod addr;
pub mod body;
pub mod policy;
pub mod send;
pub mod tls;

use std::time::Duration;

/// Limits of outbound HTTP requests, the same for every extension a runtime hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body a guest may send, in bytes.
    pub max_request_body: u64,
    /// Largest response body a guest may receive, in bytes; the body is cut off past it.
    pub max_response_body: u64,
    /// Longest time one request may take (connect to the end of the response headers,
    /// and again for the body); always clamped to what is left of the step's deadline.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_body: 16 << 20,
            max_response_body: 16 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}
