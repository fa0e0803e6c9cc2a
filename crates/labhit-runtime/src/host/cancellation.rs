//! `labhit:extension/cancellation`: a flag the engine sets and the guest polls.
//!
//! The engine holds a [`Cancellation`] (cheap to clone, shared with the step) and calls
//! [`Cancellation::cancel`]. The guest sees `is-cancelled() == true` from then on. A guest
//! that keeps running is interrupted by the epoch callback of the step's store once the
//! runtime's grace period has passed (see [`crate::sandbox`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use labhit_wit::host::labhit::extension::cancellation;
use wasmtime::component::{HasSelf, Linker};

use crate::sandbox::StepHost;

/// A cancellation flag shared between the engine and one or more steps. Once set it stays
/// set.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: every step holding a clone sees it.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    cancellation::add_to_linker::<_, HasSelf<_>>(linker, |host| host)
}

impl cancellation::Host for StepHost {
    fn is_cancelled(&mut self) -> bool {
        self.cancellation.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = Cancellation::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }
}
