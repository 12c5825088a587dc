//! Where a shard's frozen offset index blocks live: files in
//! `data/shard-<k>/index/` (`<store>-<n>.idx`), mapped into memory, so that what the index
//! holds for retained batches is on disk and the kernel keeps in memory
//! only the pages readers touch (as Kafka's memory-mapped `.index` files).
//! In the shard's own memory a block is its summary and a region handle,
//! about 100 bytes for 128 batches.
//!
//! The files are not a record of anything: a start removes them and the
//! checkpoint (or the WAL) rebuilds the index, so they are never synced
//! and a crash cannot leave them inconsistent with what is retained.
//!
//! Space is taken from the current file front to back and never written
//! twice; a region given up (a block trimmed, re-encoded or moved) only
//! lowers its file's live count. A full file is left to the regions in it
//! and removed when the last goes. Where a few long-lived blocks pin
//! otherwise dead files, the shard relocates the blocks of its sparsest
//! files (`sparse_files`, then `OffsetIndex::relocate`), so the files'
//! bytes stay within about twice the live ones.
//!
//! Each file's space is allocated (`fallocate`) before it is mapped, so a
//! write through the mapping never needs a block from the file system: a
//! full disk is an error at file creation (the shard keeps new blocks in
//! its heap until a file can be made again), never a fault in a write.
//!
//! The store is per thread, as the shard that uses it: one shard runs on
//! each executor thread. Where none is installed (unit tests, the
//! simulator) blocks stay in the heap.

use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first file's size; each next one is as large as what is live,
/// within these bounds, so a shard with little retained keeps small files.
/// (Tests use small ones, so that a few megabytes of blocks fill several.)
const MIN_FILE: usize = if cfg!(test) { 64 << 10 } else { 1 << 20 };
const MAX_FILE: usize = if cfg!(test) { 1 << 20 } else { 64 << 20 };

/// After a file could not be made (say the disk is full), new blocks stay
/// in the heap this long before the store tries again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

/// Makes `dir` this thread's block store, removing the files a previous
/// run left there (nothing refers to them: indexes are rebuilt at start).
pub fn install(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(&path)?;
        }
    }
    // Files of a store installed before on this thread (a shard opened
    // again in one process) may still be mapped: names that differ per
    // store keep one store's removals off the other's files.
    static STORES: AtomicU64 = AtomicU64::new(0);
    let generation = STORES.fetch_add(1, Ordering::Relaxed);
    STORE.with(|s| {
        *s.borrow_mut() = Some(Store {
            dir: dir.to_path_buf(),
            generation,
            next_id: 0,
            active: None,
            retired: Vec::new(),
            failed_at: None,
            written_since_relocation: 0,
        })
    });
    Ok(())
}

/// Drops this thread's store: blocks placed already keep their files.
#[cfg(test)]
pub fn uninstall() {
    STORE.with(|s| s.borrow_mut().take());
}

/// A copy of `bytes` in the store, if one is installed and has room.
pub(super) fn put(bytes: &[u8]) -> Option<Region> {
    STORE.with(|s| s.borrow_mut().as_mut().and_then(|store| store.put(bytes)))
}

/// What the store holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub files: u64,
    /// Bytes of the files (allocated on disk).
    pub file_bytes: u64,
    /// Bytes of the blocks still in use.
    pub live_bytes: u64,
}

pub fn stats() -> StoreStats {
    STORE.with(|s| s.borrow().as_ref().map(Store::stats).unwrap_or_default())
}

/// Files whose blocks the shard should relocate (`OffsetIndex::relocate`),
/// when full files hold more than twice the live bytes (and a file's
/// worth): those with less than half of them live. At most once per file
/// of new blocks written, so that blocks that cannot move (an index copy
/// holding them) do not make every round scan every index.
pub fn sparse_files() -> Option<Vec<u64>> {
    STORE.with(|s| s.borrow_mut().as_mut().and_then(Store::sparse_files))
}

struct Store {
    dir: PathBuf,
    generation: u64,
    next_id: u64,
    active: Option<Rc<MappedFile>>,
    /// Full files, while blocks in them live.
    retired: Vec<Weak<MappedFile>>,
    failed_at: Option<Instant>,
    written_since_relocation: usize,
}

