//! Launches that zhuque must refuse: exit status 125, one `zhuque:` line on stderr, nothing
//! run (no stdout), and the image left byte-identical.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A SAVED image of `prog args`: runs it with shorter and shorter `--fail-after` delays
/// until a failure lands. Returns the image and the working directory used.
fn saved_image(zq: &Zhuque, prog: &Program, args: &[String]) -> (ImageDir, PathBuf) {
    for delay in [0.3, 0.1, 0.03, 0.01, 0.003] {
        let image = ImageDir::new();
        let cwd = prog.workdir();
        let l = zq.launch(
            prog,
            args,
            &image.path,
            &cwd,
            Via::Run {
                fail_after: Some(delay),
            },
            None,
        );
        if l.status() == SAVED {
            assert_eq!(image.meta().state(), zhuque_image::State::Saved);
            return (image, cwd);
        }
        println!("no failure with --fail-after {delay}: {}", l.describe());
    }
    panic!("could not get a SAVED image of {} {args:?}", prog.name);
}

/// Asserts that a launch was refused cleanly.
#[track_caller]
fn assert_refused(f: &Finished, what: &str) {
    assert_eq!(
        f.status,
        REFUSED,
        "{what}: expected exit status 125; stderr:\n{}",
        tail_lines(&f.stderr, 20)
    );
    assert_eq!(
        f.zhuque_lines().len(),
        1,
        "{what}: not exactly one line starting with `zhuque:` on stderr:\n{}",
        tail_lines(&f.stderr, 20)
    );
    assert!(
        f.stdout.is_empty(),
        "{what}: a refused launch ran the program, which wrote:\n{}",
        tail_lines(&f.stdout, 10)
    );
}

/// `zhuque run` with `args` and `zhuque resume` on `image` are both refused, and the image
/// stays byte-identical.
fn refused_both_ways(zq: &Zhuque, prog: &Program, args: &[String], image: &Path, cwd: &Path) {
    let before = Snapshot::take(image);
    let run = zq.exec(Zhuque::run_args(image, None, prog, args), cwd, None);
    assert_refused(&run, "zhuque run");
    if let Err(e) = Snapshot::take(image).same_as(&before) {
        panic!("after the refused `zhuque run`: {e}");
    }
    let resume = zq.exec([OsString::from("resume"), image.into()], cwd, None);
    assert_refused(&resume, "zhuque resume");
    if let Err(e) = Snapshot::take(image).same_as(&before) {
        panic!("after the refused `zhuque resume`: {e}");
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn resume_with_a_rebuilt_binary_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let old = std::fs::read(&prog.path).unwrap();
    prog.build(&["-O1"]);
    assert_ne!(
        old,
        std::fs::read(&prog.path).unwrap(),
        "the rebuild changed nothing"
    );
    refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
}

/// The executable rewritten in place — same size, same inode, its mtime put back — is a
/// different program all the same: its ctime gives it away (the kernel sets it; nobody can).
#[test]
fn a_binary_rewritten_in_place_with_its_mtime_restored_is_refused() {
    use std::io::{Seek, SeekFrom, Write};
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let before = std::fs::metadata(&prog.path).unwrap();
    let mtime = before.modified().unwrap();
    let mut bytes = std::fs::read(&prog.path).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x55;
    std::thread::sleep(Duration::from_millis(20));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&prog.path)
        .unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&bytes).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let after = std::fs::metadata(&prog.path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), mtime),
        "the rewrite changed the size or the mtime"
    );
    refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
}

#[test]
fn truncated_meta_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let meta = std::fs::read(image.meta_path()).unwrap();
    assert!(meta.len() > 64, "meta is only {} bytes", meta.len());
    for keep in [meta.len() - 1, meta.len() / 2, 16] {
        std::fs::write(image.meta_path(), &meta[..keep]).unwrap();
        println!("meta truncated to {keep} of {} bytes", meta.len());
        refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
    }
}

/// `zhuque resume` of the compute_loop image ends as the program does (status 3).
fn resumes_to_the_end(zq: &Zhuque, image: &Path, cwd: &Path) {
    let resumed = zq.exec([OsString::from("resume"), image.into()], cwd, None);
    assert_eq!(resumed.status, 3, "{}", tail_lines(&resumed.stderr, 10));
}

/// Puts something at a path.
type Make<'a> = &'a dyn Fn(&Path);

