//! Outbound HTTP for extensions whose manifest lists `capabilities.network` (feature `http`):
//! [`post_json`] sends a JSON body and returns the status and the body, [`request`] sends
//! any method. Both block until the response body has been read (up to [`MAX_BODY`] bytes
//! or a smaller limit the host sets).
//!
//! ```no_run
//! # fn demo() -> Result<(), labhit_sdk::http::HttpError> {
//! use labhit_sdk::http;
//! let body = serde_json::json!({"text": "build passed"});
//! let response = http::post_json("http://hooks.example.com/notify", &[], &body)?;
//! assert!(response.is_success());
//! # Ok(()) }
//! ```
//!
//! The requests go through `wasi:http/outgoing-handler` (WASI 0.2.12 bindings of the
//! `wasip2` crate), which only hosts that grant the network provide: a component built with
//! this feature imports `wasi:http`, and a LabHit host refuses to load it unless its
//! manifest lists network entries. Without the feature nothing of `wasi:http` is imported.
//! What the host guarantees (allow-list, request forgery guard, limits, timeout) is in the
//! package documentation of `labhit-extension.wit`.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// Largest response body read by default; hosts may cut bodies off earlier.
pub const MAX_BODY: usize = 16 << 20;

/// A response: the status and the body, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The methods [`request`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

/// Why a request brought no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not `http://host[:port][/path]` (or `https://…`).
    InvalidUrl(String),
    /// A header name or value is not valid (or is one the host forbids, such as `host`).
    InvalidHeader(String),
    /// The host refused the request: the destination is not in the manifest's
    /// `capabilities.network`, resolves to an address a host name may not reach, or the
    /// scheme is not supported. The host's log says which rule refused it.
    Denied {
        /// The URL.
        url: String,
        /// The `wasi:http` error code.
        reason: String,
    },
    /// The request or the response took too long (the step's deadline included).
    Timeout {
        /// The URL.
        url: String,
    },
    /// The response body was larger than the limit.
    ResponseTooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes, when known.
        limit: Option<u64>,
    },
    /// Anything else: connection refused, DNS failure, protocol error.
    Transport {
        /// The URL.
        url: String,
        /// The `wasi:http` error code.
        reason: String,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(url) => {
                write!(f, "`{url}` is not an http url (`http://host[:port]/path`)")
            }
            Self::InvalidHeader(name) => write!(f, "header `{name}` is invalid or forbidden"),
            Self::Denied { url, reason } => write!(
                f,
                "request to `{url}` denied by the host ({reason}); list the host in `capabilities.network`"
            ),
            Self::Timeout { url } => write!(f, "request to `{url}` timed out"),
            Self::ResponseTooLarge { url, limit } => match limit {
                Some(limit) => write!(f, "response of `{url}` exceeds {limit} bytes"),
                None => write!(f, "response of `{url}` is too large"),
            },
            Self::Transport { url, reason } => write!(f, "request to `{url}` failed: {reason}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::Error {
    fn from(err: HttpError) -> Self {
        match err {
            HttpError::InvalidUrl(_) | HttpError::InvalidHeader(_) => {
                crate::Error::invalid_config(err.to_string())
            }
            _ => crate::Error::failed(err.to_string()),
        }
    }
}

/// POSTs `body` as JSON (`content-type: application/json`) with `headers`.
pub fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<Response, HttpError> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut all = Vec::with_capacity(headers.len() + 1);
    all.push(("content-type", "application/json"));
    all.extend_from_slice(headers);
    request(Method::Post, url, &all, Some(&bytes), MAX_BODY)
}

/// Sends one request and reads the response body, up to `max_body` bytes.
pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<Response, HttpError> {
    let (scheme, authority, path) = split_url(url)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|_| HttpError::InvalidHeader((*name).to_owned()))?;
    }
    if let Some(body) = body {
        fields
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|_| HttpError::InvalidHeader("content-length".to_owned()))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let invalid = || HttpError::InvalidUrl(url.to_owned());
    outgoing
        .set_method(&method.wasi())
        .map_err(|()| invalid())?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| invalid())?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid())?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid())?;
    let outgoing_body = outgoing.body().map_err(|()| invalid())?;
    let failed = |code: ErrorCode| classify(url, code);
    let future = outgoing_handler::handle(outgoing, None).map_err(failed)?;
    // A refused request fails its response future and closes the body stream: the
    // future's error is the one that says why, so it wins over the write's.
    let written = match body {
        Some(body) => write_body(&outgoing_body, body, url),
        None => Ok(()),
    };
    let finished = OutgoingBody::finish(outgoing_body, None);
    let response = loop {
        match future.get() {
            Some(Ok(result)) => break result.map_err(failed)?,
            Some(Err(())) => {
                return Err(transport(url, "the response was already taken"));
            }
            None => future.subscribe().block(),
        }
    };
    written?;
    finished.map_err(failed)?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| transport(url, "the response body was already taken"))?;
    let body = read_body(&incoming, url, max_body)?;
    drop(incoming);
    Ok(Response { status, body })
}

