//! [`Runtime`]: load extensions and execute steps.
//!
//! ```no_run
//! use std::sync::Arc;
//! use labhit_runtime::{CollectingSink, MapSecrets, Runtime, RuntimeConfig, StepRequest};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::from_env())?;
//! let manifest_text = std::fs::read_to_string("extensions/util/checksum/extension.toml")?;
//! let manifest = labhit_protocol::manifest::Manifest::from_toml(&manifest_text)
//!     .map_err(|d| format!("{d:?}"))?;
//! let extension = runtime.load(&manifest, "checksum.wasm".as_ref())?;
//! let sink = Arc::new(CollectingSink::new());
//! let mut request = StepRequest::new("checksum");
//! request.with = serde_json::json!({"patterns": ["**/*.rs"]}).into();
//! request.workspace = Some("/tmp/workspace".into());
//! request.log_sink = sink.clone();
//! let outcome = runtime.execute(&extension, request)?;
//! println!("exit {} outputs {:?}", outcome.exit_code, outcome.outputs);
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labhit_protocol::Value;
use labhit_protocol::executor::{ArtifactRef, CacheDecision};
use labhit_protocol::ids::{RunId, SnapshotRef, StepId};
use labhit_protocol::manifest::network::AllowList;
use labhit_protocol::manifest::{FilesystemAccess, Manifest};
use labhit_wit::convert::{ExecutorCommand, StepSpec};
use labhit_wit::host::labhit::extension::types;
use wasmtime::component::Linker;

use crate::cache::{self, CacheOutcome, ComponentCache};
use crate::cancellation::Cancellation;
use crate::component::{self, SourceKind};
use crate::contracts::{self, Binding, ExtensionPre, SUPPORTED};
use crate::engine::{EngineHandle, EngineSettings};
use crate::error::{LoadError, LoadErrorKind, RuntimeError, StepError, StepFailure};
use crate::fsio;
use crate::host::fs_guard::{FsGuard, StepBoundary};
use crate::host::http::{HttpHooks, HttpState};
use crate::host::secrets::SecretAccess;
use crate::host::wasi::{self, LineStream, WasiSpec};
use crate::logs::{LogCursor, LogLimits, LogSink, NullSink, StepLog};
use crate::net::HttpLimits;
use crate::net::tls::{TlsClient, TlsRoots};
use crate::sandbox::{self, Interruption, StepClock, StepHost, StepLimiter};
use crate::secrets::{NoSecrets, SecretStore};

/// Memory limit of an extension whose manifest sets none: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Timeout of an extension whose manifest sets none: 10 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the cache.
    /// [`RuntimeConfig::default`] uses [`cache::default_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Use wasmtime's pooling allocator (falls back to on-demand allocation when the system
    /// refuses the reservation).
    pub pooling: bool,
    /// Most steps running at the same time (the size of the instance pool).
    pub max_concurrent_steps: u32,
    /// The largest memory limit a manifest may ask for; larger ones are refused at load.
    pub max_memory_bytes: u64,
    /// Memory limit of extensions whose manifest sets none.
    pub default_memory_bytes: u64,
    /// Timeout of extensions whose manifest sets none.
    pub default_timeout: Duration,
    /// How often the epoch advances; deadlines are enforced to within one tick.
    pub epoch_tick: Duration,
    /// How long a cancelled guest may keep running before it is interrupted.
    pub cancel_grace: Duration,
    /// Bounds on each step's log.
    pub log_limits: LogLimits,
    /// The largest component file [`Runtime::load`] reads (default
    /// [`fsio::DEFAULT_COMPONENT_BYTES`], 256 MiB); larger files are refused unread.
    pub max_component_bytes: u64,
    /// Limits of outbound HTTP requests (extensions with `capabilities.network`).
    pub http: HttpLimits,
    /// What `https` servers are verified against.
    pub tls_roots: TlsRoots,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: cache::default_dir(),
            pooling: true,
            max_concurrent_steps: 64,
            max_memory_bytes: 1 << 30,
            default_memory_bytes: DEFAULT_MEMORY_BYTES,
            default_timeout: DEFAULT_TIMEOUT,
            epoch_tick: Duration::from_millis(10),
            cancel_grace: Duration::from_secs(5),
            log_limits: LogLimits::default(),
            max_component_bytes: fsio::DEFAULT_COMPONENT_BYTES,
            http: HttpLimits::default(),
            tls_roots: TlsRoots::default(),
        }
    }
}

