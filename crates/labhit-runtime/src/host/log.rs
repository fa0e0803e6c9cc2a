//! `labhit:extension/log` (and the type-only `labhit:extension/types`): guest log calls go
//! into the step's log stream at the level the guest chose, stream `log`, redacted.

use labhit_protocol::run::{LogLevel, LogStream};
use labhit_wit::host::labhit::extension::{log, types};
use wasmtime::component::{HasSelf, Linker};

use crate::sandbox::StepHost;

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    log::add_to_linker::<_, HasSelf<_>>(linker, |host| host)?;
    Ok(())
}

impl types::Host for StepHost {}

impl log::Host for StepHost {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.log
            .emit_owned(LogLevel::from(level), LogStream::Log, message, fields);
    }
}
