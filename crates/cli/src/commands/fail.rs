//! `zhuque fail TARGET`: emulates a power failure and returns once the image is saved.
//!
//! The failure itself is the runtime's: `SIGPWR` to the program makes it save and exit 75.
//! This command only finds the program and its image and watches `meta` for the new save.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use zhuque_image::{ENV_CRASH_RESISTANT, State};

use crate::args::FailTarget;
use crate::error::{Failure, Result};
use crate::image_dir::{ImageDir, Lock};
use crate::procfs;

/// How long a save may take before `fail` gives up.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How often `meta` is polled.
const POLL: Duration = Duration::from_millis(5);

pub fn fail(target: FailTarget) -> Result<i32> {
    let (pid, image) = match target {
        FailTarget::All => return fail_all(),
        FailTarget::Pid(pid) => {
            let program = find_program(pid)?;
            (program, image_of(program)?)
        }
        FailTarget::Dir(dir) => {
            let image = ImageDir::new(&dir)?;
            image.require_exists()?;
            (owner_of(&image)?, image)
        }
    };
    let generation = save(pid, &image)?;
    println!("saved {} (generation {generation})", image.path().display());
    Ok(0)
}

/// `zhuque fail --all`: a power event. Every image that is running and that the caller may
/// reach (its own programs; root: everyone's) is saved at once, in parallel; returns when
/// all are saved. One line per image, on stdout when saved, as a `zhuque:` line when not.
fn fail_all() -> Result<i32> {
    let images = running_images();
    if images.is_empty() {
        say!("zhuque: no crash-resistant program is running: nothing to save");
        return Ok(0);
    }
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let saves: Vec<_> = images
            .iter()
            .map(|image| scope.spawn(move || save(owner_of(image)?, image)))
            .collect();
        saves
            .into_iter()
            .map(|t| t.join().expect("panics abort"))
            .collect()
    });
    let mut all_saved = true;
    for (image, result) in images.iter().zip(results) {
        match result {
            Ok(g) => println!("saved {} (generation {g})", image.path().display()),
            Err(f) => {
                say!("{f}");
                all_saved = false;
            }
        }
    }
    Ok(if all_saved {
        0
    } else {
        zhuque_image::EXIT_REFUSED
    })
}