fn write_body(outgoing: &OutgoingBody, body: &[u8], url: &str) -> Result<(), HttpError> {
    let stream = outgoing
        .write()
        .map_err(|()| transport(url, "the request body was already taken"))?;
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|err| stream_error(url, err))?;
    }
    Ok(())
}

fn read_body(incoming: &IncomingBody, url: &str, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|()| transport(url, "the response body was already taken"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > max_body {
                    return Err(HttpError::ResponseTooLarge {
                        url: url.to_owned(),
                        limit: Some(max_body as u64),
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(out),
            Err(err) => return Err(stream_error(url, err)),
        }
    }
}

fn stream_error(url: &str, err: StreamError) -> HttpError {
    match err {
        StreamError::LastOperationFailed(err) => match wasip2::http::types::http_error_code(&err) {
            Some(code) => classify(url, code),
            None => classify_text(url, &err.to_debug_string()),
        },
        StreamError::Closed => transport(url, "the stream closed early"),
    }
}

/// Sorts a body stream error that carries no `error-code`, by its text. wasmtime-wasi-http
/// (48) passes the errors of a response body to the guest as plain `wasi:io/error`s whose
/// text is the error's display form (`HTTP response body size exceeds limit: N bytes`,
/// `HTTP response timeout`), without the `error-code` `http-error-code` would return.
fn classify_text(url: &str, text: &str) -> HttpError {
    const TOO_LARGE: &str = "HTTP response body size exceeds limit";
    if let Some(at) = text.find(TOO_LARGE) {
        let rest = &text[at + TOO_LARGE.len()..];
        let limit = rest
            .strip_prefix(": ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok());
        return HttpError::ResponseTooLarge {
            url: url.to_owned(),
            limit,
        };
    }
    if text.contains("timeout") || text.contains("timed out") {
        return HttpError::Timeout {
            url: url.to_owned(),
        };
    }
    transport(url, text)
}

fn transport(url: &str, reason: &str) -> HttpError {
    HttpError::Transport {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Sorts a `wasi:http` error code into an [`HttpError`].
fn classify(url: &str, code: ErrorCode) -> HttpError {
    let url = url.to_owned();
    match code {
        ErrorCode::HttpRequestDenied
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::HttpRequestUriInvalid => HttpError::Denied {
            url,
            reason: format!("{code:?}"),
        },
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => HttpError::Timeout { url },
        ErrorCode::HttpResponseBodySize(limit) => HttpError::ResponseTooLarge { url, limit },
        other => HttpError::Transport {
            url,
            reason: format!("{other:?}"),
        },
    }
}

impl Method {
    fn wasi(self) -> WasiMethod {
        match self {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Patch => WasiMethod::Patch,
            Method::Delete => WasiMethod::Delete,
        }
    }
}

/// Splits `scheme://authority/path?query`; the path defaults to `/`.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let invalid = || HttpError::InvalidUrl(url.to_owned());
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(invalid());
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if authority.is_empty() || authority.contains(['@', ' ', '#']) {
        return Err(invalid());
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_without_a_code_are_sorted_by_their_text() {
        let url = "http://h/";
        assert_eq!(
            classify_text(url, "HTTP response body size exceeds limit: 1048576 bytes"),
            HttpError::ResponseTooLarge {
                url: url.into(),
                limit: Some(1 << 20)
            }
        );
        assert_eq!(
            classify_text(url, "HTTP response timeout"),
            HttpError::Timeout { url: url.into() }
        );
        assert!(matches!(
            classify_text(url, "connection reset"),
            HttpError::Transport { .. }
        ));
    }

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let (scheme, authority, path) = split_url("http://a.example:8080/x?y=1").expect("url");
        assert!(matches!(scheme, Scheme::Http));
        assert_eq!((authority, path), ("a.example:8080", "/x?y=1"));
        assert_eq!(split_url("https://a.example").expect("url").2, "/");
        assert_eq!(split_url("http://a.example?q").expect("url").2, "?q");
        for bad in [
            "ftp://a",
            "http://",
            "http:///x",
            "http://u@a/",
            "a.example/x",
        ] {
            assert_eq!(
                split_url(bad).map(|_| ()),
                Err(HttpError::InvalidUrl(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
