//! `labhit serve`: the reference `PipelineService` over gRPC, with a durable run store in the
//! data dir.
//!
//! Startup order: read the token file, refuse a non-loopback address without one, open the
//! store (runs a previous server left in flight are marked interrupted), register the
//! repositories, with `--nats` connect to the fleet and cancel the tasks of those interrupted
//! runs there (`labhit_fleet::recovery`), bind, print `listening on ADDR` as the first line on stdout, serve. On
//! SIGINT or SIGTERM: drain (health `NOT_SERVING`, open `StreamLogs` end `UNAVAILABLE`), let
//! running runs finish for `--grace`, cancel what is left, commit the store, exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use labhit_protocol::forms::DurationSpec;
use labhit_runtime::registry::Registry;
use labhit_server::auth::Tokens;
use labhit_server::driver::{Driver, DriverConfig};
use labhit_server::repos::{RepoSpec, Repos};
use labhit_server::server::{self, DEFAULT_LISTEN, Drain};
use labhit_server::service::pipeline::Pipeline;
use labhit_server::store::{Store, StoreOptions, SyncMode};

use crate::Exit;

/// Arguments of `labhit serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit serve --repo app=.                          serve this repository on 127.0.0.1:7777\n",
    "  labhit serve --listen 127.0.0.1:0 --repo app=.     any free port (printed on stdout)\n",
    "  labhit serve --listen 0.0.0.0:7777 --token-file tokens --repo app=https://git.example/app.git\n",
    "\n",
    "The first line on stdout is `listening on ADDR`. Clients send `authorization: Bearer TOKEN`\n",
    "when the server has a token file (one `NAME TOKEN` line per client). Durability: a committed\n",
    "log entry survives a crash or kill -9 of the server; with `--sync full` also a power loss.\n",
    "\n",
    "Exit codes:\n",
    "  0  stopped by SIGINT or SIGTERM after draining\n",
    "  2  bad usage\n",
    "  3  fatal: cannot listen, bad token file, bad --repo, data dir unusable"
))]
pub(crate) struct Args {
    /// Address to listen on; a non-loopback address requires --token-file
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Where runs, logs and checkouts are kept [default: $XDG_DATA_HOME/labhit or
    /// ~/.local/share/labhit]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// A repository clients may run, as NAME=PATH or NAME=URL. Repeatable
    #[arg(long = "repo", value_name = "NAME=PATH|URL")]
    repos: Vec<String>,

    /// Directory to search for extension bundles. Repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// File of bearer tokens, one `NAME TOKEN` (or `NAME:TOKEN`) per line
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Durability of each commit: `normal` survives a crash of the server, `full` also a power
    /// loss
    #[arg(long, value_name = "MODE", default_value = "normal")]
    sync: SyncMode,

    /// Run stages on a fleet of `labhit worker`s through this NATS JetStream system
    /// (comma-separated URLs) instead of in this process
    #[arg(long, value_name = "URL")]
    nats: Option<String>,

    /// How long running runs may go on after SIGINT/SIGTERM before they are cancelled
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    grace: DurationSpec,
}

/// The default data dir.
fn default_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("labhit"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "cannot find a data dir: neither XDG_DATA_HOME nor HOME is set; pass --data-dir DIR"
            )
        })?;
    Ok(PathBuf::from(home).join(".local/share/labhit"))
}

/// Resolves when SIGINT or SIGTERM arrives.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server can only be killed; keep serving.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs `labhit serve`.
pub(crate) fn run(args: &Args) -> Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("labhit-serve")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    // Run threads still stopping after the bounded shutdown are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(Exit::Clean)
}

async fn serve(args: &Args) -> Result<()> {
    let tokens = match &args.token_file {
        Some(path) => Tokens::load(path)?,
        None => Tokens::none(),
    };
    if !server::is_loopback(args.listen.ip()) && !tokens.is_enabled() {
        return Err(server::ListenError::Unprotected { addr: args.listen }.into());
    }
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let specs = args
        .repos
        .iter()
        .map(|spec| {
            spec.parse::<RepoSpec>()
                .map_err(|err| anyhow!("--repo {spec}: {err}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut options = StoreOptions::new(&data_dir);
    options.sync = args.sync;
    let (store, interrupted) = tokio::task::spawn_blocking(move || Store::open(options))
        .await
        .context("opening the run store")??;
    for run in &interrupted {
        eprintln!(
            "labhit serve: run {} was interrupted by the previous server's stop",
            run.id
        );
    }
    let repos = {
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || Repos::open(specs, &data_dir))
            .await
            .context("registering repositories")??
    };
    let registry = Registry::discover(&args.extensions);
    let dispatcher: Arc<dyn labhit_runtime::dispatch::Dispatcher> = match &args.nats {
        None => Arc::new(labhit_runtime::dispatch::InProcess),
        Some(urls) => {
            let fleet = labhit_fleet::Fleet::connect(urls, crate::worker::fleet_options())
                .await
                .with_context(|| format!("--nats {urls}"))?;
            let ids: Vec<_> = interrupted.iter().map(|run| run.id).collect();
            labhit_fleet::recovery::abandon_runs(&fleet, &ids)
                .await
                .with_context(|| {
                    format!("cancelling the fleet's tasks of interrupted runs (--nats {urls})")
                })?;
            for id in &ids {
                eprintln!("labhit serve: run {id}: its tasks on the fleet are cancelled");
            }
            Arc::new(labhit_fleet::NatsDispatcher::new(
                fleet,
                tokio::runtime::Handle::current(),
            ))
        }
    };
    let driver = Driver::new(
        store.clone(),
        Arc::new(repos),
        DriverConfig {
            runs_dir: data_dir.join("runs"),
            registry: Arc::new(registry),
            jobs: match args.nats {
                // Stages wait on the fleet, not on this machine's cores.
                Some(_) => 32,
                None => labhit_runtime::scheduler::default_jobs(),
            },
            dispatcher,
            // `run:` stages are cached as by `labhit run`; with `--nats` the snapshots go to
            // the fleet's object store and this store stays empty.
            snapshots: Some(labhit_runtime::snapshot::SnapshotStore::new(
                data_dir.join("snapshots"),
            )),
        },
    );
    let drain = Drain::new();
    let listener = server::bind(args.listen, &tokens).await?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}").context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
    }
    let service = Pipeline::new(store.clone(), driver.clone(), drain.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        listener,
        service,
        tokens,
        drain.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    stop_signal().await;
    eprintln!(
        "labhit serve: stopping: draining connections and waiting up to {} for running runs",
        args.grace
    );
    let _ = stop_tx.send(());
    drain.start();
    driver.shutdown(args.grace.to_std()).await;
    match serving.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("labhit serve: the server ended with an error: {err}"),
        Err(err) => eprintln!("labhit serve: the server task failed: {err}"),
    }
    store.shutdown().await.context("closing the run store")?;
    Ok(())
}
