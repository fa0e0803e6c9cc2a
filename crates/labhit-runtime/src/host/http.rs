//! `wasi:http/outgoing-handler` and `wasi:http/types` (WASI 0.2), linked only for extensions
//! whose manifest lists `capabilities.network` entries. wasmtime-wasi-http implements the
//! interfaces; its one hook that reaches the network, `send_request`, is ours: every request
//! goes through [`crate::net::policy`] (allow-list, resolution, request forgery guard) and
//! [`crate::net::send`] (connect to a checked address, capped bodies), bounded by the
//! request timeout, the step's deadline and its cancellation, and is logged into the step's
//! log stream (method, host, path, status, duration; secrets redacted like every entry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use labhit_protocol::manifest::network::AllowList;
use labhit_protocol::run::{LogLevel, LogStream};
use wasmtime::component::Linker;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::cancellation::Cancellation;
use crate::logs::StepLog;
use crate::net::HttpLimits;
use crate::net::policy::{self, Denial};
use crate::net::send::{self, Budget, Sent};
use crate::net::tls::{self, TlsClient};
use crate::sandbox::StepHost;

/// The prefix of every import name this module provides.
pub const IMPORT_PREFIX: &str = "wasi:http/";

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)
}

/// The per-step state of outbound HTTP.
pub(crate) struct HttpState {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) hooks: HttpHooks,
}

impl HttpState {
    pub(crate) fn new(hooks: HttpHooks) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks,
        }
    }
}

impl WasiHttpView for StepHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http.hooks,
            table: &mut self.table,
            ctx: &mut self.http.ctx,
        }
    }
}

/// What every request of one step is checked and bounded by.
#[derive(Clone)]
pub(crate) struct HttpHooks {
    pub(crate) allow: Arc<AllowList>,
    pub(crate) limits: HttpLimits,
    pub(crate) deadline: Instant,
    pub(crate) cancellation: Cancellation,
    pub(crate) log: Arc<StepLog>,
    pub(crate) tls: Arc<TlsClient>,
}

type SendFuture = Box<dyn Future<Output = Result<Sent, Error>> + Send>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _body_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let hooks = self.clone();
        Box::new(async move { hooks.send(request, options).await })
    }

    fn p2_error_from_tls(
        &mut self,
        err: &std::io::Error,
    ) -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
        use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
        if tls::is_certificate_error(err) {
            ErrorCode::TlsCertificateError
        } else {
            ErrorCode::TlsProtocolError
        }
    }
}

impl HttpHooks {
    async fn send(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, Error> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let target = format!(
            "{}{}",
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        let admitted =
            policy::admit(&self.allow, &uri).map_err(|d| self.denied(&method, &uri, d))?;
        let budget = self
            .limits
            .request_timeout
            .min(self.deadline.saturating_duration_since(started));
        let until = tokio::time::Instant::now() + budget;
        let tls = if admitted.tls {
            let setup = self
                .tls
                .connector()
                .and_then(|c| tls::server_name(&admitted.host).map(|name| (c, name)));
            match setup {
                Ok(tls) => Some(tls),
                Err(why) => {
                    self.log.emit_owned(
                        LogLevel::Warn,
                        LogStream::System,
                        format!("http {method} {target} failed: {why}"),
                        fields(&method, &uri, None, Duration::ZERO),
                    );
                    return Err(Error::TlsProtocolError);
                }
            }
        } else {
            None
        };
        let addrs = admitted
            .resolve(budget)
            .await
            .map_err(|d| self.denied(&method, &uri, d))?;
        let exchange = send::send(
            &addrs,
            request,
            Budget {
                until,
                max_request_body: self.limits.max_request_body,
                max_response_body: self.limits.max_response_body,
            },
            options.and_then(|o| o.connect_timeout),
            tls,
        );
        let result = tokio::select! {
            result = exchange => result,
            () = self.cancellation.cancelled() => {
                Err(Error::InternalError(Some("the step was cancelled".into())))
            }
        };
        let took = started.elapsed();
        match &result {
            Ok((response, _)) => self.log.emit_owned(
                LogLevel::Info,
                LogStream::System,
                format!(
                    "http {method} {target} -> {} in {}",
                    response.status().as_u16(),
                    millis(took)
                ),
                fields(&method, &uri, Some(response.status().as_u16()), took),
            ),
            Err(err) => self.log.emit_owned(
                LogLevel::Warn,
                LogStream::System,
                format!(
                    "http {method} {target} failed after {}: {}",
                    millis(took),
                    match err {
                        Error::Tls(io) => format!(
                            "TLS handshake with `{host}`: {}",
                            tls::describe(io),
                            host = admitted.host
                        ),
                        other => other.to_string(),
                    }
                ),
                fields(&method, &uri, None, took),
            ),
        }
        result
    }

    /// Logs a refused request (naming the host and the rule) and returns the guest's error.
    fn denied(&self, method: &http::Method, uri: &http::Uri, denial: Denial) -> Error {
        self.log.emit_owned(
            LogLevel::Warn,
            LogStream::System,
            format!("http {method} request denied: {denial}"),
            fields(method, uri, None, Duration::ZERO),
        );
        denial.error()
    }
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn fields(
    method: &http::Method,
    uri: &http::Uri,
    status: Option<u16>,
    took: Duration,
) -> Vec<(String, String)> {
    let mut out = vec![
        ("method".to_owned(), method.to_string()),
        ("host".to_owned(), uri.host().unwrap_or("").to_owned()),
        ("path".to_owned(), uri.path().to_owned()),
        ("duration_ms".to_owned(), took.as_millis().to_string()),
    ];
    if let Some(status) = status {
        out.push(("status".to_owned(), status.to_string()));
    }
    out
}
