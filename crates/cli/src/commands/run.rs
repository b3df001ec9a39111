//! `zhuque run` and `zhuque resume` (docs/internals.md, "zhuque run / zhuque resume").
//!
//! The CLI checks the image before launching only to give good messages and to pick the
//! command to execute; the runtime makes the same checks again and has the last word.

use std::env;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use zhuque_image::{EXIT_REFUSED, EXIT_SAVED, Meta, Program, State};

use crate::args::{ResumeArgs, RunArgs};
use crate::error::{Failure, Result};
use crate::image_dir::{Condition, ImageDir};
use crate::launch::exec_plan::{self, ExecPlan, display_argv};
use crate::launch::outcome::{Outcome, classify};
use crate::launch::tree::{self, End, TreeLaunch, TreeStart, saved};
use crate::paths;

/// `zhuque run [--image DIR] [--fresh] [--keep] [--fail-after SECS] [--] PROG [ARGS...]`.
pub fn run(args: RunArgs) -> Result<i32> {
    let runtime = paths::find_runtime()?;
    let found = exec_plan::find_program(&args.program, env::var_os("PATH").as_deref())?;
    let exe = exec_plan::canonical(&found)?;
    refuse_static(&exe)?;
    let argv: Vec<Vec<u8>> = std::iter::once(&args.program)
        .chain(&args.args)
        .map(|a| a.as_bytes().to_vec())
        .collect();

    let root = paths::absolute(&paths::images_root())?;
    let mut image = match &args.image {
        Some(dir) => ImageDir::new(dir)?,
        None => {
            let cwd =
                env::current_dir().map_err(|e| Failure::io("cannot read", Path::new("."), &e))?;
            ImageDir::new(&paths::default_image(&root, &argv, &cwd)?)?
        }
    };
    // An image directly under the images root: the root must exist, and be private if it is
    // the default one (before anything in it is looked at).
    let in_root = (image.path().parent() == Some(root.as_path())).then_some(root.as_path());
    if let Some(root) = in_root {
        crate::image_dir::prepare_root(root)?;
    }
    if args.image.is_none()
        && let Some(legacy) = legacy_image_of(&root, &image, &args.program, &exe, &argv)
    {
        image = legacy;
    }

    // Held until the launch ends: `zhuque fail DIR` reaches this launch from now on.
    let _resuming = image.mark_resuming();
    let mut condition = image.condition()?;
    refuse_running(&image, &condition)?;
    if args.fresh || matches!(condition, Condition::Finished(_)) {
        image.discard_state()?;
        condition = Condition::Empty;
    }
    let canonical_dir = image.create(in_root)?;
    if args.image.is_none() && matches!(condition, Condition::Empty) {
        note_image_in_old_root(&args.program);
    }

    match condition {
        Condition::Empty => {
            let mut plan = ExecPlan::fresh(
                &exe,
                argv,
                &user_environment(),
                &canonical_dir,
                &runtime,
                args.fail_after,
            );
            plan.filename = exec_plan::filename_for(&exe, &found);
            if tree::enabled() {
                let record = launch_meta(&plan);
                let start = TreeStart::Fresh { root: plan, record };
                execute_tree(&image, &canonical_dir, start, args.keep)
            } else {
                execute(&image, &plan, args.keep)
            }
        }
        Condition::Saved(meta)
            if exec_plan::same_program(&meta, exe.as_os_str().as_bytes(), &argv) =>
        {
            resume_saved(&image, &canonical_dir, meta, args.fail_after, args.keep)
        }
        Condition::Saved(meta) => Err(different_command(&image, &meta)),
        other => Err(unusable(&image, &other)),
    }
}

/// Releases before per-command names kept a program's image at `<root>/<basename>`: when
/// this command's own image does not exist yet and that one holds this very command, saved,
/// it is the one to resume.
fn legacy_image_of(
    root: &Path,
    named: &ImageDir,
    program: &std::ffi::OsStr,
    exe: &Path,
    argv: &[Vec<u8>],
) -> Option<ImageDir> {
    if named.path().exists() {
        return None;
    }
    let legacy = ImageDir::new(&paths::legacy_image(root, program).ok()?).ok()?;
    match legacy.condition() {
        Ok(Condition::Saved(meta))
            if exec_plan::same_program(&meta, exe.as_os_str().as_bytes(), argv) =>
        {
            Some(legacy)
        }
        _ => None,
    }
}

