//! Serving: the listen-address policy, the tonic server with `PipelineService`, standard
//! health (`grpc.health.v1`) and reflection, message size limits, and the drain that ends
//! every open stream when the server shuts down.
//!
//! Shutdown order (driven by `labhit serve`): [`Drain::start`] marks the server draining —
//! health answers `NOT_SERVING`, new triggers are refused with `UNAVAILABLE` and every open
//! `StreamLogs` ends with `UNAVAILABLE` so that followers reconnect elsewhere or later with
//! their cursor — then the server stops accepting connections and [`serve`] returns once the
//! open connections have finished, or after [`CONNECTION_GRACE`] at the latest. A follow-mode
//! stream therefore never keeps the server alive.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use labhit_proto::{PipelineService, PipelineServiceServer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::auth::Tokens;
use crate::limits::RequestLimit;

/// The default listen address of `labhit serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

/// The largest request message the server decodes (a trigger request is tiny); a larger one
/// is refused with `RESOURCE_EXHAUSTED` ([`crate::limits`]).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The largest response message the server encodes (a run with many stages, a log entry).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How long open connections get to finish after the drain started before [`serve`] returns
/// anyway.
pub const CONNECTION_GRACE: Duration = Duration::from_secs(2);

/// The fully qualified name health reports `PipelineService` under.
pub const SERVICE_NAME: &str = "labhit.v1.PipelineService";

/// Why the server refuses to listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A non-loopback address without tokens would expose the API to the network unguarded.
    #[error(
        "refusing to listen on {addr} without authentication: it is not a loopback address; pass --token-file FILE (one `NAME TOKEN` line per client) or listen on 127.0.0.1"
    )]
    Unprotected {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether `ip` only accepts connections from this machine.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Checks the listen policy (a non-loopback address needs tokens), then binds `addr`.
pub async fn bind(addr: SocketAddr, tokens: &Tokens) -> Result<TcpListener, ListenError> {
    if !is_loopback(addr.ip()) && !tokens.is_enabled() {
        return Err(ListenError::Unprotected { addr });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// The server's draining flag. Cheap to clone; every clone sees [`Drain::start`].
#[derive(Debug, Clone)]
pub struct Drain {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A server that is not draining.
    pub fn new() -> Self {
        Self {
            sender: std::sync::Arc::new(watch::channel(false).0),
        }
    }

    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once the server is draining.
    pub async fn started(&self) {
        let mut receiver = self.sender.subscribe();
        // `wait_for` only fails when the sender is dropped, which `self` prevents.
        let _ = receiver.wait_for(|draining| *draining).await;
    }
}

/// Serves `service` (behind the token check), health and reflection on `listener` until
/// `shutdown` resolves; then drains (see the module documentation) and returns within
/// [`CONNECTION_GRACE`].
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    tokens: Tokens,
    drain: Drain,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: PipelineService,
    F: Future<Output = ()> + Send + 'static,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(labhit_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(labhit_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .ok();

    let pipeline = RequestLimit::new(
        InterceptedService::new(
            PipelineServiceServer::new(service)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            tokens,
        ),
        MAX_REQUEST_BYTES,
    );

    // When the shutdown signal arrives: mark draining (streams end, health says so), then let
    // tonic stop accepting.
    let stopping = {
        let drain = drain.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            drain.start();
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        stopping.await;
        let _ = stopped_tx.send(());
    };

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_service(pipeline);
    let serving = router.serve_with_incoming_shutdown(incoming, stop);
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result,
        () = async {
            let _ = stopped_rx.await;
            tokio::time::sleep(CONNECTION_GRACE).await;
        } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_recognised() {
        for text in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(text.parse().expect("ip")), "{text}");
        }
        for text in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "192.168.1.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback(text.parse().expect("ip")), "{text}");
        }
    }

    #[tokio::test]
    async fn a_non_loopback_address_needs_tokens() {
        let addr: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let err = bind(addr, &Tokens::none()).await.expect_err("refused");
        assert!(err.to_string().contains("--token-file"), "{err}");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert!(bind(loopback, &Tokens::none()).await.is_ok());
    }
}
