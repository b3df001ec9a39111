//! Per-process (volatile) state and the facts about how this process was launched.
//!
//! [`Process`] lives at a fixed address in the volatile window (see `vmem.rs`), so it is valid
//! in every process of an image without being re-established after a resume. Everything in it
//! describes *this* process: its image fds, its coordinator, what it was launched with.

use crate::{sys, vmem};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use zhuque_image::Meta;

/// What the runtime does in this process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Mode {
    /// Not decided yet.
    Unset = 0,
    /// Deciding (the first call is running `init`).
    Starting = 1,
    /// `CRASH_RESISTANT` not set: every interposed call is forwarded unchanged.
    Inert = 2,
    /// Crash-resistant: memory is persistent.
    Active = 3,
}

/// How this process was executed, read from its initial stack.
pub struct Launch {
    /// Address of `argc` on the initial stack (the kernel's `start_stack`).
    pub initial_sp: usize,
    /// End of the initial stack mapping.
    pub stack_top: usize,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    /// Address of the environment pointer array (so our variables can be removed).
    pub envp: usize,
    /// The filename given to `execve` (`AT_EXECFN`).
    pub execfn: Vec<u8>,
    /// Where the kernel loaded the program's interpreter (`AT_BASE`): 0 when the executable
    /// had none, which for a process that loaded this library means the dynamic loader was
    /// itself executed (`ld.so PROGRAM`): [`Launch::through_loader`].
    pub at_base: usize,
    /// `/proc/self/exe`.
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    /// The address space as the runtime found it: one read of `/proc/self/maps` for the
    /// start's questions (the stack, this library's path, the layout), which every program a
    /// tree executes asks.
    pub maps: Vec<crate::procfs::Vma>,
}

/// What makes an executed program a member of this process's tree: the canonical
/// environment's values.
pub struct ExecTarget {
    /// The tree's image directory.
    pub dir: Vec<u8>,
    /// This runtime's path.
    pub runtime: Vec<u8>,
    pub fail_after: Option<f64>,
}

