//! One module per command; each returns the process's exit status or a [`Failure`].
//!
//! [`Failure`]: crate::error::Failure

pub mod completions;
pub mod demo;
pub mod fail;
pub mod inspect;
pub mod ls;
pub mod resume_all;
pub mod rm;
pub mod run;