/// Releases before the private per-user root kept images in the shared `/dev/shm/zhuque`: a
/// SAVED one of this command there is not resumed by this fresh start (it was written where
/// anyone could have planted it), but the user is told it exists.
fn note_image_in_old_root(program: &std::ffi::OsStr) {
    let old = Path::new(paths::OLD_SHARED_ROOT);
    let Ok(dir) = paths::legacy_image(old, program) else {
        return;
    };
    let Ok(image) = ImageDir::new(&dir) else {
        return;
    };
    if matches!(image.condition(), Ok(Condition::Saved(_))) {
        say!(
            "zhuque: note: a SAVED image of {} is in the old shared root {}; this run starts \
             fresh in {} (resume the old one with `zhuque resume {}` if you trust it)",
            program.to_string_lossy(),
            old.display(),
            paths::images_root().display(),
            dir.display()
        );
    }
}

/// A statically linked program never loads the runtime: it could run, but not crash-resistant.
fn refuse_static(exe: &Path) -> Result<()> {
    let elf = std::fs::read(exe).unwrap_or_default();
    if crate::launch::tree::procs::elf_is_static(&elf) {
        return Err(Failure::refused(format!(
            "{} is statically linked: zhuque works through a preloaded library, which a static \
             program never loads, so it cannot be made crash-resistant",
            exe.display()
        )));
    }
    Ok(())
}

/// `zhuque resume [--keep] [--fail-after SECS] DIR`.
pub fn resume(args: ResumeArgs) -> Result<i32> {
    if args.all {
        return super::resume_all::resume_all(&args);
    }
    let image = ImageDir::new(&args.dir)?;
    // Held until the launch ends: `zhuque fail DIR` reaches this launch from now on.
    let _resuming = image.mark_resuming();
    image.require_exists()?;
    let condition = image.condition()?;
    refuse_running(&image, &condition)?;
    let Condition::Saved(meta) = condition else {
        return Err(unusable(&image, &condition));
    };
    let canonical_dir = image
        .path()
        .canonicalize()
        .map_err(|e| Failure::io("cannot resolve", image.path(), &e))?;
    resume_saved(&image, &canonical_dir, meta, args.fail_after, args.keep)
}

/// Resumes a SAVED image: one program, or a process tree (tree mode).
fn resume_saved(
    image: &ImageDir,
    canonical_dir: &Path,
    meta: Meta,
    fail_after: Option<f64>,
    keep: bool,
) -> Result<i32> {
    image.require_own()?;
    if !saved::is_tree(&meta) {
        let plan = resume_plan(image, canonical_dir, &meta, fail_after)?;
        return execute(image, &plan, keep);
    }
    check_resumable(image, canonical_dir, &meta)?;
    let (tree, starts) = saved::load(image.path(), &meta, fail_after)?;
    let start = TreeStart::Resume {
        record: meta,
        tree,
        starts,
    };
    execute_tree(image, canonical_dir, start, keep)
}

/// The caller's environment as `NAME=value` byte strings, in order.
fn user_environment() -> Vec<Vec<u8>> {
    env::vars_os()
        .map(|(k, v)| {
            let mut e = k.into_vec();
            e.push(b'=');
            e.extend(v.into_vec());
            e
        })
        .collect()
}

/// Builds the resume of one program.
fn resume_plan(
    image: &ImageDir,
    canonical_dir: &Path,
    meta: &Meta,
    fail_after: Option<f64>,
) -> Result<ExecPlan> {
    check_resumable(image, canonical_dir, meta)?;
    announce_resume(image, meta);
    Ok(ExecPlan::resume(meta, fail_after))
}

