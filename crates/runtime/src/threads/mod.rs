//! Threads: the coordinator, stopping threads at a failure, and moving `main` onto a
//! persistent stack. (Recreating threads at a resume lives in `resume::threads`.)

pub mod arch;
pub mod coordinator;
pub mod glibc;
pub mod start;
pub mod stop;
