//! `SIGEV_THREAD` timers whose notification threads a save can stop.
//!
//! glibc delivers `SIGEV_THREAD` timer notifications from a helper thread it starts itself,
//! on a stack the runtime never sees and with every signal blocked for its whole life: a save
//! could never stop it. The runtime therefore implements `SIGEV_THREAD` the way glibc does,
//! with threads of its own making:
//!
//! - `timer_create(SIGEV_THREAD)` records the notification (function, value, a copy of the
//!   thread attributes with the fields glibc copies) in a persistent table and creates a
//!   kernel timer that sends `SIGTIMER` (glibc's reserved signal 32, which programs cannot
//!   use) to the coordinator, with the record's index and generation as its value. The
//!   `timer_t` is the kernel timer id, so glibc's `timer_settime`, `timer_gettime` and
//!   `timer_getoverrun` work on it unchanged.
//! - The coordinator (never stopped, never running program code) takes each expiry off its
//!   queue and marks the record due ([`expired`]); the helper, an ordinary `pthread_create`
//!   thread on a pool stack, starts one detached thread per due expiry with the timer's
//!   attributes, which calls the function with the value. Like glibc's, that thread runs with
//!   every signal blocked but `SIGSETXID` and `SIGTIMER` (the stop signal reads back as
//!   blocked).
//! - `timer_delete` forgets the record: an expiry already queued carries an older generation
//!   and is dropped, as glibc drops signals of timers no longer in its list.
//!
//! Why the coordinator receives the signals: at a save it can take every expiry still queued
//! for it off its own queue after the program's threads are stopped (a stopped thread's queue
//! is out of reach), so none is lost (`timers` also covers the instants between reading the
//! queue and reading the timers). The records, due marks, the helper and the notification
//! threads live in pool memory and survive the failure; the kernel timers come back with the
//! program's other POSIX timers, aimed at the new coordinator.
//!
//! The table grows in chunks that never move (chunk `k` holds `FIRST_CHUNK << k` records), so
//! the coordinator marks records without a lock; the chunks cover more records than the
//! kernel has timer ids. Due records form a lock-free stack (one producer, the coordinator;
//! one consumer, the helper, which takes the whole stack at once).

use crate::allocator::{persistent_alloc, persistent_free};
use crate::futex_lock::{FutexGuard, FutexLock};
use crate::loader::Next;
use crate::memory;
use crate::runtime::active;
use crate::signals::{STOP_SIGNAL, critical};
use crate::sys::{self, Errno};
use crate::sys::{SI_TIMER, SIGEV_THREAD_ID};
use crate::sys::{SIGEV_SIGNAL, SIGEV_THREAD};
use crate::threads::pthread::Attr;
use crate::threads::sigmask;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// glibc's `SIGTIMER` (= `SIGCANCEL`): reserved by glibc, refused by its `sigaction`.
pub const SIGTIMER: i32 = 32;
const SIGSETXID: i32 = 33;
const PTHREAD_CREATE_DETACHED: c_int = 1;
const ENOSYS: c_int = 38;
const HELPER_STACK: usize = 256 << 10;

/// `struct sigevent` (64 bytes on x86-64), as the program passes it.
#[repr(C)]
pub struct SigEvent {
    value: usize,
    signo: c_int,
    notify: c_int,
    /// `sigev_notify_function` (`SIGEV_THREAD`), or the target tid (`SIGEV_THREAD_ID`).
    function: usize,
    /// `sigev_notify_attributes`.
    attributes: *const Attr,
    _pad: [u64; 4],
}

type Notify = extern "C" fn(usize);
type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
type Create = unsafe extern "C" fn(c_int, *const SigEvent, *mut usize) -> c_int;
type Delete = unsafe extern "C" fn(usize) -> c_int;