/// What only the CLI can check well before a resume: the image has not moved, and the
/// runtime it was started with still exists.
fn check_resumable(image: &ImageDir, canonical_dir: &Path, meta: &Meta) -> Result<()> {
    let saved_dir = exec_plan::saved_image_dir(meta).unwrap_or_default();
    if saved_dir != canonical_dir.as_os_str().as_bytes() {
        return Err(Failure::refused(format!(
            "{} was saved as {}: an image cannot be moved (its path is part of the \
             program's memory layout)",
            image.path().display(),
            String::from_utf8_lossy(saved_dir)
        )));
    }
    check_saved_runtime(&meta.program)
}

/// The one line saying a launch resumes.
fn announce_resume(image: &ImageDir, meta: &Meta) {
    say!("{}", resume_notice(image.path(), meta));
}

/// The line saying a launch resumes `meta`. A tree's init prints it once every process is
/// back (just before they continue), so that a resume refused on the way says so in one
/// line, not after a "resuming" line.
pub fn resume_notice(dir: &Path, meta: &Meta) -> String {
    format!(
        "zhuque: resuming {} from {} (generation {}, {} failure{} so far)",
        display_argv(&meta.program.argv),
        dir.display(),
        meta.generation,
        meta.failures,
        if meta.failures == 1 { "" } else { "s" }
    )
}

/// The saved `LD_PRELOAD` must still name the runtime: it cannot be changed on resume.
fn check_saved_runtime(program: &Program) -> Result<()> {
    let preload = zhuque_image::env_get(&program.env, "LD_PRELOAD").unwrap_or_default();
    let runtime = preload.split(|b| *b == b':').next().unwrap_or_default();
    let path = Path::new(std::ffi::OsStr::from_bytes(runtime));
    if runtime.is_empty() || !path.is_file() {
        return Err(Failure::refused(format!(
            "the runtime this image was started with ({}) is missing; it must be at the \
             same path to resume",
            path.display()
        )));
    }
    Ok(())
}

fn refuse_running(image: &ImageDir, condition: &Condition) -> Result<()> {
    let Condition::Running { owner, .. } = condition else {
        return Ok(());
    };
    let by = owner.map_or(String::new(), |pid| format!(" by pid {pid}"));
    Err(Failure::refused(format!(
        "{} is in use{by} (RUNNING: this command runs already); run another copy with \
         --image DIR, or save the running one with `zhuque fail {}`",
        image.path().display(),
        owner.map_or(image.path().display().to_string(), |p| p.to_string())
    )))
}

fn different_command(image: &ImageDir, meta: &Meta) -> Failure {
    Failure::refused(format!(
        "{} holds a saved image of a different command ({}); use --fresh to discard it or \
         --image to choose another directory",
        image.path().display(),
        display_argv(&meta.program.argv)
    ))
}

/// The message for an image that cannot be launched in its condition.
fn unusable(image: &ImageDir, condition: &Condition) -> Failure {
    let dir = image.path().display();
    Failure::refused(match condition {
        Condition::Orphaned(_) => format!(
            "{dir}: its program died without saving, or its last save failed (state \
             RUNNING, unlocked); use --fresh to discard it"
        ),
        Condition::Damaged(e) => format!("{dir}/meta: {e}; use --fresh to discard it"),
        Condition::Finished(_) => format!("{dir}: the program has finished; nothing to resume"),
        Condition::Empty => format!("{dir} holds no saved image"),
        Condition::Running { .. } | Condition::Saved(_) => format!("{dir} cannot be launched"),
    })
}

/// Launches `plan` and maps the outcome to the exit status (docs/internals.md, step 5).
fn execute(image: &ImageDir, plan: &ExecPlan, keep: bool) -> Result<i32> {
    let before = image.meta_bytes()?;
    let status = crate::launch::launch(plan).inspect_err(|_| image.remove_if_empty())?;
    conclude(image, before, status, keep, || launch_meta(plan))
}

