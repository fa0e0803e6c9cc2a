//! Outbound HTTP end to end: the `notify/webhook` example (a real component using
//! `labhit_sdk::http`) against a real HTTP/1.1 server on 127.0.0.1, started by each test on
//! a free port with `std::net` (one connection, then its thread ends), plain or over TLS
//! (rustls, with the test certificates in `tests/data/tls`). The allowed request, each
//! refusal (host not listed, a host name resolving to loopback, another port, an unknown
//! scheme), `https` to a trusted and to an untrusted server, a response that never ends, a
//! server that never answers, and a component that imports `wasi:http` without the
//! capability.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labhit_runtime::{HttpLimits, TlsRoots};

use super::*;

/// What the server does with the one connection it accepts.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads the request and answers 200 `ok`.
    Answer,
    /// Reads the request and streams a chunked body of up to 1 GiB.
    Endless,
    /// Reads the request and never answers, until the client closes.
    Silent,
}

/// What the server saw: the request head lines, the body, and how many body bytes it sent.
#[derive(Debug, Default)]
struct Seen {
    head: Vec<String>,
    body: Vec<u8>,
    sent: u64,
}

struct Server {
    port: u16,
    listener: TcpListener,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        Self { port, listener }
    }

    /// Serves one connection on a thread.
    fn serve(&self, behaviour: Behaviour) -> JoinHandle<Seen> {
        let listener = self.listener.try_clone().expect("clone listener");
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            handle(stream, behaviour)
        })
    }

    /// Serves one connection over TLS with the test certificate for `127.0.0.1`; a failed
    /// handshake ends the thread with `Err` and the handshake's error.
    fn serve_tls(&self, behaviour: Behaviour) -> JoinHandle<Result<Seen, String>> {
        let listener = self.listener.try_clone().expect("clone listener");
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut conn = rustls::ServerConnection::new(tls_server_config()).expect("tls");
            while conn.is_handshaking() {
                conn.complete_io(&mut stream).map_err(|e| e.to_string())?;
            }
            Ok(handle(rustls::StreamOwned::new(conn, stream), behaviour))
        })
    }

    /// Whether a connection is waiting (a refused request must never connect).
    fn was_contacted(&self) -> bool {
        self.listener.set_nonblocking(true).expect("nonblocking");
        let contacted = self.listener.accept().is_ok();
        self.listener.set_nonblocking(false).expect("blocking");
        contacted
    }
}

fn tls_dir() -> std::path::PathBuf {
    workspace_root().join("crates/labhit-runtime/tests/data/tls")
}

fn tls_server_config() -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tls_dir();
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .and_then(Iterator::collect)
        .expect("server.pem");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate");
    std::sync::Arc::new(config)
}

fn handle<S: Read + Write>(stream: S, behaviour: Behaviour) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut seen = Seen::default();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read head") == 0 {
            return seen;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("content-length");
        }
        seen.head.push(line);
    }
    seen.body = vec![0; length];
    reader.read_exact(&mut seen.body).expect("read body");
    match behaviour {
        Behaviour::Answer => {
            let stream = reader.get_mut();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .expect("answer");
        }
        Behaviour::Endless => {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let stream = reader.get_mut();
            if stream.write_all(head).is_err() {
                return seen;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            while seen.sent < 1 << 30 {
                if stream.write_all(&framed).is_err() {
                    break;
                }
                seen.sent += chunk.len() as u64;
            }
        }
        Behaviour::Silent => {
            // Blocks until the host closes the connection.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        }
    }
    seen
}

fn webhook_manifest(network: &[String]) -> Manifest {
    let dir = workspace_root().join("extensions/notify/webhook");
    let text = std::fs::read_to_string(dir.join("extension.toml")).expect("manifest");
    let list = network
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let line = "network = [\"hooks.example.com\", \"127.0.0.1:8080\"]";
    assert!(text.contains(line), "the webhook manifest changed");
    let replaced = if network.is_empty() {
        text.replace(line, "")
    } else {
        text.replace(line, &format!("network = [{list}]"))
    };
    manifest(&replaced)
}

fn webhook_runtime(limits: HttpLimits) -> Fixture {
    webhook_runtime_trusting(limits, TlsRoots::default())
}

fn webhook_runtime_trusting(limits: HttpLimits, tls_roots: TlsRoots) -> Fixture {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig {
        http: limits,
        tls_roots,
        ..RuntimeConfig::with_cache_dir(cache.path())
    };
    Fixture {
        runtime: Runtime::new(config).expect("runtime"),
        _cache: cache,
    }
}

const TOKEN: &str = "tok-5f1c9e0d-secret";

/// Runs the webhook with `network` entries and `with`.
fn run_webhook(
    fixture: &Fixture,
    network: &[String],
    with: serde_json::Value,
    timeout: Option<Duration>,
) -> (
    Result<StepOutcome, StepError>,
    Arc<CollectingSink>,
    Duration,
) {
    let component = build(
        &workspace_root().join("extensions/notify/webhook"),
        Target::P2,
    );
    let extension = fixture
        .runtime
        .load(&webhook_manifest(network), &component)
        .unwrap_or_else(|err| panic!("{err}"));
    let mut step = step("unused");
    step.request.with = with.into();
    step.request.timeout = timeout;
    let mut secrets = MapSecrets::new();
    secrets.insert("WEBHOOK_TOKEN", TOKEN);
    step.request.secrets = Arc::new(secrets);
    let started = Instant::now();
    let result = fixture.runtime.execute(&extension, step.request);
    (result, step.sink, started.elapsed())
}

fn log_text(sink: &CollectingSink) -> String {
    sink.entries()
        .iter()
        .map(|e| {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}\n", e.message, fields.join(" "))
        })
        .collect()
}

