//! Threads: the coordinator, stopping threads at a failure, and moving `main` onto a
//! persistent stack. (Recreating threads at a resume lives in `resume::threads`.)

pub mod arch;
pub mod coordinator;
pub mod glibc;
pub mod pthread;
pub mod rseq;
pub mod sigmask;
pub mod sleep;
pub mod slots;
pub mod start;
pub mod stop;
pub mod waits;