impl RuntimeConfig {
    /// The defaults, with the cache directory taken from `LABHIT_CACHE_DIR` (or the XDG
    /// default). The same as [`RuntimeConfig::default`]; named for readability.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// The defaults with the cache in `dir`.
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: Some(dir.into()),
            ..Self::default()
        }
    }

    /// The defaults without an on-disk cache.
    pub fn without_cache() -> Self {
        Self {
            cache_dir: None,
            ..Self::default()
        }
    }
}

/// The reference host. Cheap to clone (clones share the engine); `Send + Sync`.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    engine: EngineHandle,
    cache: ComponentCache,
    /// The imports of extensions without network: no `wasi:http`.
    linker: Linker<StepHost>,
    /// The same plus `wasi:http`, for extensions whose manifest lists network entries.
    net_linker: Linker<StepHost>,
    /// TLS of `https` requests, set up at the first one.
    tls: Arc<TlsClient>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .field("engine", &self.inner.engine)
            .finish_non_exhaustive()
    }
}

/// An extension ready to run: compiled, checked and pre-instantiated. Cheap to clone.
#[derive(Clone)]
pub struct LoadedExtension {
    manifest: Arc<Manifest>,
    name: String,
    path: PathBuf,
    pre: ExtensionPre,
    contract: semver::Version,
    /// The parsed `capabilities.network`.
    allow: Arc<AllowList>,
    source: SourceKind,
    cache: CacheOutcome,
    cache_notes: Vec<String>,
    memory_bytes: u64,
    timeout: Duration,
    load_time: Duration,
    /// The manifest's `outputs`, compiled once at load time.
    outputs_schema: Option<Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for LoadedExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedExtension")
            .field("name", &self.name)
            .field("version", &self.manifest.extension.version)
            .field("path", &self.path)
            .field("contract", &self.contract)
            .field("source", &self.source)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl LoadedExtension {
    /// The manifest it was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// `category/name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The extension's version.
    pub fn version(&self) -> &semver::Version {
        &self.manifest.extension.version
    }
    /// The component file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The contract version the component targets (from its export name).
    pub fn contract_version(&self) -> &semver::Version {
        &self.contract
    }
    /// Whether the file was a component or an adapted preview1 module.
    pub fn source_kind(&self) -> SourceKind {
        self.source
    }
    /// What the compile cache did.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }
    /// Cache problems that did not stop the load (for example an unwritable cache).
    pub fn cache_notes(&self) -> &[String] {
        &self.cache_notes
    }
    /// The memory limit of each step, in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_bytes
    }
    /// The manifest's timeout (or the runtime default); a stage may only shorten it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// How long loading took (read, cache or compile, check, pre-instantiate).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// One step to execute.
#[derive(Clone)]
pub struct StepRequest {
    /// The run.
    pub run_id: RunId,
    /// This execution of the stage.
    pub step_id: StepId,
    /// The stage id.
    pub stage: String,
    /// The stage's `use` as written; empty means `category/name` of the extension.
    pub use_ref: String,
    /// The stage's `with` (an object, or [`Value::Null`] for none).
    pub with: Value,
    /// The environment the engine grants (the guest sees exactly this).
    pub env: BTreeMap<String, String>,
    /// The stage workspace on the host, preopened at `/workspace` as the manifest grants.
    /// Required when the manifest grants filesystem access.
    pub workspace: Option<PathBuf>,
    /// The stage's timeout; the manifest's timeout caps it.
    pub timeout: Option<Duration>,
    /// Where secret values come from (only declared names are asked for).
    pub secrets: Arc<dyn SecretStore>,
    /// Where log entries go.
    pub log_sink: Arc<dyn LogSink>,
    /// The run's log sequence counter.
    pub log_cursor: LogCursor,
    /// The cancellation flag of the run or stage.
    pub cancellation: Cancellation,
    /// For an executor extension running a `run:` stage: the command.
    pub command: Option<ExecutorCommand>,
}

impl std::fmt::Debug for StepRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRequest")
            .field("run_id", &self.run_id)
            .field("step_id", &self.step_id)
            .field("stage", &self.stage)
            .field("use_ref", &self.use_ref)
            .field("workspace", &self.workspace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StepRequest {
    /// A request for stage `stage` with fresh run and step ids, no `with`, no env, no
    /// workspace, no secrets, logs dropped.
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            run_id: RunId::from_uuid(uuid::Uuid::new_v4()),
            step_id: StepId::from_uuid(uuid::Uuid::new_v4()),
            stage: stage.into(),
            use_ref: String::new(),
            with: Value::Null,
            env: BTreeMap::new(),
            workspace: None,
            timeout: None,
            secrets: Arc::new(NoSecrets),
            log_sink: Arc::new(NullSink),
            log_cursor: LogCursor::new(),
            cancellation: Cancellation::new(),
            command: None,
        }
    }
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// 0 for success; anything else failed the stage.
    pub exit_code: i32,
    /// Named outputs (names and values redacted of secrets).
    pub outputs: BTreeMap<String, String>,
    /// Artifacts, each a regular file inside the workspace.
    pub artifacts: Vec<ArtifactRef>,
    /// The snapshot the step committed (only for a successful `miss-build-as`).
    pub committed_snapshot: Option<SnapshotRef>,
    /// Wall time of the step (instantiate + execute).
    pub elapsed: Duration,
}