/// A `meta` that is not a regular file of the image — a FIFO (reading it would block
/// forever), a symlink to a device that never ends or to another file — is refused at once,
/// both as the tree's record and as a process's own image (`p/<pid>/meta`), and nothing is
/// read through it.
#[test]
fn a_meta_that_is_not_a_regular_file_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let own = image
        .process_files("meta")
        .into_iter()
        .next()
        .expect("a process image");
    for meta in [image.meta_path(), own] {
        let saved = std::fs::read(&meta).unwrap();
        let keep = meta.with_extension("kept");
        std::fs::write(&keep, &saved).unwrap();
        let replacements: [(&str, Make); 3] = [
            ("a FIFO", &|p| {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid path string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            ("a symlink to /dev/zero", &|p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap()
            }),
            ("a symlink to the real meta", &|p| {
                std::os::unix::fs::symlink(&keep, p).unwrap()
            }),
        ];
        for (what, make) in replacements {
            std::fs::remove_file(&meta).unwrap();
            make(&meta);
            println!("{} is {what}", meta.display());
            refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
        }
        std::fs::remove_file(&meta).unwrap();
        std::fs::rename(&keep, &meta).unwrap();
    }
    // Put back, the image resumes.
    resumes_to_the_end(&zq, &image.path, &cwd);
}

/// An image someone else could have planted or changed is refused, by `run` and `resume`:
/// a file of a process image owned by another user, a process image directory writable by
/// others.
/// (Run as root, the suite checks what matters most: root resuming another user's image.)
/// Put back, the image resumes.
#[test]
fn an_image_of_another_user_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let memory = image
        .process_files("memory")
        .into_iter()
        .next()
        .expect("a process image");
    let me = std::fs::metadata(&memory).unwrap().uid();
    let other = if me == 0 { 65534 } else { me };
    if other != me {
        std::os::unix::fs::chown(&memory, Some(other), None).unwrap();
        refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
        std::os::unix::fs::chown(&memory, Some(me), None).unwrap();
    } else {
        println!("not root: another user's file cannot be made here; only modes are checked");
    }
    let pdir = memory.parent().unwrap();
    let mode = std::fs::metadata(pdir).unwrap().permissions().mode();
    std::fs::set_permissions(pdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
    std::fs::set_permissions(pdir, std::fs::Permissions::from_mode(mode)).unwrap();
    resumes_to_the_end(&zq, &image.path, &cwd);
}

#[test]
fn a_different_command_on_a_saved_image_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let before = Snapshot::take(&image.path);
    let other = strings(&["30000001"]);
    let run = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &other),
        &cwd,
        None,
    );
    assert_refused(&run, "zhuque run with other arguments");
    if let Err(e) = Snapshot::take(&image.path).same_as(&before) {
        panic!("after the refused `zhuque run`: {e}");
    }
    // The image is still good: it resumes and finishes as if nothing happened.
    let resumed = zq.exec(
        [OsString::from("resume"), image.path.clone().into()],
        &cwd,
        None,
    );
    assert_eq!(
        resumed.status,
        COMPUTE_LOOP.status,
        "{}",
        tail_lines(&resumed.stderr, 20)
    );
}

#[test]
fn a_running_image_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile("wait_stdin.c");
    let args = strings(&["4096"]);
    let native = run_native(&prog, &args, &prog.workdir(), Some(b"hello\n"));
    assert_eq!(native.status, 0);

    let image = ImageDir::new();
    let cwd = prog.workdir();
    let mut cmd = zq.command(Zhuque::run_args(&image.path, None, &prog, &args), &cwd);
    cmd.stdin(Stdio::piped());
    let mut first = spawn(cmd, "zhuque run wait_stdin");
    let stdin = first.child.stdin.take().expect("stdin");
    first.wait_for_stdout(b"ready\n", Duration::from_secs(60));
    assert!(
        image.path.is_dir(),
        "no image directory while the program runs"
    );

    let before = Snapshot::take(&image.path);
    let again = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &args),
        &cwd,
        None,
    );
    assert_refused(&again, "second `zhuque run` on a RUNNING image");
    let resume = zq.exec(
        [OsString::from("resume"), image.path.clone().into()],
        &cwd,
        None,
    );
    assert_refused(&resume, "`zhuque resume` of a RUNNING image");
    let mut fresh_args = Zhuque::run_args(&image.path, None, &prog, &args);
    fresh_args.insert(1, "--fresh".into());
    let fresh = zq.exec(fresh_args, &cwd, None);
    assert_refused(&fresh, "`zhuque run --fresh` on a RUNNING image");
    if let Err(e) = Snapshot::take(&image.path).same_as(&before) {
        panic!("after the refused launches: {e}");
    }

    // The owner is unharmed: it reads its input and finishes like the native run.
    {
        use std::io::Write;
        let mut stdin = stdin;
        stdin.write_all(b"hello\n").unwrap();
    }
    let done = first.wait(LAUNCH_TIMEOUT);
    if let Err(d) = compare(&native.outcome(), &done.outcome(), &[]) {
        panic!(
            "the first launch, after the refused ones:\n{d}\nstderr:\n{}",
            tail_lines(&done.stderr, 20)
        );
    }
    assert!(!image.path.exists(), "the finished image was not removed");
}

