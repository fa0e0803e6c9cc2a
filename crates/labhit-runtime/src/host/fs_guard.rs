//! The workspace guard of a step: wasmtime-wasi's `wasi:filesystem/types` with a few methods
//! shadowed in the [`Linker`] to enforce what the stock implementation does not.
//!
//! * **Links stay inside.** `symlink-at` with a target that is absolute or resolves outside
//!   the workspace (from the link's own directory, following links inside the workspace, see
//!   [`crate::boundary::resolve`]) fails with `not-permitted`, is logged at `error` and fails
//!   the step ([`StepFailure::EscapeAttempt`]). The stock implementation refuses absolute
//!   targets only. Renames can still move a harmless link somewhere it escapes from: the
//!   scan after the step ([`crate::boundary::Guard`]) catches those.
//! * **`limits.disk`** (default [`DEFAULT_DISK_BYTES`]): the bytes a step adds. Every
//!   `write`, `set-size` and write through a `write-via-stream` / `append-via-stream` stream
//!   is charged *before* it happens with the growth of the file's size it causes (`offset +
//!   length - current size`, or the length for appends); overwriting is free, a hole left by
//!   writing past the end is charged, and nothing is credited back by truncating or deleting.
//!   A write that would pass the limit fails with `insufficient-space` and the step fails
//!   ([`StepFailure::DiskLimit`]).
//! * **`limits.files`** (default [`DEFAULT_FILES`]): the entries a step creates: `open-at`
//!   with `create` of a path that did not exist, `create-directory-at`, `symlink-at`,
//!   `link-at`. Deleting gives nothing back. Past the limit the call fails with `quota` and
//!   the step fails ([`StepFailure::FileLimit`]).
//!
//! Only steps with a writable workspace are guarded; for the others every method is the
//! stock one.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use labhit_protocol::manifest::{FilesystemAccess, Manifest};
use labhit_protocol::run::{LogLevel, LogStream};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    DescriptorFlags, ErrorCode, Filesize, Host, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{FsResult, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::streams::DynOutputStream;

use crate::boundary::{self, Resolution};
use crate::error::StepFailure;
use crate::logs::StepLog;
use crate::sandbox::StepHost;

/// `limits.disk` of an extension whose manifest sets none: 1 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 1 << 30;
/// `limits.files` of an extension whose manifest sets none.
pub const DEFAULT_FILES: u64 = 100_000;

/// The instance whose methods are shadowed (the version wasmtime-wasi links; guests that
/// import an older 0.2.x are matched to it by the linker).
const INSTANCE: &str = "wasi:filesystem/types@0.2.12";

/// `ENOSPC` (the same number on Linux, macOS and the BSDs): what a stream write past the disk
/// limit fails with, so `filesystem-error-code` reports `insufficient-space`.
const ENOSPC: i32 = 28;

/// The disk and file limits of `manifest`, with the defaults applied.
pub fn limits(manifest: &Manifest) -> (u64, u64) {
    (
        manifest
            .limits
            .disk
            .as_ref()
            .map_or(DEFAULT_DISK_BYTES, |d| d.bytes()),
        manifest
            .limits
            .files
            .map_or(DEFAULT_FILES, std::num::NonZeroU64::get),
    )
}

/// The guard's state of one step (inactive without a writable workspace).
pub(crate) struct FsGuard {
    active: Option<Arc<Guarded>>,
}

struct Guarded {
    root: PathBuf,
    root_id: (u64, u64),
    disk_limit: u64,
    files_limit: u64,
    bytes: AtomicU64,
    files: AtomicU64,
    violation: Mutex<Option<StepFailure>>,
    log: Arc<StepLog>,
}

impl FsGuard {
    /// The guard of a step of `manifest` whose workspace is `workspace` with `access`.
    pub(crate) fn new(
        manifest: &Manifest,
        access: FilesystemAccess,
        workspace: Option<&Path>,
        log: Arc<StepLog>,
    ) -> Result<Self, String> {
        let root = match (access, workspace) {
            (FilesystemAccess::ReadWrite, Some(root)) => root,
            _ => return Ok(Self { active: None }),
        };
        let root = root
            .canonicalize()
            .map_err(|e| format!("cannot open the workspace `{}`: {e}", root.display()))?;
        let meta = std::fs::metadata(&root)
            .map_err(|e| format!("cannot open the workspace `{}`: {e}", root.display()))?;
        let (disk_limit, files_limit) = limits(manifest);
        Ok(Self {
            active: Some(Arc::new(Guarded {
                root,
                root_id: (meta.dev(), meta.ino()),
                disk_limit,
                files_limit,
                bytes: AtomicU64::new(0),
                files: AtomicU64::new(0),
                violation: Mutex::new(None),
                log,
            })),
        })
    }

    /// The first limit or boundary the guest ran into, if any.
    pub(crate) fn violation(&self) -> Option<StepFailure> {
        self.active.as_ref().and_then(|g| {
            g.violation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }
}

impl Guarded {
    /// Records the first violation and logs every new kind once.
    fn refuse(&self, failure: StepFailure) {
        let mut slot = self.violation.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref() == Some(&failure) {
            return;
        }
        self.log.emit(
            LogLevel::Error,
            LogStream::System,
            &format!("the extension {failure}"),
            Vec::new(),
        );
        slot.get_or_insert(failure);
    }

    /// Charges `growth` bytes, or refuses them when they pass the limit.
    fn charge(&self, growth: u64) -> Result<(), ()> {
        let fits = self
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(growth).filter(|n| *n <= self.disk_limit)
            })
            .is_ok();
        if fits {
            Ok(())
        } else {
            self.refuse(StepFailure::DiskLimit {
                limit: self.disk_limit,
            });
            Err(())
        }
    }

    /// Whether one more entry may be created (refusing and recording when not).
    fn may_create(&self) -> Result<(), ErrorCode> {
        if self.files.load(Ordering::SeqCst) < self.files_limit {
            Ok(())
        } else {
            self.refuse(StepFailure::FileLimit {
                limit: self.files_limit,
            });
            Err(ErrorCode::Quota)
        }
    }

    fn created(&self) {
        self.files.fetch_add(1, Ordering::SeqCst);
    }

    /// The workspace-relative path of the directory behind a descriptor, when it can be told.
    fn dir_of(&self, table: &ResourceTable, fd: &Resource<Descriptor>) -> Option<String> {
        let Ok(Descriptor::Dir(dir)) = table.get(fd) else {
            return None;
        };
        if let Ok(meta) = dir.dir.metadata()
            && (meta.dev(), meta.ino()) == self.root_id
        {
            return Some(String::new());
        }
        let path = std::fs::read_link(format!("/proc/self/fd/{}", dir.dir.as_raw_fd())).ok()?;
        let rel = path.strip_prefix(&self.root).ok()?;
        rel.to_str().map(str::to_owned)
    }

    /// Whether a link `new_path` (relative to the directory `dir`) with `target` leads
    /// outside; the link's workspace path for the report.
    fn link_escapes(&self, dir: Option<String>, new_path: &str, target: &str) -> Option<String> {
        let (parent, name) = new_path.rsplit_once('/').unwrap_or(("", new_path));
        let Some(dir) = dir else {
            // The directory is unknown: only a target without `..` is surely inside.
            let suspicious = target.starts_with('/') || target.split('/').any(|c| c == "..");
            return suspicious.then(|| new_path.to_owned());
        };
        let link_dir = match boundary::resolve(&self.root, &dir, parent) {
            Resolution::Inside(real) => real,
            // cap-std refuses a path outside the preopen; nothing to judge.
            Resolution::Outside(_) | Resolution::TooDeep => return None,
        };
        let path = if link_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{link_dir}/{name}")
        };
        matches!(
            boundary::resolve(&self.root, &link_dir, target),
            Resolution::Outside(_)
        )
        .then_some(path)
    }
}

