//! `labhit runs`: list runs, newest first (`ListPipelineRuns`, following page tokens).

use anyhow::Result;
use labhit_proto::v1::{self, ListPipelineRunsRequest};
use labhit_protocol::run::PipelineRun;

use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail, show};
use crate::{ColorWhen, Exit};

/// The largest page asked for (the server's maximum).
const MAX_PAGE: u32 = 500;

/// Arguments of `labhit runs`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit runs                                  the 20 newest runs\n",
    "  labhit runs --repo app --status failed --status cancelled --limit 100\n",
    "  labhit runs --status running --format json | jq -r '.[].id'\n",
    "\n",
    "One line per run: ID STATUS REPOSITORY REF COMMIT CREATED (UTC). --format json prints a\n",
    "JSON array of labhit-protocol PipelineRun documents.\n\n",
    client_connection_help!(), "\n\n",
    client_exit_codes!(),
))]
pub(crate) struct Args {
    /// Only runs of this repository (its registered name)
    #[arg(long = "repo", value_name = "REPO")]
    repository: Option<String>,

    /// Only runs with this status; repeatable
    #[arg(long, value_enum, value_name = "STATUS")]
    status: Vec<Status>,

    /// Most runs listed
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    server: ServerArgs,
}

/// `--status` values: the run statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Status {
    /// Accepted, no stage started yet.
    Queued,
    /// At least one stage started.
    Running,
    /// Every stage succeeded, was cached or skipped.
    Succeeded,
    /// A stage failed or was denied, or the run could not be executed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl From<Status> for v1::RunStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Queued => Self::Queued,
            Status::Running => Self::Running,
            Status::Succeeded => Self::Succeeded,
            Status::Failed => Self::Failed,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// Runs `labhit runs`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let mut runs: Vec<PipelineRun> = Vec::new();
        let mut page_token = String::new();
        let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
        while runs.len() < limit {
            let wanted = u32::try_from(limit - runs.len())
                .unwrap_or(MAX_PAGE)
                .min(MAX_PAGE);
            let request = ListPipelineRunsRequest {
                repository: args.repository.clone(),
                status: args
                    .status
                    .iter()
                    .map(|s| v1::RunStatus::from(*s).into())
                    .collect(),
                page_size: i32::try_from(wanted).unwrap_or(i32::MAX),
                page_token: page_token.clone(),
            };
            let page = match client.list_pipeline_runs(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => return Ok(fail::report("runs", &status, color.choice())),
            };
            for run in page.runs {
                runs.push(show::run_from_wire(Some(run))?);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        runs.truncate(limit);
        show::print_runs(&runs, args.format)?;
        Ok(Exit::Clean)
    })
}
