//! Real `nats-server` processes for tests and benchmarks: one JetStream node, or a
//! three-node JetStream cluster, on free loopback ports with temporary store directories.
//!
//! The binary is `$LABHIT_NATS_SERVER`, else the pinned one `tools/venv-install.sh nats` puts in
//! `target/nats-venv/bin/nats-server`. When neither exists, [`NatsServer::start`] fails with a
//! message naming the install script: tests that need NATS fail, they never skip.
//!
//! Readiness is observed, never waited out: a node is ready once a client connection to it
//! receives the server's `INFO` greeting. Every process is killed (and reaped) on drop.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the `nats-server` binary to use.
pub const NATS_SERVER_ENV: &str = "LABHIT_NATS_SERVER";

/// How long a node may take to accept clients.
const STARTUP: Duration = Duration::from_secs(20);

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// No binary.
    #[error(
        "nats-server not found at `{path}`: run `tools/venv-install.sh nats` (or set \
         {NATS_SERVER_ENV} to a nats-server binary)"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An I/O failure (spawning, a free port, the temporary directory).
    #[error("nats-server: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The process did not accept clients in time, or exited.
    #[error("nats-server on port {port} is not ready after {secs}s: {why}", secs = STARTUP.as_secs())]
    NotReady {
        /// Its client port.
        port: u16,
        /// What was seen.
        why: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestServerError {
    let what = what.into();
    move |source| TestServerError::Io { what, source }
}

/// The `nats-server` binary tests use (see the module documentation).
pub fn nats_server_binary() -> Result<PathBuf, TestServerError> {
    find_binary(std::env::var_os(NATS_SERVER_ENV))
}

/// The binary named by `configured` (the value of [`NATS_SERVER_ENV`]), else the one
/// `tools/venv-install.sh nats` installs; an error naming the script when it is not a file.
pub fn find_binary(configured: Option<std::ffi::OsString>) -> Result<PathBuf, TestServerError> {
    let path = match configured.filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/nats-venv/bin/nats-server")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestServerError::Missing { path })
    }
}

/// A free loopback port (bound and released: nothing else on this machine picks ports from
/// the same range on purpose).
pub fn free_port() -> Result<u16, TestServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("a free port"))
}

/// One `nats-server -js` process. Killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    name: String,
    args: Vec<String>,
    binary: PathBuf,
    _store: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// A single JetStream node on a free loopback port, its store in a fresh temporary
    /// directory; returns once it accepts clients.
    pub fn start() -> Result<Self, TestServerError> {
        let port = free_port()?;
        Self::spawn("n0".to_owned(), port, Vec::new())
    }

    fn spawn(name: String, port: u16, extra: Vec<String>) -> Result<Self, TestServerError> {
        let binary = nats_server_binary()?;
        let store = tempfile::Builder::new()
            .prefix("labhit-nats-")
            .tempdir()
            .map_err(io("a store directory"))?;
        let mut args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-n".to_owned(),
            name.clone(),
            "-sd".to_owned(),
            store.path().to_string_lossy().into_owned(),
        ];
        args.extend(extra);
        let mut server = Self {
            child: None,
            port,
            name,
            args,
            binary,
            _store: Some(store),
        };
        server.restart()?;
        Ok(server)
    }

    /// Starts the process again (after [`NatsServer::kill`]) with the same port and store;
    /// returns once it accepts clients.
    pub fn restart(&mut self) -> Result<(), TestServerError> {
        self.kill();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(format!("spawning `{}`", self.binary.display())))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until a client connection receives the `INFO` greeting.
    fn wait_ready(&mut self) -> Result<(), TestServerError> {
        let start = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(TestServerError::NotReady {
                    port: self.port,
                    why: format!("the process exited with {status}"),
                });
            }
            let greeting =
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).and_then(|stream| {
                    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut line = String::new();
                    BufReader::new(stream).read_line(&mut line)?;
                    Ok(line)
                });
            match greeting {
                Ok(line) if line.starts_with("INFO ") => return Ok(()),
                Ok(line) => {
                    return Err(TestServerError::NotReady {
                        port: self.port,
                        why: format!("unexpected greeting {line:?}"),
                    });
                }
                // Not listening yet: the connect attempt itself paces the loop.
                Err(e) if start.elapsed() >= STARTUP => {
                    return Err(TestServerError::NotReady {
                        port: self.port,
                        why: e.to_string(),
                    });
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// Kills the process with SIGKILL and reaps it (no-op when not running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The node's server name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream nodes routed into one cluster. Killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, `n0`, `n1`, `n2`.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three nodes of cluster `labhit` on free loopback ports; returns once each accepts
    /// clients (JetStream's meta leader may still be electing: clients retry their first
    /// JetStream request, see [`crate::Fleet::connect`]).
    pub fn start() -> Result<Self, TestServerError> {
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let routes = route
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let extra = vec![
                "--cluster_name".to_owned(),
                "labhit".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{}", route[i]),
                "--routes".to_owned(),
                routes.clone(),
            ];
            nodes.push(NatsServer::spawn(format!("n{i}"), client[i], extra)?);
        }
        Ok(Self { nodes })
    }

    /// Every node's client URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
