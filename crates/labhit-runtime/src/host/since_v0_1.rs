//! The contract 0.1 imports (`labhit:extension/{types,log,secrets,cancellation}@0.1.0`):
//! each delegates to the newest implementation in [`super::log`], [`super::secrets`] and
//! [`super::cancellation`], converting its types with `labhit_wit::upgrade`, so a 0.1
//! component gets exactly what a 0.2 component gets.

use labhit_wit::host::labhit::extension as newest;
use labhit_wit::host::v0_1::labhit::extension::{cancellation, log, secrets, types};
use wasmtime::component::{HasSelf, Linker};

use crate::sandbox::StepHost;

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    log::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    secrets::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    cancellation::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    Ok(())
}

impl types::Host for StepHost {}

impl log::Host for StepHost {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        newest::log::Host::log(self, level.into(), message, fields);
    }
}

impl secrets::Host for StepHost {
    fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
        newest::secrets::Host::get(self, name).map_err(Into::into)
    }
}

impl cancellation::Host for StepHost {
    fn is_cancelled(&mut self) -> bool {
        newest::cancellation::Host::is_cancelled(self)
    }
}
