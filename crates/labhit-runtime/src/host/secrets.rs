//! `labhit:extension/secrets`: secrets by declared name, from a [`SecretStore`].
//!
//! `get(name)` checks, in this order: that `name` is a valid secret name
//! ([`SecretName::PATTERN`], else `invalid-name`); that the manifest declares it (else
//! `denied`, whether or not a value exists — the store is not even asked); that the store has
//! a value (else `not-found`). A value handed out is registered with the step's redactor
//! before it reaches the guest, so it never appears in anything the runtime logs.
//!
//! Where values come from is a domain concern, not glue: the stores live in
//! [`crate::secrets`].
use std::collections::BTreeSet;
use std::sync::Arc;

use labhit_protocol::manifest::SecretName;
use labhit_protocol::run::{LogLevel, LogStream};
use labhit_wit::host::labhit::extension::secrets;
use wasmtime::component::{HasSelf, Linker};

use crate::logs::StepLog;
use crate::sandbox::StepHost;
use crate::secrets::SecretStore;
/// The secrets part of a step: what the manifest declares and where values come from.
pub(crate) struct SecretAccess {
    declared: BTreeSet<String>,
    store: Arc<dyn SecretStore>,
}

impl SecretAccess {
    pub(crate) fn new(declared: &[SecretName], store: Arc<dyn SecretStore>) -> Self {
        Self {
            declared: declared.iter().map(|n| n.as_str().to_owned()).collect(),
            store,
        }
    }

    /// The answer to `secrets.get(name)`; a value is registered with `log` for redaction
    /// before it is returned.
    pub(crate) fn get(&self, name: &str, log: &StepLog) -> Result<String, secrets::SecretError> {
        if SecretName::new(name).is_err() {
            return Err(secrets::SecretError::InvalidName);
        }
        if !self.declared.contains(name) {
            return Err(secrets::SecretError::Denied);
        }
        match self.store.get(name) {
            Ok(Some(value)) => {
                log.add_secret(&value);
                Ok(value)
            }
            Ok(None) => Err(secrets::SecretError::NotFound),
            Err(err) => {
                log.emit(
                    LogLevel::Warn,
                    LogStream::System,
                    &err.to_string(),
                    Vec::new(),
                );
                Err(secrets::SecretError::NotFound)
            }
        }
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    secrets::add_to_linker::<_, HasSelf<_>>(linker, |host| host)
}

impl secrets::Host for StepHost {
    fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
        self.secrets.get(&name, &self.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MapSecrets;
    use crate::logs::{CollectingSink, LogCursor, LogLimits};
    use labhit_protocol::ids::RunId;
    use secrets::SecretError;

    fn log() -> StepLog {
        StepLog::new(
            RunId::from_uuid(uuid::Uuid::nil()),
            "s",
            Arc::new(CollectingSink::new()),
            LogCursor::new(),
            LogLimits::default(),
        )
    }

    fn access(store: impl SecretStore + 'static) -> SecretAccess {
        let declared = [
            SecretName::new("TOKEN").expect("valid"),
            SecretName::new("MISSING").expect("valid"),
        ];
        SecretAccess::new(&declared, Arc::new(store))
    }

    #[test]
    fn checks_name_then_declaration_then_value() {
        let store: MapSecrets = [("TOKEN", "t0k"), ("OTHER", "x")].into_iter().collect();
        let access = access(store);
        let log = log();
        assert_eq!(access.get("TOKEN", &log), Ok("t0k".to_owned()));
        assert_eq!(access.get("OTHER", &log), Err(SecretError::Denied));
        assert_eq!(access.get("MISSING", &log), Err(SecretError::NotFound));
        assert_eq!(access.get("", &log), Err(SecretError::InvalidName));
        assert_eq!(access.get("lower", &log), Err(SecretError::InvalidName));
        assert_eq!(access.get("../TOKEN", &log), Err(SecretError::InvalidName));
        assert_eq!(log.redact("t0k"), "***");
    }
}
