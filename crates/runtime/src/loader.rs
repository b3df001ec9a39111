//! Libraries loaded at run time.
//!
//! ld.so maps a `dlopen`ed library with its own internal `mmap` calls, which the runtime does
//! not see: its data, bss and relocated RELRO pages would be private memory outside the pool.
//! After every `dlopen` the runtime therefore moves the mappings that appeared during the call
//! into the pool, exactly as it does at a fresh start for the libraries loaded before `main`.

/// The next definition of a libc function (glibc's), through a [`crate::loader::Next`] of its
/// own; returns `$fail` from the calling function when there is none.
macro_rules! real {
    ($name:literal, $ty:ty, $fail:expr) => {{
        // SAFETY: the caller names the C function and its type together.
        static NEXT: crate::loader::Next<$ty> = unsafe { crate::loader::Next::new($name) };
        match NEXT.get() {
            Some(f) => f,
            None => return $fail,
        }
    }};
}

use crate::memory::{self, convert};
use crate::procfs;
use crate::runtime::active;
use core::ffi::{c_char, c_int, c_void};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

type DlOpen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlMOpen = unsafe extern "C" fn(isize, *const c_char, c_int) -> *mut c_void;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}

const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

/// The next definition of a function the runtime wraps (glibc's, normally): looked up with
/// `dlsym(RTLD_NEXT)` on first use and cached. The one way the runtime finds what it wraps;
/// declare one per function, `static NEXT_X: Next<XFn> = unsafe { Next::new(c"x") };`, or use
/// the `real!` macro inside the wrapper.
pub struct Next<F> {
    /// The address, 0 before the lookup, `usize::MAX` when there is none.
    ptr: AtomicUsize,
    name: &'static core::ffi::CStr,
    _f: PhantomData<F>,
}

impl<F: Copy> Next<F> {
    /// # Safety
    /// `F` is the function-pointer type of the C function called `name`.
    pub const unsafe fn new(name: &'static core::ffi::CStr) -> Self {
        Next {
            ptr: AtomicUsize::new(0),
            name,
            _f: PhantomData,
        }
    }

    /// The function, `None` when no library after this one defines it.
    pub fn get(&self) -> Option<F> {
        const {
            assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>());
        }
        let mut p = self.ptr.load(Ordering::Relaxed);
        if p == 0 {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
            let f = unsafe { dlsym(RTLD_NEXT, self.name.as_ptr()) };
            p = if f.is_null() { usize::MAX } else { f as usize };
            self.ptr.store(p, Ordering::Relaxed);
        }
        // SAFETY: `new`'s contract: F is the symbol's function-pointer type, as wide as usize.
        (p != usize::MAX).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&p) })
    }
}

/// `dlopen`s under way in this process. Persistent (this library's data is pool memory), so
/// a thread stopped inside ld.so is still counted after the resume: a save while it is
/// non-zero records mappings precisely (see [`unconverted`]).
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

/// Runs `load` and moves what it mapped into the pool.
///
/// A failure can land anywhere inside `load`, with ld.so halfway through mapping or
/// relocating: the list of mappings that existed before is therefore kept in persistent
/// memory (a resumed thread goes on using it), and the save captures the pages ld.so already
/// relocated and write-protected (`save::record_regions`, [`unconverted`]).
fn load_then_convert(load: impl FnOnce() -> *mut c_void) -> *mut c_void {
    if !active() {
        return load();
    }
    let before = {
        let _c = crate::signals::critical();
        memory::fork::ensure_own_pool();
        let before = Ranges::of_mappings();
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        before
    };
    let handle = load();
    let _c = crate::signals::critical();
    let _g = memory::lock::lock();
    let _ = convert::convert_where(|v, anon| {
        convert::needs_pool(v, anon) && !before.contains(v.start, v.end)
    });
    before.free();
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    note_converted();
    handle
}

/// Address ranges in the program's persistent heap (not the runtime's volatile memory, which
/// a resume does not bring back).
struct Ranges {
    ptr: *mut (usize, usize),
    len: usize,
}

impl Ranges {
    /// Every mapping of the process now. Call in a critical section.
    fn of_mappings() -> Ranges {
        let maps = procfs::maps();
        let bytes = maps.len().max(1) * core::mem::size_of::<(usize, usize)>();
        let ptr = crate::allocator::persistent_alloc(bytes) as *mut (usize, usize);
        if ptr.is_null() {
            crate::diag::fatal("out of memory recording the mappings around a dlopen");
        }
        for (i, v) in maps.iter().enumerate() {
            // SAFETY: `ptr` holds `maps.len()` entries (malloc alignment suffices).
            unsafe { ptr.add(i).write((v.start, v.end)) };
        }
        Ranges {
            ptr,
            len: maps.len(),
        }
    }

    fn contains(&self, start: usize, end: usize) -> bool {
        // SAFETY: `ptr` holds `len` initialised entries until `free`.
        let all = unsafe { core::slice::from_raw_parts(self.ptr, self.len) };
        all.contains(&(start, end))
    }