impl StepOutcome {
    /// Whether the exit code is 0.
    pub fn is_success(&self) -> bool {
        self.exit_code == 0
    }
}

impl Runtime {
    /// Creates the engine, the epoch ticker and the linker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        if config.default_memory_bytes > config.max_memory_bytes {
            return Err(RuntimeError::Config(format!(
                "`default_memory_bytes` ({}) exceeds `max_memory_bytes` ({})",
                config.default_memory_bytes, config.max_memory_bytes
            )));
        }
        let engine = EngineHandle::new(EngineSettings {
            pooling: config.pooling,
            max_concurrent_steps: config.max_concurrent_steps,
            max_memory_bytes: config.max_memory_bytes,
            epoch_tick: config.epoch_tick,
        })?;
        let linker_for = |network| {
            let mut linker = Linker::new(engine.engine());
            crate::host::add_to_linker(&mut linker, network)
                .map_err(|e| RuntimeError::Engine(format!("cannot set up the linker: {e}")))?;
            Ok::<_, RuntimeError>(linker)
        };
        let linker = linker_for(false)?;
        let net_linker = linker_for(true)?;
        let cache = ComponentCache::new(engine.engine(), config.cache_dir.clone());
        let tls = Arc::new(TlsClient::new(config.tls_roots.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                engine,
                cache,
                linker,
                net_linker,
                tls,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        self.inner.engine.engine()
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.engine.pooling()
    }

    /// The compile cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.inner.cache
    }

    /// Loads the component at `component_path` for `manifest`: reads it, adapts a preview1
    /// module, compiles it (or loads it from the cache), checks the contract version and the
    /// imports, and pre-instantiates it.
    pub fn load(
        &self,
        manifest: &Manifest,
        component_path: &Path,
    ) -> Result<LoadedExtension, LoadError> {
        let start = Instant::now();
        let fail = |kind| load_error(manifest, component_path, kind);
        let limit = fsio::Limit::component(self.inner.config.max_component_bytes);
        let bytes =
            fsio::read(component_path, limit).map_err(|e| fail(LoadErrorKind::Read(e.into())))?;
        self.load_bytes_inner(manifest, component_path, &bytes, start)
    }

    /// Like [`Runtime::load`] for bytes already in memory; `origin` names them in errors.
    pub fn load_bytes(
        &self,
        manifest: &Manifest,
        origin: &Path,
        bytes: &[u8],
    ) -> Result<LoadedExtension, LoadError> {
        self.load_bytes_inner(manifest, origin, bytes, Instant::now())
    }

    fn load_bytes_inner(
        &self,
        manifest: &Manifest,
        origin: &Path,
        bytes: &[u8],
        start: Instant,
    ) -> Result<LoadedExtension, LoadError> {
        let inner = &*self.inner;
        let fail = |kind| load_error(manifest, origin, kind);
        let supported = &SUPPORTED;
        let Some(admitted) = supported.admitted_by(&manifest.extension.contract) else {
            let newest = supported.newest();
            return Err(fail(LoadErrorKind::ManifestContract {
                requirement: manifest.extension.contract.clone(),
                supported: supported.to_string(),
                series: format!("{}.{}", newest.major, newest.minor),
                wit: labhit_protocol::WIT_PACKAGE,
            }));
        };
        capabilities_allowed(manifest, admitted, None).map_err(fail)?;
        let memory_bytes = manifest
            .limits
            .memory
            .as_ref()
            .map_or(inner.config.default_memory_bytes, |m| m.bytes());
        if memory_bytes > inner.config.max_memory_bytes {
            return Err(fail(LoadErrorKind::MemoryLimitTooLarge {
                requested: memory_bytes,
                max: inner.config.max_memory_bytes,
            }));
        }
        let timeout = manifest
            .limits
            .timeout
            .as_ref()
            .map_or(inner.config.default_timeout, |t| t.to_std());
        let outputs_schema = match &manifest.outputs {
            None => None,
            Some(schema) => Some(Arc::new(
                jsonschema::validator_for(&Value::Object(schema.clone()).to_json())
                    .map_err(|e| fail(LoadErrorKind::OutputSchema(e.to_string())))?,
            )),
        };
        let allow = manifest.capabilities.allow_list().map_err(|(index, err)| {
            fail(LoadErrorKind::NetworkEntry {
                entry: manifest.capabilities.network[index].clone(),
                reason: err.to_string(),
            })
        })?;
        let linker = if allow.is_empty() {
            &inner.linker
        } else {
            &inner.net_linker
        };
        let source = component::detect(bytes).map_err(fail)?;
        // The contract version is read from the export names before anything is compiled:
        // a component of the wrong contract is refused in milliseconds, whatever its size,
        // and never reaches the compile cache. (A preview1 module is checked once adapted.)
        if source == SourceKind::Component
            && let Some(targets) = component::precheck_contract(bytes, supported).map_err(fail)?
        {
            contract_admitted(manifest, &targets).map_err(fail)?;
            capabilities_allowed(manifest, admitted, Some(&targets)).map_err(fail)?;
        }
        let engine = inner.engine.engine();
        let (loaded, (contract, pre)) = inner
            .cache
            .load_or_compile(
                engine,
                bytes,
                || match source {
                    SourceKind::Component => Ok(Cow::Borrowed(bytes)),
                    SourceKind::Preview1Module => {
                        let adapted = component::adapt_preview1(bytes)?;
                        component::precheck_contract(&adapted, supported)?;
                        Ok(Cow::Owned(adapted))
                    }
                },
                |err| LoadErrorKind::Compile(error_chain(&err)),
                |compiled| {
                    let contract = component::check_contract(engine, compiled, supported)?;
                    contract_admitted(manifest, &contract)?;
                    capabilities_allowed(manifest, admitted, Some(&contract))?;
                    let binding = Binding::for_contract(&contract).ok_or_else(|| {
                        LoadErrorKind::IncompatibleContract {
                            targets: contract.to_string(),
                            export: format!("{}@{contract}", component::PIPELINE_STEP_EXPORT),
                            supported: supported.to_string(),
                            newest: labhit_protocol::CONTRACT_VERSION,
                            wit: labhit_protocol::WIT_PACKAGE,
                        }
                    })?;
                    if allow.is_empty() {
                        component::refuse_http_import(engine, compiled)?;
                    }
                    let instance_pre = linker
                        .instantiate_pre(compiled)
                        .map_err(|e| LoadErrorKind::Link(error_chain(&e)))?;
                    let pre = ExtensionPre::new(binding, instance_pre)
                        .map_err(|e| LoadErrorKind::Link(error_chain(&e)))?;
                    Ok((contract, pre))
                },
            )
            .map_err(fail)?;
        Ok(LoadedExtension {
            manifest: Arc::new(manifest.clone()),
            name: manifest.qualified_name(),
            path: origin.to_owned(),
            pre,
            contract,
            allow: Arc::new(allow),
            source,
            cache: loaded.outcome,
            cache_notes: loaded.notes,
            memory_bytes,
            timeout,
            load_time: start.elapsed(),
            outputs_schema,
        })
    }

    /// Loads the extension and executes one step; a load failure becomes a
    /// [`StepFailure::Load`] naming the stage.
    pub fn load_and_execute(
        &self,
        manifest: &Manifest,
        component_path: &Path,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError> {
        match self.load(manifest, component_path) {
            Ok(extension) => self.execute(&extension, request),
            Err(err) => Err(StepError {
                stage: request.stage,
                extension: err.extension,
                version: err.version,
                failure: Box::new(StepFailure::Load(format!(
                    "{} (component `{}`)",
                    err.kind,
                    err.path.display()
                ))),
                elapsed: Duration::ZERO,
            }),
        }
    }

    /// Executes one step of `extension` in a fresh sandbox. Every failure of the guest is a
    /// [`StepError`]; the runtime is unaffected by it.
    pub fn execute(
        &self,
        extension: &LoadedExtension,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError> {
        let start = Instant::now();
        let inner = &*self.inner;
        let fail = |failure| StepError {
            stage: request.stage.clone(),
            extension: extension.name.clone(),
            version: extension.version().clone(),
            failure: Box::new(failure),
            elapsed: start.elapsed(),
        };
        let access = extension.manifest.capabilities.filesystem;
        let timeout = request
            .timeout
            .map_or(extension.timeout, |t| t.min(extension.timeout));

        let log = Arc::new(StepLog::new(
            request.run_id,
            &request.stage,
            Arc::clone(&request.log_sink),
            request.log_cursor.clone(),
            inner.config.log_limits,
        ));
        let stdout =
            LineStream::stdout(Arc::clone(&log), inner.config.log_limits.max_message_bytes);
        let stderr =
            LineStream::stderr(Arc::clone(&log), inner.config.log_limits.max_message_bytes);

        let mut spec = StepSpec::new(
            request.run_id,
            request.step_id,
            request.stage.clone(),
            if request.use_ref.is_empty() {
                extension.name.clone()
            } else {
                request.use_ref.clone()
            },
        );
        spec.with = request.with.clone();
        spec.env = request.env.clone();
        spec.workspace_access = access;
        spec.command = request.command.clone();
        let input = types::StepInput::try_from(&spec)
            .map_err(|e| fail(StepFailure::Setup(e.to_string())))?;

        let workspace = match (access, &request.workspace) {
            (FilesystemAccess::None, _) => None,
            (_, Some(dir)) => Some(dir.as_path()),
            (_, None) => {
                return Err(fail(StepFailure::Setup(format!(
                    "the manifest grants filesystem access `{access}` but the request names no workspace"
                ))));
            }
        };
        let env: Vec<(String, String)> = request
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (wasi, table) = wasi::build(WasiSpec {
            env: &env,
            workspace,
            access,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        })
        .map_err(|e| fail(StepFailure::Setup(e)))?;
        let fs = FsGuard::new(&extension.manifest, access, workspace, Arc::clone(&log))
            .map_err(|e| fail(StepFailure::Setup(e)))?;
        let boundary = StepBoundary::start(access, workspace).map_err(fail)?;

        let clock = StepClock::new(timeout, inner.config.cancel_grace);
        let http = HttpState::new(HttpHooks {
            allow: Arc::clone(&extension.allow),
            limits: inner.config.http,
            deadline: clock.deadline,
            cancellation: request.cancellation.clone(),
            log: Arc::clone(&log),
            tls: Arc::clone(&inner.tls),
        });
        let host = StepHost {
            wasi,
            http,
            table,
            log: Arc::clone(&log),
            secrets: SecretAccess::new(
                &extension.manifest.capabilities.secrets,
                Arc::clone(&request.secrets),
            ),
            cancellation: request.cancellation.clone(),
            limiter: StepLimiter::new(extension.memory_bytes),
            clock,
            fs,
        };
        let mut store = sandbox::new_store(inner.engine.engine(), host);

        let result = match extension.pre.instantiate(&mut store) {
            Ok(instance) => instance.call_execute(&mut store, &input),
            Err(err) => {
                stdout.finish();
                stderr.finish();
                log.finish();
                let failure = if store.data().limiter.memory_refused {
                    StepFailure::MemoryLimit {
                        limit: extension.memory_bytes,
                    }
                } else {
                    StepFailure::Instantiate(log.redact(&error_chain(&err)))
                };
                return Err(fail(failure));
            }
        };
        stdout.finish();
        stderr.finish();
        log.finish();
        if let Some(failure) = boundary.finish(&store.data().fs, &log) {
            return Err(fail(failure));
        }
        let host = store.data();
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                let failure = match error {
                    types::StepError::InvalidConfig(m) => {
                        StepFailure::InvalidConfig(log.redact(&m))
                    }
                    types::StepError::Failed(m) => StepFailure::Failed(log.redact(&m)),
                    types::StepError::Cancelled(m) => StepFailure::Cancelled(log.redact(&m)),
                    types::StepError::Internal(m) => StepFailure::Internal(log.redact(&m)),
                };
                return Err(fail(failure));
            }
            Err(err) => {
                return Err(fail(classify_trap(
                    &err,
                    host,
                    &log,
                    timeout,
                    extension.memory_bytes,
                    inner.config.cancel_grace,
                )));
            }
        };
        let outcome = check_output(
            output,
            &log,
            workspace,
            request.command.as_ref(),
            extension.outputs_schema.as_deref(),
        )
        .map_err(|m| fail(StepFailure::InvalidOutput(log.redact(&m))))?;
        Ok(StepOutcome {
            elapsed: start.elapsed(),
            ..outcome
        })
    }
}

