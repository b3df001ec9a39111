//! Threads: the coordinator, stopping threads at a failure, and moving `main` onto a
//! persistent stack. (Recreating threads at a resume lives in `resume::threads`.)

/// The next definition of a libc function (glibc's), looked up once and cached; returns
/// `$fail` from the calling function when there is none.
macro_rules! real {
    ($name:literal, $ty:ty, $fail:expr) => {{
        static CACHE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let mut f = CACHE.load(core::sync::atomic::Ordering::Relaxed);
        if f == 0 {
            match crate::loader::next::<usize>($name) {
                Some(p) => {
                    CACHE.store(p, core::sync::atomic::Ordering::Relaxed);
                    f = p;
                }
                None => return $fail,
            }
        }
        // SAFETY: dlsym found a function of that name; its C type is `$ty`.
        unsafe { core::mem::transmute::<usize, $ty>(f) }
    }};
}

pub mod arch;
pub mod coordinator;
pub mod glibc;
pub mod pthread;
pub mod sigmask;
pub mod sleep;
pub mod slots;
pub mod start;
pub mod stop;
pub mod waits;
