//! The `labhit` command: parses the command line, runs one subcommand and turns its outcome
//! into an exit code.
//!
//! Exit codes follow actionlint: `0` nothing wrong, `1` problems found in the input, `2` bad
//! usage (clap reports those itself), `3` fatal (a file that cannot be read, a directory where
//! a file belongs). Each subcommand lives in its own module; `render` prints diagnostics for
//! people, `output` for tools, `files` reads inputs.

mod cache;
mod client;
mod errors;
mod ext;
mod files;
mod graph;
mod output;
mod printable;
mod render;
mod run;
mod schema;
mod secrets;
mod serve;
mod stdio;
mod validate;
mod worker;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// How a subcommand ended. Fatal problems are `Err` and map to [`Exit::Fatal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Nothing wrong.
    Clean = 0,
    /// The input has problems (diagnostics were printed).
    Problems = 1,
    /// The command line was wrong.
    #[allow(
        dead_code,
        reason = "clap exits with 2 itself; listed for documentation"
    )]
    Usage = 2,
    /// Something stopped the check: a missing or unreadable file, a directory given as a file.
    Fatal = 3,
}

/// The exit-code table every `--help` ends with (a macro so `concat!` can use it).
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  no problems
  1  problems were found (diagnostics printed)
  2  bad usage (unknown option, missing argument)
  3  fatal: a file is missing or unreadable, or a directory was given as a file"
    };
}
pub(crate) use exit_codes;

/// Validate, draw and describe LabHit pipelines.
#[derive(Debug, Parser)]
#[command(
    name = "labhit",
    version,
    propagate_version = true,
    after_help = concat!(
        "Examples:\n",
        "  labhit validate                              check .labhit/pipeline.yaml\n",
        "  labhit validate ci/*.yaml --format json      check several files, JSON for tools\n",
        "  labhit validate --extensions extensions/     also check `use` and `with` against manifests\n",
        "  labhit ext install target/extensions/util/checksum   install a bundle for every command\n",
        "  labhit graph --format dot | dot -Tsvg > pipeline.svg\n",
        "  labhit schema pipeline > pipeline.schema.json\n",
        "  labhit trigger app main --follow             run on a `labhit serve` server\n\n",
        exit_codes!()
    )
)]
struct Cli {
    /// When to color the output: `auto` colors only a terminal and honours `NO_COLOR`.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true, value_name = "WHEN")]
    color: ColorWhen,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check pipeline files and report every problem with `file:line:col`.
    Validate(validate::Args),
    /// Print the stage graph of a pipeline as Mermaid or Graphviz DOT.
    Graph(graph::Args),
    /// Print the JSON Schema of the pipeline file or of the extension manifest.
    Schema(schema::Args),
    /// Run a pipeline on this machine: DAG, gates, executors, cache, summary.
    Run(run::Args),
    /// Extensions: create and build a project, check, install, list a bundle, or run one step of it.
    Ext {
        #[command(subcommand)]
        command: ext::Command,
    },
    /// Serve the LabHit PipelineService over gRPC with a durable run store.
    Serve(serve::Args),
    /// Run stages for a `labhit serve --nats` server: pull tasks from NATS JetStream.
    Worker(worker::Args),
    /// Start a run on a `labhit serve` server: `labhit trigger REPO REF`.
    Trigger(client::trigger::Args),
    /// Show a run of the server: status, stages, outputs.
    Status(client::status::Args),
    /// List the server's runs, newest first.
    Runs(client::runs::Args),
    /// Stream a run's log from the server; `-f` survives server restarts.
    Logs(client::logs::Args),
    /// Cancel a run on the server.
    Cancel(client::cancel::Args),
    /// Approve a stage of a run that waits at its approval gate.
    Approve(client::approve::Args),
    /// Show or prune the snapshot cache (`stats`, `gc`).
    Cache {
        #[command(subcommand)]
        command: cache::CacheCommand,
    },
    /// Prune run directories (`gc runs`) or the snapshot cache (`gc cache`) by hand.
    Gc {
        #[command(subcommand)]
        command: cache::GcCommand,
    },
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    /// Color on a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

impl ColorWhen {
    /// The stream choice for `anstream`.
    pub(crate) fn choice(self) -> anstream::ColorChoice {
        match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args, cli.color),
        Command::Graph(args) => graph::run(&args, cli.color),
        Command::Schema(args) => schema::run(&args),
        Command::Run(args) => run::run(&args, cli.color),
        Command::Ext { command } => return ext::main(&command, cli.color),
        Command::Serve(args) => serve::run(&args),
        Command::Worker(args) => worker::run(&args),
        Command::Trigger(args) => client::trigger::run(&args, cli.color),
        Command::Status(args) => client::status::run(&args, cli.color),
        Command::Runs(args) => client::runs::run(&args, cli.color),
        Command::Logs(args) => client::logs::run(&args, cli.color),
        Command::Cancel(args) => client::cancel::run(&args, cli.color),
        Command::Approve(args) => client::approve::run(&args, cli.color),
        Command::Cache { command } => cache::cache(&command),
        Command::Gc { command } => cache::gc(&command),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            let mut stderr = crate::stdio::stderr(cli.color.choice());
            let style = anstyle::Style::new()
                .bold()
                .fg_color(Some(anstyle::AnsiColor::Red.into()));
            // Nothing sensible is left to do when stderr itself is gone.
            let _ = writeln!(
                stderr,
                "labhit: {style}error{style:#}: {}",
                printable::printable(&errors::message(&err))
            );
            ExitCode::from(Exit::Fatal as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