/// Shadows the guarded methods of `wasi:filesystem/types`; call after wasmtime-wasi's
/// `add_to_linker_sync`.
pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define(linker);
    linker.allow_shadowing(false);
    result
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// A wasmtime-wasi answer as a component result (a trap stays a trap).
fn answer<T>(view: &mut WasiFilesystemCtxView<'_>, result: FsResult<T>) -> Answer<T> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(Host::convert_error_code(view, err)?),)),
    }
}

fn file_of(table: &ResourceTable, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
    match table.get(fd) {
        Ok(Descriptor::File(file)) => Some(Arc::clone(&file.file)),
        _ => None,
    }
}

fn size_of(table: &ResourceTable, fd: &Resource<Descriptor>) -> Option<u64> {
    file_of(table, fd)
        .and_then(|f| f.metadata().ok())
        .map(|m| m.len())
}

fn define(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    let mut types = linker.instance(INSTANCE)?;
    types.func_wrap(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, Filesize)|
         -> Answer<Filesize> {
            let host = store.data_mut();
            if let Some(guard) = host.fs.active.clone()
                && let Some(size) = size_of(&host.table, &fd)
            {
                let end = offset.saturating_add(buf.len() as u64);
                if guard.charge(end.saturating_sub(size)).is_err() {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                }
            }
            let mut view = host.filesystem();
            let result = HostDescriptor::write(&mut view, fd, buf, offset);
            answer(&mut view, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, size): (Resource<Descriptor>, Filesize)|
         -> Answer<()> {
            let host = store.data_mut();
            if let Some(guard) = host.fs.active.clone()
                && let Some(current) = size_of(&host.table, &fd)
                && guard.charge(size.saturating_sub(current)).is_err()
            {
                return Ok((Err(ErrorCode::InsufficientSpace),));
            }
            let mut view = host.filesystem();
            let result = HostDescriptor::set_size(&mut view, fd, size);
            answer(&mut view, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, offset): (Resource<Descriptor>, Filesize)|
         -> Answer<Resource<DynOutputStream>> {
            let host = store.data_mut();
            let file = file_of(&host.table, &fd);
            let mut view = host.filesystem();
            let result = HostDescriptor::write_via_stream(&mut view, fd, offset);
            let stream = answer(&mut view, result)?;
            metered(host, stream, file, Some(offset))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd,): (Resource<Descriptor>,)|
         -> Answer<Resource<DynOutputStream>> {
            let host = store.data_mut();
            let file = file_of(&host.table, &fd);
            let mut view = host.filesystem();
            let result = HostDescriptor::append_via_stream(&mut view, fd);
            let stream = answer(&mut view, result)?;
            metered(host, stream, file, None)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )|
         -> Answer<Resource<Descriptor>> {
            let host = store.data_mut();
            let guard = host.fs.active.clone();
            let mut view = host.filesystem();
            let mut creates = None;
            if let Some(guard) = guard
                && oflags.contains(OpenFlags::CREATE)
            {
                let probe = HostDescriptor::stat_at(
                    &mut view,
                    Resource::new_borrow(fd.rep()),
                    PathFlags::empty(),
                    path.clone(),
                );
                let absent = match probe {
                    Ok(_) => false,
                    Err(err) => Host::convert_error_code(&mut view, err)? == ErrorCode::NoEntry,
                };
                if absent {
                    if let Err(code) = guard.may_create() {
                        return Ok((Err(code),));
                    }
                    creates = Some(guard);
                }
            }
            let result = HostDescriptor::open_at(&mut view, fd, path_flags, path, oflags, flags);
            if let (Ok(_), Some(guard)) = (&result, creates) {
                guard.created();
            }
            answer(&mut view, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, path): (Resource<Descriptor>, String)|
         -> Answer<()> {
            let host = store.data_mut();
            let guard = host.fs.active.clone();
            if let Some(Err(code)) = guard.as_ref().map(|g| g.may_create()) {
                return Ok((Err(code),));
            }
            let mut view = host.filesystem();
            let result = HostDescriptor::create_directory_at(&mut view, fd, path);
            if let (Ok(()), Some(guard)) = (&result, guard) {
                guard.created();
            }
            answer(&mut view, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, old_flags, old_path, new_fd, new_path): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )|
         -> Answer<()> {
            let host = store.data_mut();
            let guard = host.fs.active.clone();
            if let Some(Err(code)) = guard.as_ref().map(|g| g.may_create()) {
                return Ok((Err(code),));
            }
            let mut view = host.filesystem();
            let result =
                HostDescriptor::link_at(&mut view, fd, old_flags, old_path, new_fd, new_path);
            if let (Ok(()), Some(guard)) = (&result, guard) {
                guard.created();
            }
            answer(&mut view, result)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, StepHost>,
         (fd, target, new_path): (Resource<Descriptor>, String, String)|
         -> Answer<()> {
            let host = store.data_mut();
            let guard = host.fs.active.clone();
            if let Some(guard) = &guard {
                let dir = guard.dir_of(&host.table, &fd);
                if let Some(path) = guard.link_escapes(dir, &new_path, &target) {
                    guard.refuse(StepFailure::EscapeAttempt { path, target });
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                if let Err(code) = guard.may_create() {
                    return Ok((Err(code),));
                }
            }
            let mut view = host.filesystem();
            let result = HostDescriptor::symlink_at(&mut view, fd, target, new_path);
            if let (Ok(()), Some(guard)) = (&result, guard) {
                guard.created();
            }
            answer(&mut view, result)
        },
    )?;
    Ok(())
}

/// Puts a [`Metered`] stream in place of the stream wasmtime-wasi just made for `file`.
fn metered(
    host: &mut StepHost,
    stream: (Result<Resource<DynOutputStream>, ErrorCode>,),
    file: Option<Arc<std::fs::File>>,
    position: Option<u64>,
) -> Answer<Resource<DynOutputStream>> {
    let (Some(guard), (Ok(stream),), Some(file)) = (host.fs.active.clone(), &stream, file) else {
        return Ok(stream);
    };
    let inner = host
        .table
        .delete(Resource::<DynOutputStream>::new_own(stream.rep()))?;
    let wrapped: DynOutputStream = Box::new(Metered {
        inner,
        file,
        guard,
        position,
    });
    Ok((Ok(host.table.push(wrapped)?),))
}

/// A file output stream whose writes are charged to the step's disk limit first.
struct Metered {
    inner: DynOutputStream,
    file: Arc<std::fs::File>,
    guard: Arc<Guarded>,
    /// Where the next write lands; `None` for an append stream.
    position: Option<u64>,
}

impl Metered {
    fn charge(&mut self, len: usize) -> StreamResult<()> {
        let len = len as u64;
        let growth = match self.position {
            None => len,
            Some(at) => {
                let size = self.file.metadata().map_or(0, |m| m.len());
                at.saturating_add(len).saturating_sub(size)
            }
        };
        self.guard.charge(growth).map_err(|()| {
            StreamError::LastOperationFailed(wasmtime::Error::new(io::Error::from_raw_os_error(
                ENOSPC,
            )))
        })?;
        if let Some(at) = &mut self.position {
            *at = at.saturating_add(len);
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Metered {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Metered {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn write_zeroes(&mut self, len: usize) -> StreamResult<()> {
        self.charge(len)?;
        self.inner.write_zeroes(len)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

/// The boundary check around one sandboxed step with a writable workspace (see
/// [`crate::boundary`]), and the step's verdict from it and the [`FsGuard`].
pub(crate) struct StepBoundary(Option<boundary::Guard>);

impl StepBoundary {
    /// Records the workspace's escaping links before the step.
    pub(crate) fn start(
        access: FilesystemAccess,
        workspace: Option<&Path>,
    ) -> Result<Self, StepFailure> {
        match (access, workspace) {
            (FilesystemAccess::ReadWrite, Some(root)) => boundary::Guard::start(root)
                .map(|guard| Self(Some(guard)))
                .map_err(|e| StepFailure::Boundary(e.to_string())),
            _ => Ok(Self(None)),
        }
    }

    /// Scans the workspace after the step (removing what breaks the boundary) and says how
    /// the step failed, if the guard or the scan found anything: a refused call first, then
    /// what the step left behind.
    pub(crate) fn finish(self, fs: &FsGuard, log: &StepLog) -> Option<StepFailure> {
        let scanned = match self.0.as_ref().map(boundary::Guard::check) {
            None | Some(Ok(())) => None,
            Some(Err(boundary::BoundaryError::Trespass(found))) => {
                let failure = StepFailure::Trespass { found };
                log.emit(
                    LogLevel::Error,
                    LogStream::System,
                    &format!("the extension {failure}"),
                    Vec::new(),
                );
                Some(failure)
            }
            Some(Err(err)) => Some(StepFailure::Boundary(err.to_string())),
        };
        fs.violation().or(scanned)
    }
}
