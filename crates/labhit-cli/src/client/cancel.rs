//! `labhit cancel RUN`: cancel a run (`CancelPipelineRun`).

use anyhow::Result;
use labhit_proto::v1::CancelPipelineRunRequest;

use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail, show};
use crate::{ColorWhen, Exit};

/// Arguments of `labhit cancel`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit cancel RUN\n",
    "  labhit cancel RUN && labhit logs RUN -f       watch the stages stop\n",
    "\n",
    "Running stages are stopped through the runtime's cancellation, stages that have not\n",
    "started end `cancelled`, and the run ends `cancelled` once every running stage stopped.\n",
    "Cancelling a finished run changes nothing. The run is printed as it was when the\n",
    "cancellation was requested; the command exits 0 when the server accepted it.\n\n",
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

/// Runs `labhit cancel`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let request = CancelPipelineRunRequest {
            run_id: args.run_id.clone(),
        };
        match client.cancel_pipeline_run(request).await {
            Ok(response) => {
                let run = show::run_from_wire(response.into_inner().run)?;
                show::print_run(&run, args.format, color)?;
                Ok(Exit::Clean)
            }
            Err(status) => Ok(fail::report("cancel", &status, color.choice())),
        }
    })
}