/// Everything the runtime keeps about the current process.
#[repr(C)]
pub struct Process {
    mode: AtomicU32,
    pub pid: AtomicI32,
    /// `O_DIRECTORY` fd of the image, `flock`ed while we own it.
    pub dir_fd: AtomicI32,
    /// The pool file.
    pub mem_fd: AtomicI32,
    /// Identity of the pool file, to recognise pool mappings in `/proc/self/maps`.
    pub mem_dev: AtomicU64,
    pub mem_ino: AtomicU64,
    /// The pool needs `fsync` at a save (not tmpfs: not "flush-on-fail" memory).
    pub mem_needs_sync: AtomicBool,
    pub coordinator_tid: AtomicI32,
    /// 0 while the coordinator is held (see `coordinator::spawn`), 1 once it may work.
    pub coordinator_gate: AtomicU32,
    /// Bumped by the last thread of a stop (or of a drain) to reach the stop handler
    /// (`threads::stop::count_in`); the coordinator futex-waits on it. Volatile, so every
    /// process starts at 0.
    pub stopped: AtomicU32,
    /// Signalled threads of the current stop that have not reached the stop handler yet
    /// (`threads::stop`); wrapping, read as signed.
    pub stop_outstanding: AtomicU32,
    /// A failure was requested before the coordinator existed.
    pub failure_pending: AtomicBool,
    /// The coordinator is saving this process: an `exec` waits to be stopped instead of
    /// replacing the program under the save (`tree::exec`).
    pub saving: AtomicBool,
    /// Failure injection delay for this process (`ZHUQUE_FAIL_AFTER`), ns; u64::MAX = none.
    pub fail_after_ns: AtomicU64,
    /// True when thread ids can be chosen at resume (pid namespace owned by `zhuque run`).
    pub ids_kept: AtomicBool,
    /// The "thread ids change" warning was printed by this process.
    pub ids_warned: AtomicBool,
    /// The pool is mapped privately for a fork (`memory::fork`).
    pub privatized: AtomicBool,
    /// Serialises forks with each other and with the coordinator's work (`tree::fork`); taken
    /// with [`Process::fork_lock`], which records the holder.
    fork_mutex: crate::futex_lock::FutexLock,
    /// The thread holding `fork_mutex`, 0 if none: runtime code that runs under it (closing an
    /// fd goes through the `close` interposer) must not take it again.
    fork_owner: AtomicI32,
    /// The forking thread had the stop signal blocked when the fork began (a fork from a
    /// signal handler whose mask blocks everything): it stays blocked after the fork.
    pub fork_stop_was_blocked: AtomicBool,
    /// The pipe a fork child reports on once it no longer needs the parent's pool.
    pub fork_ready_r: AtomicI32,
    pub fork_ready_w: AtomicI32,
    /// A fork child still reading its parent's pool (`memory::fork`): its own pool file,
    /// empty until it is materialized, and its end of the pipe its parent waits on.
    pub on_parent_pool: AtomicBool,
    /// When this process last took part in a fork, as the child or as the parent (monotonic
    /// ns): a child copies its parent's pool a while after it, a parent settles a while after
    /// it (`tree::fork`).
    pub forked_at_ns: AtomicU64,
    pub own_pool: AtomicI32,
    release_fd_plus_one: AtomicI32,
    /// `/proc/self/task` and the leader's `stat`, plus one (0: none): kept open so the
    /// coordinator can list and examine threads while program threads run without opening
    /// an fd in the table they share (see `procfs::open_task_fds`).
    task_dir_fd_plus_one: AtomicI32,
    leader_stat_fd_plus_one: AtomicI32,
    /// Read ends of the pipes of children that may still read this process's pool (under
    /// the fork lock).
    dependents: core::sync::atomic::AtomicPtr<Vec<i32>>,
    dependents_lock: crate::futex_lock::FutexLock,
    /// The control connection to the zhuque init, plus one (0: none; see `tree::control`).
    ctl_fd_plus_one: AtomicI32,
    /// The coordinator thread the init was told of on this connection (0: none yet; see
    /// `threads::coordinator::announce`).
    pub coordinator_announced: AtomicI32,
    /// A child of a crash-resistant program that cannot be protected itself (no process
    /// tree to belong to): its memory is its own, but failures do not save it.
    pub detached: AtomicBool,
    /// What the parent expects of its next fork child (`tree::before_fork`): a member (0),
    /// outside the tree and the first to say so (1), outside and silent (2).
    pub child_outside: core::sync::atomic::AtomicU8,
    /// Pool storage released while privatized, to punch out once it is settled.
    deferred: core::sync::atomic::AtomicPtr<Vec<(u64, u64)>>,
    /// Saved tid -> tid in this process, for every thread a resume recreated (null: this
    /// process was not resumed).
    tids: core::sync::atomic::AtomicPtr<Vec<(i32, i32)>>,
    /// The metadata written at the start (program, layout): every save starts from it.
    meta: core::sync::atomic::AtomicPtr<Meta>,
    /// Absolute image directory, NUL-free bytes.
    dir: core::sync::atomic::AtomicPtr<Vec<u8>>,
    /// In a process tree: what programs this one executes are given (`tree::exec`).
    exec_target: core::sync::atomic::AtomicPtr<ExecTarget>,
    /// In a process tree: the address of the init's control channel.
    ctl_address: core::sync::atomic::AtomicPtr<Vec<u8>>,
    /// In a process tree: the tree's image directory (`dir` is this process's, inside it).
    tree_dir: core::sync::atomic::AtomicPtr<Vec<u8>>,
    launch: core::sync::atomic::AtomicPtr<Launch>,
}

const _: () = assert!(core::mem::size_of::<Process>() <= vmem::FIXED_AREA - vmem::PROCESS_OFFSET);

