//! `deploy/render`: renders a template (`template`, or the workspace file `template-file`)
//! with `values` and declared secrets into the workspace file `output`.
//!
//! Template syntax, deliberately tiny:
//!
//! | tag | renders |
//! |---|---|
//! | `{{ name }}` | the value `name` from `values` (strings as-is, numbers and booleans as text, `null` as nothing, objects and arrays as JSON) |
//! | `{{ a.b.c }}` | a nested value |
//! | `{{ secret.NAME }}` | the secret `NAME`, which `extension.toml` must declare |
//! | `{{ 'text' }}` | `text` literally (so `{{ '{{' }}` writes `{{`) |
//!
//! An unknown name is an error naming it and its line and column: a deployment is never
//! rendered with holes. Secret values are never logged, never put in outputs, and a file that
//! contains one is not offered as an artifact.
//!
//! Host imports used: `secrets`, the read-write workspace, `log`, outputs and artifacts.

use std::collections::BTreeSet;

use labhit_sdk::{Context, Error, Extension, Input, Output, TypedOutputs, info};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The stage's `with`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The template text.
    #[serde(default)]
    pub template: Option<String>,
    /// A workspace file holding the template.
    #[serde(default)]
    pub template_file: Option<String>,
    /// Where to write the result.
    pub output: String,
    /// The values the template refers to.
    #[serde(default)]
    pub values: Map<String, Value>,
}

