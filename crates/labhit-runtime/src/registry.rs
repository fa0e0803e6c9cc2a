//! The extension registry: finds installed extension bundles on disk and resolves a stage's
//! `use: category/name@req` to one of them.
//!
//! A **bundle** is a directory holding `extension.toml` and the component file the manifest
//! names (`extension.component`, relative to the manifest). `cargo xtask extensions` writes
//! bundles as `<out>/<category>/<name>/`, but any layout works: every directory below a
//! search directory that holds an `extension.toml` is a bundle (its subdirectories are not
//! searched further; hidden directories are skipped).
//!
//! **Search path**, in precedence order ([`search_path`]):
//!
//! 1. directories given explicitly (`labhit --extensions DIR`, repeatable), in order;
//! 2. the `:`-separated directories of the environment variable [`ENV_VAR`]
//!    (`LABHIT_EXTENSIONS`), in order;
//! 3. the default directory [`default_dir`]: `$XDG_DATA_HOME/labhit/extensions`, or
//!    `~/.local/share/labhit/extensions` when `XDG_DATA_HOME` is unset.
//!
//! **Resolution** ([`Registry::resolve`]) takes the groups above in that order and uses the
//! first group that holds a version satisfying the reference; inside a group the newest
//! satisfying version wins. So a bundle under `--extensions` beats a newer one in
//! `LABHIT_EXTENSIONS`, which beats a newer one in the default directory.
//!
//! Every file of a bundle is read with [`fsio`](crate::fsio): the manifest must be a regular
//! file of at most 1 MiB, and a FIFO or device in place of a manifest or component is
//! refused without blocking. The component path, and what it resolves to through symbolic
//! links, must stay inside the bundle directory ([`component_path`]).
//!
//! Discovery never stops at a bad bundle: a manifest that does not parse or validate, a
//! component file that is missing or is not WebAssembly, or a manifest whose `contract`
//! requirement excludes this host's contract version is recorded in
//! [`Registry::invalid`] with its path and reason, and every good bundle stays usable.
//! Two bundles with the same `category/name` and version are a [`Conflict`]: the one found
//! first in search order is used (like `PATH`), the others are listed as shadowed.
//!
//! Both WebAssembly components (`wasm32-wasip2`) and core modules (`wasm32-wasip1`, adapted
//! into components by the runtime when it loads them) are accepted; [`Bundle::format`] says
//! which one a bundle holds. Only the first 8 bytes of a component are read here (checked by
//! [`labhit_bundle::detect`], the one header check of the workspace): whether
//! it really exports the contract is the runtime's business when it loads it.
//!
//! Pure Rust and file-system reads only: no wasmtime, so it is cheap to use from tools.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::UseRef;

use crate::fsio;

/// The environment variable holding extra search directories, separated by `:`.
pub const ENV_VAR: &str = "LABHIT_EXTENSIONS";

/// The file name of an extension manifest.
pub const MANIFEST_FILE: &str = "extension.toml";

/// How deep below a search directory bundles are looked for.
const MAX_DEPTH: usize = 8;

/// The default search directory: `$XDG_DATA_HOME/labhit/extensions`, else
/// `$HOME/.local/share/labhit/extensions`; `None` when neither variable is set.
pub fn default_dir() -> Option<PathBuf> {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local").join("share"))
        })?;
    Some(data_home.join("labhit").join("extensions"))
}

/// Where a search directory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given explicitly (`--extensions DIR`): it must exist.
    Explicit,
    /// From [`ENV_VAR`]; skipped silently when it does not exist.
    Env,
    /// [`default_dir`]; skipped silently when it does not exist.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Explicit => "--extensions",
            Origin::Env => ENV_VAR,
            Origin::Default => "default",
        })
    }
}

/// One directory of the search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDir {
    /// The directory.
    pub path: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

/// The search path: `explicit` directories, then those of `LABHIT_EXTENSIONS`, then the
/// default directory (see the module documentation). Duplicates keep their first place.
pub fn search_path(explicit: &[PathBuf]) -> Vec<SearchDir> {
    let env = std::env::var_os(ENV_VAR);
    search_path_from(explicit, env.as_deref(), default_dir())
}

