//! `notify/webhook`: POSTs a JSON message built from `with` to a webhook URL, optionally with
//! a secret as `Authorization: Bearer`, and reports the status the webhook answered.
//!
//! The body is `fields` (when given) plus `text` (the message), `stage` and `run`.
//!
//! Host imports used: `wasi:http/outgoing-handler` through `labhit_sdk::http` (granted by
//! `capabilities.network`), `secrets` (the bearer token), `log`, and the output `status`.

use labhit_sdk::http::{self, Response};
use labhit_sdk::{Context, Error, Extension, Input, Output, TypedOutputs, info};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The stage's `with`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to POST.
    pub url: String,
    /// The message (`text` of the body).
    pub message: String,
    /// More fields of the body.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// Name of the secret sent as a bearer token.
    #[serde(default)]
    pub secret: Option<String>,
    /// Statuses that count as success; any 2xx when empty.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

/// The JSON body of the request.
pub fn body(config: &Config, stage: &str, run: &str) -> Value {
    let mut body = config.fields.clone();
    body.insert("text".into(), Value::String(config.message.clone()));
    body.insert("stage".into(), Value::String(stage.to_owned()));
    body.insert("run".into(), Value::String(run.to_owned()));
    Value::Object(body)
}

/// Whether the webhook's answer counts as success.
pub fn accepted(config: &Config, response: &Response) -> bool {
    if config.expect_status.is_empty() {
        response.is_success()
    } else {
        config.expect_status.contains(&response.status)
    }
}

/// The named outputs: the source of the manifest's `[outputs]` (`labhit ext build` checks
/// one against the other).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Outputs {
    /// The HTTP status the webhook answered.
    pub status: u16,
}

/// The extension.
pub struct Webhook;

impl Extension for Webhook {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let config = &input.config;
        let body = body(config, &input.stage_id, &input.run_id);
        let token = match &config.secret {
            Some(name) => Some(ctx.require_secret(name)?),
            None => None,
        };
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let response = http::post_json(&config.url, &headers, &body)?;
        if !accepted(config, &response) {
            let mut text = response.text();
            text.truncate(text.floor_char_boundary(512));
            return Err(Error::failed(format!(
                "webhook `{}` answered {}: {text}",
                config.url, response.status
            )));
        }
        info!(ctx, "webhook `{}` answered {}", config.url, response.status);
        Self::output(&Outputs {
            status: response.status,
        })
    }
}

impl TypedOutputs for Webhook {
    type Outputs = Outputs;
}

labhit_sdk::export_extension!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Config {
        serde_json::from_value(value).expect("config")
    }

    #[test]
    fn body_keeps_fields_and_sets_text_stage_and_run() {
        let c = config(json!({
            "url": "http://h/x",
            "message": "deployed",
            "fields": {"env": "prod", "text": "overridden"}
        }));
        assert_eq!(
            body(&c, "notify", "r1"),
            json!({"env": "prod", "text": "deployed", "stage": "notify", "run": "r1"})
        );
    }

    #[test]
    fn success_is_2xx_unless_statuses_are_listed() {
        let ok = |status| Response {
            status,
            body: Vec::new(),
        };
        let any = config(json!({"url": "http://h", "message": "m"}));
        assert!(accepted(&any, &ok(204)) && !accepted(&any, &ok(302)));
        let listed = config(json!({"url": "http://h", "message": "m", "expect_status": [302]}));
        assert!(accepted(&listed, &ok(302)) && !accepted(&listed, &ok(200)));
    }
}
