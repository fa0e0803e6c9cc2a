//! The pipeline file (`.labhit/pipeline.yaml`): model, parser and validator.
//!
//! [`check`] is the entry point: it loads the YAML with limits ([`Limits`]), builds the
//! [`PipelineFile`] model while collecting every problem (unknown keys, types, forms, stage
//! shape, gates, duplicate keys), checks the stage graph, and, when extension manifests are
//! given, resolves every `use` against them (rule 7); output references in `with`
//! ([`refs`]) are checked against the graph and, with manifests, the declared outputs. Problems come back as
//! [`Diagnostic`]s with stable rule codes and `line:col` spans.

mod extensions;
mod graph;
mod model;
mod parse;
pub mod refs;
mod upstream;
mod yaml;

/// The scalar forms, re-exported where the pipeline model uses them (they live in
/// [`crate::forms`]).
pub use crate::forms::{
    ByteSize, Cpu, DurationSpec, ExtensionIdent, FormError, PipelineName, PolicyName, StageId,
    UseRef,
};
#[cfg(feature = "jsonschema")]
pub use extensions::JsonSchemaValidator;
pub use extensions::{InputValidator, SchemaViolation, resolve};
pub use graph::layers;
pub use model::{
    After, Approval, EngineVersion, Gate, Pipeline, PipelineFile, Resources, Sandbox, Stage, Stages,
};
pub use parse::STAGE_KEYS;
pub use yaml::Limits;

use crate::diagnostic::{Diagnostic, SuggestionBudget};
use crate::manifest::Manifest;

/// What [`check`] needs besides the text.
#[derive(Clone, Copy, Default)]
pub struct CheckOptions<'a> {
    /// Input limits.
    pub limits: Limits,
    /// Extension manifests to resolve `use` against (rule 7). `None` skips rule 7.
    pub extensions: Option<&'a [Manifest]>,
    /// Validator for `with` against extension input schemas. `None` skips that part of rule 7.
    pub input_validator: Option<&'a dyn InputValidator>,
}

impl std::fmt::Debug for CheckOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckOptions")
            .field("limits", &self.limits)
            .field("extensions", &self.extensions.map(<[Manifest]>::len))
            .field("input_validator", &self.input_validator.is_some())
            .finish()
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// The model, when the file has no errors.
    pub pipeline: Option<PipelineFile>,
    /// Every problem, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// `true` when there is no error.
    pub fn is_ok(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses and validates a pipeline file, reporting every problem at once.
pub fn check(source: &[u8], options: &CheckOptions<'_>) -> Checked {
    let mut diagnostics = Vec::new();
    let tree = yaml::load(source, &options.limits, &mut diagnostics);
    let mut pipeline = None;
    if let Some(root) = tree {
        let mut budget = SuggestionBudget::default();
        let walked = parse::walk(root.as_ref(), &mut diagnostics, &mut budget);
        graph::check(&walked.sites, &mut diagnostics, &mut budget);
        upstream::check(
            &walked.sites,
            options.extensions,
            &mut diagnostics,
            &mut budget,
        );
        if let Some(manifests) = options.extensions {
            extensions::check(
                &walked.sites,
                manifests,
                options.input_validator,
                &mut diagnostics,
                &mut budget,
            );
        }
        pipeline = walked.file;
    }
    diagnostics.sort_by(|a, b| a.span.cmp(&b.span).then(a.rule.cmp(&b.rule)));
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    Checked {
        pipeline: pipeline.filter(|_| ok),
        diagnostics,
    }
}

impl PipelineFile {
    /// Parses and validates YAML text with default limits and no extension manifests.
    pub fn from_yaml(source: &str) -> Result<PipelineFile, Vec<Diagnostic>> {
        let checked = check(source.as_bytes(), &CheckOptions::default());
        checked.pipeline.ok_or(checked.diagnostics)
    }
}

#[cfg(test)]
mod tests;