fn failure_message(result: Result<StepOutcome, StepError>) -> String {
    let (err, _) = expect_failure(result);
    err.to_string()
}

#[test]
fn webhook_posts_the_message_with_the_bearer_token_and_redacts_it() {
    let server = Server::start();
    let serving = server.serve(Behaviour::Answer);
    let fixture = webhook_runtime(HttpLimits::default());
    let url = format!("http://127.0.0.1:{}/hook/{TOKEN}", server.port);
    let (result, sink, _) = run_webhook(
        &fixture,
        &[format!("127.0.0.1:{}", server.port)],
        serde_json::json!({
            "url": url, "message": "deployed", "secret": "WEBHOOK_TOKEN",
            "fields": {"env": "prod"}
        }),
        None,
    );
    let outcome = ok(result);
    assert_eq!(
        outcome.outputs.get("status").map(String::as_str),
        Some("200")
    );
    let seen = serving.join().expect("server");
    assert_eq!(seen.head[0], format!("POST /hook/{TOKEN} HTTP/1.1"));
    assert!(
        seen.head
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}"))),
        "{:?}",
        seen.head
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(body["text"], "deployed");
    assert_eq!(body["env"], "prod");
    assert_eq!(body["stage"], "probe-stage");
    let logs = log_text(&sink);
    assert!(logs.contains("http POST 127.0.0.1:"), "{logs}");
    assert!(logs.contains("-> 200"), "{logs}");
    assert!(logs.contains("status=200"), "{logs}");
    assert!(
        !logs.contains(TOKEN),
        "the token leaked into the log: {logs}"
    );
}