unsafe extern "C" {
    fn pthread_attr_init(attr: *mut Attr) -> c_int;
    fn pthread_attr_destroy(attr: *mut Attr) -> c_int;
    fn pthread_attr_getschedparam(attr: *const Attr, param: *mut c_int) -> c_int;
    fn pthread_attr_setschedparam(attr: *mut Attr, param: *const c_int) -> c_int;
    fn pthread_attr_getschedpolicy(attr: *const Attr, policy: *mut c_int) -> c_int;
    fn pthread_attr_setschedpolicy(attr: *mut Attr, policy: c_int) -> c_int;
    fn pthread_attr_getinheritsched(attr: *const Attr, inherit: *mut c_int) -> c_int;
    fn pthread_attr_setinheritsched(attr: *mut Attr, inherit: c_int) -> c_int;
    fn pthread_attr_getscope(attr: *const Attr, scope: *mut c_int) -> c_int;
    fn pthread_attr_setscope(attr: *mut Attr, scope: c_int) -> c_int;
    fn pthread_attr_getguardsize(attr: *const Attr, size: *mut usize) -> c_int;
    fn pthread_attr_setguardsize(attr: *mut Attr, size: usize) -> c_int;
    fn pthread_attr_getstackaddr(attr: *const Attr, addr: *mut usize) -> c_int;
    fn pthread_attr_getstack(attr: *const Attr, addr: *mut usize, size: *mut usize) -> c_int;
    fn pthread_attr_setstack(attr: *mut Attr, addr: usize, size: usize) -> c_int;
    fn pthread_attr_getstacksize(attr: *const Attr, size: *mut usize) -> c_int;
    fn pthread_attr_setstacksize(attr: *mut Attr, size: usize) -> c_int;
    fn pthread_attr_setdetachstate(attr: *mut Attr, state: c_int) -> c_int;
}

// ---- the record table (persistent: this library's .bss and pool chunks) ------------------

/// One `SIGEV_THREAD` timer. The atomics are used without the lock (by the coordinator and
/// the helper); `fields` only under it.
#[repr(C)]
struct Record {
    /// Odd while the timer exists; bumped when it is created and when it is deleted.
    generation: AtomicU32,
    /// The record is on the due stack.
    queued: AtomicBool,
    /// Next record on the due stack + 1 (0: bottom).
    next_due: AtomicU32,
    /// Expiries to deliver: the generation they belong to (high half) and their count.
    due: AtomicU64,
    fields: UnsafeCell<Fields>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Fields {
    /// The kernel timer (-1 until it exists).
    ktimer: i32,
    /// Next free record + 1 (0: end of the free list), while free.
    next_free: u32,
    function: usize,
    value: usize,
    attr: Attr,
}

const FIRST_CHUNK: usize = 64;
const CHUNKS: usize = 26;

static LOCK: FutexLock = FutexLock::new();

/// The record lock, for holding it across a `fork` (`tree::fork`).
pub fn fork_lock() -> &'static FutexLock {
    &LOCK
}
type Guard = FutexGuard<'static>;
static CHUNK: [AtomicUsize; CHUNKS] = [const { AtomicUsize::new(0) }; CHUNKS];
/// Records ever allocated (every index below exists).
static LEN: AtomicU32 = AtomicU32::new(0);
/// Head of the free list + 1 (0: empty).
static FREE: AtomicU32 = AtomicU32::new(0);
/// Records of timers that exist.
static LIVE: AtomicU32 = AtomicU32::new(0);
/// Top of the due stack + 1 (0: empty).
static DUE_HEAD: AtomicU32 = AtomicU32::new(0);
/// Bumped after every push: the helper futex-waits on it.
static DUE_SEQ: AtomicU32 = AtomicU32::new(0);
/// The helper: 0 none yet, `STARTING` while one thread creates it, `RUNNING`.
static HELPER: AtomicU32 = AtomicU32::new(0);
const STARTING: u32 = 1;
const RUNNING: u32 = 2;

/// Chunk and offset of record `i`.
fn locate(i: usize) -> (usize, usize) {
    let k = (i / FIRST_CHUNK + 1).ilog2() as usize;
    (k, i - FIRST_CHUNK * ((1 << k) - 1))
}

/// Record `i`, if it was ever allocated. Lock-free: chunks never move, and every record below
/// `LEN` is initialised (the stop handler reads records this way).
fn record(i: u32) -> Option<&'static Record> {
    if i >= LEN.load(Ordering::Acquire) {
        return None;
    }
    let (k, off) = locate(i as usize);
    let base = CHUNK.get(k)?.load(Ordering::Acquire);
    if base == 0 {
        return None;
    }
    // SAFETY: chunk k is mapped pool memory holding FIRST_CHUNK << k records and off is below
    // that; the record below LEN was initialised before LEN was raised past it.
    Some(unsafe { &*(base as *const Record).add(off) })
}

