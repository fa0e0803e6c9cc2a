//! `labhit:extension/cancellation`: the guest polls the step's [`Cancellation`] flag.
//!
//! The engine holds the flag (a domain type, [`crate::cancellation`]) and sets it. The guest
//! sees `is-cancelled() == true` from then on. A guest that keeps running, or stays blocked
//! in a host wait, is interrupted once the runtime's grace period has passed (see
//! [`crate::sandbox`] and [`crate::host::poll`]).

use labhit_wit::host::labhit::extension::cancellation;
use wasmtime::component::{HasSelf, Linker};

#[cfg(doc)]
use crate::cancellation::Cancellation;
use crate::sandbox::StepHost;

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    cancellation::add_to_linker::<_, HasSelf<_>>(linker, |host| host)
}

impl cancellation::Host for StepHost {
    fn is_cancelled(&mut self) -> bool {
        self.cancellation.is_cancelled()
    }
}
