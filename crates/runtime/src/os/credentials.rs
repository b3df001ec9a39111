//! Credentials: each thread's user and group ids, supplementary groups and capability sets
//! (record: `zhuque_image::os::Credentials`).
//!
//! The kernel keeps credentials per thread. A daemon that dropped its privileges (an nginx
//! worker running as `nobody`) must come back as the user it became: a resume starts as the
//! user who resumes it (often root), and without this every such process would come back with
//! that user's privileges.
//!
//! - **save** (coordinator): each stopped thread's credentials from
//!   `/proc/self/task/<tid>/status`.
//! - **check** (resume, before anything changes): the resuming process must be able to become
//!   every saved thread; otherwise the resume is refused, the image untouched.
//! - **apply** (resume, each thread on itself, once every thread exists and every privileged
//!   step of the resume is done, before any program code runs): bounding set, groups, gids,
//!   uids, capabilities, ambient set — in the order that keeps the privileges each step needs.
//!   The coordinator keeps the credentials the resume started with: it writes the image.
//!
//! Not kept: securebits (`PR_SET_SECUREBITS`), `PR_SET_KEEPCAPS` (cleared), user namespaces.

use crate::diag::Line;
use rustix::thread::{self as rt, CapabilitySet, CapabilitySets};
use zhuque_image::Meta;
use zhuque_image::os::{
    Credentials, TAG_CREDENTIALS as TAG, decode_credentials, encode_credentials, parse_status,
};

const SYS_SETFSUID: usize = 122;
const SYS_SETFSGID: usize = 123;

/// The credentials of thread `tid` of this process, as the kernel reports them.
fn of_thread(tid: i32) -> Option<Credentials> {
    let path = crate::procfs::task_path(tid, b"status");
    parse_status(tid, &crate::procfs::read(&path).ok()?)
}

/// The calling thread's credentials.
fn own() -> Option<Credentials> {
    parse_status(0, &crate::procfs::read(b"/proc/thread-self/status\0").ok()?)
}

/// Records every stopped thread's credentials (coordinator, every program thread stopped).
pub fn save(meta: &mut Meta) {
    let all: Vec<Credentials> = meta
        .threads
        .iter()
        .filter_map(|t| of_thread(t.tid))
        .collect();
    if all.len() != meta.threads.len() {
        crate::diag::say(
            "warning: the credentials of a thread could not be read; it comes back with the resuming user's",
        );
    }
    meta.set_section(TAG, encode_credentials(&all));
}

/// The saved records; an image without them (written before they were kept, or by the CLI)
/// leaves every thread with the resuming process's credentials.
fn load(meta: &Meta) -> Result<Vec<Credentials>, Box<Line>> {
    let Some(bytes) = meta.section(TAG) else {
        return Ok(Vec::new());
    };
    decode_credentials(bytes).map_err(|e| {
        Line::new()
            .str("cannot resume: invalid credentials section: ")
            .str(&e.to_string())
            .take()
            .into()
    })
}

/// Whether a thread with credentials `now` may take credentials `want` (the kernel's rules
/// for `setresuid`, `setresgid`, `setgroups`, `capset` and the bounding set).
fn reachable(now: &Credentials, want: &Credentials) -> Result<(), &'static str> {
    let has = |cap: CapabilitySet| now.cap_effective & cap.bits() != 0;
    let ids_ok = |now: &[u32; 4], want: &[u32; 4], privileged: bool| {
        privileged || want.iter().all(|id| now[..3].contains(id))
    };
    if !ids_ok(&now.uid, &want.uid, has(CapabilitySet::SETUID)) {
        return Err("user ids");
    }
    if !ids_ok(&now.gid, &want.gid, has(CapabilitySet::SETGID)) {
        return Err("group ids");
    }
    if now.groups != want.groups && !has(CapabilitySet::SETGID) {
        return Err("supplementary groups");
    }
    if want.cap_permitted & !now.cap_permitted != 0 {
        return Err("capabilities");
    }
    if want.cap_inheritable & !(now.cap_inheritable | now.cap_permitted) != 0
        && !has(CapabilitySet::SETPCAP)
    {
        return Err("inheritable capabilities");
    }
    if want.cap_bounding & !now.cap_bounding != 0
        || (want.cap_bounding != now.cap_bounding && !has(CapabilitySet::SETPCAP))
    {
        return Err("capability bounding set");
    }
    Ok(())
}

