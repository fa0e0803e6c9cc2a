//! `labhit worker`: runs stages for a `labhit serve --nats` server (see `labhit_fleet::worker`).
//!
//! Startup: load every bundle of `--extensions` (problems go to stderr), connect, advertise,
//! print `worker NAME ready: N extension(s)` as the first line on stdout, serve. On SIGINT or
//! SIGTERM: stop pulling, let running tasks finish, withdraw the advertisement, exit 0.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use labhit_fleet::FleetOptions;
use labhit_fleet::worker::{Worker, WorkerConfig};
use labhit_protocol::forms::DurationSpec;
use labhit_runtime::Cancellation;

use crate::Exit;

/// Arguments of `labhit worker`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit worker --nats nats://127.0.0.1:4222 --extensions target/extensions\n",
    "  labhit worker --nats nats://a:4222,nats://b:4222 --extensions exts --concurrency 4\n",
    "\n",
    "The first line on stdout is `worker NAME ready: N extension(s)`. A task is only pulled by\n",
    "a worker that has its extension (name@version and contract). A worker killed mid-stage\n",
    "loses its task to another worker after --ack-wait.\n",
    "\n",
    "Exit codes:\n",
    "  0  stopped by SIGINT or SIGTERM after finishing its running tasks\n",
    "  2  bad usage\n",
    "  3  fatal: cannot connect, work dir unusable"
))]
pub(crate) struct Args {
    /// The NATS JetStream system of the server (comma-separated URLs)
    #[arg(long, value_name = "URL")]
    nats: String,

    /// Directory to search for extension bundles. Repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// Most stages running at once
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,

    /// The worker's name in the fleet [default: HOSTNAME-PID]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Where task workspaces are unpacked and the worker keeps its copies of the fleet's
    /// snapshots (`DIR/snapshots`) [default: a temporary directory]
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,

    /// How long a task may go without a sign of life before another worker gets it
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    ack_wait: DurationSpec,

    /// Replicas of the fleet's streams and buckets (3 on a three-node cluster)
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: usize,
}

/// The fleet settings a server uses (`LABHIT_NATS_ACK_WAIT`, `LABHIT_NATS_REPLICAS` override
/// the defaults, for tests and clusters).
pub(crate) fn fleet_options() -> FleetOptions {
    let mut options = FleetOptions::default();
    if let Some(wait) = std::env::var("LABHIT_NATS_ACK_WAIT")
        .ok()
        .and_then(|v| v.parse::<DurationSpec>().ok())
    {
        options.ack_wait = wait.to_std();
    }
    if let Some(replicas) = std::env::var("LABHIT_NATS_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.replicas = replicas;
    }
    options
}

/// Runs `labhit worker`.
pub(crate) fn run(args: &Args) -> Result<Exit> {
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let scratch;
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            scratch = tempfile::Builder::new()
                .prefix("labhit-worker-")
                .tempdir()
                .context("making a work dir")?;
            scratch.path().to_owned()
        }
    };
    let worker = Worker::prepare(WorkerConfig {
        name: name.clone(),
        extensions: args.extensions.clone(),
        concurrency: args.concurrency,
        work_dir,
    })?;
    for problem in &worker.problems {
        eprintln!("labhit worker: extension not served: {problem}");
    }
    let options = FleetOptions {
        ack_wait: args.ack_wait.to_std(),
        replicas: args.replicas,
        ..FleetOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("labhit-worker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let fleet = labhit_fleet::Fleet::connect(&args.nats, options)
            .await
            .with_context(|| format!("--nats {}", args.nats))?;
        let stop = Cancellation::new();
        let extensions = worker.needs().len() - 1;
        let running = worker
            .start(fleet, stop.clone())
            .await
            .context("starting the worker")?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "worker {name} ready: {extensions} extension(s)")
                .context("writing to stdout")?;
            stdout.flush().context("writing to stdout")?;
        }
        crate::serve::stop_signal().await;
        stop.cancel();
        running.wait().await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(Exit::Clean)
}
