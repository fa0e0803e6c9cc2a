//! Outbound HTTP overhead: `cargo bench -p labhit-runtime --bench http`.
//!
//! One JSON POST to a loopback server (a `std::net` thread answering `200 ok` and closing
//! each connection) made three ways:
//!
//! | bench | measures |
//! |---|---|
//! | `native_std` | the same request bytes written and the answer read with `std::net` (the floor) |
//! | `guest_step` | a whole `notify/webhook` step: fresh store, instantiate, `execute` (config parsing, `labhit_sdk::http::post_json`), the host's allow-list check, connect, hyper, the capped body |
//! | `guest_step_noop` | the same step with a URL the allow-list refuses before connecting: the step without the request |
//!
//! `guest_step − guest_step_noop` is the cost of the request through `wasi:http`;
//! `guest_step − native_std` the whole overhead of making it from a guest step.
//!
//! The server counts the requests it answered. Before measuring, the setup checks that a
//! guest step reaches it once and reports status 200, and that the refused step fails with
//! the allow-list's error without reaching it; each measured guest step checks its status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use divan::{Bencher, black_box};
use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_runtime::{LoadedExtension, Runtime, RuntimeConfig, StepRequest};

fn main() {
    divan::main();
}

struct Setup {
    addr: SocketAddr,
    runtime: Runtime,
    extension: LoadedExtension,
}

/// Requests the server read (and answers).
static SERVED: AtomicUsize = AtomicUsize::new(0);

/// Answers every connection with `200 ok` and closes it; lives as long as the process.
fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        // Counted before answering, so a client that saw the answer sees the count.
        SERVED.fetch_add(1, Ordering::SeqCst);
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        std::thread::spawn(move || serve(listener));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join("extensions/notify/webhook");
        let component = Builder::for_workspace(&root)
            .build(&dir, Target::P2)
            .unwrap_or_else(|err| panic!("building the webhook: {err}"))
            .component;
        let text = std::fs::read_to_string(dir.join("extension.toml"))
            .unwrap_or_else(|e| panic!("manifest: {e}"));
        let text = text.replace(
            "network = [\"hooks.example.com\", \"127.0.0.1:8080\"]",
            &format!("network = [\"{addr}\"]"),
        );
        let manifest = Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{d:?}"));
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-http-cache");
        let runtime = Runtime::new(RuntimeConfig::with_cache_dir(cache))
            .unwrap_or_else(|err| panic!("runtime: {err}"));
        let extension = runtime
            .load(&manifest, &component)
            .unwrap_or_else(|err| panic!("{err}"));
        let setup = Setup {
            addr,
            runtime,
            extension,
        };
        verify(&setup);
        setup
    })
}

/// A guest step reaches the server once and reports 200; a refused one never reaches it.
fn verify(setup: &Setup) {
    let before = SERVED.load(Ordering::SeqCst);
    let outcome = setup
        .runtime
        .execute(
            &setup.extension,
            step(format!("http://{}/hook", setup.addr)),
        )
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        outcome.outputs.get("status").map(String::as_str),
        Some("200")
    );
    assert_eq!(SERVED.load(Ordering::SeqCst), before + 1);
    let err = setup
        .runtime
        .execute(&setup.extension, step(refused_url(setup)))
        .err()
        .unwrap_or_else(|| panic!("a request to a host off the allow-list succeeded"));
    let message = err.to_string();
    assert!(message.contains("not-listed.invalid"), "{message}");
    assert_eq!(SERVED.load(Ordering::SeqCst), before + 1);
    eprintln!("refused step: {message}");
}

/// A URL the allow-list refuses before connecting.
fn refused_url(setup: &Setup) -> String {
    format!("http://not-listed.invalid:{}/hook", setup.addr.port())
}

fn step(url: String) -> StepRequest {
    let mut request = StepRequest::new("bench");
    request.with = serde_json::json!({"url": url, "message": "bench"}).into();
    request
}

/// The body `notify/webhook` sends for the bench `with`.
const BODY: &str =
    r#"{"run":"00000000-0000-0000-0000-000000000000","stage":"bench","text":"bench"}"#;

#[divan::bench(sample_count = 200)]
fn native_std(bencher: Bencher<'_, '_>) {
    let setup = setup();
    let request = format!(
        "POST /hook HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        setup.addr,
        BODY.len()
    );
    bencher.bench_local(|| {
        let mut stream = TcpStream::connect(setup.addr).unwrap_or_else(|e| panic!("{e}"));
        stream
            .write_all(black_box(request.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    });
}

#[divan::bench(sample_count = 200)]
fn guest_step(bencher: Bencher<'_, '_>) {
    let setup = setup();
    let url = format!("http://{}/hook", setup.addr);
    bencher
        .with_inputs(|| step(url.clone()))
        .bench_local_values(|request| {
            let outcome = setup
                .runtime
                .execute(&setup.extension, request)
                .unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(outcome.exit_code, 0);
            assert_eq!(
                outcome.outputs.get("status").map(String::as_str),
                Some("200")
            );
        });
}

#[divan::bench(sample_count = 200)]
fn guest_step_noop(bencher: Bencher<'_, '_>) {
    let setup = setup();
    let url = refused_url(setup);
    bencher
        .with_inputs(|| step(url.clone()))
        .bench_local_values(|request| {
            let result = setup.runtime.execute(&setup.extension, request);
            assert!(result.is_err());
        });
}