fn search_path_from(
    explicit: &[PathBuf],
    env: Option<&std::ffi::OsStr>,
    default: Option<PathBuf>,
) -> Vec<SearchDir> {
    let mut dirs: Vec<SearchDir> = explicit
        .iter()
        .map(|path| SearchDir {
            path: path.clone(),
            origin: Origin::Explicit,
        })
        .collect();
    if let Some(env) = env {
        dirs.extend(
            std::env::split_paths(env)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|path| SearchDir {
                    path,
                    origin: Origin::Env,
                }),
        );
    }
    dirs.extend(default.map(|path| SearchDir {
        path,
        origin: Origin::Default,
    }));
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.path.clone()));
    dirs
}

/// What kind of WebAssembly binary a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentFormat {
    /// A component (for example built for `wasm32-wasip2`).
    Component,
    /// A core module (for example built for `wasm32-wasip1`); the runtime adapts it.
    CoreModule,
}

impl fmt::Display for ComponentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentFormat::Component => "component",
            ComponentFormat::CoreModule => "core module (wasip1)",
        })
    }
}

/// A valid bundle: manifest plus component file.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// The path of `extension.toml`.
    pub manifest_path: PathBuf,
    /// The path of the component file (`extension.component`, relative to the manifest).
    pub component_path: PathBuf,
    /// Whether the file is a component or a core module.
    pub format: ComponentFormat,
}

