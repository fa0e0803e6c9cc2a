//! Rule 7: with extension manifests at hand, every `use` resolves to an extension whose
//! version satisfies the requirement, `with` satisfies its input schema, and `run` together
//! with `use` names an executor.
//!
//! It runs on the parts of each stage that parsed, so it reports while other problems exist
//! in the file. A key of `with` the schema does not declare (where it describes the object
//! plainly: `properties` and `additionalProperties: false`) is reported at the key with the
//! closest declared input (`reprots` → `reports`) instead of as a violation of the whole
//! mapping; strings holding output references are not judged (their value comes at run
//! time).

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
    sites: &indexmap::IndexMap<StageId, StageSite<'_>>,
    manifests: &[Manifest],
    validator: Option<&dyn InputValidator>,
    diags: &mut Vec<Diagnostic>,
    budget: &mut SuggestionBudget,
) {
    let names = Names::new(manifests);
    let suggestions = names.suggestions();
    for (id, site) in sites {
        let stage = &site.parts;
        let Some(reference) = &stage.uses else {
            continue;
        };
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
                    site.run.map_or(use_span, |n| n.span),
                    format!(
                        "stage `{id}` has `run`, but extension `{reference}` {version} does not declare the `executor` capability"
                    ),
                )
                .with_help("remove `run`, or `use` an extension whose manifest sets `executor = true`"),
            );
        }
        let (Some(validator), Some(mut schema)) = (validator, manifest.inputs_schema()) else {
            continue;
        };
        if site.with.is_some() && stage.with.is_none() {
            // `with` itself is broken (reported already): nothing to judge.
            continue;
        }
        if let Some(node) = site.with {
            for (span, path, key, near) in unknown_keys(&mut schema, node, budget) {
                let mut at = path;
                at.push(key);
                let diag = Diagnostic::error(
                    Rule::InputSchema,
                    span,
                    format!(
                        "stage `{id}`: `{}` is not an input of `{reference}` {version}",
                        super::refs::path_text(&at)
                    ),
                );
                diags.push(match near {
                    Near::Suggestion(near) => diag.with_help(format!("did you mean `{near}`?")),
                    Near::Declared(names) if names.is_empty() => {
                        diag.with_help("it declares no inputs here")
                    }
                    Near::Declared(names) => {
                        diag.with_help(format!("declared here: {}", names.join(", ")))
                    }
                });
            }
        }
        // Strings holding output references get their value when the stage starts: the
        // schema cannot judge them now.
        let referring: Vec<Vec<String>> = stage
            .with
            .as_ref()
            .map(|with| {
                super::refs::strings(with)
                    .into_iter()
                    .filter(|(_, s)| {
                        super::refs::parse(s).is_ok_and(|t| t.references().next().is_some())
                    })
                    .map(|(path, _)| path)
                    .collect()
            })
            .unwrap_or_default();
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
                for v in violations
                    .into_iter()
                    .filter(|v| !referring.contains(&v.instance_path))
                {
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

/// What to suggest for an unknown key.
enum Near {
    /// The closest declared name.
    Suggestion(String),
    /// No close one: every declared name.
    Declared(Vec<String>),
}

/// Keys of `with` that its schema does not declare, wherever the schema describes an object
/// plainly (`properties` with `additionalProperties: false`, no `patternProperties`),
/// following `properties` into nested mappings: each with its key's span, the path of its
/// mapping and what to suggest. Those `additionalProperties: false` are removed from
/// `schema`, so the validator does not report the same keys again for the whole mapping.
fn unknown_keys(
    schema: &mut serde_json::Value,
    node: &Node,
    budget: &mut SuggestionBudget,
) -> Vec<(Span, Vec<String>, String, Near)> {
    let mut out = Vec::new();
    let mut todo: Vec<(&mut serde_json::Value, &Node, Vec<String>)> =
        vec![(schema, node, Vec::new())];
    while let Some((schema, node, path)) = todo.pop() {
        let (NodeValue::Map(pairs), Some(object)) = (&node.value, schema.as_object_mut()) else {
            continue;
        };
        let closed = object.get("additionalProperties") == Some(&serde_json::Value::Bool(false))
            && !object.contains_key("patternProperties");
        let Some(serde_json::Value::Object(properties)) = object.get("properties") else {
            continue;
        };
        if closed {
            let names: Vec<&str> = properties.keys().map(String::as_str).collect();
            let suggestions = Suggestions::new(names.iter().copied());
            for (key, _) in pairs {
                let Some(name) = key.as_str() else { continue };
                if properties.contains_key(name) {
                    continue;
                }
                let near = match suggestions.nearest(name, budget) {
                    Some(near) => Near::Suggestion(near.to_owned()),
                    None => Near::Declared(names.iter().map(|n| (*n).to_owned()).collect()),
                };
                out.push((key.span, path.clone(), name.to_owned(), near));
            }
            object.remove("additionalProperties");
        }
        let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") else {
            continue;
        };
        for (name, sub) in properties.iter_mut() {
            let value = pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(name.as_str()))
                .map(|(_, v)| v);
            if let Some(value) = value {
                let mut sub_path = path.clone();
                sub_path.push(name.clone());
                todo.push((sub, value, sub_path));
            }
        }
    }
    out.sort_by_key(|entry| entry.0);
    out
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
