//! Memory: mappings, `brk`, System V attach, hole punching, locking.

use super::{Result, call, check, nr, syscall1, syscall2, syscall3, syscall4, syscall6};
use linux_raw_sys::general as g;

/// The page size (x86-64; the runtime does not support other page sizes).
pub const PAGE: usize = 4096;

pub const PROT_READ: i32 = g::PROT_READ as i32;
pub const PROT_WRITE: i32 = g::PROT_WRITE as i32;
pub const PROT_EXEC: i32 = g::PROT_EXEC as i32;

pub const MAP_SHARED: i32 = g::MAP_SHARED as i32;
pub const MAP_PRIVATE: i32 = g::MAP_PRIVATE as i32;
pub const MAP_SHARED_VALIDATE: i32 = g::MAP_SHARED_VALIDATE as i32;
pub const MAP_TYPE: i32 = g::MAP_TYPE as i32;
pub const MAP_FIXED: i32 = g::MAP_FIXED as i32;
pub const MAP_ANONYMOUS: i32 = g::MAP_ANONYMOUS as i32;
pub const MAP_32BIT: i32 = g::MAP_32BIT as i32;
pub const MAP_GROWSDOWN: i32 = g::MAP_GROWSDOWN as i32;
pub const MAP_DENYWRITE: i32 = g::MAP_DENYWRITE as i32;
pub const MAP_EXECUTABLE: i32 = g::MAP_EXECUTABLE as i32;
pub const MAP_LOCKED: i32 = g::MAP_LOCKED as i32;
pub const MAP_NORESERVE: i32 = g::MAP_NORESERVE as i32;
pub const MAP_POPULATE: i32 = g::MAP_POPULATE as i32;
pub const MAP_NONBLOCK: i32 = g::MAP_NONBLOCK as i32;
pub const MAP_STACK: i32 = g::MAP_STACK as i32;
pub const MAP_HUGETLB: i32 = g::MAP_HUGETLB as i32;
pub const MAP_SYNC: i32 = g::MAP_SYNC as i32;
pub const MAP_FIXED_NOREPLACE: i32 = g::MAP_FIXED_NOREPLACE as i32;

pub const MREMAP_MAYMOVE: i32 = g::MREMAP_MAYMOVE as i32;
pub const MREMAP_FIXED: i32 = g::MREMAP_FIXED as i32;
pub const MREMAP_DONTUNMAP: i32 = g::MREMAP_DONTUNMAP as i32;

pub const MADV_DONTNEED: i32 = g::MADV_DONTNEED as i32;
pub const MADV_FREE: i32 = g::MADV_FREE as i32;
pub const MADV_REMOVE: i32 = g::MADV_REMOVE as i32;
pub const MADV_DONTNEED_LOCKED: i32 = g::MADV_DONTNEED_LOCKED as i32;
pub const MADV_RANDOM: i32 = g::MADV_RANDOM as i32;
pub const MADV_SEQUENTIAL: i32 = g::MADV_SEQUENTIAL as i32;
pub const MADV_DONTFORK: i32 = g::MADV_DONTFORK as i32;
pub const MADV_DONTDUMP: i32 = g::MADV_DONTDUMP as i32;
pub const MADV_MERGEABLE: i32 = g::MADV_MERGEABLE as i32;
pub const MADV_HUGEPAGE: i32 = g::MADV_HUGEPAGE as i32;
pub const MADV_POPULATE_WRITE: i32 = g::MADV_POPULATE_WRITE as i32;
pub const MADV_NOHUGEPAGE: i32 = g::MADV_NOHUGEPAGE as i32;
pub const MADV_WIPEONFORK: i32 = g::MADV_WIPEONFORK as i32;

pub const FALLOC_FL_KEEP_SIZE: i32 = g::FALLOC_FL_KEEP_SIZE as i32;
pub const FALLOC_FL_PUNCH_HOLE: i32 = g::FALLOC_FL_PUNCH_HOLE as i32;

/// # Safety
/// Mapping over memory in use is the caller's responsibility.
#[inline]
pub unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: u64,
) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe {
        syscall6(
            nr::MMAP,
            addr,
            len,
            prot as usize,
            flags as usize,
            fd as usize,
            off as usize,
        )
    })
}

/// # Safety
/// Unmapping memory in use is the caller's responsibility.
#[inline]
pub unsafe fn munmap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall2(nr::MUNMAP, addr, len) }).map(|_| ())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn mprotect(addr: usize, len: usize, prot: i32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::MPROTECT, addr, len, prot as usize) }).map(|_| ())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn madvise(addr: usize, len: usize, advice: i32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::MADVISE, addr, len, advice as usize) }).map(|_| ())
}

/// How many pages of `[addr, addr + len)` are in memory (`mincore`; `vec` holds a byte per
/// page): for a file mapping, whether the file's page is in the page cache, mapped here or
/// not (a swapped-out page is not).
pub fn pages_in_memory(addr: usize, len: usize, vec: &mut [u8]) -> Result<usize> {
    let pages = len.div_ceil(super::PAGE);
    let Some(vec) = vec.get_mut(..pages) else {
        return Err(super::Errno::EINVAL);
    };
    // SAFETY: `vec` holds a byte for each page of the range; the kernel only writes it.
    check(unsafe { syscall3(nr::MINCORE, addr, len, vec.as_mut_ptr() as usize) })?;
    Ok(vec.iter().filter(|b| *b & 1 != 0).count())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn mremap(
    old: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe {
        syscall6(
            nr::MREMAP,
            old,
            old_len,
            new_len,
            flags as usize,
            new_addr,
            0,
        )
    })
}

// ---- kernel AIO contexts (their ring is a mapping of the process) ----------------------------

