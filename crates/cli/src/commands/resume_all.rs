//! `zhuque resume --all`: after a power event, every SAVED image in `$ZHUQUE_DIR` resumed at
//! once, each by a `zhuque resume DIR` of its own (as if typed), all waited for.
//!
//! The launches share this command's standard streams; each says what it does in its own
//! `zhuque:` lines. Images elsewhere (`--image` outside the root) are resumed one by one.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use zhuque_image::{EXIT_REFUSED, EXIT_SAVED};

use crate::args::ResumeArgs;
use crate::error::{Failure, Result};
use crate::image_dir::Condition;
use crate::paths;

pub fn resume_all(args: &ResumeArgs) -> Result<i32> {
    let root = paths::images_root();
    if root == paths::default_images_root() && root.exists() {
        crate::image_dir::require_private(&root)?;
    }
    let saved: Vec<_> = super::ls::gather(&root)?
        .into_iter()
        .filter(|r| matches!(r.condition, Condition::Saved(_)))
        .map(|r| r.image.path().to_path_buf())
        .collect();
    if saved.is_empty() {
        say!(
            "zhuque: no saved images in {}: nothing to resume",
            root.display()
        );
        return Ok(0);
    }
    let me = std::env::current_exe()
        .map_err(|e| Failure::refused(format!("cannot find the zhuque executable: {e}")))?;
    let mut launches = Vec::new();
    for dir in &saved {
        let mut cmd = Command::new(&me);
        cmd.arg("resume");
        if args.keep {
            cmd.arg("--keep");
        }
        if let Some(s) = args.fail_after {
            cmd.arg("--fail-after").arg(format!("{s}"));
        }
        cmd.arg(dir);
        let child = cmd
            .spawn()
            .map_err(|e| Failure::refused(format!("cannot start zhuque resume: {e}")))?;
        launches.push((dir, child));
    }
    let mut statuses = Vec::new();
    for (dir, mut child) in launches {
        let status = child
            .wait()
            .map_err(|e| Failure::refused(format!("cannot wait for zhuque resume: {e}")))?;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        if code != 0 {
            say!("zhuque: {}: ended with status {code}", dir.display());
        }
        statuses.push(code);
    }
    Ok(overall(&statuses))
}

/// One status for all: 0 when every launch finished with 0; else a refusal (125) first, then
/// a new save (75), then the first program status that was not 0.
fn overall(statuses: &[i32]) -> i32 {
    if statuses.contains(&EXIT_REFUSED) {
        EXIT_REFUSED
    } else if statuses.contains(&EXIT_SAVED) {
        EXIT_SAVED
    } else {
        statuses.iter().copied().find(|s| *s != 0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_status_puts_refusals_then_saves_first() {
        assert_eq!(overall(&[0, 0]), 0);
        assert_eq!(overall(&[0, 3, 75]), 75);
        assert_eq!(overall(&[75, 125, 3]), 125);
        assert_eq!(overall(&[0, 3, 4]), 3);
    }
}