/// The lock-protected part of a record (a copy).
fn fields(_g: &Guard, r: &Record) -> Fields {
    // SAFETY: the lock is held (the guard proves it): nobody writes the fields meanwhile.
    unsafe { *r.fields.get() }
}

/// Changes the lock-protected part of a record.
fn update(_g: &Guard, r: &Record, change: impl FnOnce(&mut Fields)) {
    // SAFETY: the lock is held (the guard proves it): this is the only access meanwhile.
    change(unsafe { &mut *r.fields.get() })
}

/// A free record, holding `f` (lock held).
fn allocate(g: &Guard, f: Fields) -> Result<u32, Errno> {
    let head = FREE.load(Ordering::Relaxed);
    if head != 0 {
        let i = head - 1;
        let r = record(i).ok_or(Errno::EAGAIN)?;
        FREE.store(fields(g, r).next_free, Ordering::Relaxed);
        update(g, r, |slot| *slot = f);
        return Ok(i);
    }
    let i = LEN.load(Ordering::Relaxed);
    let (k, off) = locate(i as usize);
    if k >= CHUNKS {
        return Err(Errno::EAGAIN);
    }
    if off == 0 {
        let bytes = (FIRST_CHUNK << k) * core::mem::size_of::<Record>();
        let base = memory::map(
            0,
            bytes,
            sys::PROT_READ | sys::PROT_WRITE,
            sys::MAP_PRIVATE | sys::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        CHUNK[k].store(base, Ordering::Release);
    }
    let base = CHUNK[k].load(Ordering::Relaxed);
    let r = Record {
        generation: AtomicU32::new(0),
        queued: AtomicBool::new(false),
        next_due: AtomicU32::new(0),
        due: AtomicU64::new(0),
        fields: UnsafeCell::new(f),
    };
    // SAFETY: off is inside chunk k, mapped above or earlier, and not yet published.
    unsafe { core::ptr::write((base as *mut Record).add(off), r) };
    LEN.store(i + 1, Ordering::Release);
    Ok(i)
}

/// Makes record `i` live; returns the value its kernel timer carries (lock held).
fn activate(_g: &Guard, i: u32) -> usize {
    let Some(r) = record(i) else { return 0 };
    LIVE.fetch_add(1, Ordering::Relaxed);
    let generation = r.generation.load(Ordering::Relaxed).wrapping_add(1) | 1;
    r.generation.store(generation, Ordering::Release);
    encode(i, generation)
}

/// Returns record `i` to the free list (lock held).
fn release(g: &Guard, i: u32) {
    let Some(r) = record(i) else { return };
    let generation = r.generation.load(Ordering::Relaxed);
    if generation & 1 == 1 {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
    r.generation
        .store(generation.wrapping_add(generation & 1), Ordering::Release);
    r.due.store(0, Ordering::Relaxed);
    update(g, r, |f| {
        f.ktimer = -1;
        f.next_free = FREE.load(Ordering::Relaxed);
    });
    FREE.store(i + 1, Ordering::Relaxed);
}

fn encode(i: u32, generation: u32) -> usize {
    ((i as usize) << 32) | generation as usize
}

fn decode(value: usize) -> (u32, u32) {
    ((value >> 32) as u32, value as u32)
}

// ---- the interposed calls ----------------------------------------------------------------

// SAFETY (both): glibc's functions of those names have these types.
static NEXT_TIMER_CREATE: Next<Create> = unsafe { Next::new(c"timer_create") };
static NEXT_TIMER_DELETE: Next<Delete> = unsafe { Next::new(c"timer_delete") };

fn set_errno(e: Errno) -> c_int {
    crate::errno::fail(e, -1)
}

fn errno() -> Errno {
    Errno(crate::errno::get())
}

/// # Safety
/// C `timer_create` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn timer_create(
    clock: c_int,
    evp: *const SigEvent,
    timer: *mut usize,
) -> c_int {
    let Some(real) = NEXT_TIMER_CREATE.get() else {
        return set_errno(Errno(ENOSYS));
    };
    crate::tree::join::before_program_timer();
    // SAFETY: evp is null or a valid sigevent (C contract).
    if !active() || evp.is_null() || unsafe { (*evp).notify } != SIGEV_THREAD || !coordinated() {
        // SAFETY: forwarded contract.
        return unsafe { real(clock, evp, timer) };
    }
    // SAFETY: as above.
    match create(real, clock, unsafe { &*evp }) {
        Ok(id) => {
            // SAFETY: the caller's timer_t.
            unsafe { *timer = id as usize };
            0
        }
        Err(e) => set_errno(e),
    }
}

/// # Safety
/// C `timer_delete` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn timer_delete(timer: usize) -> c_int {
    let Some(real) = NEXT_TIMER_DELETE.get() else {
        return set_errno(Errno(ENOSYS));
    };
    // SAFETY: forwarded contract.
    let r = unsafe { real(timer) };
    // Kernel timer ids are non-negative ints; glibc's own SIGEV_THREAD handles are negative.
    if r == 0 && active() && (timer as isize) >= 0 {
        forget(timer as i32);
    }
    r
}