/// Refuses capabilities a newer contract minor added when the extension targets an older
/// one: `admitted` is the newest hosted contract the manifest's range admits, `component`
/// the contract the component exports (once read).
fn capabilities_allowed(
    manifest: &Manifest,
    admitted: &semver::Version,
    component: Option<&semver::Version>,
) -> Result<(), LoadErrorKind> {
    if manifest.capabilities.network.is_empty() {
        return Ok(());
    }
    let since = &contracts::NETWORK_SINCE;
    let why = if admitted < since {
        format!(
            "its manifest's `contract = \"{}\"` admits only older contracts",
            manifest.extension.contract
        )
    } else if let Some(targets) = component.filter(|targets| *targets < since) {
        format!("the component targets contract {targets}")
    } else {
        return Ok(());
    };
    Err(LoadErrorKind::CapabilityNeedsContract {
        capability: "network",
        since: format!("{}.{}", since.major, since.minor),
        why,
        wit: labhit_protocol::WIT_PACKAGE,
    })
}

/// Refuses a component whose contract version the manifest's `contract` range does not
/// admit, although this host runs it: the manifest is what `labhit validate`, the registry
/// and the capability checks trust, so it must describe the component.
fn contract_admitted(manifest: &Manifest, targets: &semver::Version) -> Result<(), LoadErrorKind> {
    let requirement = &manifest.extension.contract;
    if requirement.matches(targets) {
        return Ok(());
    }
    Err(LoadErrorKind::ContractMismatch {
        requirement: requirement.clone(),
        targets: targets.clone(),
        export: format!("{}@{targets}", component::PIPELINE_STEP_EXPORT),
        series: format!("{}.{}", targets.major, targets.minor),
    })
}

