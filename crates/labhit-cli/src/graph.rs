//! `labhit graph`: the stage DAG of a pipeline as Mermaid (default) or Graphviz DOT.
//!
//! Nodes are the stages in file order, labelled with the stage id and what it does
//! (`use: category/name`, the first line of `run:`); gated stages are drawn as hexagons with a
//! `gate:` line. Edges go from a dependency to the stage that waits for it. An invalid file
//! gets its diagnostics on stderr (as `labhit validate` prints them) and exit code 1; the graph
//! goes to stdout only when the file is valid.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use labhit_protocol::pipeline::{Approval, CheckOptions, PipelineFile, Stage};

use crate::render::Styles;
use crate::validate::{self, DEFAULT_PIPELINE};
use crate::{ColorWhen, Exit, exit_codes, files};

/// Arguments of `labhit graph`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit graph                                   Mermaid, for Markdown (```mermaid)\n",
    "  labhit graph ci/release.yaml --format dot | dot -Tsvg -o release.svg\n",
    "\n",
    "Stages are drawn in file order with their id and `use`/`run`; gated stages are\n",
    "hexagons with a `gate:` line; edges point from a dependency to the stage that waits for it.\n",
    "An invalid file prints its diagnostics on stderr and exits with 1.\n",
    "\n",
    exit_codes!()
))]
pub(crate) struct Args {
    /// The pipeline file; `-` reads standard input [default: .labhit/pipeline.yaml]
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
}

/// `--format` of `graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

/// Runs `labhit graph`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIPELINE));
    let options = CheckOptions::default();
    let loaded = validate::load(&path, files::pipeline_limit(&options.limits))?;
    let (report, checked) = validate::check_pipeline(files::display(&path), loaded, &options);
    let Some(file) = checked else {
        let mut stderr = crate::stdio::stderr(color.choice());
        let styles = Styles::new(stderr.get_ref().current_choice() != anstream::ColorChoice::Never);
        validate::print_diagnostics(&mut stderr, &styles, std::slice::from_ref(&report))?;
        let errors = report.count(labhit_protocol::Severity::Error);
        let warnings = report.count(labhit_protocol::Severity::Warning);
        if let Some(line) = crate::render::summary(errors, warnings, 1) {
            writeln!(stderr, "{line}")?;
        }
        return Ok(Exit::Problems);
    };
    let text = match args.format {
        Format::Mermaid => mermaid(&file),
        Format::Dot => dot(&file),
    };
    let mut stdout = crate::stdio::raw_stdout();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(Exit::Clean)
}

/// The label lines of a stage: id, what it runs, its gate.
fn label_lines(id: &str, stage: &Stage) -> Vec<String> {
    let mut lines = vec![id.to_owned()];
    if let Some(uses) = &stage.uses {
        lines.push(format!("use: {uses}"));
    }
    if let Some(run) = &stage.run {
        lines.push(format!(
            "run: {}",
            crate::printable::printable(&summarize(run))
        ));
    }
    if let Some(gate) = &stage.gate {
        let mut parts = Vec::new();
        if gate.approval == Some(Approval::Required) {
            parts.push("approval".to_owned());
        }
        if let Some(policy) = &gate.policy {
            parts.push(format!("policy {policy}"));
        }
        lines.push(format!("gate: {}", parts.join(", ")));
    }
    lines
}

/// The first non-empty line of a script, at most 40 characters; `…` marks anything cut.
fn summarize(script: &str) -> String {
    const MAX: usize = 40;
    let mut lines = script.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let more = lines.next().is_some();
    let mut out: String = first.chars().take(MAX).collect();
    if more || first.chars().count() > MAX {
        out.push_str(" …");
    }
    out
}

fn is_gated(stage: &Stage) -> bool {
    stage.gate.as_ref().is_some_and(|g| g.is_effective())
}

/// A Mermaid flowchart. Node ids are `s0`, `s1`, … (stage ids such as `end` or `a-b` would
/// confuse Mermaid); the stage id is the first label line.
pub(crate) fn mermaid(file: &PipelineFile) -> String {
    let stages = &file.pipeline.stages;
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: {}\n---\nflowchart TD", file.pipeline.name);
    for (i, (id, stage)) in stages.iter().enumerate() {
        let label: Vec<String> = label_lines(id.as_str(), stage)
            .iter()
            .map(|l| mermaid_escape(l))
            .collect();
        let label = label.join("<br/>");
        if is_gated(stage) {
            let _ = writeln!(out, "    s{i}{{{{\"{label}\"}}}}");
        } else {
            let _ = writeln!(out, "    s{i}[\"{label}\"]");
        }
    }
    for (i, (_, stage)) in stages.iter().enumerate() {
        for dep in stage.after.iter() {
            if let Some(j) = stages.0.get_index_of(dep.as_str()) {
                let _ = writeln!(out, "    s{j} --> s{i}");
            }
        }
    }
    let gated: Vec<String> = stages
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| is_gated(s))
        .map(|(i, _)| format!("s{i}"))
        .collect();
    if !gated.is_empty() {
        let _ = writeln!(
            out,
            "    classDef gated stroke-width:3px,stroke-dasharray:6 3"
        );
        let _ = writeln!(out, "    class {} gated", gated.join(","));
    }
    out
}

/// Text inside a quoted Mermaid label: entity codes for what Mermaid would read as markup.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Graphviz digraph; node names are the stage ids.
pub(crate) fn dot(file: &PipelineFile) -> String {
    let stages = &file.pipeline.stages;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph \"{}\" {{",
        dot_escape(file.pipeline.name.as_str())
    );
    let _ = writeln!(out, "    rankdir=TB;");
    let _ = writeln!(out, "    node [shape=box];");
    for (id, stage) in stages.iter() {
        let label: Vec<String> = label_lines(id.as_str(), stage)
            .iter()
            .map(|l| dot_escape(l))
            .collect();
        let extra = if is_gated(stage) {
            ", shape=hexagon, style=bold"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    \"{id}\" [label=\"{}\"{extra}];",
            label.join("\\n")
        );
    }
    for (id, stage) in stages.iter() {
        for dep in stage.after.iter() {
            let _ = writeln!(out, "    \"{dep}\" -> \"{id}\";");
        }
    }
    out.push_str("}\n");
    out
}

/// Text inside a DOT double-quoted string.
fn dot_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_summarized() {
        assert_eq!(summarize("make"), "make");
        assert_eq!(summarize("\n  make\n  make install\n"), "make …");
        assert_eq!(summarize(&"x".repeat(50)), format!("{} …", "x".repeat(40)));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            mermaid_escape("a \"b\" <c> #1 &"),
            "a #quot;b#quot; #lt;c#gt; #35;1 #amp;"
        );
        assert_eq!(dot_escape("echo \"a\\b\""), "echo \\\"a\\\\b\\\"");
    }
}