/// `struct iocb` of `<linux/aio_abi.h>` (x86-64, little-endian field order).
#[repr(C)]
#[derive(Default)]
pub struct Iocb {
    pub data: u64,
    pub key: u32,
    pub rw_flags: i32,
    pub opcode: u16,
    pub reqprio: i16,
    pub fildes: u32,
    pub buf: u64,
    pub nbytes: u64,
    pub offset: i64,
    pub reserved2: u64,
    pub flags: u32,
    pub resfd: u32,
}

/// `IOCB_CMD_PWRITE`.
pub const IOCB_CMD_PWRITE: u16 = 1;

/// `io_setup`: a new AIO context for `nr` requests; returns its id, the address of its ring.
pub fn io_setup(nr: u32) -> Result<usize> {
    let mut ctx: u64 = 0;
    // SAFETY: `ctx` is a valid out-pointer (the kernel requires it to hold 0).
    check(unsafe { syscall2(nr::IO_SETUP, nr as usize, &mut ctx as *mut u64 as usize) })?;
    Ok(ctx as usize)
}

/// `io_destroy` of context `ctx` (waits for its requests, unmaps its ring).
pub fn io_destroy(ctx: usize) -> Result<()> {
    // SAFETY: plain system call; the kernel validates the id.
    check(unsafe { syscall1(nr::IO_DESTROY, ctx) }).map(|_| ())
}

/// `io_submit` of `iocbs` (pointers to `struct iocb`); returns how many were taken.
///
/// # Safety
/// Every pointer is a valid `struct iocb` whose buffers stay valid until completion.
pub unsafe fn io_submit(ctx: usize, iocbs: &[usize]) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::IO_SUBMIT, ctx, iocbs.len(), iocbs.as_ptr() as usize) })
}

/// `shmat`: attaches System V segment `id` where the kernel chooses.
///
/// # Safety
/// Maps new memory; the caller owns what it does with it.
pub unsafe fn shmat(id: i32, flags: i32) -> Result<usize> {
    // SAFETY: forwarded contract; a null address lets the kernel choose.
    check(unsafe { syscall3(nr::SHMAT, id as usize, 0, flags as usize) })
}

/// `shmat` at `addr`, which must be page-aligned.
///
/// # Safety
/// With `SHM_REMAP`, replaces whatever is mapped there.
pub unsafe fn shmat_at(id: i32, addr: usize, flags: i32) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::SHMAT, id as usize, addr, flags as usize) })
}

pub const SHM_RDONLY: i32 = 0o10000;
pub const SHM_REMAP: i32 = 0o40000;
pub const SHM_EXEC: i32 = 0o100000;

/// The size of System V segment `id` (`shmctl(IPC_STAT)`).
pub fn shm_size(id: i32) -> Result<usize> {
    /// `struct shmid64_ds` on x86-64: `ipc64_perm` takes 48 bytes, `shm_segsz` follows.
    #[repr(C)]
    struct ShmidDs {
        perm: [u8; 48],
        segsz: u64,
        rest: [u64; 16],
    }
    const IPC_STAT: usize = 2;
    let mut ds = ShmidDs {
        perm: [0; 48],
        segsz: 0,
        rest: [0; 16],
    };
    // SAFETY: the kernel writes at most `struct shmid64_ds` (112 bytes) into `ds`.
    check(unsafe {
        syscall3(
            nr::SHMCTL,
            id as usize,
            IPC_STAT,
            &mut ds as *mut _ as usize,
        )
    })?;
    Ok(ds.segsz as usize)
}

pub fn brk(addr: usize) -> usize {
    // SAFETY: brk never fails in a way that harms memory; it returns the current break.
    unsafe { syscall1(nr::BRK, addr) as usize }
}

/// Frees the backing of a range of a file (zeros on the next read).
pub fn punch_hole(fd: i32, off: u64, len: u64) -> Result<()> {
    // SAFETY: plain file operation on a runtime-owned fd.
    check(unsafe {
        syscall4(
            nr::FALLOCATE,
            fd as usize,
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) as usize,
            off as usize,
            len as usize,
        )
    })
    .map(|_| ())
}

/// `mlock`: keeps the range's pages in memory (it changes no contents).
pub fn mlock(addr: usize, len: usize) -> Result<()> {
    call(nr::MLOCK, addr, len, 0, 0, 0, 0).map(drop)
}

/// `mlockall(flags)`.
pub fn mlockall(flags: u32) -> Result<()> {
    call(nr::MLOCKALL, flags as usize, 0, 0, 0, 0, 0).map(drop)
}

/// `mlock2(MLOCK_ONFAULT)`: locks the range's pages as they are faulted in (none now).
pub fn mlock_on_fault(addr: usize, len: usize) -> Result<()> {
    const MLOCK_ONFAULT: usize = 1;
    call(nr::MLOCK2, addr, len, MLOCK_ONFAULT, 0, 0, 0).map(drop)
}

/// `membarrier(cmd, 0, 0)`.
pub fn membarrier(cmd: usize) -> Result<usize> {
    call(nr::MEMBARRIER, cmd, 0, 0, 0, 0, 0)
}

/// Copies this process's memory at `addr` into `buf` through the kernel (`process_vm_readv`
/// of itself): a range the program has unmapped or made unreadable is an error (`EFAULT`),
/// never a fault. Returns how many bytes were copied.
pub fn read_own_memory(addr: usize, buf: &mut [u8]) -> Result<usize> {
    let local = [buf.as_mut_ptr() as usize, buf.len()];
    let remote = [addr, buf.len()];
    // The iovecs are valid for the call: `local` is `buf`, `remote` is checked by the kernel.
    call(
        nr::PROCESS_VM_READV,
        super::getpid() as usize,
        local.as_ptr() as usize,
        1,
        remote.as_ptr() as usize,
        1,
        0,
    )
}
