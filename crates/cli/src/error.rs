//! The one way a command fails: a single `zhuque:` line on stderr and an exit status.
//!
//! Commands return `Result<i32, Failure>`; only `main` prints and exits, so no code path can
//! print a second line or forget the status the contract requires.

use std::fmt;
use std::path::Path;

use zhuque_image::EXIT_REFUSED;

/// Exit status of a command-line usage error (the convention of most Unix tools).
pub const EXIT_USAGE: i32 = 2;

/// Why a command stopped, and with which exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The message, without the `zhuque: ` prefix and without a trailing newline.
    pub message: String,
    pub status: i32,
    /// A usage error: a pointer to the help follows the message.
    pub show_usage: bool,
    /// The command whose usage was wrong (its own `--help` is pointed to).
    pub command: Option<&'static str>,
}

impl Failure {
    /// zhuque refused or failed (exit 125): the user's image is left untouched.
    pub fn refused(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: EXIT_REFUSED,
            show_usage: false,
            command: None,
        }
    }

    /// The command line is malformed (exit 2, usage text follows).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: EXIT_USAGE,
            show_usage: true,
            command: None,
        }
    }

    /// A usage error of `command`.
    pub fn of_command(mut self, command: &'static str) -> Self {
        self.command = Some(command);
        self
    }

    /// The line after a usage error: where the help is.
    pub fn usage_hint(&self) -> String {
        match self.command {
            Some(c) => format!("Try 'zhuque {c} --help' for its usage."),
            None => "Try 'zhuque --help' for the usage.".to_string(),
        }
    }

    /// An I/O error on `path`, phrased for a user.
    pub fn io(what: &str, path: &Path, err: &std::io::Error) -> Self {
        Failure::refused(format!("{what} {}: {}", path.display(), plain_io(err)))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zhuque: {}", self.message)
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Writes `line` and a newline to stderr in one `write`: lines of several zhuque processes
/// sharing one stderr (`zhuque resume --all`, a tree's init and its launcher) never
/// interleave mid-line, as `eprintln!`'s separate writes can.
pub fn say_line(mut line: String) {
    use std::io::Write;
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `eprintln!` in one write ([`say_line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::error::say_line(format!($($arg)*))
    };
}

/// An `io::Error` without Rust's ` (os error N)` suffix, which means nothing to users.
pub fn plain_io(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_lose_the_os_error_suffix() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(plain_io(&e), "No such file or directory");
        let f = Failure::io("cannot read", Path::new("/x"), &e);
        assert_eq!(
            f.to_string(),
            "zhuque: cannot read /x: No such file or directory"
        );
        assert_eq!(f.status, 125);
    }
}
