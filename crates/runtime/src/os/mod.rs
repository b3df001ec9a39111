//! OS state: what the kernel holds for the process outside its memory, saved by the
//! coordinator at a failure and recreated by a resume before any program thread runs.
//!
//! Each kind of kernel object has its own module with one save/restore pair. The records are
//! part of the image format (`zhuque_image`), so `zhuque inspect` can show them.

mod process_state;

use zhuque_image::Meta;

/// Records the OS state into `meta` (coordinator, every program thread stopped).
pub fn save(meta: &mut Meta) {
    process_state::save(meta);
}

/// Recreates the OS state from `meta` (resume, after memory is back, before threads run).
pub fn restore(meta: &Meta) {
    process_state::restore(meta);
}
