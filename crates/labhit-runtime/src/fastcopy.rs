//! Copying one regular file as cheaply as the file system allows, into a new file:
//!
//! 1. a copy-on-write clone (`FICLONE`, Linux: btrfs, XFS, bcachefs, ...), which shares the
//!    blocks until either side is written — the source is never written either way;
//! 2. else, for a sparse file (fewer blocks allocated than its size), only its data ranges
//!    (`SEEK_DATA` / `SEEK_HOLE`) with `copy_file_range`, so holes stay holes;
//! 3. else `copy_file_range` on the whole file (through [`std::io::copy`], which falls back
//!    to read/write where the kernel cannot).
//!
//! Whether cloning works is remembered per [`Copier`]: after the first refusal (ext4, tmpfs,
//! a copy across file systems) no more clone attempts are made. All calls are safe wrappers
//! (`rustix`); nothing here needs `unsafe`.

use std::fs::File;
use std::io::{self, Seek};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a file was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A copy-on-write clone.
    Clone,
    /// The data ranges of a sparse file.
    Sparse,
    /// A full copy.
    Copy,
}

/// Copies files, remembering whether the file system clones (see the module docs).
#[derive(Debug)]
pub struct Copier {
    try_clone: AtomicBool,
}

impl Default for Copier {
    fn default() -> Self {
        Self::new()
    }
}

impl Copier {
    /// A copier that tries cloning first.
    pub fn new() -> Self {
        Self {
            try_clone: AtomicBool::new(true),
        }
    }

    /// Copies the content of `src` (a regular file of `meta`, read from its start) into
    /// `dest` (new and empty, opened for writing).
    pub fn copy(&self, src: &File, meta: &std::fs::Metadata, dest: &File) -> io::Result<Method> {
        if meta.len() == 0 {
            return Ok(Method::Copy);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.try_clone.load(Ordering::Relaxed) {
            match rustix::fs::ioctl_ficlone(dest, src) {
                Ok(()) => return Ok(Method::Clone),
                Err(e) if clone_unsupported(e) => self.try_clone.store(false, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        self.try_clone.store(false, Ordering::Relaxed);
        // Fewer 512-byte blocks than the size needs: there are holes.
        if meta.blocks().saturating_mul(512) < meta.len() {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if copy_sparse(src, meta.len(), dest)? {
                return Ok(Method::Sparse);
            }
        }
        (&mut &*src).seek(io::SeekFrom::Start(0))?;
        io::copy(&mut &*src, &mut &*dest)?;
        Ok(Method::Copy)
    }

    /// Whether the last copies were clones (false once the file system refused one).
    pub fn clones(&self) -> bool {
        self.try_clone.load(Ordering::Relaxed)
    }
}

/// Errors by which a file system says it cannot clone (rather than that something broke).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn clone_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::OPNOTSUPP,
        Errno::XDEV,
        Errno::INVAL,
        Errno::NOTTY,
        Errno::NOSYS,
    ]
    .contains(&e)
}

/// Copies the data ranges of `src` to the same offsets of `dest` and sets its length, so the
/// holes stay unallocated. `Ok(false)`: the file system does not report data ranges; nothing
/// was written.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn copy_sparse(src: &File, len: u64, dest: &File) -> io::Result<bool> {
    use rustix::fs::{SeekFrom, copy_file_range, seek};
    use rustix::io::Errno;
    let mut offset = 0u64;
    while offset < len {
        let start = match seek(src, SeekFrom::Data(offset)) {
            Ok(start) => start,
            // No data after `offset`: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) if offset == 0 => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let end = seek(src, SeekFrom::Hole(start))?.min(len);
        let (mut from, mut to) = (start, start);
        while from < end {
            let chunk = usize::try_from(end - from).unwrap_or(usize::MAX);
            let n = copy_file_range(src, Some(&mut from), dest, Some(&mut to), chunk)?;
            if n == 0 {
                // The file shrank while being copied: stop at what is there.
                break;
            }
        }
        offset = end;
    }
    dest.set_len(len)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_sparse_file_stays_sparse_and_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src_path = dir.path().join("sparse");
        let mut src = File::create(&src_path).expect("create");
        src.write_all(b"head").expect("write");
        src.seek(io::SeekFrom::Start(64 << 20)).expect("seek");
        src.write_all(b"middle").expect("write");
        src.set_len(256 << 20).expect("set_len");
        drop(src);
        let src = File::open(&src_path).expect("open");
        let meta = src.metadata().expect("stat");
        let dest_path = dir.path().join("copy");
        let dest = File::create(&dest_path).expect("create");
        let method = Copier::new().copy(&src, &meta, &dest).expect("copy");
        drop(dest);
        let copied = std::fs::metadata(&dest_path).expect("stat");
        assert_eq!(copied.len(), 256 << 20);
        assert!(
            copied.blocks() * 512 < 1 << 20,
            "{method:?} allocated {} bytes for a file of 8 bytes of data",
            copied.blocks() * 512
        );
        let data = std::fs::read(&dest_path).expect("read");
        assert_eq!(&data[..4], b"head");
        assert_eq!(&data[64 << 20..(64 << 20) + 6], b"middle");
        assert!(data[4..64 << 20].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_dense_file_is_copied_whatever_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("a"), &content).expect("write");
        let src = File::open(dir.path().join("a")).expect("open");
        let meta = src.metadata().expect("stat");
        let copier = Copier::new();
        for name in ["b", "c"] {
            let dest = File::create(dir.path().join(name)).expect("create");
            let method = copier.copy(&src, &meta, &dest).expect("copy");
            // On a file system without reflinks (ext4, tmpfs) this is the fallback path.
            assert!(copier.clones() == (method == Method::Clone), "{method:?}");
            drop(dest);
            assert_eq!(std::fs::read(dir.path().join(name)).expect("read"), content);
        }
    }
}
