//! The smallest useful extension: greets the stage it runs in. Its release component is the
//! size baseline of the SDK (`cargo build --example minimal --target wasm32-wasip2 --profile wasm`).

use labhit_sdk::{Context, Error, Extension, Input, Output, info};
use serde::Deserialize;

/// The stage's `with`: `{greeting: "hello"}`, optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    greeting: Option<String>,
}

/// The extension.
pub struct Hello;

impl Extension for Hello {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let greeting = input.config.greeting.as_deref().unwrap_or("hello");
        info!(ctx, "{greeting} from stage {}", input.stage_id);
        Ok(Output::new().output("greeting", greeting))
    }
}

labhit_sdk::export_extension!(Hello);
