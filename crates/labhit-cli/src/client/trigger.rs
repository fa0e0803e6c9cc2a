//! `labhit trigger REPO REF`: start a run on the server (`TriggerPipeline`).

use anyhow::Result;
use labhit_proto::v1::TriggerPipelineRequest;

use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail, logs, show};
use crate::{ColorWhen, Exit};

/// Arguments of `labhit trigger`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit trigger app main                      run .labhit/pipeline.yaml of branch main\n",
    "  labhit trigger app v1.2.0 --approve deploy --follow\n",
    "  labhit trigger app 3f2c9e1 --pipeline ci/nightly.yaml --format json | jq -r .id\n",
    "  labhit trigger app main --idempotency-key build-4711   safe to retry\n",
    "\n",
    "REPO is a name the server registered with `labhit serve --repo NAME=PATH|URL`; REF is a\n",
    "branch, a tag, a full ref (refs/heads/main) or a commit id. The server reads the pipeline\n",
    "file at that commit and runs it in a checkout of exactly that commit.\n",
    "Without --follow the new run is printed (like `labhit status`; its id is on the last line,\n",
    "or `.id` with --format json) and the command exits 0 once the server accepted it; with\n",
    "--follow its log is streamed to the end and the exit code is the run's.\n\n",
    client_connection_help!(), "\n\n",
    client_exit_codes!(),
))]
pub(crate) struct Args {
    /// The registered repository name
    #[arg(value_name = "REPO")]
    repository: String,

    /// The branch, tag, full ref or commit id to run
    #[arg(value_name = "REF")]
    git_ref: String,

    /// The pipeline file within the repository [default: .labhit/pipeline.yaml]
    #[arg(long, value_name = "PATH")]
    pipeline: Option<String>,

    /// Approve the gate of STAGE up front; repeatable
    #[arg(long = "approve", value_name = "STAGE")]
    approve: Vec<String>,

    /// A key of 1 to 128 characters that makes retrying this command safe: the server
    /// returns the run the first attempt created
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,

    /// Stream the run's log until it ends; the exit code is then the run's
    #[arg(long, short = 'f')]
    follow: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `labhit trigger`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let request = TriggerPipelineRequest {
            repository: args.repository.clone(),
            git_ref: args.git_ref.clone(),
            pipeline_path: args.pipeline.clone(),
            approved_stages: args.approve.clone(),
            idempotency_key: args.idempotency_key.clone(),
        };
        let response = match client.trigger_pipeline(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Ok(fail::report("trigger", &status, color.choice())),
        };
        let run = show::run_from_wire(response.run)?;
        if !args.follow {
            show::print_run(&run, args.format, color)?;
            return Ok(Exit::Clean);
        }
        if args.format == Format::Human {
            crate::client::note(
                color,
                &format!(
                    "run {} of `{}` at {}",
                    run.id,
                    run.pipeline,
                    run.commit.as_deref().unwrap_or("?")
                ),
            );
        }
        let follow = logs::Follow {
            run_id: run.id.to_string(),
            stage: None,
            cursor: 0,
            reconnect: true,
        };
        logs::follow_to_end(&mut client, follow, args.format, color).await
    })
}