/// The process's state (mapped on first use, zero-initialised).
pub fn get() -> &'static Process {
    // SAFETY: the area is mapped by vmem, zero-filled (a valid `Process`: all fields are
    // atomics whose zero value is meaningful), never unmapped, and fixed in place.
    unsafe { &*(vmem::process_area() as *const Process) }
}

impl Process {
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            1 => Mode::Starting,
            2 => Mode::Inert,
            3 => Mode::Active,
            _ => Mode::Unset,
        }
    }

    pub fn set_mode(&self, m: Mode) {
        self.mode.store(m as u32, Ordering::Release);
    }

    /// Claims the right to initialise: true for exactly one caller.
    pub fn begin_init(&self) -> bool {
        self.mode
            .compare_exchange(
                Mode::Unset as u32,
                Mode::Starting as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    pub fn mem_fd(&self) -> i32 {
        self.mem_fd.load(Ordering::Relaxed)
    }

    pub fn meta(&self) -> &'static mut Meta {
        // SAFETY: set once during init (before any other thread exists) to a leaked Box in
        // volatile memory; afterwards only the coordinator (or the exiting thread) uses it.
        unsafe { &mut *self.meta.load(Ordering::Acquire) }
    }

    pub fn set_meta(&self, m: Meta) {
        self.meta
            .store(Box::into_raw(Box::new(m)), Ordering::Release);
    }

    pub fn dir(&self) -> &'static [u8] {
        // SAFETY: set once during init to a leaked Box in volatile memory.
        unsafe { (*self.dir.load(Ordering::Acquire)).as_slice() }
    }

    /// What executed programs are given, in a process tree.
    pub fn exec_target(&self) -> Option<&'static ExecTarget> {
        let t = self.exec_target.load(Ordering::Acquire);
        // SAFETY: set once to a leaked Box in volatile memory.
        (!t.is_null()).then(|| unsafe { &*t })
    }

    pub fn set_exec_target(&self, t: ExecTarget) {
        self.exec_target
            .store(Box::into_raw(Box::new(t)), Ordering::Release);
    }

    /// The address of the init's control channel, once found.
    pub fn ctl_address(&self) -> Option<&'static [u8]> {
        let a = self.ctl_address.load(Ordering::Acquire);
        // SAFETY: set once to a leaked Box in volatile memory.
        (!a.is_null()).then(|| unsafe { (*a).as_slice() })
    }

    pub fn set_ctl_address(&self, a: Vec<u8>) {
        self.ctl_address
            .store(Box::into_raw(Box::new(a)), Ordering::Release);
    }

    /// The tree's image directory, in a process tree.
    pub fn tree_dir(&self) -> Option<&'static [u8]> {
        let d = self.tree_dir.load(Ordering::Acquire);
        // SAFETY: set once to a leaked Box in volatile memory.
        (!d.is_null()).then(|| unsafe { (*d).as_slice() })
    }

    pub fn set_tree_dir(&self, d: Vec<u8>) {
        self.tree_dir
            .store(Box::into_raw(Box::new(d)), Ordering::Release);
    }

    pub fn set_dir(&self, d: Vec<u8>) {
        self.dir
            .store(Box::into_raw(Box::new(d)), Ordering::Release);
    }

    /// Whether [`Process::launch`] is set (a fresh start or a resume set it).
    pub fn has_launch(&self) -> bool {
        !self.launch.load(Ordering::Acquire).is_null()
    }

    pub fn launch(&self) -> &'static Launch {
        // SAFETY: set once during init to a leaked Box in volatile memory.
        unsafe { &*self.launch.load(Ordering::Acquire) }
    }

    pub fn set_launch(&self, l: Launch) {
        self.launch
            .store(Box::into_raw(Box::new(l)), Ordering::Release);
    }

    /// Records which tid each saved thread has in this process (resume, once per process).
    pub fn set_tids(&self, map: Vec<(i32, i32)>) {
        self.tids
            .store(Box::into_raw(Box::new(map)), Ordering::Release);
    }

    /// This process was not resumed (a fork child's inherited map is its parent's).
    pub fn forget_tids(&self) {
        self.tids.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// The tid that the saved process's thread `saved` has in this one: itself when ids were
    /// kept, its new id otherwise, `None` for a thread the resume did not recreate. Outside a
    /// resumed process every tid is its own.
    pub fn current_tid(&self, saved: i32) -> Option<i32> {
        let map = self.tids.load(Ordering::Acquire);
        if map.is_null() {
            return Some(saved);
        }
        // SAFETY: set once by the resume to a leaked Box in volatile memory, never changed.
        let map = unsafe { &*map };
        map.iter()
            .find(|(old, _)| *old == saved)
            .map(|(_, new)| *new)
    }

    /// The open `/proc/self/task` directory of this process, -1 if none.
    pub fn task_dir_fd(&self) -> i32 {
        self.task_dir_fd_plus_one.load(Ordering::Acquire) - 1
    }

    /// Replaces [`Process::task_dir_fd`]; returns the previous one.
    pub fn swap_task_dir_fd(&self, fd: i32) -> i32 {
        self.task_dir_fd_plus_one.swap(fd + 1, Ordering::AcqRel) - 1
    }

    /// The open `/proc/self/task/<pid>/stat` of this process's leader, -1 if none.
    pub fn leader_stat_fd(&self) -> i32 {
        self.leader_stat_fd_plus_one.load(Ordering::Acquire) - 1
    }

    /// Replaces [`Process::leader_stat_fd`]; returns the previous one.
    pub fn swap_leader_stat_fd(&self, fd: i32) -> i32 {
        self.leader_stat_fd_plus_one.swap(fd + 1, Ordering::AcqRel) - 1
    }

    /// The control connection to the init, -1 outside a process tree.
    pub fn ctl_fd(&self) -> i32 {
        self.ctl_fd_plus_one.load(Ordering::Acquire) - 1
    }

    /// Replaces the control connection (-1: none); returns the previous one.
    pub fn swap_ctl_fd(&self, fd: i32) -> i32 {
        // A new connection (a fork child's, a resumed process's) has been told nothing.
        self.coordinator_announced.store(0, Ordering::Release);
        self.ctl_fd_plus_one.swap(fd + 1, Ordering::AcqRel) - 1
    }

    /// Takes the fork lock (see `tree::fork`).
    pub fn fork_lock(&self) {
        self.fork_mutex.lock_unguarded();
        self.fork_owner
            .store(crate::sys::gettid(), Ordering::Release);
    }

    /// Releases the fork lock.
    pub fn fork_unlock(&self) {
        self.fork_owner.store(0, Ordering::Release);
        // SAFETY: taken by `fork_lock` on this thread (or, in a fork child, by the thread
        // that forked, which `fork_lock_inherited` made this one).
        unsafe { self.fork_mutex.unlock() };
    }

    /// In a fork child: the fork lock the forking thread held is this thread's now.
    pub fn fork_lock_inherited(&self) {
        self.fork_owner
            .store(crate::sys::gettid(), Ordering::Release);
    }

    /// Whether the calling thread holds the fork lock.
    pub fn holds_fork_lock(&self) -> bool {
        self.fork_owner.load(Ordering::Acquire) == crate::sys::gettid()
    }

    /// A fork child's end of the pipe its parent watches, -1 when it has none.
    pub fn release_fd(&self) -> i32 {
        self.release_fd_plus_one.load(Ordering::Acquire) - 1
    }

    /// Replaces [`Process::release_fd`]; returns the previous one.
    pub fn swap_release_fd(&self, fd: i32) -> i32 {
        self.release_fd_plus_one.swap(fd + 1, Ordering::AcqRel) - 1
    }

    /// Runs `f` on the read ends of the pipes of the children that may still read this
    /// process's pool. The list has a small lock of its own, held only for `f` (which must not
    /// block): it is read by the `close` interposer, which may run inside runtime code that
    /// must not wait for the fork lock.
    pub fn with_dependents<T>(&self, f: impl FnOnce(&mut Vec<i32>) -> T) -> T {
        let _held = self.dependents_lock.lock();
        let mut v = self.dependents.load(Ordering::Acquire);
        if v.is_null() {
            v = Box::into_raw(Box::new(Vec::new()));
            self.dependents.store(v, Ordering::Release);
        }
        // SAFETY: a leaked Box in volatile memory, only used under `dependents_lock`.
        f(unsafe { &mut *v })
    }

    /// Pool storage released while the pool is privatized (callers hold the memory lock).
    #[allow(clippy::mut_from_ref)]
    pub fn deferred_releases(&self) -> &'static mut Vec<(u64, u64)> {
        let mut v = self.deferred.load(Ordering::Acquire);
        if v.is_null() {
            v = Box::into_raw(Box::new(Vec::new()));
            self.deferred.store(v, Ordering::Release);
        }
        // SAFETY: a leaked Box in volatile memory, only used under the memory lock (or by the
        // single thread of a fork child / the settling coordinator).
        unsafe { &mut *v }
    }

    pub fn fail_after_ns(&self) -> Option<u64> {
        match self.fail_after_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            v => Some(v),
        }
    }
}

