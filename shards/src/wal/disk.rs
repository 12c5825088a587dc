//! What the WAL asks of a disk, as two traits: production wires glommio's
//! io_uring DMA files to them (`DmaDisk`), the simulator (`crate::sim`) an
//! in-memory disk that loses unsynced writes at a crash and fails on
//! demand. The WAL's own logic (framing, group commit, rolls, recovery)
//! is the same code over either.
//!
//! Durability contract, which the simulator enforces: a write is durable
//! once `fdatasync` on its file returned Ok, or when it completes on a
//! file opened `Open::Dsync`; a created, renamed or removed name is durable
//! once `sync_dir` returned Ok. Anything else may be lost, or torn, at a
//! crash.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Read and write; created, or emptied if it exists.
    Create,
    /// Read and write an existing file.
    Existing,
    /// Write an existing file with O_DSYNC: each write is durable when it
    /// completes.
    Dsync,
}

pub trait Disk: Clone + 'static {
    type File: DiskFile + 'static;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the names created, renamed and removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Runs once before the WAL in `dir` opens its segments.
    fn prepare(&self, dir: &Path) -> impl Future<Output = io::Result<()>>;
    fn open(&self, path: &Path, how: Open) -> impl Future<Output = io::Result<Self::File>>;
}

pub trait DiskFile {
    type ReadBuf: std::ops::Deref<Target = [u8]> + 'static;
    type WriteBuf: AsMut<[u8]>;

    /// A buffer for `write_at`, aligned as the file needs.
    fn alloc(&self, len: usize) -> Self::WriteBuf;
    /// Writes `buf` whole at `pos` (aligned); returns the bytes written.
    fn write_at(&self, buf: Self::WriteBuf, pos: u64) -> impl Future<Output = io::Result<usize>>;
    /// Reads up to `len` bytes at `pos`: fewer only at the end of the file.
    fn read_at(&self, pos: u64, len: usize) -> impl Future<Output = io::Result<Self::ReadBuf>>;
    fn fdatasync(&self) -> impl Future<Output = io::Result<()>>;
    fn size(&self) -> impl Future<Output = io::Result<u64>>;
    /// Reserves `len` bytes (the file is at least that long afterwards).
    fn preallocate(&self, len: u64) -> impl Future<Output = io::Result<()>>;
    /// Makes `[0, len)` written zeroes (not merely unwritten extents), so
    /// later appends change no file system metadata.
    fn fill_zeroes(&self, len: u64) -> impl Future<Output = io::Result<()>>;
    /// Makes `[from, from + len)` read as zeroes.
    fn zero_range(&self, from: u64, len: u64) -> impl Future<Output = io::Result<()>>;
    fn close(self) -> impl Future<Output = io::Result<()>>;
}

/// The production disk: glommio's O_DIRECT files through io_uring.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaDisk;

/// fallocate(2) mode that writes zeroes (Linux 6.17+, on devices that can
/// zero without a data transfer); older kernels and other devices refuse
/// it, and the zeroes are written instead.
const FALLOC_FL_WRITE_ZEROES: libc::c_int = 0x80;
const ZERO_CHUNK: u64 = 1 << 20;

impl Disk for DmaDisk {
    type File = DmaFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    /// glommio decides once per device and thread whether O_DIRECT I/O may
    /// go to its polled ring, by reading block 0 of the first DMA file
    /// opened. On a preallocated but unwritten file that read never reaches
    /// the device, so the probe "succeeds" on devices without poll queues
    /// (virtio, most cloud disks) and every later real read fails with
    /// EOPNOTSUPP. Opening a file whose first block holds written data
    /// first makes the probe honest.
    async fn prepare(&self, dir: &Path) -> io::Result<()> {
        let path = dir.join(".iopoll-probe");
        std::fs::write(&path, vec![0xa5u8; 4096]).and_then(|_| std::fs::File::open(&path)?.sync_all())?;
        let probe = DmaFile::open(&path).await;
        let _ = std::fs::remove_file(&path);
        Ok(probe?.close().await?)
    }

    async fn open(&self, path: &Path, how: Open) -> io::Result<DmaFile> {
        let mut options = OpenOptions::new();
        match how {
            Open::Create => options.read(true).write(true).create(true).truncate(true),
            Open::Existing => options.read(true).write(true),
            Open::Dsync => options.write(true).custom_flags(libc::O_DSYNC),
        };
        Ok(options.dma_open(path).await?)
    }
}

impl DiskFile for DmaFile {
    type ReadBuf = ReadResult;
    type WriteBuf = DmaBuffer;

    fn alloc(&self, len: usize) -> DmaBuffer {
        self.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buf: DmaBuffer, pos: u64) -> io::Result<usize> {
        Ok(DmaFile::write_at(self, buf, pos).await?)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        Ok(DmaFile::read_at(self, pos, len).await?)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        Ok(DmaFile::fdatasync(self).await?)
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file_size().await?)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        Ok(self.pre_allocate(len, false).await?)
    }

    async fn fill_zeroes(&self, len: u64) -> io::Result<()> {
        self.pre_allocate(len, false).await?;
        // SAFETY: plain fallocate(2) on a descriptor we own; no memory is passed.
        let offloaded = unsafe { libc::fallocate(self.as_raw_fd(), FALLOC_FL_WRITE_ZEROES, 0, len as libc::off_t) };
        if offloaded == 0 {
            return Ok(());
        }
        let chunk = ZERO_CHUNK.min(len) as usize;
        let mut zeroes = self.alloc_dma_buffer(chunk);
        zeroes.as_bytes_mut().fill(0);
        let zeroes = Rc::new(zeroes);
        let mut at = 0;
        while at < len {
            self.write_rc_at(zeroes.clone(), at).await?;
            at += chunk as u64;
        }
        Ok(())
    }

    async fn zero_range(&self, from: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain fallocate(2) on a descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.as_raw_fd(),
                libc::FALLOC_FL_ZERO_RANGE,
                from as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        // Not every file system zeroes ranges: write the zeros instead.
        let mut at = from;
        while at < from + len {
            let n = ZERO_CHUNK.min(from + len - at);
            let mut buf = self.alloc_dma_buffer(n as usize);
            buf.as_bytes_mut().fill(0);
            DmaFile::write_at(self, buf, at).await?;
            at += n;
        }
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        Ok(DmaFile::close(self).await?)
    }
}
