//! The host side of the contract, one module per capability (the Spin layout): each module
//! adds its imports to the linker once per runtime and prepares its per-step state.
//!
//! | module | imports | per-step state |
//! |---|---|---|
//! | [`log`] | `labhit:extension/log`, `types` | the step's log stream |
//! | [`secrets`] | `labhit:extension/secrets` | declared names + a [`crate::SecretStore`] |
//! | [`cancellation`] | `labhit:extension/cancellation` | a shared [`crate::Cancellation`] flag |
//! | [`wasi`] | WASI 0.2 (`wasi:cli`, `wasi:filesystem`, `wasi:clocks`, `wasi:random`, `wasi:io`, `wasi:sockets` denied) | the WASI context: one preopen, granted env, captured stdio |
//! | [`http`] | `wasi:http/outgoing-handler`, `wasi:http/types`, only for extensions with `capabilities.network` | the allow-list, limits, deadline, cancellation (see [`crate::net`]) |
//! | [`fs_guard`] | shadows parts of `wasi:filesystem/types` | links that stay inside, `limits.disk`, `limits.files` |
//! | [`since_v0_1`] | the same `labhit:extension` interfaces at `@0.1.0`, for 0.1 components | delegates to the modules above |
//! | [`poll`] | shadows the blocking calls of `wasi:io` (`poll`, `pollable.block`, `blocking-*` stream calls) | none: bounds each wait by the step's deadline and cancellation |

pub mod cancellation;
pub mod fs_guard;
pub mod http;
pub mod log;
pub mod poll;
pub mod secrets;
pub mod since_v0_1;
pub mod wasi;

use wasmtime::component::Linker;

use crate::sandbox::StepHost;

/// Adds every import the host provides to `linker`; `wasi:http` only with `network`.
pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>, network: bool) -> wasmtime::Result<()> {
    log::add_to_linker(linker)?;
    secrets::add_to_linker(linker)?;
    cancellation::add_to_linker(linker)?;
    since_v0_1::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    if network {
        http::add_to_linker(linker)?;
    }
    // After WASI, these shadow some of its functions.
    fs_guard::add_to_linker(linker)?;
    poll::add_to_linker(linker)?;
    Ok(())
}
