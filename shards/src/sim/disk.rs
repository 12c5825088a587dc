//! The simulator's disk: one per node, in memory, holding for every file
//! what the platter holds (`durable`) apart from what the page cache holds
//! (`data`), and for every directory the durable names apart from the
//! current ones. A crash keeps the durable state plus any subset of the
//! writes not yet synced, each whole, torn at a sector, or lost; and a
//! prefix of the unsynced name changes. Faults on demand: fdatasync fails
//! (EIO, and what it should have synced is never synced), the disk is full
//! (ENOSPC for anything that allocates), a read comes back with a bit
//! flipped, and the disk dies after a number of operations (the node's
//! crash point, anywhere inside an append or a roll).
//!
//! A handle (disk or file) belongs to one incarnation of its node: after a
//! crash, tasks of the dead incarnation that still hold one get errors and
//! change nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::test_rng::Rng;
use crate::wal::{Disk, DiskFile, Open};

const SECTOR: usize = 512;

#[derive(Default)]
struct Inode {
    /// What a read sees.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Writes since the last successful sync, in order.
    unsynced: Vec<(usize, Vec<u8>)>,
}

enum DirOp {
    Link(PathBuf, usize),
    Unlink(PathBuf),
}

/// Faults the simulator switches on and off.
#[derive(Default, Clone, Copy)]
pub struct DiskFaults {
    /// Chance (per mille) that an fdatasync or an O_DSYNC write fails.
    pub sync_error_permille: u64,
    /// Chance (per mille) that a read returns one bit flipped.
    pub read_flip_permille: u64,
    /// Anything that allocates fails with ENOSPC.
    pub full: bool,
}

struct State {
    incarnation: u64,
    /// The disk died (the node's crash point): every operation fails.
    dead: bool,
    /// Operations left before the disk dies, if a crash point is set.
    crash_after: Option<u64>,
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dir_ops: Vec<DirOp>,
    faults: DiskFaults,
    rng: Rng,
    /// Counters for the run's report.
    pub sync_errors: u64,
    pub flips: u64,
}

#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<State>>,
    incarnation: u64,
}

pub struct SimFile {
    disk: SimDisk,
    inode: usize,
    dsync: bool,
}

fn error(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

fn eio(what: &str) -> io::Error {
    error(io::ErrorKind::Other, what)
}

impl SimDisk {
    pub fn new(seed: u64) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                incarnation: 0,
                dead: false,
                crash_after: None,
                inodes: Vec::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dir_ops: Vec::new(),
                faults: DiskFaults::default(),
                rng: Rng::new(seed),
                sync_errors: 0,
                flips: 0,
            })),
            incarnation: 0,
        }
    }

    /// Checks that this handle's incarnation is alive and counts one
    /// operation towards the crash point.
    fn op(&self) -> io::Result<std::cell::RefMut<'_, State>> {
        let mut st = self.state.borrow_mut();
        if st.incarnation != self.incarnation {
            return Err(eio("handle of a crashed incarnation"));
        }
        if st.dead {
            return Err(eio("the disk is gone (crash point)"));
        }
        if let Some(left) = st.crash_after.as_mut() {
            if *left == 0 {
                st.dead = true;
                return Err(eio("the disk is gone (crash point)"));
            }
            *left -= 1;
        }
        Ok(st)
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.state.borrow_mut().faults = faults;
    }

    /// The disk dies after `ops` more operations (0: at the next one).
    pub fn crash_after(&self, ops: u64) {
        self.state.borrow_mut().crash_after = Some(ops);
    }

    /// Takes back a crash point not reached yet (the faults heal).
    pub fn disarm(&self) {
        self.state.borrow_mut().crash_after = None;
    }

    /// Whether the disk died at its crash point.
    pub fn is_dead(&self) -> bool {
        self.state.borrow().dead
    }

    pub fn counters(&self) -> (u64, u64) {
        let st = self.state.borrow();
        (st.sync_errors, st.flips)
    }

    /// Power is cut: what was not synced survives in part or not at all.
    /// Returns the handle of the next incarnation.
    pub fn crash(&self) -> SimDisk {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        for inode in &mut st.inodes {
            for (at, bytes) in std::mem::take(&mut inode.unsynced) {
                let keep = match st.rng.below(4) {
                    0 | 1 => bytes.len(),
                    2 => (st.rng.below(bytes.len().div_ceil(SECTOR) as u64) as usize * SECTOR).min(bytes.len()),
                    _ => 0,
                };
                write_into(&mut inode.durable, at, &bytes[..keep]);
            }
            inode.data = inode.durable.clone();
        }
        let ops = std::mem::take(&mut st.dir_ops);
        let kept = st.rng.below(ops.len() as u64 + 1) as usize;
        for op in ops.into_iter().take(kept) {
            apply_dir_op(&mut st.durable_names, op);
        }
        st.names = st.durable_names.clone();
        st.incarnation += 1;
        st.dead = false;
        st.crash_after = None;
        SimDisk {
            state: self.state.clone(),
            incarnation: st.incarnation,
        }
    }

    /// Bytes held by the files that have names (for the report).
    pub fn used_bytes(&self) -> u64 {
        let st = self.state.borrow();
        st.names.values().map(|&i| st.inodes[i].data.len() as u64).sum()
    }
}