/// The coordinator exists or may be started: not before `main` (a library constructor's timer
/// is glibc's, with glibc's unstoppable helper thread: saves will fail while it exists).
fn coordinated() -> bool {
    crate::threads::coordinator::available()
}

fn create(real: Create, clock: c_int, evp: &SigEvent) -> Result<i32, Errno> {
    helper()?;
    // The kernel timer signals the coordinator: it must run.
    crate::threads::coordinator::ensure();
    let attr = notification_attr(evp.attributes);
    // One critical section: the coordinator named in the kernel timer must be this
    // process's (a failure in between would resume the thread with a stale tid), and the
    // record must never be live without its timer id.
    let _c = critical();
    let g = LOCK.lock();
    let index = allocate(
        &g,
        Fields {
            ktimer: -1,
            next_free: 0,
            function: evp.function,
            value: evp.value,
            attr,
        },
    )?;
    let sev = SigEvent {
        value: activate(&g, index),
        signo: SIGTIMER,
        notify: SIGEV_SIGNAL | SIGEV_THREAD_ID,
        function: crate::process::get()
            .coordinator_tid
            .load(Ordering::Acquire) as usize,
        attributes: core::ptr::null(),
        _pad: [0; 4],
    };
    let mut id = 0usize;
    // SAFETY: a valid sigevent and timer_t for glibc's own timer_create (a plain kernel timer:
    // a system call, which never waits).
    if unsafe { real(clock, &sev, &mut id) } != 0 {
        let e = errno();
        release(&g, index);
        return Err(e);
    }
    if let Some(rec) = record(index) {
        update(&g, rec, |f| f.ktimer = id as i32);
    }
    Ok(id as i32)
}

/// The attributes each notification thread gets: the fields of the program's that glibc
/// copies (scheduling, scope, guard, stack), detached.
fn notification_attr(from: *const Attr) -> Attr {
    let mut a = Attr([0; 56]);
    // SAFETY: `a` is initialised by pthread_attr_init before any other call; `from` is null
    // or the program's initialised attribute object (C contract); getters write plain ints.
    unsafe {
        pthread_attr_init(&mut a);
        if !from.is_null() {
            let (mut param, mut policy, mut inherit, mut scope) = (0, 0, 0, 0);
            let (mut guard, mut addr, mut size) = (0usize, 0usize, 0usize);
            pthread_attr_getschedparam(from, &mut param);
            pthread_attr_setschedparam(&mut a, &param);
            pthread_attr_getschedpolicy(from, &mut policy);
            pthread_attr_setschedpolicy(&mut a, policy);
            pthread_attr_getinheritsched(from, &mut inherit);
            pthread_attr_setinheritsched(&mut a, inherit);
            pthread_attr_getscope(from, &mut scope);
            pthread_attr_setscope(&mut a, scope);
            pthread_attr_getguardsize(from, &mut guard);
            pthread_attr_setguardsize(&mut a, guard);
            pthread_attr_getstackaddr(from, &mut addr);
            if addr != 0 {
                pthread_attr_getstack(from, &mut addr, &mut size);
                pthread_attr_setstack(&mut a, addr, size);
            } else {
                pthread_attr_getstacksize(from, &mut size);
                pthread_attr_setstacksize(&mut a, size);
            }
        }
        pthread_attr_setdetachstate(&mut a, PTHREAD_CREATE_DETACHED);
    }
    a
}