/// Reads the C string at `p`.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
unsafe fn c_string(p: usize) -> Vec<u8> {
    // SAFETY: forwarded contract.
    unsafe { core::ffi::CStr::from_ptr(p as *const core::ffi::c_char) }
        .to_bytes()
        .to_vec()
}

/// Reads a NULL-terminated array of string pointers.
///
/// # Safety
/// `p` must point to such an array.
unsafe fn c_string_array(p: usize) -> (Vec<Vec<u8>>, usize) {
    let mut v = Vec::new();
    let mut at = p;
    loop {
        // SAFETY: the array is NULL-terminated; each entry is a C string.
        let s = unsafe { *(at as *const usize) };
        if s == 0 {
            return (v, at + 8);
        }
        // SAFETY: see above.
        v.push(unsafe { c_string(s) });
        at += 8;
    }
}

const AT_EXECFN: usize = 31;
const AT_BASE: usize = 7;

/// Where the kernel laid out `argc`, `argv[]`, `envp[]` and the auxiliary vector: the stack
/// pointer the program started with. ld.so keeps it in `__libc_stack_end` from its first
/// instruction on (`_dl_sysdep_start`), which saves every starting process a read of
/// `/proc/self/stat` (whose `startstack` is the same address), about 10 µs; that read stays
/// the fallback.
fn initial_stack() -> usize {
    unsafe extern "C" {
        /// ld.so's (GLIBC_2.2.5): the address of `argc` on the initial stack.
        static __libc_stack_end: usize;
    }
    // SAFETY: a word ld.so sets before any library code runs and never changes afterwards.
    let sp = unsafe { core::ptr::read_volatile(&raw const __libc_stack_end) };
    if sp != 0 {
        debug_assert_eq!(sp, stack_from_proc(), "__libc_stack_end is not startstack");
        return sp;
    }
    stack_from_proc()
}

