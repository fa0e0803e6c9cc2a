//! The contract versions this host runs, and one binding per hosted minor.
//!
//! [`SUPPORTED`] lists the WIT version of each series the host has bindings for (today
//! contract 0.1, through `labhit_wit::host::v0_1`, and the newest, 0.2); it is the one
//! constant the load check, the registry and every "rebuild against" message use. A
//! component's contract is read from its export name before compiling
//! ([`crate::component::precheck_contract`]); [`ExtensionPre::new`] then picks the binding
//! of its series, and [`Instance::call_execute`] converts the input down and the result up
//! (`labhit_wit::upgrade`), so the rest of the runtime sees the newest types only. This is
//! how Zed hosts several extension API versions side by side.
//!
//! Capabilities that a later minor added are only granted to components and manifests that
//! target it ([`NETWORK_SINCE`]).

use labhit_bundle::SupportedContracts;
use labhit_wit::host as newest;
use labhit_wit::host::labhit::extension::types;
use labhit_wit::host::v0_1;
use semver::Version;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::sandbox::StepHost;

static HOSTED: [Version; 2] = [Version::new(0, 1, 0), Version::new(0, 2, 0)];

/// The contract versions this host runs: `>=0.1, <0.3`. The newest is
/// [`labhit_protocol::CONTRACT_VERSION`] (a test keeps them equal).
pub const SUPPORTED: SupportedContracts = SupportedContracts::new(&HOSTED);

/// The contract minor that added `capabilities.network` (outbound HTTP).
pub const NETWORK_SINCE: Version = Version::new(0, 2, 0);

/// Which binding a hosted series uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Contract 0.1.x: `labhit_wit::host::v0_1`.
    V0_1,
    /// Contract 0.2.x, the newest: `labhit_wit::host`.
    V0_2,
}

impl Binding {
    /// The binding of the series that runs a component built for `targets`; `None` when
    /// this host does not run it.
    pub fn for_contract(targets: &Version) -> Option<Self> {
        let hosted = SUPPORTED.series_for(targets)?;
        match (hosted.major, hosted.minor) {
            (0, 1) => Some(Self::V0_1),
            (0, 2) => Some(Self::V0_2),
            _ => None,
        }
    }
}

/// A component pre-instantiated with the binding of its contract series.
#[derive(Clone)]
pub(crate) enum ExtensionPre {
    V0_1(v0_1::ExtensionPre<StepHost>),
    V0_2(newest::ExtensionPre<StepHost>),
}

impl ExtensionPre {
    /// Checks the pre-instantiated component against the exports of `binding`.
    pub(crate) fn new(binding: Binding, pre: InstancePre<StepHost>) -> wasmtime::Result<Self> {
        Ok(match binding {
            Binding::V0_1 => Self::V0_1(v0_1::ExtensionPre::new(pre)?),
            Binding::V0_2 => Self::V0_2(newest::ExtensionPre::new(pre)?),
        })
    }

    /// Instantiates the component in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<StepHost>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Self::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

/// An instantiated component, of either binding.
pub(crate) enum Instance {
    V0_1(v0_1::Extension),
    V0_2(newest::Extension),
}

impl Instance {
    /// Calls `pipeline-step.execute`; the input and result are the newest types.
    pub(crate) fn call_execute(
        &self,
        store: &mut Store<StepHost>,
        input: &types::StepInput,
    ) -> wasmtime::Result<Result<types::StepOutput, types::StepError>> {
        match self {
            Self::V0_1(instance) => {
                let input = v0_1::labhit::extension::types::StepInput::from(input);
                let result = instance
                    .labhit_extension_pipeline_step()
                    .call_execute(store, &input)?;
                Ok(result.map(Into::into).map_err(Into::into))
            }
            Self::V0_2(instance) => instance
                .labhit_extension_pipeline_step()
                .call_execute(store, input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn the_newest_hosted_contract_is_the_contract_version() {
        assert_eq!(
            SUPPORTED.newest().to_string(),
            labhit_protocol::CONTRACT_VERSION
        );
        assert_eq!(SUPPORTED.to_string(), ">=0.1, <0.3");
    }

    #[test]
    fn every_hosted_series_has_a_binding_and_nothing_else_does() {
        for hosted in SUPPORTED.hosted() {
            assert!(Binding::for_contract(hosted).is_some(), "{hosted}");
        }
        assert_eq!(Binding::for_contract(&v("0.1.0")), Some(Binding::V0_1));
        assert_eq!(Binding::for_contract(&v("0.1.9")), Some(Binding::V0_1));
        assert_eq!(Binding::for_contract(&v("0.2.3")), Some(Binding::V0_2));
        for refused in ["0.0.1", "0.3.0", "1.0.0", "9.0.0"] {
            assert_eq!(Binding::for_contract(&v(refused)), None, "{refused}");
        }
    }
}