/// The record of kernel timer `id` is no longer needed (`timer_delete` succeeded).
/// (A linear search, as glibc's own list of `SIGEV_THREAD` timers; skipped while there is none.)
fn forget(id: i32) {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _c = critical();
    let g = LOCK.lock();
    let live = (0..LEN.load(Ordering::Relaxed)).find(|i| {
        record(*i).is_some_and(|r| {
            r.generation.load(Ordering::Relaxed) & 1 == 1 && fields(&g, r).ktimer == id
        })
    });
    if let Some(i) = live {
        release(&g, i);
    }
}

// ---- the helper thread -------------------------------------------------------------------

/// Makes sure the helper runs (started by the first `SIGEV_THREAD` timer, like glibc's).
fn helper() -> Result<(), Errno> {
    loop {
        match HELPER.load(Ordering::Acquire) {
            0 => {
                if HELPER
                    .compare_exchange(0, STARTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let r = start_helper();
                    HELPER.store(if r.is_ok() { RUNNING } else { 0 }, Ordering::Release);
                    sys::futex_wake(&HELPER, i32::MAX as u32);
                    return r;
                }
            }
            STARTING => sys::futex_wait(&HELPER, STARTING, None),
            _ => return Ok(()),
        }
    }
}

/// The mask of the helper (and, minus `SIGTIMER`, of its notification threads): glibc's,
/// every signal but `SIGSETXID`, without the stop signal, which no thread may block. (glibc
/// drops `SIGTIMER` from it too; the helper blocks that one itself.)
fn helper_mask() -> [u64; 16] {
    let mut set = [!0u64; 16];
    set[0] &= !(sys::sig_bit(SIGSETXID) | sys::sig_bit(STOP_SIGNAL));
    set
}

fn start_helper() -> Result<(), Errno> {
    let mut a = Attr([0; 56]);
    let mask = helper_mask();
    let mut thread = 0usize;
    // SAFETY: `a` is initialised first and destroyed last; the mask outlives the calls.
    let r = unsafe {
        pthread_attr_init(&mut a);
        pthread_attr_setstacksize(&mut a, HELPER_STACK);
        pthread_attr_setdetachstate(&mut a, PTHREAD_CREATE_DETACHED);
        sigmask::pthread_attr_setsigmask_np(
            &mut a as *mut Attr as *mut c_void,
            mask.as_ptr().cast(),
        );
        let r = crate::threads::pthread::pthread_create(
            &mut thread,
            &a,
            helper_main,
            core::ptr::null_mut(),
        );
        pthread_attr_destroy(&mut a);
        r
    };
    if r != 0 {
        return Err(Errno(r));
    }
    Ok(())
}

extern "C" fn helper_main(_: *mut c_void) -> *mut c_void {
    // As glibc's helper: SIGTIMER blocked too (glibc's public pthread_attr_setsigmask_np lets
    // it through); the notification threads inherit this mask and unblock it.
    let _ = sys::sigprocmask(sys::SIG_BLOCK, sys::sig_bit(SIGTIMER));
    loop {
        let seen = DUE_SEQ.load(Ordering::Acquire);
        deliver_due();
        // Returns at once when an expiry came after `seen`; a stop interrupts it (after a
        // resume the marks a save added are delivered here).
        sys::futex_wait(&DUE_SEQ, seen, None);
    }
}

/// Starts the notifications of every due record.
fn deliver_due() {
    let mut top = DUE_HEAD.swap(0, Ordering::AcqRel);
    while top != 0 {
        let i = top - 1;
        let Some(r) = record(i) else { return };
        top = r.next_due.load(Ordering::Acquire);
        r.queued.store(false, Ordering::Release);
        let due = r.due.swap(0, Ordering::AcqRel);
        let generation = (due >> 32) as u32;
        for _ in 0..(due as u32) {
            notify(encode(i, generation));
        }
    }
}

/// The coordinator's part: `info` is a `SIGTIMER` it took off its queue. An expiry of a
/// `SIGEV_THREAD` timer marks the record due and wakes the helper. Lock-free, so it can run
/// while program threads are stopped anywhere.
pub fn expired(info: &sys::SigInfo) {
    if info.code == SI_TIMER {
        mark_due(info.value);
    }
}

