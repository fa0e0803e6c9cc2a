//! `labhit status RUN`: a run's status and stages (`GetPipelineRun`).

use anyhow::Result;
use labhit_proto::v1::GetPipelineRunRequest;

use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail, show};
use crate::{ColorWhen, Exit};

/// Arguments of `labhit status`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit status 0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708\n",
    "  labhit status RUN --format json | jq '.stages[] | {stage, status, reason}'\n",
    "\n",
    "Prints the run like `labhit run` prints its summary (a table on a terminal, plain lines\n",
    "otherwise; JSON is the labhit-protocol PipelineRun). A run that has not finished yet\n",
    "exits 0.\n\n",
    client_connection_help!(), "\n\n",
    client_exit_codes!(),
))]
pub(crate) struct Args {
    /// The run id (a UUID)
    #[arg(value_name = "RUN")]
    run_id: String,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `labhit status`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let request = GetPipelineRunRequest {
            run_id: args.run_id.clone(),
        };
        match client.get_pipeline_run(request).await {
            Ok(response) => {
                let run = show::run_from_wire(response.into_inner().run)?;
                show::print_run(&run, args.format, color)?;
                Ok(show::run_exit(&run))
            }
            Err(status) => Ok(fail::report("status", &status, color.choice())),
        }
    })
}
