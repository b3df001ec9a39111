//! Process-wide attributes: the working directory and the file mode creation mask.

use crate::image_io;
use zhuque_image::os::TAG_PROCESS as TAG;
use zhuque_image::{Meta, Reader, Writer};

pub fn save(meta: &mut Meta) {
    let cwd = rustix::process::getcwd(Vec::new())
        .map(|c| c.into_bytes())
        .unwrap_or_default();
    // umask can only be read by setting it; set it back at once (every program thread is
    // stopped, so nobody observes the moment in between).
    let mask = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(mask);
    let mut w = Writer::new();
    w.bytes(&cwd);
    w.u32(mask.bits());
    meta.set_section(TAG, w.into_bytes());
}

pub fn restore(meta: &Meta) {
    let Some(bytes) = meta.section(TAG) else {
        return;
    };
    let mut r = Reader::new(bytes);
    let (Ok(cwd), Ok(mask)) = (r.bytes(), r.u32()) else {
        return;
    };
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    if image_io::chdir(&cwd).is_err() {
        crate::diag::Line::new()
            .str("warning: the saved working directory ")
            .push(&cwd)
            .str(" is gone; staying in the launch directory")
            .emit();
    }
}
