//! What a launch came to, from the program's status and `meta` before and after
//! (docs/internals.md, step 5).

use zhuque_image::{EXIT_REFUSED, Meta, State};

/// How a launch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped at a failure: the image is SAVED with a new generation. Exit 75, keep it.
    Saved { generation: u64 },
    /// The runtime refused to start (exit 125, `meta` untouched): leave the image alone.
    Refused,
    /// A failure came and the save could not be made (exit 125 with `meta` still RUNNING:
    /// the runtime said why). The state since the last save point is gone; the image stays,
    /// refusing to resume, until `--fresh` discards it.
    Lost,
    /// The program finished (exit or fatal signal): its status is the exit status.
    Finished,
}

/// Classifies a launch.
///
/// A SAVED `meta` with a higher generation counts as a save whatever the status: the runtime
/// writes it last before `exit_group(75)`, so a different status only means the process was
/// killed after its state was safe, and deleting that image as "finished" would lose it.
pub fn classify(status: i32, before: Option<&[u8]>, after: Option<&[u8]>) -> Outcome {
    let generation_before = before.and_then(decode).map(|m| m.generation);
    if let Some(meta) = after.and_then(decode) {
        let newer = generation_before.is_none_or(|g| meta.generation > g);
        if meta.state() == State::Saved && newer {
            return Outcome::Saved {
                generation: meta.generation,
            };
        }
    }
    if status == EXIT_REFUSED && before == after {
        return Outcome::Refused;
    }
    // A program that exits by itself is marked FINISHED first; RUNNING with 125 is the
    // runtime giving up on a save.
    if status == EXIT_REFUSED
        && after
            .and_then(decode)
            .is_some_and(|m| m.state() == State::Running)
    {
        return Outcome::Lost;
    }
    Outcome::Finished
}

fn decode(bytes: &[u8]) -> Option<Meta> {
    zhuque_image::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: State, generation: u64) -> Vec<u8> {
        zhuque_image::encode(&Meta {
            state: Some(state),
            generation,
            ..Meta::default()
        })
    }

    #[test]
    fn a_new_save_is_saved() {
        let before = meta(State::Saved, 1);
        let after = meta(State::Saved, 2);
        assert_eq!(
            classify(75, Some(&before), Some(&after)),
            Outcome::Saved { generation: 2 }
        );
        assert_eq!(
            classify(75, None, Some(&meta(State::Saved, 1))),
            Outcome::Saved { generation: 1 }
        );
        // Killed after the save was written: the image is still good.
        assert_eq!(
            classify(137, Some(&before), Some(&after)),
            Outcome::Saved { generation: 2 }
        );
    }

    #[test]
    fn an_old_save_is_not_a_save() {
        let saved = meta(State::Saved, 3);
        assert_eq!(classify(75, Some(&saved), Some(&saved)), Outcome::Finished);
        assert_eq!(classify(0, Some(&saved), Some(&saved)), Outcome::Finished);
    }

    #[test]
    fn refusal_needs_status_125_and_untouched_meta() {
        let saved = meta(State::Saved, 3);
        assert_eq!(classify(125, Some(&saved), Some(&saved)), Outcome::Refused);
        assert_eq!(classify(125, None, None), Outcome::Refused);
        let finished = meta(State::Finished, 3);
        assert_eq!(
            classify(125, Some(&saved), Some(&finished)),
            Outcome::Finished
        );
        assert_eq!(classify(125, None, Some(&finished)), Outcome::Finished);
    }

    #[test]
    fn a_failed_save_is_lost() {
        let saved = meta(State::Saved, 3);
        let running = meta(State::Running, 3);
        assert_eq!(classify(125, Some(&saved), Some(&running)), Outcome::Lost);
        assert_eq!(classify(125, None, Some(&running)), Outcome::Lost);
        // The program's own status 125 after it finished.
        assert_eq!(
            classify(125, None, Some(&meta(State::Finished, 0))),
            Outcome::Finished
        );
        // Killed while running: finished (the contract's 128+N).
        assert_eq!(
            classify(137, Some(&saved), Some(&running)),
            Outcome::Finished
        );
    }

    #[test]
    fn no_meta_after_exit_is_finished() {
        assert_eq!(classify(0, None, None), Outcome::Finished);
        assert_eq!(classify(3, None, None), Outcome::Finished);
        assert_eq!(classify(75, None, None), Outcome::Finished);
        assert_eq!(classify(143, None, Some(b"junk")), Outcome::Finished);
    }
}