#[test]
fn fresh_discards_a_saved_image() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let native = run_native(&prog, &args, &prog.workdir(), None);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let mut fresh_args = Zhuque::run_args(&image.path, None, &prog, &args);
    fresh_args.insert(1, "--fresh".into());
    let fresh = zq.exec(fresh_args, &cwd, None);
    if let Err(d) = compare(&native.outcome(), &fresh.outcome(), &[]) {
        panic!(
            "`zhuque run --fresh` on a SAVED image must start over:\n{d}\nstderr:\n{}",
            tail_lines(&fresh.stderr, 20)
        );
    }
    assert!(!image.path.exists(), "the finished image was not removed");
}

/// A statically linked program cannot load the runtime: `zhuque run` refuses it at once
/// (125, one `zhuque:` line saying so) instead of running it unprotected.
#[test]
fn a_statically_linked_program_is_refused() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let dir = prog.workdir();
    let exe = common::tree::compile_static("tree_static.c", &prog.dir.path);
    let image = ImageDir::new();
    let run = zq.exec(
        [
            OsString::from("run"),
            OsString::from("--image"),
            image.path.clone().into(),
            OsString::from("--"),
            exe.clone().into(),
        ],
        &dir,
        None,
    );
    assert_refused(&run, "zhuque run of a static program");
    let line = run.zhuque_lines().join("\n");
    assert!(line.contains("statically linked"), "{line}");
    assert!(
        !image.path.join("meta").exists(),
        "the refusal wrote an image"
    );
}

/// The default images root (`/dev/shm/zhuque-<uid>`) is created private (`0700`, owned by the
/// caller), and one someone else made first — another owner, a mode open to others, a
/// symlink — is refused by `zhuque run`, `zhuque ls` and a launch by hand
/// (`CRASH_RESISTANT=1`) alike: in `/dev/shm`, which anyone can write, that is how another
/// user would read a program's memory or plant an image for it to resume. Run as a user of
/// its own (`setpriv`, root only) so its default root is its alone.
#[test]
fn the_default_images_root_is_private_to_its_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        println!("not root: no other user to run as; the default root is checked by hand");
        return;
    }
    let uid = 40000 + std::process::id() % 20000;
    let root = PathBuf::from(zhuque_image::default_root(uid));
    let _ = std::fs::remove_dir_all(&root);
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let cwd = prog.workdir();
    let native = run_native(&prog, &args, &cwd, None);
    let as_user = |cli_args: &[&str], by_hand: bool| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .current_dir(&cwd)
            .env_remove(zhuque_image::ENV_DIR)
            .env_remove("LD_PRELOAD");
        if by_hand {
            // Through env(1), so that only the program (not setpriv) has the runtime.
            let mut preload = OsString::from("LD_PRELOAD=");
            preload.push(runtime_lib());
            cmd.arg("/usr/bin/env")
                .arg(preload)
                .arg("CRASH_RESISTANT=1");
        } else {
            cmd.arg(&zq.cli)
                .args(cli_args)
                .env("ZHUQUE_RUNTIME", runtime_lib());
        }
        cmd.arg(&prog.path).args(&args);
        run_to_end(cmd, None, "zhuque as another user")
    };

    let same_as_native = |f: &Finished, what: &str| {
        assert!(
            f.outcome() == native.outcome(),
            "{what}: status {} (native {}), stderr:\n{}",
            f.status,
            native.status,
            tail_lines(&f.stderr, 20)
        );
    };
    same_as_native(&as_user(&["run", "--"], false), "zhuque run");
    let m = std::fs::symlink_metadata(&root).expect("the default root was created");
    assert!(m.is_dir(), "{} is not a directory", root.display());
    assert_eq!(m.uid(), uid, "owner of {}", root.display());
    assert_eq!(m.mode() & 0o7777, 0o700, "mode of {}", root.display());
    same_as_native(&as_user(&[], true), "by hand");

    let refused_everywhere = |what: &str| {
        assert_refused(
            &as_user(&["run", "--"], false),
            &format!("run, root {what}"),
        );
        assert_refused(&as_user(&[], true), &format!("by hand, root {what}"));
        let mut ls = std::process::Command::new("setpriv");
        ls.args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .arg(&zq.cli)
        .arg("ls")
        .env_remove(zhuque_image::ENV_DIR);
        let ls = run_to_end(ls, None, "zhuque ls");
        assert_eq!(
            ls.status,
            REFUSED,
            "ls, root {what}: {}",
            tail_lines(&ls.stderr, 5)
        );
    };
    std::os::unix::fs::chown(&root, Some(0), Some(0)).unwrap();
    refused_everywhere("owned by root");
    std::os::unix::fs::chown(&root, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused_everywhere("mode 755");
    std::fs::remove_dir_all(&root).unwrap();
    let elsewhere = prog.workdir();
    std::os::unix::fs::chown(&elsewhere, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&elsewhere, &root).unwrap();
    refused_everywhere("a symlink");
    std::fs::remove_file(&root).unwrap();
}

