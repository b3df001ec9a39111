//! The next definition of an interposed symbol (glibc's), looked up once and cached.

use core::ffi::CStr;
use core::sync::atomic::{AtomicUsize, Ordering};

pub struct Next {
    ptr: AtomicUsize,
    name: &'static CStr,
}

impl Next {
    pub const fn new(name: &'static CStr) -> Next {
        Next {
            ptr: AtomicUsize::new(0),
            name,
        }
    }

    /// The function, as the function-pointer type `T`.
    pub fn get<T: Copy>(&self) -> Option<T> {
        let mut p = self.ptr.load(Ordering::Relaxed);
        if p == 0 {
            p = crate::loader::next::<usize>(self.name).unwrap_or(usize::MAX);
            self.ptr.store(p, Ordering::Relaxed);
        }
        if p == usize::MAX {
            return None;
        }
        assert!(core::mem::size_of::<T>() == core::mem::size_of::<usize>());
        // SAFETY: T is a function pointer type (same size as usize) of the symbol's signature.
        Some(unsafe { core::mem::transmute_copy::<usize, T>(&p) })
    }
}
