//! `zhuque rm DIR`: removes an image that no process owns.

use std::path::Path;

use crate::error::{Failure, Result};
use crate::image_dir::{Condition, ImageDir};

pub fn rm(dir: &Path) -> Result<i32> {
    let image = ImageDir::new(dir)?;
    image.require_exists()?;
    if let Condition::Running { owner, .. } = image.condition()? {
        let by = owner.map_or(String::new(), |pid| format!(" by pid {pid}"));
        return Err(Failure::refused(format!(
            "{} is in use{by} (RUNNING); refusing to remove it",
            image.path().display()
        )));
    }
    image.remove()?;
    Ok(0)
}