impl Bundle {
    /// Reads and validates the bundle whose manifest is `manifest_path`, without checking
    /// the contract requirement. `Err` is the reason it is invalid.
    pub fn load(manifest_path: &Path) -> Result<Bundle, String> {
        let bytes = fsio::read(manifest_path, fsio::Limit::MANIFEST)
            .map_err(|e| format!("cannot read the manifest: {e}"))?;
        let manifest = Manifest::from_toml_bytes(&bytes).map_err(|diagnostics| {
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let component_path = component_path(manifest_path, &manifest)?;
        let format = sniff(&component_path)?;
        Ok(Bundle {
            manifest,
            manifest_path: manifest_path.to_owned(),
            component_path,
            format,
        })
    }

    /// `category/name`.
    pub fn name(&self) -> String {
        self.manifest.qualified_name()
    }

    /// `category/name@version`.
    pub fn id(&self) -> String {
        format!(
            "{}@{}",
            self.manifest.qualified_name(),
            self.manifest.extension.version
        )
    }

    /// The contract version the component targets, read from its export names (a core
    /// module is adapted first, as loading does), without compiling. `Err` says why it
    /// cannot be read; whether this host runs it is [`crate::contracts::SUPPORTED`]'s call.
    pub fn contract_version(&self) -> Result<semver::Version, String> {
        let bytes = fsio::read(
            &self.component_path,
            fsio::Limit::component(fsio::DEFAULT_COMPONENT_BYTES),
        )
        .map_err(|e| format!("cannot read the component: {e}"))?;
        let bytes = match self.format {
            ComponentFormat::Component => bytes,
            ComponentFormat::CoreModule => labhit_bundle::adapt_preview1(&bytes)
                .map_err(|e| format!("cannot adapt the preview1 module: {}", e.0))?,
        };
        let export = labhit_bundle::read_contract_export(&bytes).map_err(|e| e.to_string())?;
        export
            .version
            .ok_or_else(|| format!("`{}` carries no contract version", export.name))
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

/// The component file `manifest` names (`extension.component`, relative to the directory
/// of `manifest_path`), refused when it resolves outside that directory: the manifest
/// parser already refuses absolute paths and `..`, and this refuses a symbolic link (of the
/// file or of a directory on the way) that leads out of the bundle. A path that does not
/// resolve (a missing file) is returned as is; reading it reports the problem.
pub fn component_path(manifest_path: &Path, manifest: &Manifest) -> Result<PathBuf, String> {
    let dir = match manifest_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let path = dir.join(&manifest.extension.component);
    let (Ok(real_dir), Ok(real)) = (dir.canonicalize(), path.canonicalize()) else {
        return Ok(path);
    };
    if real.starts_with(&real_dir) {
        Ok(path)
    } else {
        Err(format!(
            "component `{}` resolves to `{}`, outside the bundle directory `{}`; put the file itself in the bundle",
            path.display(),
            real.display(),
            dir.display()
        ))
    }
}

/// Reads the WebAssembly header of `path` (opened with [`fsio::open_regular`], so a FIFO or
/// device is refused without blocking).
fn sniff(path: &Path) -> Result<ComponentFormat, String> {
    let shown = path.display();
    let mut file = match fsio::open_regular(path) {
        Ok((file, _)) => file,
        Err(fsio::ReadError::NotFound { .. }) => {
            return Err(format!("component file `{shown}` does not exist"));
        }
        Err(e) => return Err(format!("cannot use the component: {e}")),
    };
    let mut header = [0u8; 8];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("cannot read component `{shown}`: {}", describe(&e))),
        }
    }
    match labhit_bundle::detect(&header[..read]) {
        Ok(labhit_bundle::Kind::Component) => Ok(ComponentFormat::Component),
        Ok(labhit_bundle::Kind::CoreModule) => Ok(ComponentFormat::CoreModule),
        Err(e) => Err(format!(
            "component `{shown}` is not a WebAssembly file: {e}"
        )),
    }
}

/// A bundle (or search directory) that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The manifest file, or the search directory when the directory itself is the problem.
    pub path: PathBuf,
    /// Why, lowercase, without a trailing period.
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Two or more bundles with the same `category/name@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `category/name@version`.
    pub id: String,
    /// The manifest that is used: the first in search order.
    pub used: PathBuf,
    /// The manifests that are ignored.
    pub shadowed: Vec<PathBuf>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is installed more than once; using {}, ignoring {}",
            self.id,
            self.used.display(),
            self.shadowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Why a `use` reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No bundle has that `category/name`.
    NotFound {
        /// `category/name`.
        wanted: String,
        /// The nearest installed name, when one is close enough to be a typo.
        suggestion: Option<String>,
        /// Every installed `category/name`.
        available: Vec<String>,
        /// How many invalid bundles were skipped (they may be the one wanted).
        invalid: usize,
    },
    /// Bundles of that name exist, but none has a version satisfying the requirement.
    NoMatchingVersion {
        /// `category/name`.
        wanted: String,
        /// The requirement.
        requirement: String,
        /// The installed versions, newest first.
        available: Vec<String>,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound {
                wanted,
                suggestion,
                available,
                invalid,
            } => {
                write!(f, "no extension `{wanted}` is installed")?;
                if let Some(near) = suggestion {
                    write!(f, "; did you mean `{near}`?")?;
                } else if available.is_empty() {
                    write!(
                        f,
                        "; no extensions were found (pass `--extensions DIR` or set `{ENV_VAR}`)"
                    )?;
                } else {
                    write!(f, "; installed: {}", available.join(", "))?;
                }
                if *invalid > 0 {
                    write!(f, " ({invalid} invalid bundle(s) were skipped)")?;
                }
                Ok(())
            }
            ResolveError::NoMatchingVersion {
                wanted,
                requirement,
                available,
            } => write!(
                f,
                "no installed version of `{wanted}` satisfies `{requirement}`; installed: {}",
                available.join(", ")
            ),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Every bundle found on a search path, plus what was wrong.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    searched: Vec<SearchDir>,
    bundles: Vec<Bundle>,
    /// Where each bundle of `bundles` was found.
    origins: Vec<Origin>,
    invalid: Vec<Invalid>,
    conflicts: Vec<Conflict>,
}

impl Registry {
    /// Discovers bundles on the full search path ([`search_path`]) with `explicit` first.
    pub fn discover(explicit: &[PathBuf]) -> Registry {
        Self::discover_in(search_path(explicit))
    }

    /// Discovers bundles in exactly `dirs`, in precedence order.
    pub fn discover_in(dirs: Vec<SearchDir>) -> Registry {
        let mut registry = Registry::default();
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut conflicts: BTreeMap<String, Conflict> = BTreeMap::new();
        for dir in &dirs {
            let mut manifests = Vec::new();
            match std::fs::metadata(&dir.path) {
                Ok(m) if m.is_dir() => {
                    let mut visited = BTreeSet::new();
                    walk(
                        &dir.path,
                        0,
                        &mut visited,
                        &mut manifests,
                        &mut registry.invalid,
                    );
                }
                Ok(_) => registry.invalid.push(Invalid {
                    path: dir.path.clone(),
                    reason: format!(
                        "extensions directory (from {}) is not a directory",
                        dir.origin
                    ),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if dir.origin == Origin::Explicit {
                        registry.invalid.push(Invalid {
                            path: dir.path.clone(),
                            reason: "extensions directory does not exist".to_owned(),
                        });
                    }
                }
                Err(e) => registry.invalid.push(Invalid {
                    path: dir.path.clone(),
                    reason: format!("cannot read extensions directory: {}", describe(&e)),
                }),
            }
            manifests.sort();
            for manifest_path in manifests {
                let bundle = match Bundle::load(&manifest_path).and_then(|b| {
                    check_contract(&b.manifest)?;
                    Ok(b)
                }) {
                    Ok(bundle) => bundle,
                    Err(reason) => {
                        registry.invalid.push(Invalid {
                            path: manifest_path,
                            reason,
                        });
                        continue;
                    }
                };
                let id = bundle.id();
                if let Some(&first) = by_id.get(&id) {
                    conflicts
                        .entry(id.clone())
                        .or_insert_with(|| Conflict {
                            id,
                            used: registry.bundles[first].manifest_path.clone(),
                            shadowed: Vec::new(),
                        })
                        .shadowed
                        .push(bundle.manifest_path);
                    continue;
                }
                by_id.insert(id, registry.bundles.len());
                registry.bundles.push(bundle);
                registry.origins.push(dir.origin);
            }
        }
        registry.conflicts = conflicts.into_values().collect();
        registry.searched = dirs;
        registry
    }

    /// The directories searched, in precedence order.
    pub fn searched(&self) -> &[SearchDir] {
        &self.searched
    }

    /// Every usable bundle (conflicting duplicates excluded), in discovery order.
    pub fn bundles(&self) -> &[Bundle] {
        &self.bundles
    }

    /// Where each bundle of [`bundles`](Self::bundles) was found (same order and length).
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// The manifests of every usable bundle, for `labhit_protocol::pipeline::check`.
    pub fn manifests(&self) -> Vec<Manifest> {
        self.bundles.iter().map(|b| b.manifest.clone()).collect()
    }

    /// Bundles and search directories that could not be used, with the reason.
    pub fn invalid(&self) -> &[Invalid] {
        &self.invalid
    }

    /// Versions installed more than once.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Resolves `category/name@req` (as a stage's `use` writes it) to the newest bundle
    /// whose version satisfies the requirement, in the first group of the search path
    /// (explicit, then [`ENV_VAR`], then the default directory) that has one. Without a
    /// requirement, the newest release wins; pre-releases are picked only when no release
    /// exists.
    pub fn resolve(&self, reference: &UseRef) -> Result<&Bundle, ResolveError> {
        let wanted = reference.qualified_name();
        let mut candidates: Vec<(Origin, &Bundle)> = self
            .origins
            .iter()
            .copied()
            .zip(&self.bundles)
            .filter(|(_, b)| {
                b.manifest.extension.category == reference.category
                    && b.manifest.extension.name == reference.name
            })
            .collect();
        if candidates.is_empty() {
            let available: Vec<String> = self
                .bundles
                .iter()
                .map(Bundle::name)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let suggestion = labhit_protocol::diagnostic::did_you_mean(
                &wanted,
                available.iter().map(String::as_str),
            )
            .map(str::to_owned);
            return Err(ResolveError::NotFound {
                wanted,
                suggestion,
                available,
                invalid: self.invalid.len(),
            });
        }
        candidates.sort_by(|(_, a), (_, b)| {
            b.manifest
                .extension
                .version
                .cmp(&a.manifest.extension.version)
        });
        let pick = |origin: Origin| {
            let mut group = candidates
                .iter()
                .filter(move |(o, _)| *o == origin)
                .map(|(_, b)| *b);
            match &reference.version {
                Some(req) => group.find(|b| req.matches(&b.manifest.extension.version)),
                None => {
                    let newest = group.clone().next();
                    group
                        .find(|b| b.manifest.extension.version.pre.is_empty())
                        .or(newest)
                }
            }
        };
        [Origin::Explicit, Origin::Env, Origin::Default]
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| ResolveError::NoMatchingVersion {
                wanted,
                requirement: reference
                    .version
                    .as_ref()
                    .map_or_else(|| "*".to_owned(), ToString::to_string),
                available: candidates
                    .iter()
                    .map(|(_, b)| b.manifest.extension.version.to_string())
                    .collect(),
            })
    }

    /// [`resolve`](Self::resolve) from text such as `util/checksum@^0.1`.
    pub fn resolve_str(&self, reference: &str) -> Result<&Bundle, String> {
        let reference: UseRef = reference.parse().map_err(|e| format!("{e}"))?;
        self.resolve(&reference).map_err(|e| e.to_string())
    }
}

/// Refuses a manifest whose `contract` requirement admits none of the contract versions
/// this host runs ([`crate::contracts::SUPPORTED`]).
fn check_contract(manifest: &Manifest) -> Result<(), String> {
    let supported = &crate::contracts::SUPPORTED;
    if supported
        .admitted_by(&manifest.extension.contract)
        .is_some()
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` requires contract `{}`, but {}",
            manifest.qualified_name(),
            manifest.extension.contract,
            labhit_bundle::rebuild_hint(supported),
        ))
    }
}