/// [`expired`] for a timer whose signal the save found to be lost (see `timers`).
pub fn mark_due(value: usize) {
    let (i, generation) = decode(value);
    let Some(r) = record(i) else { return };
    if r.generation.load(Ordering::Acquire) != generation {
        return; // deleted meanwhile
    }
    // Marks of an older generation (a deleted timer whose record was reused) are replaced;
    // the helper checks the generation again under the lock before it notifies.
    let mut cur = r.due.load(Ordering::Acquire);
    loop {
        let next = if (cur >> 32) as u32 == generation {
            cur + 1
        } else {
            ((generation as u64) << 32) | 1
        };
        match r
            .due
            .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    if !r.queued.swap(true, Ordering::AcqRel) {
        let mut head = DUE_HEAD.load(Ordering::Acquire);
        loop {
            r.next_due.store(head, Ordering::Release);
            match DUE_HEAD.compare_exchange(head, i + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
    }
    DUE_SEQ.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&DUE_SEQ, 1);
}

/// Whether `signo`/`tid` of a kernel timer make it one of these (aimed at `coordinator`).
pub fn is_ours(signo: i32, tid: i32, coordinator: i32) -> bool {
    signo == SIGTIMER && tid == coordinator && coordinator != 0
}

/// What a notification thread needs: a copy, since the timer may be deleted meanwhile.
#[repr(C)]
struct Notice {
    function: usize,
    value: usize,
}

/// Starts the notification thread of an expiry of the timer `value` names, if it still exists.
fn notify(value: usize) {
    let (i, generation) = decode(value);
    let (notice, attr) = {
        let _c = critical();
        let g = LOCK.lock();
        match record(i) {
            Some(r) if r.generation.load(Ordering::Relaxed) == generation => {
                let f = fields(&g, r);
                (
                    Notice {
                        function: f.function,
                        value: f.value,
                    },
                    f.attr,
                )
            }
            _ => return,
        }
    };
    // Persistent, like glibc's (malloc'ed) copy: a failure may come before the thread reads it.
    let arg = persistent_alloc(core::mem::size_of::<Notice>()) as *mut Notice;
    if arg.is_null() {
        return; // as glibc: nothing to be done about it
    }
    // SAFETY: arg is a fresh allocation of a Notice's size (mimalloc aligns to 16).
    unsafe { arg.write(notice) };
    let mut thread = 0usize;
    // SAFETY: attr is an initialised attribute object (a byte copy of the record's, which has
    // no extension); arg is handed to the new thread.
    let r = unsafe {
        crate::threads::pthread::pthread_create(
            &mut thread,
            &attr,
            notification_main as StartFn,
            arg.cast(),
        )
    };
    if r != 0 {
        // SAFETY: the thread was not created; nobody else has arg.
        unsafe { persistent_free(arg.cast()) };
    }
}

extern "C" fn notification_main(arg: *mut c_void) -> *mut c_void {
    // glibc's notification threads run with the helper's mask, SIGTIMER let through.
    let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(SIGTIMER));
    sigmask::believe_stop_blocked(true);
    // SAFETY: `notify` handed this thread a Notice of its own.
    let n = unsafe { arg.cast::<Notice>().read() };
    // SAFETY: as above; nothing else uses arg.
    unsafe { persistent_free(arg) };
    // SAFETY: the program's sigev_notify_function, called with its sigev_value.
    let f: Notify = unsafe { core::mem::transmute::<usize, Notify>(n.function) };
    f(n.value);
    core::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_indices_without_gaps() {
        let mut expect = (0, 0);
        for i in 0..FIRST_CHUNK * 40 {
            assert_eq!(locate(i), expect, "index {i}");
            expect.1 += 1;
            if expect.1 == FIRST_CHUNK << expect.0 {
                expect = (expect.0 + 1, 0);
            }
        }
        // More records than the kernel has timer ids (ints).
        assert!(FIRST_CHUNK * ((1usize << CHUNKS) - 1) > i32::MAX as usize);
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(decode(encode(7, 0x8000_0001)), (7, 0x8000_0001));
    }
}
