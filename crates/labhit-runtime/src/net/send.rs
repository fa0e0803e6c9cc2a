//! Sending one checked request: connect to one of the addresses [`super::policy`] let
//! through (never resolving the name again), TLS for `https` (see [`super::tls`]), HTTP/1.1,
//! the whole exchange bounded by a time budget and the response body capped (see
//! [`super::body`]).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::body::Capped;

/// What one exchange may use.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// When the response headers must have arrived, and again when the body must be done.
    pub until: Instant,
    /// Largest request body.
    pub max_request_body: u64,
    /// Largest response body.
    pub max_response_body: u64,
}

/// A response whose body is capped, and the future that drives the connection.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// TLS for an `https` request: the connector and the name the certificate must carry.
pub type Tls = (TlsConnector, ServerName<'static>);

/// Connects to the first of `addrs` that answers, shakes hands over TLS when `tls` is given,
/// and sends `request` there.
pub async fn send(
    addrs: &[SocketAddr],
    request: http::Request<WasiBody>,
    budget: Budget,
    connect_timeout: Option<Duration>,
    tls: Option<Tls>,
) -> Result<Sent, Error> {
    let connect_until = connect_timeout
        .and_then(|t| Instant::now().checked_add(t))
        .map_or(budget.until, |t| t.min(budget.until));
    let stream = connect(addrs, connect_until).await?;
    match tls {
        None => exchange(stream, request, budget, connect_until).await,
        Some((connector, name)) => {
            let stream = tokio::time::timeout_at(connect_until, connector.connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            exchange(stream, request, budget, connect_until).await
        }
    }
}

/// HTTP/1.1 over an open connection (plain or TLS).
async fn exchange<S>(
    stream: S,
    mut request: http::Request<WasiBody>,
    budget: Budget,
    connect_until: Instant,
) -> Result<Sent, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
    let (mut sender, conn) = tokio::time::timeout_at(connect_until, handshake)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let request = request.map(|body| {
        Capped::new(
            body,
            budget.max_request_body,
            |limit| Error::HttpRequestBodySize(Some(limit)),
            budget.until,
        )
        .boxed_unsync()
    });
    let conn = wasmtime_wasi::runtime::spawn(conn);
    let response = tokio::time::timeout_at(budget.until, sender.send_request(request))
        .await
        .map_err(|_| Error::HttpResponseTimeout)??;
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > budget.max_response_body) {
        return Err(Error::HttpResponseBodySize(declared));
    }
    let response = response.map(|body| {
        Capped::new(
            body,
            budget.max_response_body,
            |limit| Error::HttpResponseBodySize(Some(limit)),
            budget.until,
        )
        .boxed_unsync()
    });
    let io = async move { conn.await.map_err(Error::from) };
    Ok((response, Box::new(io)))
}

async fn connect(addrs: &[SocketAddr], until: Instant) -> Result<TcpStream, Error> {
    let mut last = Error::DestinationNotFound;
    for addr in addrs {
        match tokio::time::timeout_at(until, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last = Error::Connect(err),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    Err(last)
}