/// Refuses a resume that could not give every thread its saved credentials back.
pub fn check(meta: &Meta) -> Result<(), Box<Line>> {
    let saved = load(meta)?;
    if saved.is_empty() {
        return Ok(());
    }
    let now = own().ok_or_else(|| {
        Box::new(
            Line::new()
                .str("cannot resume: cannot read this process's credentials")
                .take(),
        )
    })?;
    for want in &saved {
        if let Err(what) = reachable(&now, want) {
            return Err(Line::new()
                .str("cannot resume: thread ")
                .num(want.tid as u64)
                .str(" ran as uid ")
                .num(want.uid[1] as u64)
                .str(" gid ")
                .num(want.gid[1] as u64)
                .str(", and this resume (uid ")
                .num(now.uid[1] as u64)
                .str(") cannot give it back its ")
                .str(what)
                .str("; resume it as the user who started it")
                .take()
                .into());
        }
    }
    Ok(())
}

/// What the threads of a resume apply, decoded once (volatile memory, read-only after
/// [`prepare`]); null when there is nothing to change.
static PLAN: core::sync::atomic::AtomicPtr<Vec<Credentials>> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Resume, before the threads exist: decodes the saved records for [`apply_own`], and notes
/// whether any differs from what every thread starts with (the resuming thread's).
pub fn prepare(meta: &Meta) {
    let Ok(saved) = load(meta) else { return };
    let now = own();
    if saved
        .iter()
        .all(|c| now.as_ref().is_some_and(|n| n.same_as(c)))
    {
        return;
    }
    PLAN.store(
        Box::into_raw(Box::new(saved)),
        core::sync::atomic::Ordering::Release,
    );
}

/// Whether the resume changes any thread's credentials.
pub fn changes() -> bool {
    !PLAN.load(core::sync::atomic::Ordering::Acquire).is_null()
}