/// A process `meta` whose checksum is valid but whose values are not (what someone who
/// recomputes the checksum, or a bug, could write) is refused before anything of it is used:
/// regions out of the address space, unaligned or overlapping, pool ranges past the end of
/// the `memory` file (a truncated file), a thread frame outside saved memory, a shared object
/// named outside the image. Before, such values crashed the resume (SIGSEGV/SIGBUS) and the
/// image was deleted. Put back, the image resumes.
#[test]
fn hostile_values_in_a_checksummed_meta_are_refused() {
    use zhuque_image::{Backing, Meta};
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args = strings(COMPUTE_LOOP.args);
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let member = image
        .process_files("meta")
        .into_iter()
        .next()
        .expect("a process image");
    let original = std::fs::read(&member).unwrap();
    let saved = zhuque_image::decode(&original).expect("a valid member meta");
    let first_pool = saved
        .regions
        .iter()
        .position(|r| matches!(r.backing, Backing::Pool { .. }))
        .expect("a pool region");
    type Edit = fn(&mut Meta, usize);
    let edits: [(&str, Edit); 7] = [
        ("a region above the address space", |m, _| {
            let r = m.regions.last_mut().unwrap();
            r.start = 0x8000_0000_0000;
            r.end = 0x8000_0001_0000;
        }),
        ("an unaligned region", |m, i| m.regions[i].start += 8),
        ("overlapping regions", |m, i| {
            let copy = m.regions[i].clone();
            m.regions.push(copy);
        }),
        ("a pool range past the memory file", |m, i| {
            if let Backing::Pool { offset } = &mut m.regions[i].backing {
                *offset += 1 << 40;
            }
        }),
        ("a thread frame outside saved memory", |m, _| {
            m.threads[0].frame = 0x1000
        }),
        ("a pool end below the pool ranges", |m, _| m.pool_end = 0),
        ("a shared object outside the image", |m, i| {
            m.regions[i].backing = Backing::Shared {
                name: b"../../meta".to_vec(),
                offset: 0,
            }
        }),
    ];
    for (what, edit) in edits {
        let mut hostile = saved.clone();
        edit(&mut hostile, first_pool);
        std::fs::write(&member, zhuque_image::encode(&hostile)).unwrap();
        println!("{what}");
        refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
    }
    std::fs::write(&member, &original).unwrap();
    resumes_to_the_end(&zq, &image.path, &cwd);

    // A truncated memory file: the pool ranges it no longer holds would be SIGBUS.
    let (image, cwd) = saved_image(&zq, &prog, &args);
    let memory = image.process_files("memory").into_iter().next().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .unwrap()
        .set_len(4096)
        .unwrap();
    refused_both_ways(&zq, &prog, &args, &image.path, &cwd);
}
