//! `labhit approve RUN STAGE`: approve a stage waiting at its gate (`ApprovePipelineStage`).

use anyhow::Result;
use labhit_proto::v1::ApprovePipelineStageRequest;

use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail, show};
use crate::{ColorWhen, Exit};

/// Arguments of `labhit approve`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit approve RUN deploy\n",
    "  LABHIT_TOKEN=$(cat ~/.config/labhit/token) labhit approve RUN deploy --server http://ci:7777\n",
    "\n",
    "A stage waiting in `waiting_for_approval` proceeds; a stage that has not reached its gate\n",
    "yet will not wait when it gets there. The server records who approved (the name of the\n",
    "token) and when. Approval never overrides a gate's policy. Approving twice changes\n",
    "nothing.\n\n",
    client_connection_help!(), "\n\n",
    client_exit_codes!(),
))]
pub(crate) struct Args {
    /// The run id (a UUID)
    #[arg(value_name = "RUN")]
    run_id: String,

    /// The stage to approve
    #[arg(value_name = "STAGE")]
    stage: String,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `labhit approve`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let request = ApprovePipelineStageRequest {
            run_id: args.run_id.clone(),
            stage_id: args.stage.clone(),
        };
        match client.approve_pipeline_stage(request).await {
            Ok(response) => {
                let run = show::run_from_wire(response.into_inner().run)?;
                show::print_run(&run, args.format, color)?;
                Ok(Exit::Clean)
            }
            Err(status) => Ok(fail::report("approve", &status, color.choice())),
        }
    })
}