impl Store {
    fn put(&mut self, bytes: &[u8]) -> Option<Region> {
        assert!(
            bytes.len() <= MIN_FILE,
            "an index block ({} bytes) fits any store file",
            bytes.len()
        );
        let full = self.active.as_ref().is_none_or(|f| f.cap - f.used.get() < bytes.len());
        if full {
            if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
                return None;
            }
            let cap = (self.stats().live_bytes as usize).clamp(MIN_FILE, MAX_FILE);
            let path = self.dir.join(format!("{}-{}.idx", self.generation, self.next_id));
            match MappedFile::create(self.next_id, path.clone(), cap) {
                Ok(file) => {
                    self.next_id += 1;
                    self.failed_at = None;
                    if let Some(old) = self.active.replace(Rc::new(file)) {
                        self.retired.push(Rc::downgrade(&old));
                    }
                }
                Err(e) => {
                    // Once per RETRY_AFTER at most.
                    tracing::warn!(path = %path.display(), error = %e, "no offset index file: new index blocks stay in memory for now");
                    self.failed_at = Some(Instant::now());
                    return None;
                }
            }
        }
        let file = self.active.as_ref()?;
        let at = file.used.get();
        // SAFETY: `at..at + len` is inside the mapping (checked above) and
        // past every region handed out from this file, so nothing reads or
        // writes it yet; regions never overlap and are written only here.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), file.ptr.add(at), bytes.len()) };
        file.used.set(at + bytes.len());
        file.live.set(file.live.get() + bytes.len());
        self.written_since_relocation += bytes.len();
        Some(Region {
            file: file.clone(),
            at,
            len: bytes.len(),
        })
    }

    fn files(&self) -> impl Iterator<Item = Rc<MappedFile>> + '_ {
        self.active
            .iter()
            .cloned()
            .chain(self.retired.iter().filter_map(Weak::upgrade))
    }

    fn stats(&self) -> StoreStats {
        let mut st = StoreStats::default();
        for f in self.files() {
            st.files += 1;
            st.file_bytes += f.cap as u64;
            st.live_bytes += f.live.get() as u64;
        }
        st
    }

    fn sparse_files(&mut self) -> Option<Vec<u64>> {
        self.retired.retain(|w| w.strong_count() > 0);
        if self.written_since_relocation < MAX_FILE {
            return None;
        }
        let (mut cap, mut live) = (0usize, 0usize);
        for f in self.retired.iter().filter_map(Weak::upgrade) {
            cap += f.cap;
            live += f.live.get();
        }
        if cap <= 2 * live + MAX_FILE {
            return None;
        }
        self.written_since_relocation = 0;
        let sparse = self
            .retired
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|f| 2 * f.live.get() < f.cap)
            .map(|f| f.id)
            .collect();
        Some(sparse)
    }
}

/// One store file, mapped whole.
struct MappedFile {
    id: u64,
    path: PathBuf,
    ptr: *mut u8,
    cap: usize,
    /// Bytes handed out, from the front.
    used: Cell<usize>,
    /// Bytes of regions not given up yet.
    live: Cell<usize>,
}

impl MappedFile {
    fn create(id: u64, path: PathBuf, cap: usize) -> io::Result<MappedFile> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let made = (|| {
            // SAFETY: plain syscalls on a descriptor this function owns.
            if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, cap as libc::off_t) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh shared mapping of the whole file, which is
            // `cap` bytes long; it is unmapped only when this value drops.
            // (The mapping keeps the file; its descriptor closes here.)
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    cap,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(ptr as *mut u8)
        })();
        match made {
            Ok(ptr) => Ok(MappedFile {
                id,
                path,
                ptr,
                cap,
                used: Cell::new(0),
                live: Cell::new(0),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`; no region of it is left
        // (each holds this file).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.cap) };
        if let Err(e) = std::fs::remove_file(&self.path) {
            // The next start removes it.
            tracing::warn!(path = %self.path.display(), error = %e, "removing an offset index file failed");
        }
    }
}

/// A block's bytes in a store file.
pub struct Region {
    file: Rc<MappedFile>,
    at: usize,
    len: usize,
}

impl Region {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: written once in `Store::put` before this region existed,
        // never written again, and mapped while `self.file` lives.
        unsafe { std::slice::from_raw_parts(self.file.ptr.add(self.at), self.len) }
    }

    /// The id of the file the region is in.
    pub fn file(&self) -> u64 {
        self.file.id
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.file.live.set(self.file.live.get() - self.len);
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Region({}:{}+{})", self.file.id, self.at, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corestream-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn idx_files(d: &Path) -> usize {
        std::fs::read_dir(d).unwrap().count()
    }

    #[test]
    fn regions_read_back_and_files_go_with_their_last_region() {
        let d = dir("regions");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0-7.idx"), b"left by a previous run").unwrap();
        install(&d).unwrap();
        assert_eq!(idx_files(&d), 0, "a start removes what a previous run left");
        let block = |i: usize| vec![(i % 251) as u8; 1000 + i % 700];
        let mut regions: Vec<Region> = (0..3000).map(|i| put(&block(i)).unwrap()).collect();
        for (i, r) in regions.iter().enumerate() {
            assert_eq!(r.bytes(), &block(i)[..]);
        }
        let st = stats();
        assert!(st.files >= 2, "{st:?}");
        assert_eq!(st.live_bytes, regions.iter().map(|r| r.len as u64).sum::<u64>());
        assert_eq!(idx_files(&d) as u64, st.files);
        // The first file's regions go: the file with them.
        let first = regions[0].file();
        regions.retain(|r| r.file() != first);
        assert_eq!(stats().files, st.files - 1);
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(&format!("-{first}.idx"))),
            "{names:?}"
        );
        regions.clear();
        assert_eq!(stats().live_bytes, 0);
        assert_eq!(stats().files, 1, "the file being filled stays");
        uninstall();
        assert_eq!(idx_files(&d), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sparse_files_are_named_once_garbage_outweighs_the_live() {
        let d = dir("sparse");
        install(&d).unwrap();
        let kb = vec![1u8; 1024];
        let mut keep = Vec::new();
        // One region of every hundred stays: files fill and stay nearly dead.
        for i in 0..(3 * MAX_FILE / 1024) {
            let r = put(&kb).unwrap();
            if i % 100 == 0 {
                keep.push(r);
            }
        }
        let sparse = sparse_files().expect("mostly dead files");
        assert!(!sparse.is_empty());
        assert_eq!(sparse_files(), None, "not again before more is written");
        // Relocating: the live regions are written again, the old ones go.
        let moved: Vec<Region> = keep.iter().map(|r| put(r.bytes()).unwrap()).collect();
        let before = stats().files;
        keep.clear();
        assert!(stats().files < before);
        assert!(moved.iter().all(|r| r.bytes() == &kb[..]));
        uninstall();
        drop(moved);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