/// `startstack` of `/proc/self/stat`.
fn stack_from_proc() -> usize {
    let stat = crate::procfs::read(b"/proc/self/stat\0")
        .unwrap_or_else(|_| crate::diag::fatal("cannot read /proc/self/stat (is /proc mounted?)"));
    let sp = crate::procfs::stat_field(&stat, 28).unwrap_or(0) as usize;
    if sp == 0 {
        crate::diag::fatal("cannot find the initial stack in /proc/self/stat");
    }
    sp
}

impl Launch {
    /// Reads argv, the environment and the auxiliary vector from the initial stack
    /// ([`initial_stack`]). This works before libc has set `environ`, which matters because the
    /// first `malloc` can precede libc's initialisation. Enough to tell whether the runtime has
    /// anything to do in this process; the rest of the facts come with
    /// [`Launch::read_process`].
    pub fn read() -> Launch {
        let initial_sp = initial_stack();
        // SAFETY: the kernel laid out argc, argv[], NULL, envp[], NULL, auxv[] at start_stack.
        let (argv, envp, env, auxv) = unsafe {
            let argv_at = initial_sp + 8;
            let (argv, envp) = c_string_array(argv_at);
            let (env, auxv) = c_string_array(envp);
            (argv, envp, env, auxv)
        };
        let mut execfn = Vec::new();
        let mut at_base = 0;
        let mut at = auxv;
        loop {
            // SAFETY: auxv is a list of (type, value) pairs ending with AT_NULL.
            let (t, v) = unsafe { (*(at as *const usize), *((at + 8) as *const usize)) };
            if t == 0 {
                break;
            }
            if t == AT_BASE {
                at_base = v;
            }
            if t == AT_EXECFN {
                // SAFETY: AT_EXECFN points to the filename string on the stack.
                execfn = unsafe { c_string(v) };
            }
            at += 16;
        }
        Launch {
            initial_sp,
            stack_top: 0,
            argv,
            env,
            envp,
            execfn,
            at_base,
            exe: Vec::new(),
            cwd: Vec::new(),
            maps: Vec::new(),
        }
    }