#[test]
fn refused_requests_never_connect_and_name_the_host_and_rule() {
    let server = Server::start();
    let port = server.port;
    let other_port = if port == u16::MAX { port - 1 } else { port + 1 };
    let fixture = webhook_runtime(HttpLimits::default());
    // (entries, url, what the denial log line says)
    let cases = [
        (
            format!("127.0.0.1:{port}"),
            format!("http://not-listed.example:{port}/"),
            format!(
                "`not-listed.example:{port}` is not in the manifest's `capabilities.network` (rule: allow-list)"
            ),
        ),
        (
            format!("localhost:{port}"),
            format!("http://localhost:{port}/"),
            "`localhost` resolves to 127.0.0.1, a loopback address (rule: request forgery guard)"
                .to_owned(),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{other_port}/"),
            format!("`127.0.0.1:{other_port}` is not in the manifest's `capabilities.network`"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("https://127.0.0.1:{other_port}/"),
            format!("`127.0.0.1:{other_port}` is not in the manifest's `capabilities.network`"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://2130706433:{port}/"),
            "reads as an IPv4 address in a non-canonical form".to_owned(),
        ),
    ];
    for (entry, url, said) in cases {
        let (result, sink, _) = run_webhook(
            &fixture,
            std::slice::from_ref(&entry),
            serde_json::json!({"url": url, "message": "m"}),
            None,
        );
        let message = failure_message(result);
        assert!(message.contains("denied by the host"), "{url}: {message}");
        let logs = log_text(&sink);
        assert!(logs.contains("request denied"), "{url}: {logs}");
        assert!(logs.contains(&said), "{url}: {logs}");
        assert!(!server.was_contacted(), "{url} reached the server");
    }
}

#[test]
fn an_endless_response_is_cut_off_at_the_limit() {
    let server = Server::start();
    let serving = server.serve(Behaviour::Endless);
    let limits = HttpLimits {
        max_response_body: 1 << 20,
        ..HttpLimits::default()
    };
    let fixture = webhook_runtime(limits);
    let (result, _sink, took) = run_webhook(
        &fixture,
        &[format!("127.0.0.1:{}", server.port)],
        serde_json::json!({"url": format!("http://127.0.0.1:{}/", server.port), "message": "m"}),
        None,
    );
    let message = failure_message(result);
    assert!(message.contains("exceeds 1048576 bytes"), "{message}");
    // The host closed the connection: the server stopped far short of 1 GiB.
    let seen = serving.join().expect("server");
    assert!(seen.sent < 64 << 20, "the server sent {} bytes", seen.sent);
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn a_server_that_never_answers_ends_at_the_deadline() {
    let server = Server::start();
    let serving = server.serve(Behaviour::Silent);
    let fixture = webhook_runtime(HttpLimits::default());
    let (result, _sink, took) = run_webhook(
        &fixture,
        &[format!("127.0.0.1:{}", server.port)],
        serde_json::json!({"url": format!("http://127.0.0.1:{}/", server.port), "message": "m"}),
        Some(Duration::from_secs(2)),
    );
    let (err, failure) = expect_failure(result);
    let timed_out =
        matches!(failure, StepFailure::Timeout { .. }) || err.to_string().contains("timed out");
    assert!(timed_out, "{err}");
    // The 2 s deadline, plus scheduling slack on a loaded machine.
    assert!(took < Duration::from_secs(15), "{took:?}");
    // The host closed the connection when the step ended.
    serving.join().expect("server");
}

#[test]
fn a_component_importing_http_without_the_capability_is_refused_at_load() {
    let fixture = runtime();
    let component = build(
        &workspace_root().join("extensions/notify/webhook"),
        Target::P2,
    );
    let err = fixture
        .runtime
        .load(&webhook_manifest(&[]), &component)
        .expect_err("loads without the network capability");
    let text = err.to_string();
    assert!(text.contains("notify/webhook"), "{text}");
    assert!(text.contains("imports `wasi:http/"), "{text}");
    assert!(text.contains("capabilities.network"), "{text}");
}

#[test]
fn only_components_built_with_the_http_feature_import_wasi_http() {
    let has_http = |path: &str| {
        let component = build(&workspace_root().join(path), Target::P2);
        let bytes = std::fs::read(component).expect("component");
        bytes.windows(10).any(|w| w == b"wasi:http/")
    };
    assert!(has_http("extensions/notify/webhook"));
    assert!(!has_http("extensions/util/checksum"));
}

#[test]
fn https_to_a_server_signed_by_a_trusted_root_is_sent_over_tls() {
    let server = Server::start();
    let serving = server.serve_tls(Behaviour::Answer);
    let fixture = webhook_runtime_trusting(
        HttpLimits::default(),
        TlsRoots {
            system: false,
            extra_pem_files: vec![tls_dir().join("ca.pem")],
        },
    );
    let (result, sink, _) = run_webhook(
        &fixture,
        &[format!("127.0.0.1:{}", server.port)],
        serde_json::json!({
            "url": format!("https://127.0.0.1:{}/hook", server.port),
            "message": "over tls", "secret": "WEBHOOK_TOKEN"
        }),
        None,
    );
    let outcome = ok(result);
    assert_eq!(
        outcome.outputs.get("status").map(String::as_str),
        Some("200")
    );
    let seen = serving.join().expect("server").expect("tls handshake");
    assert_eq!(seen.head[0], "POST /hook HTTP/1.1");
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(body["text"], "over tls");
    let logs = log_text(&sink);
    assert!(logs.contains("-> 200"), "{logs}");
    assert!(
        !logs.contains(TOKEN),
        "the token leaked into the log: {logs}"
    );
}

#[test]
fn https_to_an_untrusted_server_fails_the_handshake_and_sends_nothing() {
    let server = Server::start();
    let serving = server.serve_tls(Behaviour::Answer);
    // The system's roots only (the default): the test CA is not among them.
    let fixture = webhook_runtime(HttpLimits::default());
    let (result, sink, _) = run_webhook(
        &fixture,
        &[format!("127.0.0.1:{}", server.port)],
        serde_json::json!({
            "url": format!("https://127.0.0.1:{}/hook/{TOKEN}", server.port),
            "message": "m", "secret": "WEBHOOK_TOKEN"
        }),
        None,
    );
    let message = failure_message(result);
    assert!(message.contains("TlsCertificateError"), "{message}");
    let handshake = serving.join().expect("server");
    assert!(
        handshake.is_err(),
        "the server got a request over an unverified connection: {handshake:?}"
    );
    let logs = log_text(&sink);
    assert!(
        logs.contains("TLS handshake with `127.0.0.1`: the server's certificate is not accepted"),
        "{logs}"
    );
    assert!(
        !logs.contains(TOKEN),
        "the token leaked into the log: {logs}"
    );
}