/// The images of every running crash-resistant program this caller can see: the image
/// directories held locked (the owner of a running image, a program or a tree's init, holds
/// its `flock`), wherever they are. A tree member's own directory (`DIR/p/<pid>`) is the
/// tree's business. Without access to a process's fds (another user's, for anyone but
/// root) its images are not found.
fn running_images() -> Vec<ImageDir> {
    let Some(locks) = procfs::read_locks() else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = locks.iter().map(|l| l.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for pid in pids {
        for dir in procfs::locked_dirs_of(pid, &locks) {
            if !dirs.contains(&dir)
                && dir.join(zhuque_image::META_FILE).is_file()
                && !tree_member(&dir)
            {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    dirs.iter()
        .filter_map(|d| ImageDir::new(d).ok())
        .filter(|i| {
            matches!(
                i.condition(),
                Ok(crate::image_dir::Condition::Running { .. })
            )
        })
        .collect()
}

/// `DIR/p/<pid>` of a tree image `DIR`.
fn tree_member(dir: &std::path::Path) -> bool {
    let Some(parent) = dir.parent() else {
        return false;
    };
    parent.file_name() == Some(std::ffi::OsStr::new(zhuque_image::tree::PROCESSES_DIR))
        && parent
            .parent()
            .is_some_and(|tree| tree.join(zhuque_image::META_FILE).is_file())
}

/// Makes the program `pid` (or the tree's init) save `image`; returns the new generation.
fn save(pid: i32, image: &ImageDir) -> Result<u64> {
    let generation_before = image.meta().map(|m| m.generation);
    // SAFETY: plain system call.
    if unsafe { libc::kill(pid, libc::SIGPWR) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::refused(format!(
            "cannot signal pid {pid}: {}",
            crate::error::plain_io(&e)
        )));
    }
    wait_for_save(image, pid, generation_before)
}

/// The program under `pid`: `pid` itself unless it runs the zhuque executable (a `zhuque run`
/// or a zhuque init), in which case the first descendant that does not.
fn find_program(pid: i32) -> Result<i32> {
    if !procfs::is_alive(pid) {
        return Err(Failure::refused(format!("no process with pid {pid}")));
    }
    let zhuque = std::env::current_exe()
        .and_then(fs::metadata)
        .map_err(|e| Failure::refused(format!("cannot identify the zhuque executable: {e}")))?;
    let mut queue = std::collections::VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        if !procfs::runs_executable(p, &zhuque) {
            return Ok(p);
        }
        queue.extend(procfs::children(p));
    }
    Err(Failure::refused(format!(
        "pid {pid} is a zhuque process with no program under it"
    )))
}

/// The image directory of a running program: the directory it holds locked (authoritative:
/// the runtime locks its image), else the one its environment names.
fn image_of(pid: i32) -> Result<ImageDir> {
    if let Some(dir) = procfs::read_locks()
        .and_then(|locks| procfs::locked_dirs_of(pid, &locks).into_iter().next())
    {
        return ImageDir::new(&dir);
    }
    let env = procfs::environ(pid).unwrap_or_default();
    match zhuque_image::env_get(&env, ENV_CRASH_RESISTANT) {
        Some(dir) if dir.starts_with(b"/") => {
            use std::os::unix::ffi::OsStrExt;
            ImageDir::new(&PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
        }
        _ => Err(Failure::refused(format!(
            "pid {pid} is not a crash-resistant program (it holds no image lock and its \
             environment names no image)"
        ))),
    }
}

/// The process holding the image's lock (the program, or the tree's init), or a launch that is
/// resuming the image and has not started it yet. The init takes the lock before it replaces
/// the launch's marked `meta`: when the marker is gone, a second look finds the lock.
fn owner_of(image: &ImageDir) -> Result<i32> {
    let start = Instant::now();
    loop {
        let lock = match image.lock()? {
            Lock::Free if let Some(pid) = image.resuming_launcher() => return Ok(pid),
            Lock::Free => image.lock()?,
            held => held,
        };
        // A SAVED image may be about to be resumed by a launch that started just now
        // (`zhuque resume DIR & zhuque fail DIR`): it gets a moment to mark it.
        let saved = matches!(image.condition(), Ok(crate::image_dir::Condition::Saved(_)));
        if lock != Lock::Free || !saved || start.elapsed() > LAUNCH_GRACE {
            return lock_owner(image, lock);
        }
        std::thread::sleep(POLL);
    }
}

/// How long `fail` waits for a launch to start resuming a SAVED image before it says the
/// image is not running.
const LAUNCH_GRACE: Duration = Duration::from_millis(500);

fn lock_owner(image: &ImageDir, lock: Lock) -> Result<i32> {
    match lock {
        Lock::Held(Some(pid)) => Ok(pid),
        Lock::Held(None) => Err(Failure::refused(format!(
            "{} is running, but its owner cannot be found (/proc/locks is unreadable or \
             does not show it); pass the program's pid instead",
            image.path().display()
        ))),
        Lock::Free => {
            let state = image.condition()?.label();
            Err(Failure::refused(format!(
                "{} is not running (state {state})",
                image.path().display()
            )))
        }
    }
}

/// The generation of a SAVED `meta`, if that is what `meta` holds.
fn saved_generation(image: &ImageDir) -> Option<u64> {
    image
        .meta()
        .filter(|m| m.state() == State::Saved)
        .map(|m| m.generation)
}

/// Polls until `meta` is SAVED with a generation above `before`; fails when the program is
/// gone without that, or after [`TIMEOUT`].
/// How long a saved image may stay locked while its processes end.
const END_WAIT: Duration = Duration::from_secs(10);

/// Once the save exists, its processes end (status 75) and the last one releases the image:
/// `zhuque fail` returns after that, so that `zhuque fail DIR && zhuque resume DIR` never
/// finds the image still in use. A holder that outlives the bound does not make the save
/// less done.
fn wait_until_free(image: &ImageDir) {
    let start = Instant::now();
    while start.elapsed() < END_WAIT && matches!(image.lock(), Ok(crate::image_dir::Lock::Held(_)))
    {
        std::thread::sleep(POLL);
    }
}

fn wait_for_save(image: &ImageDir, pid: i32, before: Option<u64>) -> Result<u64> {
    let is_new = |g: u64| before.is_none_or(|b| g > b);
    let start = Instant::now();
    loop {
        // Check liveness first: a save written just before the exit is then still seen.
        let alive = procfs::is_alive(pid);
        if let Some(g) = saved_generation(image).filter(|g| is_new(*g)) {
            wait_until_free(image);
            return Ok(g);
        }
        if !alive {
            return Err(Failure::refused(format!(
                "pid {pid} ended without saving {}",
                image.path().display()
            )));
        }
        if start.elapsed() > TIMEOUT {
            return Err(Failure::refused(format!(
                "{} was not saved within {} s (pid {pid} is still running)",
                image.path().display(),
                TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}