    fn free(self) {
        // SAFETY: allocated by `of_mappings` and not used after this.
        unsafe { crate::allocator::persistent_free(self.ptr.cast()) };
    }
}

/// ld.so's `struct r_debug` (`<link.h>`), found once at a fresh start: the list of loaded
/// objects, which ld.so also updates when glibc loads a library by itself (NSS modules, iconv
/// converters) without calling `dlopen`.
static R_DEBUG: AtomicUsize = AtomicUsize::new(0);
/// [`loaded_signature`] when every loaded object's writable and relocated pages were last
/// known to be in the pool.
static CONVERTED: AtomicU64 = AtomicU64::new(0);

/// Finds ld.so's debugger interface. Call once, at a fresh start.
pub fn find_loaded_objects() {
    // SAFETY: dlsym of a data symbol ld.so exports; the program has one thread.
    let r = unsafe { dlsym(core::ptr::null_mut(), c"_r_debug".as_ptr()) };
    R_DEBUG.store(r as usize, Ordering::Relaxed);
    note_converted();
}

/// Records that every object loaded now has its memory in the pool (after a conversion, or
/// a resume, which puts all captured memory into the pool).
pub fn note_converted() {
    CONVERTED.store(loaded_signature(), Ordering::Relaxed);
}

/// Whether ld.so may have mapped pages the pool does not hold: a `dlopen` is under way, ld.so
/// is adding or removing objects, or the set of loaded objects changed since the last
/// conversion (glibc loaded something by itself). Read by a save, with every thread stopped:
/// relocated pages write-protected after relocation (RELRO) look like untouched file pages in
/// `/proc/self/maps`; only the page flags (`pagemap`, or `smaps`) tell them apart.
pub fn unconverted() -> bool {
    memory::startup::pending()
        || IN_FLIGHT.load(Ordering::SeqCst) != 0
        || loaded_signature() != CONVERTED.load(Ordering::Relaxed)
}

/// `struct r_debug` / `r_debug_extended` and `struct link_map` field offsets (x86-64).
const R_VERSION: usize = 0;
const R_MAP: usize = 8;
const R_STATE: usize = 24;
const R_NEXT: usize = 40;
const RT_CONSISTENT: i32 = 0;
const L_ADDR: usize = 0;
const L_LD: usize = 16;
const L_NEXT: usize = 24;
/// Bounds the walk should the list be torn.
const MAX_OBJECTS: usize = 1 << 16;

/// A digest of the loaded objects (their count and load addresses) in every namespace;
/// `u64::MAX` while ld.so says a change is in progress, 0 without ld.so's interface.
fn loaded_signature() -> u64 {
    let mut r = R_DEBUG.load(Ordering::Relaxed);
    let mut sig: u64 = 0;
    let mut namespaces = 0;
    while r != 0 && r.is_multiple_of(8) && namespaces < 256 {
        // SAFETY: `r` is ld.so's r_debug (or an r_next it links), which lives as long as the
        // process; fields are read as plain words, as a debugger does.
        let (version, state, mut l) = unsafe {
            (
                read::<i32>(r + R_VERSION),
                read::<i32>(r + R_STATE),
                read::<usize>(r + R_MAP),
            )
        };
        if state != RT_CONSISTENT {
            return u64::MAX;
        }
        let mut n = 0;
        while l != 0 && l.is_multiple_of(8) && n < MAX_OBJECTS {
            // SAFETY: a link_map of the list, as above.
            let (addr, ld, next) = unsafe {
                (
                    read::<usize>(l + L_ADDR),
                    read::<usize>(l + L_LD),
                    read::<usize>(l + L_NEXT),
                )
            };
            sig = sig
                .rotate_left(7)
                .wrapping_add((addr ^ ld.rotate_left(32)) as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            l = next;
            n += 1;
        }
        sig = sig.wrapping_add(n as u64);
        namespaces += 1;
        // SAFETY: r_next exists in r_debug_extended (r_version >= 2).
        r = if version >= 2 {
            unsafe { read::<usize>(r + R_NEXT) }
        } else {
            0
        };
    }
    sig
}

/// # Safety
/// `addr` is a readable, aligned `T`.
unsafe fn read<T: Copy>(addr: usize) -> T {
    // SAFETY: forwarded contract; volatile because other threads (stopped, or ld.so under its
    // own lock) write these words.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// # Safety
/// C `dlopen` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let real = real!(c"dlopen", DlOpen, core::ptr::null_mut());
    // SAFETY: forwarded contract.
    load_then_convert(|| unsafe { real(file, mode) })
}

/// # Safety
/// C `dlmopen` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlmopen(lmid: isize, file: *const c_char, mode: c_int) -> *mut c_void {
    let real = real!(c"dlmopen", DlMOpen, core::ptr::null_mut());
    // SAFETY: forwarded contract.
    load_then_convert(|| unsafe { real(lmid, file, mode) })
}