fn walk(
    dir: &Path,
    depth: usize,
    visited: &mut BTreeSet<PathBuf>,
    manifests: &mut Vec<PathBuf>,
    invalid: &mut Vec<Invalid>,
) {
    // Symbolic links to directories are followed (installing by `ln -s` is common), but
    // each real directory is entered once, so a link cycle ends.
    let Ok(real) = dir.canonicalize() else {
        return;
    };
    if !visited.insert(real) {
        return;
    }
    let manifest = dir.join(MANIFEST_FILE);
    // Anything but a directory counts (a FIFO there is then reported, not skipped).
    if std::fs::metadata(&manifest).is_ok_and(|m| !m.is_dir()) {
        manifests.push(manifest);
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            invalid.push(Invalid {
                path: dir.to_owned(),
                reason: format!("cannot read directory: {}", describe(&e)),
            });
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    children.sort();
    for child in children {
        walk(&child, depth + 1, visited, manifests, invalid);
    }
}

/// An I/O error without the `(os error N)` tail, starting lowercase.
fn describe(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00rest";
    const CORE: &[u8] = b"\0asm\x01\x00\x00\x00rest";

    fn manifest(category: &str, name: &str, version: &str, contract: &str) -> String {
        format!(
            "[extension]\ncategory = \"{category}\"\nname = \"{name}\"\nversion = \"{version}\"\n\
             contract = \"{contract}\"\ndescription = \"a test\"\ncomponent = \"{name}.wasm\"\n"
        )
    }

    /// Writes a bundle `root/<sub>/` with a manifest and (when given) a component.
    fn bundle(root: &Path, sub: &str, manifest: &str, wasm: Option<&[u8]>) -> PathBuf {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
        if let Some(wasm) = wasm {
            let name = manifest
                .lines()
                .find_map(|l| l.strip_prefix("component = \""))
                .unwrap()
                .trim_end_matches('"');
            std::fs::write(dir.join(name), wasm).unwrap();
        }
        dir.join(MANIFEST_FILE)
    }

    fn explicit(dirs: &[&Path]) -> Vec<SearchDir> {
        dirs.iter()
            .map(|p| SearchDir {
                path: p.to_path_buf(),
                origin: Origin::Explicit,
            })
            .collect()
    }

    fn resolve<'r>(registry: &'r Registry, reference: &str) -> Result<&'r Bundle, String> {
        registry.resolve_str(reference)
    }

    #[test]
    fn resolves_the_newest_satisfying_version() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for v in ["0.1.0", "0.2.0", "0.2.5", "1.0.0", "1.1.0-beta.1"] {
            bundle(
                root,
                &format!("util/checksum-{v}"),
                &manifest("util", "checksum", v, "^0.2"),
                Some(COMPONENT),
            );
        }
        let registry = Registry::discover_in(explicit(&[root]));
        assert!(registry.invalid().is_empty(), "{:?}", registry.invalid());
        assert_eq!(registry.bundles().len(), 5);
        let version =
            |r: &str| resolve(&registry, r).map(|b| b.manifest.extension.version.to_string());
        assert_eq!(version("util/checksum").unwrap(), "1.0.0");
        assert_eq!(version("util/checksum@^0.2").unwrap(), "0.2.5");
        assert_eq!(version("util/checksum@=0.2.0").unwrap(), "0.2.0");
        assert_eq!(version("util/checksum@~0.1").unwrap(), "0.1.0");
        assert_eq!(
            version("util/checksum@>=1.1.0-beta.1").unwrap(),
            "1.1.0-beta.1"
        );
        let err = version("util/checksum@^2").unwrap_err();
        assert_eq!(
            err,
            "no installed version of `util/checksum` satisfies `^2`; installed: 1.1.0-beta.1, 1.0.0, 0.2.5, 0.2.0, 0.1.0"
        );
    }

    #[test]
    fn a_pre_release_alone_is_used_without_a_requirement() {
        let tmp = tempfile::tempdir().unwrap();
        bundle(
            tmp.path(),
            "a",
            &manifest("test", "beta", "0.3.0-rc.1", "^0.2"),
            Some(COMPONENT),
        );
        let registry = Registry::discover_in(explicit(&[tmp.path()]));
        assert_eq!(
            resolve(&registry, "test/beta").unwrap().id(),
            "test/beta@0.3.0-rc.1"
        );
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        let tmp = tempfile::tempdir().unwrap();
        bundle(
            tmp.path(),
            "a",
            &manifest("util", "checksum", "0.1.0", "^0.2"),
            Some(COMPONENT),
        );
        let registry = Registry::discover_in(explicit(&[tmp.path()]));
        assert_eq!(
            resolve(&registry, "util/checksun").unwrap_err(),
            "no extension `util/checksun` is installed; did you mean `util/checksum`?"
        );
        assert_eq!(
            resolve(&registry, "deploy/kubernetes").unwrap_err(),
            "no extension `deploy/kubernetes` is installed; installed: util/checksum"
        );
        let empty = Registry::discover_in(Vec::new());
        assert!(
            resolve(&empty, "a/b")
                .unwrap_err()
                .contains("no extensions were found"),
            "names the way out"
        );
        assert!(
            resolve(&registry, "Util/x")
                .unwrap_err()
                .contains("is not an extension reference")
        );
    }

    #[test]
    fn bad_bundles_are_reported_and_do_not_hide_good_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let good = bundle(
            root,
            "util/good",
            &manifest("util", "good", "0.1.0", "^0.2"),
            Some(COMPONENT),
        );
        let p1 = bundle(
            root,
            "util/p1",
            &manifest("util", "p1", "0.1.0", "^0.2"),
            Some(CORE),
        );
        let missing = bundle(
            root,
            "util/missing",
            &manifest("util", "missing", "0.1.0", "^0.2"),
            None,
        );
        let garbage = bundle(
            root,
            "util/garbage",
            &manifest("util", "garbage", "0.1.0", "^0.2"),
            Some(b"#!/bin/sh\necho hi\n"),
        );
        let bad_toml = bundle(root, "util/bad", "[extension]\nname = 3\n", None);
        let bad_name = bundle(
            root,
            "util/upper",
            &manifest("Util", "upper", "0.1.0", "^0.2"),
            Some(COMPONENT),
        );
        let future = bundle(
            root,
            "util/future",
            &manifest("util", "future", "1.0.0", "^9"),
            Some(COMPONENT),
        );
        let dir_component = bundle(
            root,
            "util/dir",
            &manifest("util", "dir", "0.1.0", "^0.2"),
            None,
        );
        std::fs::create_dir(root.join("util/dir/dir.wasm")).unwrap();
        // Hidden directories are not searched.
        bundle(root, ".cache/x", "not toml at all [", None);

        let registry = Registry::discover_in(explicit(&[root]));
        let names: Vec<String> = registry.bundles().iter().map(Bundle::id).collect();
        assert_eq!(names, ["util/good@0.1.0", "util/p1@0.1.0"]);
        assert_eq!(registry.bundles()[0].manifest_path, good);
        assert_eq!(registry.bundles()[0].format, ComponentFormat::Component);
        assert_eq!(registry.bundles()[1].manifest_path, p1);
        assert_eq!(registry.bundles()[1].format, ComponentFormat::CoreModule);

        let reasons: BTreeMap<PathBuf, String> = registry
            .invalid()
            .iter()
            .map(|i| (i.path.clone(), i.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 6, "{reasons:#?}");
        assert!(
            reasons[&missing].contains("missing.wasm` does not exist"),
            "{}",
            reasons[&missing]
        );
        assert!(
            reasons[&garbage].contains("is not a WebAssembly file"),
            "{}",
            reasons[&garbage]
        );
        assert!(
            reasons[&bad_toml].contains("invalid type"),
            "{}",
            reasons[&bad_toml]
        );
        assert!(
            reasons[&bad_name].contains("Util"),
            "{}",
            reasons[&bad_name]
        );
        assert!(
            reasons[&future]
                .contains("requires contract `^9`, but this host runs components built for contract >=0.1, <0.3"),
            "{}",
            reasons[&future]
        );
        assert!(
            reasons[&dir_component].contains("is a directory"),
            "{}",
            reasons[&dir_component]
        );
        assert!(
            resolve(&registry, "util/nope")
                .unwrap_err()
                .ends_with("(6 invalid bundle(s) were skipped)")
        );
    }

    #[test]
    fn duplicates_are_conflicts_and_the_first_in_search_order_wins() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let m = manifest("util", "checksum", "0.1.0", "^0.2");
        let a = bundle(first.path(), "checksum", &m, Some(COMPONENT));
        let b = bundle(second.path(), "checksum", &m, Some(COMPONENT));
        let c = bundle(second.path(), "copy", &m, Some(COMPONENT));
        bundle(
            second.path(),
            "newer",
            &manifest("util", "checksum", "0.1.1", "^0.2"),
            Some(COMPONENT),
        );

        let registry = Registry::discover_in(explicit(&[first.path(), second.path()]));
        assert_eq!(registry.bundles().len(), 2);
        assert_eq!(
            registry.conflicts(),
            [Conflict {
                id: "util/checksum@0.1.0".into(),
                used: a.clone(),
                shadowed: vec![b.clone(), c],
            }]
        );
        assert!(
            registry.conflicts()[0]
                .to_string()
                .starts_with("`util/checksum@0.1.0` is installed more than once; using ")
        );
        assert_eq!(
            resolve(&registry, "util/checksum@=0.1.0")
                .unwrap()
                .manifest_path,
            a
        );
        assert_eq!(
            resolve(&registry, "util/checksum").unwrap().id(),
            "util/checksum@0.1.1"
        );
    }

    #[test]
    fn explicit_directories_beat_newer_versions_in_the_environment() {
        let explicit_dir = tempfile::tempdir().unwrap();
        let env_dir = tempfile::tempdir().unwrap();
        let default_dir = tempfile::tempdir().unwrap();
        let ours = bundle(
            explicit_dir.path(),
            "checksum",
            &manifest("util", "checksum", "0.1.0", "^0.2"),
            Some(COMPONENT),
        );
        let env = bundle(
            env_dir.path(),
            "checksum",
            &manifest("util", "checksum", "0.9.0", "^0.2"),
            Some(COMPONENT),
        );
        bundle(
            default_dir.path(),
            "checksum",
            &manifest("util", "checksum", "1.0.0", "^0.2"),
            Some(COMPONENT),
        );
        let at = |path: &Path, origin| SearchDir {
            path: path.to_owned(),
            origin,
        };
        let registry = Registry::discover_in(vec![
            at(explicit_dir.path(), Origin::Explicit),
            at(env_dir.path(), Origin::Env),
            at(default_dir.path(), Origin::Default),
        ]);
        let used = |r: &str| resolve(&registry, r).unwrap().manifest_path.clone();
        assert_eq!(
            used("util/checksum"),
            ours,
            "explicit wins without a requirement"
        );
        assert_eq!(used("util/checksum@^0.1"), ours);
        // A requirement only a later group satisfies falls through to it.
        assert_eq!(used("util/checksum@^0.9"), env);
        assert_eq!(
            resolve(&registry, "util/checksum@^1").unwrap().id(),
            "util/checksum@1.0.0"
        );
        assert!(
            resolve(&registry, "util/checksum@^2")
                .unwrap_err()
                .ends_with("installed: 1.0.0, 0.9.0, 0.1.0")
        );
    }

    #[cfg(unix)]
    #[test]
    fn components_linked_from_outside_the_bundle_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.wasm");
        std::fs::write(&outside, COMPONENT).unwrap();
        let linked = bundle(
            tmp.path(),
            "b/linked",
            &manifest("util", "linked", "0.1.0", "^0.2"),
            None,
        );
        std::os::unix::fs::symlink(&outside, tmp.path().join("b/linked/linked.wasm")).unwrap();
        let zero = bundle(
            tmp.path(),
            "b/zero",
            &manifest("util", "zero", "0.1.0", "^0.2"),
            None,
        );
        std::os::unix::fs::symlink("/dev/zero", tmp.path().join("b/zero/zero.wasm")).unwrap();
        // A link that stays inside the bundle is fine.
        let inside = bundle(
            tmp.path(),
            "b/inside",
            &manifest("util", "inside", "0.1.0", "^0.2"),
            None,
        );
        std::fs::write(tmp.path().join("b/inside/real.wasm"), COMPONENT).unwrap();
        std::os::unix::fs::symlink("real.wasm", tmp.path().join("b/inside/inside.wasm")).unwrap();
        let registry = Registry::discover_in(explicit(&[&tmp.path().join("b")]));
        let ids: Vec<String> = registry.bundles().iter().map(Bundle::id).collect();
        assert_eq!(ids, ["util/inside@0.1.0"]);
        assert_eq!(registry.bundles()[0].manifest_path, inside);
        let reasons: BTreeMap<PathBuf, String> = registry
            .invalid()
            .iter()
            .map(|i| (i.path.clone(), i.reason.clone()))
            .collect();
        assert!(
            reasons[&linked].contains("outside the bundle directory"),
            "{reasons:#?}"
        );
        assert!(
            reasons[&zero].contains("resolves to `/dev/zero`, outside the bundle"),
            "{reasons:#?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn fifos_in_place_of_bundle_files_are_reported_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let mkfifo = |path: &Path| {
            let status = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        };
        let component = bundle(
            tmp.path(),
            "c",
            &manifest("util", "fifo", "0.1.0", "^0.2"),
            None,
        );
        mkfifo(&tmp.path().join("c/fifo.wasm"));
        std::fs::create_dir_all(tmp.path().join("m")).unwrap();
        let manifest_fifo = tmp.path().join("m").join(MANIFEST_FILE);
        mkfifo(&manifest_fifo);
        let registry = Registry::discover_in(explicit(&[tmp.path()]));
        assert!(registry.bundles().is_empty());
        let reasons: BTreeMap<PathBuf, String> = registry
            .invalid()
            .iter()
            .map(|i| (i.path.clone(), i.reason.clone()))
            .collect();
        assert!(
            reasons[&component].ends_with("fifo.wasm` is a FIFO, not a regular file"),
            "{reasons:#?}"
        );
        assert!(
            reasons[&manifest_fifo].ends_with("extension.toml` is a FIFO, not a regular file"),
            "{reasons:#?}"
        );
    }

    #[test]
    fn oversized_manifests_are_refused_unread() {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = manifest("util", "big", "0.1.0", "^0.2");
        text.push_str(&format!("# {}\n", "x".repeat(2 << 20)));
        let path = bundle(tmp.path(), "big", &text, Some(COMPONENT));
        let registry = Registry::discover_in(explicit(&[tmp.path()]));
        assert_eq!(registry.invalid().len(), 1);
        assert_eq!(registry.invalid()[0].path, path);
        assert!(
            registry.invalid()[0]
                .reason
                .contains("more than the limit of 1 MiB for an extension manifest"),
            "{}",
            registry.invalid()[0].reason
        );
    }

    #[test]
    fn missing_directories_matter_only_when_explicit() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let dirs = vec![
            SearchDir {
                path: tmp.path().join("nope"),
                origin: Origin::Explicit,
            },
            SearchDir {
                path: tmp.path().join("env-nope"),
                origin: Origin::Env,
            },
            SearchDir {
                path: tmp.path().join("default-nope"),
                origin: Origin::Default,
            },
            SearchDir {
                path: file.clone(),
                origin: Origin::Env,
            },
        ];
        let registry = Registry::discover_in(dirs);
        let invalid: Vec<String> = registry.invalid().iter().map(ToString::to_string).collect();
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        assert!(invalid[0].ends_with("nope: extensions directory does not exist"));
        assert!(invalid[1].ends_with("is not a directory"), "{}", invalid[1]);
        assert_eq!(registry.searched().len(), 4);
    }

    #[test]
    fn symlink_cycles_end() {
        let tmp = tempfile::tempdir().unwrap();
        bundle(
            tmp.path(),
            "a/ext",
            &manifest("util", "ext", "0.1.0", "^0.2"),
            Some(COMPONENT),
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("a/loop")).unwrap();
        let registry = Registry::discover_in(explicit(&[tmp.path()]));
        assert_eq!(registry.bundles().len(), 1);
        assert!(registry.conflicts().is_empty());
    }

    #[test]
    fn the_search_path_is_explicit_then_env_then_default() {
        let env = std::ffi::OsString::from("/e1::/e2:/x");
        let dirs = search_path_from(
            &[PathBuf::from("/x"), PathBuf::from("/y")],
            Some(&env),
            Some(PathBuf::from("/home/u/.local/share/labhit/extensions")),
        );
        let shown: Vec<(String, Origin)> = dirs
            .iter()
            .map(|d| (d.path.display().to_string(), d.origin))
            .collect();
        assert_eq!(
            shown,
            [
                ("/x".to_owned(), Origin::Explicit),
                ("/y".to_owned(), Origin::Explicit),
                ("/e1".to_owned(), Origin::Env),
                ("/e2".to_owned(), Origin::Env),
                (
                    "/home/u/.local/share/labhit/extensions".to_owned(),
                    Origin::Default
                ),
            ]
        );
        assert!(default_dir().is_none_or(|d| d.ends_with("labhit/extensions")));
    }
}