/// Resume, on each thread: takes the saved credentials of thread `saved_tid` on the calling
/// thread. A failure ends the process (the check made it unexpected): running the program
/// with other credentials than its own is never an option.
pub fn apply_own(saved_tid: i32) {
    let plan = PLAN.load(core::sync::atomic::Ordering::Acquire);
    if plan.is_null() {
        return;
    }
    // SAFETY: set once by `prepare` to a leaked Box that is never freed or changed.
    let plan = unsafe { &*plan };
    let Some(want) = plan.iter().find(|c| c.tid == saved_tid) else {
        return;
    };
    if let Err((step, e)) = apply(want) {
        Line::new()
            .str("cannot give thread ")
            .num(saved_tid as u64)
            .str(" its saved credentials back (")
            .str(step)
            .str(": errno ")
            .num(e.raw_os_error() as u64)
            .str("); the process ends unresumed")
            .emit();
        crate::sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
}

type Step = (&'static str, rustix::io::Errno);

fn step<T>(name: &'static str, r: rustix::io::Result<T>) -> Result<T, Step> {
    r.map_err(|e| (name, e))
}

/// `setfsuid`/`setfsgid` (they report the previous id, never an error): only when the saved
/// filesystem id differs from the effective one the call before set.
fn set_fs_id(nr: usize, id: u32) {
    // SAFETY: a plain system call with an integer argument.
    unsafe { crate::sys::syscall1(nr, id as usize) };
}

/// Every capability number the kernel may have (`CAP_LAST_CAP` is 40 in Linux 6.x).
const CAPS: core::ops::Range<u32> = 0..64;

fn apply(want: &Credentials) -> Result<(), Step> {
    let now = own().ok_or(("read own credentials", rustix::io::Errno::IO))?;
    if now.same_as(want) {
        return Ok(());
    }
    // Drops from the bounding set need CAP_SETPCAP: first, while the thread still has it.
    for cap in CAPS.filter(|c| now.cap_bounding & !want.cap_bounding & (1 << c) != 0) {
        step(
            "bounding set",
            rt::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)),
        )?;
    }
    if now.groups != want.groups {
        let groups: Vec<rt::Gid> = want.groups.iter().map(|g| gid(*g)).collect();
        step("setgroups", rt::set_thread_groups(&groups))?;
    }
    step(
        "setresgid",
        rt::set_thread_res_gid(gid(want.gid[0]), gid(want.gid[1]), gid(want.gid[2])),
    )?;
    if want.gid[3] != want.gid[1] {
        set_fs_id(SYS_SETFSGID, want.gid[3]);
    }
    // Permitted capabilities survive the change of user ids only with KEEPCAPS.
    let keep = want.cap_permitted != 0;
    if keep {
        step("PR_SET_KEEPCAPS", rt::set_keep_capabilities(true))?;
    }
    step(
        "setresuid",
        rt::set_thread_res_uid(uid(want.uid[0]), uid(want.uid[1]), uid(want.uid[2])),
    )?;
    if want.uid[3] != want.uid[1] {
        set_fs_id(SYS_SETFSUID, want.uid[3]);
    }
    let sets = CapabilitySets {
        effective: CapabilitySet::from_bits_retain(want.cap_effective),
        permitted: CapabilitySet::from_bits_retain(want.cap_permitted),
        inheritable: CapabilitySet::from_bits_retain(want.cap_inheritable),
    };
    step("capset", rt::set_capabilities(None, sets))?;
    if keep {
        step("PR_SET_KEEPCAPS", rt::set_keep_capabilities(false))?;
    }
    if want.cap_ambient != 0 {
        step("ambient set", rt::clear_ambient_capability_set())?;
        for cap in CAPS.filter(|c| want.cap_ambient & (1 << c) != 0) {
            step(
                "ambient set",
                rt::configure_capability_in_ambient_set(
                    CapabilitySet::from_bits_retain(1 << cap),
                    true,
                ),
            )?;
        }
    }
    Ok(())
}

fn uid(id: u32) -> rt::Uid {
    rt::Uid::from_raw(id)
}

fn gid(id: u32) -> rt::Gid {
    rt::Gid::from_raw(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Credentials {
        Credentials {
            tid: 2,
            cap_permitted: 0x1ff_ffff_ffff,
            cap_effective: 0x1ff_ffff_ffff,
            cap_bounding: 0x1ff_ffff_ffff,
            ..Credentials::default()
        }
    }

    fn nobody() -> Credentials {
        Credentials {
            tid: 3,
            uid: [65534; 4],
            gid: [65534; 4],
            cap_bounding: 0x1ff_ffff_ffff,
            ..Credentials::default()
        }
    }

    #[test]
    fn root_may_become_anyone_but_not_the_other_way() {
        assert_eq!(reachable(&root(), &nobody()), Ok(()));
        assert_eq!(reachable(&root(), &root()), Ok(()));
        assert_eq!(reachable(&nobody(), &nobody()), Ok(()));
        assert_eq!(reachable(&nobody(), &root()), Err("user ids"));
        let other = Credentials {
            uid: [1000; 4],
            ..nobody()
        };
        assert_eq!(reachable(&nobody(), &other), Err("user ids"));
        // An unprivileged process may switch among its own real, effective and saved ids.
        let mixed = Credentials {
            uid: [1000, 65534, 1000, 65534],
            ..nobody()
        };
        let swapped = Credentials {
            uid: [65534, 1000, 65534, 1000],
            ..nobody()
        };
        assert_eq!(reachable(&mixed, &swapped), Ok(()));
        let grouped = Credentials {
            groups: vec![27],
            ..nobody()
        };
        assert_eq!(reachable(&nobody(), &grouped), Err("supplementary groups"));
        let narrower = Credentials {
            cap_bounding: 0xff,
            ..root()
        };
        assert_eq!(reachable(&root(), &narrower), Ok(()));
        assert_eq!(
            reachable(&narrower, &root()),
            Err("capability bounding set")
        );
    }
}