/// Launches a process tree (docs/process-trees.md). Its record is the tree's `meta`, so its
/// outcome is mapped as a solo launch's; but when the root ends while other processes run
/// on, the root's status is returned at once and the image is left to the init, which
/// removes it (or, with `--keep`, leaves it FINISHED) when the last process ends.
fn execute_tree(
    image: &ImageDir,
    canonical_dir: &Path,
    start: TreeStart,
    keep: bool,
) -> Result<i32> {
    let fallback = match &start {
        TreeStart::Fresh { record, .. } | TreeStart::Resume { record, .. } => record.clone(),
    };
    let launch = TreeLaunch {
        dir: canonical_dir.to_path_buf(),
        keep,
        start,
    };
    let before = image.meta_bytes()?;
    match tree::launch(&launch).inspect_err(|_| image.remove_if_empty())? {
        End::Detached { status, remaining } => {
            if remaining > 0 {
                say!("{}", detached_notice(remaining, image.path()));
            }
            Ok(status)
        }
        End::Exited(status) => conclude(image, before, status, keep, || fallback),
    }
}

/// The line at exit 75: the image is saved, and how to continue.
fn saved_notice(dir: &Path, generation: u64) -> String {
    let dir = dir.display();
    format!(
        "zhuque: saved {dir} (generation {generation}); run the same command again, or \
         `zhuque resume {dir}`, to continue"
    )
}

/// The one line saying processes outlive the root.
fn detached_notice(remaining: u32, dir: &Path) -> String {
    let (s, verb) = if remaining == 1 {
        ("", "keeps")
    } else {
        ("es", "keep")
    };
    format!(
        "zhuque: {remaining} process{s} {verb} running crash-resistant under {}; the image \
         is removed when the last one ends",
        dir.display()
    )
}

/// Maps a launch's status and `meta` before and after to the exit status, and removes or
/// keeps the image (docs/internals.md, step 5).
fn conclude(
    image: &ImageDir,
    before: Option<Vec<u8>>,
    status: i32,
    keep: bool,
    launch_meta: impl FnOnce() -> Meta,
) -> Result<i32> {
    let after = image.meta_bytes()?;
    match classify(status, before.as_deref(), after.as_deref()) {
        Outcome::Saved { generation } => {
            say!("{}", saved_notice(image.path(), generation));
            Ok(EXIT_SAVED)
        }
        // The runtime said why on stderr; the image stays to tell the next launch.
        Outcome::Lost => Ok(EXIT_REFUSED),
        Outcome::Refused => {
            // A refused fresh start leaves no empty directory behind.
            image.remove_if_empty();
            Ok(EXIT_REFUSED)
        }
        Outcome::Finished => {
            let cleanup = if keep {
                keep_finished(image, after.as_deref(), launch_meta, status)
            } else {
                image.remove()
            };
            // The program's status matters more than a cleanup problem: report, don't replace.
            if let Err(e) = cleanup {
                say!("{e}");
            }
            Ok(status)
        }
    }
}

/// `--keep`: marks the image FINISHED with the program's status. A program that never wrote
/// `meta` (runtime inert or absent) gets one describing its launch, so `inspect` can tell.
fn keep_finished(
    image: &ImageDir,
    after: Option<&[u8]>,
    launch_meta: impl FnOnce() -> Meta,
    status: i32,
) -> Result<()> {
    let mut meta = after
        .and_then(|b| zhuque_image::decode(b).ok())
        .unwrap_or_else(launch_meta);
    meta.state = Some(State::Finished);
    meta.exit_status = Some(status);
    image.write_meta(&meta)
}

/// A `meta` describing a launch of `plan`: what `--keep` leaves when nothing else was
/// written, and the start of a tree's record (its `program` is the command `zhuque run`
/// started, with the cwd and stack limit it ran with).
fn launch_meta(plan: &ExecPlan) -> Meta {
    let cwd = plan
        .cwd
        .clone()
        .or_else(|| {
            env::current_dir()
                .ok()
                .map(|d| d.into_os_string().into_vec())
        })
        .unwrap_or_default();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Stack);
    Meta {
        created_unix_ns: now_ns(),
        program: Program {
            exe: plan.exe.clone(),
            argv: plan.argv.clone(),
            env: plan.env.clone(),
            cwd,
            rlimit_stack: (
                limit.current.unwrap_or(u64::MAX),
                limit.maximum.unwrap_or(u64::MAX),
            ),
        },
        ..Meta::default()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