    /// The executable, the working directory and the mappings (`/proc`): what a
    /// crash-resistant process needs besides [`Launch::read`]'s (an inert one skips them).
    pub fn read_process(&mut self) {
        self.exe = crate::procfs::readlink(b"/proc/self/exe\0").unwrap_or_default();
        self.cwd = rustix::process::getcwd(Vec::new())
            .map(|c| c.into_bytes())
            .unwrap_or_default();
        self.maps = crate::procfs::maps();
        self.stack_top = crate::procfs::stack_top(&self.maps).unwrap_or(0);
    }

    /// Whether the dynamic loader was executed with the program as its argument
    /// (`ld.so PROGRAM ARGS`, how `ldd` and some launchers run programs): the loader has
    /// shifted the arguments in place, so the launch as the kernel saw it is gone, and a
    /// resume could not execute it again.
    pub fn through_loader(&self) -> bool {
        self.at_base == 0
    }

    pub fn env_get(&self, name: &str) -> Option<&[u8]> {
        zhuque_image::env_get(&self.env, name)
    }

    /// Removes the runtime's own variables from the program's environment (in place, on the
    /// initial stack), so children the program starts are not crash-resistant on our image.
    pub fn hide_runtime_env(&self) {
        let names = [
            zhuque_image::ENV_CRASH_RESISTANT,
            zhuque_image::ENV_FAIL_AFTER,
        ];
        let mut read = self.envp;
        let mut write = self.envp;
        loop {
            // SAFETY: envp is the NULL-terminated environment array on the initial stack,
            // which is writable; entries are only moved down, never past the terminator.
            unsafe {
                let s = *(read as *const usize);
                if s != 0 {
                    let entry = c_string(s);
                    let ours = names.iter().any(|n| {
                        entry.starts_with(n.as_bytes()) && entry.get(n.len()) == Some(&b'=')
                    });
                    if ours {
                        read += 8;
                        continue;
                    }
                }
                *(write as *mut usize) = s;
                if s == 0 {
                    break;
                }
            }
            read += 8;
            write += 8;
        }
    }
}

/// Monotonic clock in nanoseconds.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Wall clock in nanoseconds since the epoch.
pub fn unix_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub fn set_pid() {
    get().pid.store(sys::getpid(), Ordering::Relaxed);
}