fn load_error(manifest: &Manifest, path: &Path, kind: LoadErrorKind) -> LoadError {
    LoadError {
        extension: manifest.qualified_name(),
        version: manifest.extension.version.clone(),
        path: path.to_owned(),
        kind: Box::new(kind),
    }
}

/// Every message of an error chain, joined with `: `.
fn error_chain(err: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn classify_trap(
    err: &wasmtime::Error,
    host: &StepHost,
    log: &StepLog,
    timeout: Duration,
    memory_limit: u64,
    grace: Duration,
) -> StepFailure {
    match host
        .clock
        .interrupted
        .or_else(|| err.downcast_ref::<Interruption>().copied())
    {
        Some(Interruption::Deadline) => return StepFailure::Timeout { timeout },
        Some(Interruption::Cancelled) => return StepFailure::Interrupted { grace },
        None => {}
    }
    if let Some(exit) = err.downcast_ref::<wasi::GuestExit>() {
        return StepFailure::Exit {
            status: exit.status,
        };
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return StepFailure::Exit {
            status: Some(exit.0),
        };
    }
    if host.limiter.memory_refused {
        return StepFailure::MemoryLimit {
            limit: memory_limit,
        };
    }
    if let Some(message) = log.panic_message() {
        return StepFailure::Panic { message };
    }
    let trap = err
        .downcast_ref::<wasmtime::Trap>()
        .map_or_else(|| error_chain(err), ToString::to_string);
    StepFailure::Trap {
        trap: log.redact(&trap),
        last_error: log.last_error(),
    }
}

/// Checks a `step-output` against the contract and redacts its outputs (names and values;
/// artifact paths are redacted where they are recorded): bounded outputs, artifacts inside the
/// workspace, a snapshot only as the cache decision allows, and, for a successful step, the
/// outputs against the manifest's output schema (a failed step is failed already; its
/// partial outputs are kept as they are).
fn check_output(
    output: types::StepOutput,
    log: &StepLog,
    workspace: Option<&Path>,
    command: Option<&ExecutorCommand>,
    outputs_schema: Option<&jsonschema::Validator>,
) -> Result<StepOutcome, String> {
    let outcome = labhit_wit::convert::StepOutcome::try_from(output).map_err(|e| e.to_string())?;
    crate::outputs::OutputLimits::default().check(&outcome.outputs)?;
    if let Some(validator) = outputs_schema
        && outcome.result.exit_code == 0
    {
        let instance = serde_json::Value::Object(
            outcome
                .outputs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        let problems: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| match e.instance_path().as_str() {
                "" => e.to_string(),
                path => format!("{path}: {e}"),
            })
            .collect();
        if !problems.is_empty() {
            return Err(format!(
                "its outputs break the manifest's output schema: {}",
                problems.join("; ")
            ));
        }
    }
    let result = outcome.result;
    for artifact in &result.artifacts {
        let path = artifact.path.as_str();
        let Some(root) = workspace else {
            return Err(format!(
                "artifact `{path}` was reported, but the extension has no workspace"
            ));
        };
        let full = root.join(path);
        let inside = match (full.canonicalize(), root.canonicalize()) {
            (Ok(full), Ok(root)) => full.starts_with(&root) && full.is_file(),
            _ => false,
        };
        if !inside {
            return Err(format!(
                "artifact `{path}` is not a regular file inside the workspace"
            ));
        }
    }
    if let Some(snapshot) = &result.committed_snapshot {
        let expected = match command.map(|c| &c.cache) {
            Some(CacheDecision::MissBuildAs { tag }) if result.exit_code == 0 => Some(tag),
            _ => None,
        };
        if expected != Some(snapshot) {
            return Err(format!(
                "it committed snapshot `{}`, but only a successful step with the cache decision \
                 `miss-build-as` may commit, and only to that tag",
                snapshot.0
            ));
        }
    }
    Ok(StepOutcome {
        exit_code: result.exit_code,
        outputs: outcome
            .outputs
            .into_iter()
            .map(|(k, v)| (log.redact(&k), log.redact(&v)))
            .collect(),
        artifacts: result.artifacts,
        committed_snapshot: result.committed_snapshot,
        elapsed: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn runtime_types_are_send_and_sync() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<LoadedExtension>();
        assert_send_sync::<StepRequest>();
    }
}