/// Where a template problem is: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'t> {
    Text(&'t str),
    Literal(&'t str),
    Value(&'t str, Location),
    Secret(&'t str, Location),
}

fn location(template: &str, offset: usize) -> Location {
    let before = &template[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(found) = template[rest..].find("{{") {
        let open = rest + found;
        if open > rest {
            pieces.push(Piece::Text(&template[rest..open]));
        }
        let at = location(template, open);
        let inner_start = open + 2;
        let Some(len) = template[inner_start..].find("}}") else {
            return Err(format!(
                "line {}, column {}: `{{{{` is never closed with `}}}}`",
                at.line, at.column
            ));
        };
        let inner = template[inner_start..inner_start + len].trim();
        pieces.push(tag(inner, at)?);
        rest = inner_start + len + 2;
    }
    if rest < template.len() {
        pieces.push(Piece::Text(&template[rest..]));
    }
    Ok(pieces)
}

fn tag(inner: &str, at: Location) -> Result<Piece<'_>, String> {
    let err = |what: String| format!("line {}, column {}: {what}", at.line, at.column);
    for quote in ['\'', '"'] {
        if let Some(text) = inner.strip_prefix(quote) {
            return match text.strip_suffix(quote) {
                Some(text) => Ok(Piece::Literal(text)),
                None => Err(err(format!("the string `{inner}` is not closed"))),
            };
        }
    }
    let valid = !inner.is_empty()
        && inner.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
    if !valid {
        return Err(err(format!(
            "`{{{{ {inner} }}}}` is not a name like `name`, `a.b` or `secret.NAME`"
        )));
    }
    Ok(match inner.strip_prefix("secret.") {
        Some(name) => Piece::Secret(name, at),
        None => Piece::Value(inner, at),
    })
}

fn lookup<'v>(values: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut current = values.get(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// What [`render`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// The names of the secrets it contains.
    pub secrets: BTreeSet<String>,
}

/// Renders `template` with `values`, asking `secret` for each secret it names.
///
/// # Errors
///
/// A malformed tag or an unknown value (`invalid-config`, with line and column), or the
/// error `secret` returns.
pub fn render(
    template: &str,
    values: &Map<String, Value>,
    mut secret: impl FnMut(&str) -> Result<String, Error>,
) -> Result<Rendered, Error> {
    let pieces = parse(template).map_err(Error::invalid_config)?;
    let mut text = String::with_capacity(template.len());
    let mut secrets = BTreeSet::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) | Piece::Literal(t) => text.push_str(t),
            Piece::Value(path, at) => match lookup(values, path) {
                Some(Value::String(s)) => text.push_str(s),
                Some(Value::Null) => {}
                Some(other) => text.push_str(&other.to_string()),
                None => {
                    let mut known: Vec<&str> = values.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(Error::invalid_config(format!(
                        "line {}, column {}: `{path}` is not in `values` (it has: {})",
                        at.line,
                        at.column,
                        if known.is_empty() {
                            "nothing".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            },
            Piece::Secret(name, _) => {
                text.push_str(&secret(name)?);
                secrets.insert(name.to_owned());
            }
        }
    }
    Ok(Rendered { text, secrets })
}

/// The named outputs: the source of the manifest's `[outputs]` (`labhit ext build` checks
/// one against the other).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Outputs {
    /// Workspace path of the rendered file.
    pub output: String,
    /// Size of the rendered file in bytes.
    pub bytes: usize,
}

/// The extension.
pub struct Render;

impl Extension for Render {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let config = input.config;
        let (template, source) = match (config.template, config.template_file) {
            (Some(text), None) => (text, "`template`".to_owned()),
            (None, Some(path)) => (ctx.read_to_string(&path)?, format!("`{path}`")),
            (Some(_), Some(_)) => {
                return Err(Error::invalid_config(
                    "set either `template` or `template-file`, not both",
                ));
            }
            (None, None) => {
                return Err(Error::invalid_config("set `template` or `template-file`"));
            }
        };
        // Refuse a bad output path before asking for any secret.
        ctx.path(&config.output)?;

        let rendered =
            render(&template, &config.values, |name| ctx.require_secret(name)).map_err(|err| {
                match err {
                    Error::InvalidConfig(m) => Error::invalid_config(format!("{source}: {m}")),
                    other => other,
                }
            })?;
        ctx.write(&config.output, &rendered.text)?;

        let bytes = rendered.text.len();
        let mut output = Self::output(&Outputs {
            output: config.output.clone(),
            bytes,
        })?;
        if rendered.secrets.is_empty() {
            info!(
                ctx,
                "rendered {source} into {} ({bytes} bytes)", config.output
            );
            output = output.artifact(ctx.artifact(&config.output)?);
        } else {
            // Names only, never values; and no artifact, so the secret stays in the workspace.
            let names: Vec<&str> = rendered.secrets.iter().map(String::as_str).collect();
            info!(
                ctx,
                "rendered {source} into {} ({bytes} bytes, with secrets {}); not kept as an artifact",
                config.output,
                names.join(", ")
            );
        }
        Ok(output)
    }
}

impl TypedOutputs for Render {
    type Outputs = Outputs;
}

labhit_sdk::export_extension!(Render);

#[cfg(test)]
mod tests {
    use super::*;
    use labhit_sdk::testing::{MockHost, json};

    const TOKEN: &str = "tok-9f8e7d6c5b4a";

    fn host() -> MockHost {
        labhit_sdk::mock_host!().secret("DEPLOY_TOKEN", TOKEN)
    }

    #[test]
    fn renders_the_example_pipeline_stage() {
        let host = host();
        let out = host
            .run::<Render>(json!({
                "template": "app {{ name }} ({{ env }})",
                "output": "dist/deploy.txt",
                "values": {"name": "labhit-example", "env": "staging"}
            }))
            .unwrap();
        assert_eq!(host.read("dist/deploy.txt"), "app labhit-example (staging)");
        assert_eq!(out.get("bytes"), Some("28"));
        assert_eq!(out.artifacts()[0].path(), "dist/deploy.txt");
    }

    #[test]
    fn renders_secrets_without_leaking_them() {
        let host = host().file(
            "deploy/app.tmpl",
            "url: https://{{ host }}:{{ port }}\ntoken: {{secret.DEPLOY_TOKEN}}\ntags: {{ tags }}\n{{ '{{' }}raw}}\n",
        );
        let result = host.run::<Render>(json!({
            "template-file": "deploy/app.tmpl",
            "output": "out/app.yaml",
            "values": {"host": "example.org", "port": 8443, "tags": ["a", "b"]}
        }));
        let out = result.as_ref().unwrap();
        assert_eq!(
            host.read("out/app.yaml"),
            format!(
                "url: https://example.org:8443\ntoken: {TOKEN}\ntags: [\"a\",\"b\"]\n{{{{raw}}}}\n"
            )
        );
        assert!(
            out.artifacts().is_empty(),
            "a file with a secret is not an artifact"
        );
        assert!(host.logged("with secrets DEPLOY_TOKEN"));
        assert!(host.leaked_secrets(&[&result]).is_empty());
    }

    #[test]
    fn undeclared_and_missing_secrets() {
        let host = host().secret("OTHER_TOKEN", "x");
        let err = host
            .run::<Render>(json!({"template": "{{ secret.OTHER_TOKEN }}", "output": "o"}))
            .unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.message().contains("not declared"), "{err}");
        assert!(!host.path("o").exists());

        let host = labhit_sdk::mock_host!();
        let err = host
            .run::<Render>(json!({"template": "{{ secret.DEPLOY_TOKEN }}", "output": "o"}))
            .unwrap_err();
        assert_eq!(err.kind(), "failed");
        assert_eq!(
            err.message(),
            "secret `DEPLOY_TOKEN` is not configured for this run"
        );
    }

    #[test]
    fn template_errors_name_the_place() {
        let host = host();
        for (template, expected) in [
            (
                "a\n  {{ nme }}",
                "`template`: line 2, column 3: `nme` is not in `values` (it has: name)",
            ),
            (
                "{{ name",
                "`template`: line 1, column 1: `{{` is never closed with `}}`",
            ),
            ("{{ a b }}", "is not a name"),
            ("{{ 'x }}", "is not closed"),
            ("{{ name.deep }}", "`name.deep` is not in `values`"),
        ] {
            let err = host
                .run::<Render>(
                    json!({"template": template, "output": "o", "values": {"name": "x"}}),
                )
                .unwrap_err();
            assert_eq!(err.kind(), "invalid-config");
            assert!(err.message().contains(expected), "{template}: {err}");
        }
    }

    #[test]
    fn config_is_checked() {
        let host = host();
        for (config, expected) in [
            (json!({"output": "o"}), "set `template` or `template-file`"),
            (
                json!({"template": "", "template-file": "t", "output": "o"}),
                "not both",
            ),
            (json!({"template": "x"}), "missing field `output`"),
            (json!({"template": "x", "output": "../o"}), "`..`"),
            (
                json!({"template": "x", "output": "o", "values": []}),
                "at `values`",
            ),
        ] {
            let err = host.run::<Render>(config.clone()).unwrap_err();
            assert_eq!(err.kind(), "invalid-config", "{config}");
            assert!(err.message().contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn values_render_by_type() {
        let values =
            json!({"s": "x", "n": 1.5, "b": true, "z": null, "o": {"k": [1, {"d": "deep"}]}});
        let Value::Object(values) = values else {
            unreachable!()
        };
        let rendered = render(
            "{{s}}|{{n}}|{{b}}|{{z}}|{{o.k.1.d}}|{{o.k}}",
            &values,
            |_| Err(Error::internal("no secrets here")),
        )
        .unwrap();
        assert_eq!(rendered.text, r#"x|1.5|true||deep|[1,{"d":"deep"}]"#);
        assert!(rendered.secrets.is_empty());
    }
}