fn write_into(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, usize>, op: DirOp) {
    match op {
        DirOp::Link(path, inode) => {
            names.insert(path, inode);
        }
        DirOp::Unlink(path) => {
            names.remove(&path);
        }
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.op().map(|_| ())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.op()?;
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        if st.names.remove(path).is_none() {
            return Err(error(io::ErrorKind::NotFound, "no such file"));
        }
        st.dir_ops.push(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.op()?;
        let inode = st
            .names
            .remove(from)
            .ok_or_else(|| error(io::ErrorKind::NotFound, "no such file"))?;
        st.names.insert(to.to_path_buf(), inode);
        st.dir_ops.push(DirOp::Unlink(from.to_path_buf()));
        st.dir_ops.push(DirOp::Link(to.to_path_buf(), inode));
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut guard = self.op()?;
        let st = &mut *guard;
        for op in st.dir_ops.drain(..) {
            apply_dir_op(&mut st.durable_names, op);
        }
        Ok(())
    }

    async fn prepare(&self, _dir: &Path) -> io::Result<()> {
        self.op().map(|_| ())
    }

    async fn open(&self, path: &Path, how: Open) -> io::Result<SimFile> {
        let mut st = self.op()?;
        let inode = match (how, st.names.get(path).copied()) {
            (Open::Create, _) => {
                if st.faults.full {
                    return Err(error(io::ErrorKind::StorageFull, "no space left on device"));
                }
                st.inodes.push(Inode::default());
                let inode = st.inodes.len() - 1;
                st.names.insert(path.to_path_buf(), inode);
                st.dir_ops.push(DirOp::Link(path.to_path_buf(), inode));
                inode
            }
            (_, Some(inode)) => inode,
            (_, None) => return Err(error(io::ErrorKind::NotFound, "no such file")),
        };
        drop(st);
        Ok(SimFile {
            disk: self.clone(),
            inode,
            dsync: how == Open::Dsync,
        })
    }
}

/// A read's bytes (owned: the simulator copies).
pub struct SimBuf(Vec<u8>);

impl std::ops::Deref for SimBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl SimFile {
    /// An fdatasync's effect, or its failure: the failed writes are never
    /// synced (Linux marks the pages clean after reporting EIO once).
    fn sync(st: &mut State, inode: usize) -> io::Result<()> {
        let fail = st.rng.below(1000) < st.faults.sync_error_permille;
        let node = &mut st.inodes[inode];
        let pending = std::mem::take(&mut node.unsynced);
        if fail {
            st.sync_errors += 1;
            return Err(eio("fdatasync: input/output error"));
        }
        for (at, bytes) in pending {
            write_into(&mut node.durable, at, &bytes);
        }
        Ok(())
    }
}

impl DiskFile for SimFile {
    type ReadBuf = SimBuf;
    type WriteBuf = Vec<u8>;

    fn alloc(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<usize> {
        let mut guard = self.disk.op()?;
        let st = &mut *guard;
        let at = pos as usize;
        let grows = at + buf.len() > st.inodes[self.inode].data.len();
        if grows && st.faults.full {
            return Err(error(io::ErrorKind::StorageFull, "no space left on device"));
        }
        let node = &mut st.inodes[self.inode];
        write_into(&mut node.data, at, &buf);
        let len = buf.len();
        node.unsynced.push((at, buf));
        if self.dsync {
            Self::sync(st, self.inode)?;
        }
        Ok(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<SimBuf> {
        let mut guard = self.disk.op()?;
        let st = &mut *guard;
        let data = &st.inodes[self.inode].data;
        let from = (pos as usize).min(data.len());
        let to = (from + len).min(data.len());
        let mut out = data[from..to].to_vec();
        if !out.is_empty() && st.rng.below(1000) < st.faults.read_flip_permille {
            let at = st.rng.below(out.len() as u64) as usize;
            out[at] ^= 1 << st.rng.below(8);
            st.flips += 1;
        }
        Ok(SimBuf(out))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let mut guard = self.disk.op()?;
        Self::sync(&mut guard, self.inode)
    }

    async fn size(&self) -> io::Result<u64> {
        let st = self.disk.op()?;
        Ok(st.inodes[self.inode].data.len() as u64)
    }

    /// Space reservation is metadata the file system journals: taken as
    /// durable at once (both views grow).
    async fn preallocate(&self, len: u64) -> io::Result<()> {
        let mut guard = self.disk.op()?;
        let st = &mut *guard;
        let len = len as usize;
        let node = &mut st.inodes[self.inode];
        if node.data.len() >= len {
            return Ok(());
        }
        if st.faults.full {
            return Err(error(io::ErrorKind::StorageFull, "no space left on device"));
        }
        node.data.resize(len, 0);
        if node.durable.len() < len {
            node.durable.resize(len, 0);
        }
        Ok(())
    }

    async fn fill_zeroes(&self, len: u64) -> io::Result<()> {
        self.preallocate(len).await?;
        let zeroes = vec![0; len as usize];
        self.write_at(zeroes, 0).await.map(|_| ())
    }

    async fn zero_range(&self, from: u64, len: u64) -> io::Result<()> {
        self.write_at(vec![0; len as usize], from).await.map(|_| ())
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
