//! Rule 7: with extension manifests at hand, every `use` resolves to an extension whose
//! version satisfies the requirement, `with` satisfies its input schema, and `run` together
//! with `use` names an executor.

use super::model::Stages;
use super::parse::StageSite;
use super::yaml::{Node, NodeValue};
use crate::diagnostic::{Diagnostic, Rule, Span, SuggestionBudget, Suggestions};
use crate::forms::{StageId, UseRef};
use crate::manifest::Manifest;

/// One way a value breaks a JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where in the value, as JSON Pointer tokens (`["retries"]`, `["paths", "0"]`).
    pub instance_path: Vec<String>,
    /// What is wrong.
    pub message: String,
}

/// Checks a JSON value against a JSON Schema. The `jsonschema` feature provides
/// [`JsonSchemaValidator`]; engines may plug in their own.
pub trait InputValidator {
    /// Every violation of `schema` by `instance`; `Err` when the schema itself is invalid.
    fn validate(
        &self,
        schema: &serde_json::Value,
        instance: &serde_json::Value,
    ) -> Result<Vec<SchemaViolation>, String>;
}

/// [`InputValidator`] backed by the `jsonschema` crate (JSON Schema 2020-12 by default).
#[cfg(feature = "jsonschema")]
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSchemaValidator;

#[cfg(feature = "jsonschema")]
impl InputValidator for JsonSchemaValidator {
    fn validate(
        &self,
        schema: &serde_json::Value,
        instance: &serde_json::Value,
    ) -> Result<Vec<SchemaViolation>, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        Ok(validator
            .iter_errors(instance)
            .map(|e| SchemaViolation {
                instance_path: e
                    .instance_path()
                    .as_str()
                    .split('/')
                    .skip(1)
                    .map(|t| t.replace("~1", "/").replace("~0", "~"))
                    .collect(),
                message: e.to_string(),
            })
            .collect())
    }
}

/// Picks the newest manifest named `category/name` whose version satisfies the reference.
pub fn resolve<'m>(
    reference: &UseRef,
    manifests: &'m [Manifest],
) -> Result<&'m Manifest, Diagnostic> {
    let names = Names::new(manifests);
    let mut budget = SuggestionBudget::default();
    resolve_with(
        reference,
        manifests,
        &names.0,
        &names.suggestions(),
        &mut budget,
    )
}

/// The distinct `category/name`s of a set of manifests, sorted: computed once per file.
struct Names(Vec<String>);

impl Names {
    fn new(manifests: &[Manifest]) -> Self {
        let mut names: Vec<String> = manifests.iter().map(Manifest::qualified_name).collect();
        names.sort();
        names.dedup();
        Self(names)
    }

    fn suggestions(&self) -> Suggestions<'_> {
        Suggestions::new(self.0.iter().map(String::as_str))
    }
}

fn resolve_with<'m>(
    reference: &UseRef,
    manifests: &'m [Manifest],
    names: &[String],
    suggestions: &Suggestions<'_>,
    budget: &mut SuggestionBudget,
) -> Result<&'m Manifest, Diagnostic> {
    let wanted = reference.qualified_name();
    let mut candidates: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| {
            m.extension.category == reference.category && m.extension.name == reference.name
        })
        .collect();
    if candidates.is_empty() {
        let mut diag = Diagnostic::error(
            Rule::UnknownExtension,
            Span::file_start(),
            format!("no extension `{wanted}` is available"),
        );
        diag = match suggestions.nearest(&wanted, budget) {
            Some(near) => diag.with_help(format!("did you mean `{near}`?")),
            None if names.is_empty() => {
                diag.with_help("no extension manifests were found; pass `--extensions DIR`")
            }
            None => diag.with_help(format!("available: {}", names.join(", "))),
        };
        return Err(diag);
    }
    candidates.sort_by(|a, b| b.extension.version.cmp(&a.extension.version));
    let req = reference
        .version
        .clone()
        .unwrap_or(semver::VersionReq::STAR);
    candidates
        .iter()
        .copied()
        .find(|m| req.matches(&m.extension.version))
        .ok_or_else(|| {
            let versions: Vec<String> = candidates
                .iter()
                .map(|m| m.extension.version.to_string())
                .collect();
            Diagnostic::error(
                Rule::ExtensionVersion,
                Span::file_start(),
                format!(
                    "no version of `{wanted}` satisfies `{req}`; available: {}",
                    versions.join(", ")
                ),
            )
            .with_help(format!(
                "change the requirement, e.g. `use: {wanted}@{}`",
                versions[0]
            ))
        })
}

pub(crate) fn check(
    stages: &Stages,
    sites: &indexmap::IndexMap<StageId, StageSite<'_>>,
    manifests: &[Manifest],
    validator: Option<&dyn InputValidator>,
    diags: &mut Vec<Diagnostic>,
    budget: &mut SuggestionBudget,
) {
    let names = Names::new(manifests);
    let suggestions = names.suggestions();
    for (id, stage) in stages.iter() {
        let Some(reference) = &stage.uses else {
            continue;
        };
        let Some(site) = sites.get(id) else { continue };
        let use_span = site.uses.unwrap_or(site.key);
        let manifest = match resolve_with(reference, manifests, &names.0, &suggestions, budget) {
            Ok(m) => m,
            Err(mut diag) => {
                diag.span = use_span;
                diag.message = format!("stage `{id}`: {}", diag.message);
                diags.push(diag);
                continue;
            }
        };
        let version = &manifest.extension.version;
        if stage.run.is_some() && !manifest.capabilities.executor {
            diags.push(
                Diagnostic::error(
                    Rule::NotAnExecutor,
                    site.run.unwrap_or(use_span),
                    format!(
                        "stage `{id}` has `run`, but extension `{reference}` {version} does not declare the `executor` capability"
                    ),
                )
                .with_help("remove `run`, or `use` an extension whose manifest sets `executor = true`"),
            );
        }
        let (Some(validator), Some(schema)) = (validator, manifest.inputs_schema()) else {
            continue;
        };
        let with = stage
            .with
            .clone()
            .map_or(serde_json::Value::Object(Default::default()), |m| {
                crate::Value::Object(m).to_json()
            });
        match validator.validate(&schema, &with) {
            Err(problem) => diags.push(Diagnostic::error(
                Rule::InputSchema,
                use_span,
                format!("extension `{reference}` {version} has an invalid input schema: {problem}"),
            )),
            Ok(violations) => {
                for v in violations {
                    let span = site
                        .with
                        .map_or(use_span, |node| locate(node, &v.instance_path));
                    let at = if v.instance_path.is_empty() {
                        "`with`".to_owned()
                    } else {
                        format!("`with.{}`", v.instance_path.join("."))
                    };
                    diags.push(Diagnostic::error(
                        Rule::InputSchema,
                        span,
                        format!("stage `{id}`: {at} does not fit the inputs of `{reference}` {version}: {}", v.message),
                    ));
                }
            }
        }
    }
}

/// The span of the node at a JSON Pointer path inside `with`, or of the nearest ancestor.
fn locate(mut node: &Node, path: &[String]) -> Span {
    for token in path {
        let next = match &node.value {
            NodeValue::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(token))
                .map(|(_, v)| v),
            NodeValue::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            NodeValue::Scalar(_) => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.span
}
