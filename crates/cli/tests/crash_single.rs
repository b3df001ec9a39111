//! Crash tests of single programs: each is run once natively (the oracle) and once under
//! zhuque without failure, then 20 times with failures injected at random moments and
//! resumed until it finishes; output and exit status must equal the oracle's every time,
//! and every run must really go through the promised failures.

mod common;

use common::*;

/// Stdio-buffered progress of a long compute loop (integer and vector floating point);
/// exit status 3.
#[test]
fn compute_loop() {
    crash_case("compute_loop", &COMPUTE_LOOP, CrashPlan::default());
}

/// malloc/calloc/realloc/free churn: a hash table, linked lists, large blocks.
#[test]
fn alloc_churn() {
    crash_case("alloc_churn", &ALLOC_CHURN, CrashPlan::default());
}

/// mmap/munmap/mremap/mprotect of anonymous memory and a private writable file mapping.
#[test]
fn mmap_ops() {
    crash_case("mmap_ops", &MMAP_OPS, CrashPlan::default());
}

/// Mappings that take back the storage of unmapped ones (the pool's pending list) read zeros
/// on every byte, and live ones keep their contents, across failures.
#[test]
fn unmapped_storage_comes_back_zeroed() {
    crash_case("mem_recycle", &MEM_RECYCLE, CrashPlan::default());
}

/// The memory a program starts with (.data, .bss, static TLS) moves into the pool late
/// (`memory::startup`): failures in a run's first milliseconds, before it has moved or just
/// after an `mlock` and an `mprotect` of it moved it, keep every write, and the lock.
#[test]
fn startup_memory_survives_early_failures() {
    let plan = CrashPlan {
        window: (0.01, 0.3),
        ..CrashPlan::default()
    };
    crash_case("mem_startup", &MEM_STARTUP, plan);
}

/// A writable private file mapping stays the kernel's: pages written are the program's own
/// copies (kept by a save, written back at a resume), the others show the file as it is now
/// (changes made with `pwrite`, pages dropped with `MADV_DONTNEED`); smaps counts exactly the
/// written pages as anonymous, before and after failures.
#[test]
fn private_file_mapping_keeps_its_written_pages() {
    crash_case("mem_private_file", &MEM_PRIVATE_FILE, CrashPlan::default());
}

/// The same, with the mapping made read-only and then writable with `mprotect` (the save
/// learns of private file mappings that may hold written pages from `mprotect` then).
#[test]
fn private_file_mapping_made_writable_keeps_its_written_pages() {
    crash_case(
        "mem_private_file_ro_first",
        &MEM_PRIVATE_FILE_RO_FIRST,
        CrashPlan::default(),
    );
}

/// setjmp/longjmp, atexit and qsort callbacks used after resumes (pointer guard, stack
/// canary); exit status 5 from exit().
#[test]
fn callbacks() {
    crash_case("callbacks", &CALLBACKS, CrashPlan::default());
}

/// Five zhuque_fail_now() calls in one run (and random failures on top): at least five
/// failures in every run.
#[test]
fn five_failures_in_one_run() {
    let plan = CrashPlan {
        min_failures_per_run: 5,
        ..CrashPlan::default()
    };
    let report = crash_case("five_failures", &FAIL_POINTS, plan);
    for r in &report.runs {
        let last = r.attempts.last().expect("an attempt");
        assert!(
            last.launches.len() >= 6,
            "run {}: {:?}",
            r.run,
            last.launches.len()
        );
    }
}

/// A failure injected 5 ms after a resume (`zhuque run --fail-after 0.005` on the first
/// resume): the failure must land, and the resume after it must still be exact.
#[test]
fn failure_right_after_a_resume() {
    let plan = CrashPlan {
        min_failures_per_run: 2,
        window: (0.05, 0.5),
        first_resume_fail_after: Some(0.005),
        ..CrashPlan::default()
    };
    let report = crash_case("failure_after_resume", &ALLOC_CHURN, plan);
    for r in &report.runs {
        let a = r.attempts.last().expect("an attempt");
        let second = &a.launches[1];
        assert_eq!(
            second.via,
            Via::Run {
                fail_after: Some(0.005)
            }
        );
        assert_eq!(
            second.status(),
            SAVED,
            "run {}: the failure 5 ms after the resume did not land: {}",
            r.run,
            second.describe()
        );
    }
}

/// `dl_churn.c` and its library `libdlchurn.so` (`dl_churn_lib.c`), built at test time.
fn dl_churn() -> (Program, String) {
    let prog = Program::compile("dl_churn.c");
    let lib = prog.compile_library("dl_churn_lib.c", "libdlchurn.so");
    (prog, lib)
}

/// A program that spends its time inside `dlopen` (`RTLD_NOW`: ld.so maps, relocates 4096
/// pointers and write-protects them as RELRO) and `dlclose`: failures land inside ld.so, and
/// the resumed process must finish the load with every relocation intact (the relocated,
/// write-protected pages look like untouched file pages in `/proc/self/maps`; only `smaps`
/// shows they were written) and the same checksums. Every 700th load also fails from the
/// library's constructor, inside `dlopen`, where the new copy sits where the last one was
/// (its relocated pages once came back zeroed: the resume left the old copy's pool pieces in
/// the table, and the next pruning freed the new pages with them).
#[test]
fn failures_inside_dlopen() {
    let (prog, lib) = dl_churn();
    let h = Harness::new("dl_churn");
    let oracle = h.oracle(&prog, &["3000", &lib, "0", "700"]);
    assert_eq!(oracle.outcome.status, 0);
    h.crash_test(&prog, &oracle, &CrashPlan::default());
}

/// Storage of the pool is given back when ld.so unmaps a closed library: after 4000
/// `dlopen`/`dlclose` cycles of a library with 40 KiB of relocated data, the saved pool holds
/// far less than the 160 MiB the copies would take, and the resumed program finishes.
#[test]
fn unloaded_libraries_give_their_pool_storage_back() {
    let (prog, lib) = dl_churn();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let cwd = prog.workdir();
    let args: Vec<String> = ["4000", lib.as_str(), "4000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let first = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &args),
        &cwd,
        None,
    );
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let pool_bytes = image
        .process_files("memory")
        .iter()
        .map(|f| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(f).expect("pool file").blocks() * 512
        })
        .sum::<u64>();
    assert!(
        pool_bytes > 0 && pool_bytes < 48 << 20,
        "the saved pool holds {} MiB after 4000 dlopen/dlclose cycles",
        pool_bytes >> 20
    );
    let second = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &args),
        &cwd,
        None,
    );
    assert_eq!(
        second.status,
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).starts_with("checksum "));
}

/// Runs `cmd` with `RLIMIT_FSIZE` set to `soft`/`hard` bytes.
fn with_file_size_limit(cmd: &mut std::process::Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
}

/// A soft `ulimit -f` of 20 MiB limits the program's files, not its memory: a program that
/// writes 100 MiB of heap (its pool file grows past the limit) is neither killed by `SIGXFSZ`
/// (what happened before) nor short of memory, through a failure and its resume; nor is a
/// fork child of it that copies that memory, nor the parent writing its pool back after. A hard limit
/// that zhuque cannot lift is refused with one line (the pool could not hold the program).
#[test]
fn the_file_size_limit_does_not_limit_memory() {
    let prog = Program::compile("mem_big.c");
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let cwd = prog.workdir();
    let native = run_native(&prog, &["100".to_string()], &cwd, None);
    assert_eq!(native.status, 0);
    let args = Zhuque::run_args(&image.path, None, &prog, &["100".to_string()]);
    let launch = |args: &[std::ffi::OsString], hard: u64| {
        let mut cmd = zq.command(args.iter().cloned(), &cwd);
        with_file_size_limit(&mut cmd, 20 << 20, hard);
        run_to_end(cmd, None, "zhuque under a file size limit")
    };
    let first = launch(&args, libc::RLIM_INFINITY);
    assert_eq!(first.status, SAVED, "{}", tail_lines(&first.stderr, 10));
    let second = launch(&args, libc::RLIM_INFINITY);
    assert_eq!(second.status, 0, "{}", tail_lines(&second.stderr, 10));
    assert_eq!(second.stdout, native.stdout);
    // A fork child that copies the memory into a pool of its own, and the parent's pool
    // settling after the fork, write past the limit too (they once got EFBIG).
    let fork_args: Vec<String> = vec!["100".into(), "fork".into()];
    let native_fork = run_native(&prog, &fork_args, &cwd, None);
    assert_eq!(native_fork.status, 0);
    let with_fork = Zhuque::run_args(&image.path, None, &prog, &fork_args);
    let first = launch(&with_fork, libc::RLIM_INFINITY);
    assert_eq!(first.status, SAVED, "{}", tail_lines(&first.stderr, 10));
    let second = launch(&with_fork, libc::RLIM_INFINITY);
    assert_eq!(second.status, 0, "{}", tail_lines(&second.stderr, 10));
    // The fork's lines came before the failure, the rest after the resume.
    assert_eq!(
        [first.stdout, second.stdout].concat(),
        native_fork.stdout,
        "{}",
        tail_lines(&first.stderr, 10)
    );
    // Lifting a hard limit takes CAP_SYS_RESOURCE, which a container's root may lack.
    let privileged = std::process::Command::new("sh")
        .args(["-c", "ulimit -H -f 20000 && ulimit -H -f unlimited"])
        .status()
        .is_ok_and(|s| s.success());
    let hard = launch(&args, 20 << 20);
    if privileged {
        assert_eq!(hard.status, SAVED, "{}", tail_lines(&hard.stderr, 10));
    } else {
        assert_eq!(hard.status, REFUSED, "{}", tail_lines(&hard.stderr, 10));
        assert_eq!(hard.zhuque_lines().len(), 1, "{:?}", hard.zhuque_lines());
        assert!(hard.stdout.is_empty());
    }
}

/// Without a failure a program is never interrupted for the runtime's own reasons: `pause`
/// and `sigsuspend` return when its own `SIGALRM` comes (they returned after 10 ms when the
/// coordinator's start or the start-up memory's move signalled the program).
#[test]
fn pause_and_sigsuspend_wait_for_the_programs_own_signal() {
    let prog = Program::compile("sig_pause.c");
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let cwd = prog.workdir();
    let native = run_native(&prog, &[], &cwd, None);
    assert_eq!(native.status, 0);
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "pause: 1 alarm(s)\nsigsuspend: 2 alarm(s)\n"
    );
    let args = Zhuque::run_args(&image.path, None, &prog, &[]);
    let run = run_to_end(zq.command(args, &cwd), None, "zhuque run of sig_pause");
    assert_eq!(run.status, 0, "{}", tail_lines(&run.stderr, 10));
    assert_eq!(run.stdout, native.stdout);
}

/// A tmpfs mounted for one test (the pool's filesystem filling up, or giving huge pages),
/// unmounted when dropped. `None` when not root (CI runs as root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// 64 MiB: a pool filesystem that fills up.
    fn small(prog: &Program) -> Option<Tmpfs> {
        Tmpfs::mount(prog, "small-tmpfs", "size=64m")
    }

    fn mount(prog: &Program, name: &str, options: &str) -> Option<Tmpfs> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            println!(
                "not root: cannot mount a tmpfs ({options}); checked in CI, which runs as root"
            );
            return None;
        }
        let at = prog.dir.subdir(name);
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs ({options}) on {}",
            at.display()
        );
        Some(Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// On a tmpfs that gives huge pages (`huge=within_size`), pool memory is mapped with them
/// (smaps `ShmemPmdMapped`) wherever the program's own mapping allows it: chosen by the
/// kernel, hinted at a 2 MiB boundary as mimalloc does, `MAP_FIXED` 4 KiB past one, `malloc`,
/// grown in place and moved by `mremap`, `sbrk` (`mem_huge_pages.c` checks every region in
/// every round, before and after failures). The pool's offsets must agree with the
/// addresses modulo 2 MiB for that (`memory::pool::HUGE_PAGE`): before, only kernel-chosen
/// mappings did, and a resume's first pass over memory took a fault per 64 KiB instead of
/// one per 2 MiB (docs/benchmarks.md, "Huge pages").
#[test]
fn memory_stays_on_huge_pages_where_the_pool_filesystem_gives_them() {
    crash_test_on_huge_pages("within_size");
}

/// The same on a tmpfs mounted `huge=advise`, which gives huge pages only to memory advised
/// `MADV_HUGEPAGE` (`mem_huge_pages.c` advises every region): the advice must come back with
/// the memory at a resume (`memory::advice`: on such a pool `MADV_HUGEPAGE` counts as lasting
/// advice). Before, a resume dropped it, and memory first touched after the resume (the
/// program's `late` region) got 4 KiB pages.
#[test]
fn memory_advised_huge_pages_stays_on_them() {
    crash_test_on_huge_pages("advise");
}

/// `mem_huge_pages.c` crash-tested with its images on a tmpfs mounted `huge=HUGE`.
fn crash_test_on_huge_pages(huge: &str) {
    const MEM_HUGE_PAGES: Case = Case {
        file: "mem_huge_pages.c",
        args: &["40"],
        status: 0,
    };
    let prog = Program::compile(MEM_HUGE_PAGES.file);
    let options = format!("size=4g,huge={huge}");
    let Some(fs) = Tmpfs::mount(&prog, &format!("huge-{huge}"), &options) else {
        return;
    };
    with_image_root(&fs.0, || {
        crash_case(
            &format!("mem_huge_pages_{huge}"),
            &MEM_HUGE_PAGES,
            CrashPlan::default(),
        )
    });
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// An allocation the pool's filesystem cannot back fails the way it fails natively when
/// memory runs out (`malloc` returns NULL, python raises `MemoryError`), instead of the
/// program dying of SIGBUS when it touches the page: a program touching 200 MiB of heap
/// with its image on a 64 MiB tmpfs reports "out of memory" and exits 1 with no `zhuque:`
/// line; one that then frees its memory is saved on the filesystem it filled, resumed, and
/// allocates again. Before: SIGBUS (exit 135) at the first page the pool could not back.
#[test]
fn an_allocation_the_pool_filesystem_cannot_back_fails() {
    let prog = Program::compile("fill_memory.c");
    let Some(small) = Tmpfs::small(&prog) else {
        return;
    };
    let cwd = prog.workdir();
    let native = run_native(&prog, &strings(&["200"]), &cwd, None);
    assert_eq!(native.status, 0, "natively the program has the memory");
    let zq = Zhuque::real();

    let image = small.0.join("fill");
    let run = zq.exec(
        Zhuque::run_args(&image, None, &prog, &strings(&["200"])),
        &cwd,
        None,
    );
    assert_eq!(run.status, 1, "{}", tail_lines(&run.stderr, 10));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "out of memory\n");
    assert!(run.zhuque_lines().is_empty(), "{:?}", run.zhuque_lines());
    assert!(!image.exists(), "the finished image was not removed");

    let image = small.0.join("again");
    let args = Zhuque::run_args(&image, None, &prog, &strings(&["200", "again"]));
    let first = zq.exec(args.clone(), &cwd, None);
    assert_eq!(first.status, SAVED, "{}", tail_lines(&first.stderr, 10));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "out of memory\nfreed\n"
    );
    let resumed = zq.exec(args, &cwd, None);
    assert_eq!(resumed.status, 1, "{}", tail_lines(&resumed.stderr, 10));
    assert_eq!(String::from_utf8_lossy(&resumed.stdout), "16 MiB again\n");
    assert!(!image.exists(), "the finished image was not removed");

    let python = installed("python3");
    let script = "b = b'x' * (200 << 20)";
    let image = small.0.join("python");
    let mut cmd = zq.command(["run", "--image"], &cwd);
    cmd.arg(&image).arg("--").arg(&python).args(["-c", script]);
    let py = run_to_end(cmd, None, "python3 under zhuque");
    assert_eq!(py.status, 1, "{}", tail_lines(&py.stderr, 10));
    assert!(
        String::from_utf8_lossy(&py.stderr).ends_with("MemoryError\n"),
        "{}",
        tail_lines(&py.stderr, 10)
    );
    assert!(py.zhuque_lines().is_empty(), "{:?}", py.zhuque_lines());
}

/// Storage of unmapped memory that zhuque keeps for the next mappings (up to 32 MiB) or
/// punches out in the background makes room when a new mapping needs it: on a 64 MiB pool
/// filesystem, mappings of 36 to 52 MiB made, written and unmapped one after the other all
/// fit, as natively. Before: the second one failed with ENOMEM.
#[test]
fn unmapped_memory_makes_room_on_a_small_filesystem() {
    let prog = Program::compile("mem_unmapped_room.c");
    let Some(small) = Tmpfs::small(&prog) else {
        return;
    };
    let cwd = prog.workdir();
    let sizes = strings(&["40", "44", "36", "48", "52", "20", "50"]);
    let native = run_native(&prog, &sizes, &cwd, None);
    assert_eq!(native.status, 0, "natively every mapping fits");
    let zq = Zhuque::real();
    let image = small.0.join("room");
    let run = zq.exec(Zhuque::run_args(&image, None, &prog, &sizes), &cwd, None);
    assert_eq!(run.status, 0, "{}", tail_lines(&run.stderr, 10));
    assert_eq!(run.stdout, native.stdout);
}

/// Memory allocated while the pool's filesystem had room and touched after something else
/// filled it cannot be backed (natively the analogue is the OOM killer): the program dies of
/// SIGBUS and `zhuque run` says so in one line naming the full filesystem and what became of
/// the image — never a silent death with the image deleted.
#[test]
fn memory_touched_after_the_filesystem_filled_is_reported() {
    let prog = Program::compile("fill_memory.c");
    let Some(small) = Tmpfs::small(&prog) else {
        return;
    };
    let cwd = prog.workdir();
    let filler = small.0.join("filler");
    let args = strings(&["40", "late", filler.to_str().unwrap()]);
    let image = small.0.join("late");
    let run = Zhuque::real().exec(Zhuque::run_args(&image, None, &prog, &args), &cwd, None);
    assert_eq!(
        run.status,
        128 + libc::SIGBUS,
        "{}",
        tail_lines(&run.stderr, 10)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), "allocated 40 MiB\n");
    let lines = run.zhuque_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("killed by SIGBUS") && lines[0].contains("is full"),
        "{lines:?}"
    );
    assert!(lines[0].contains("is removed"), "{lines:?}");
    assert!(!image.exists(), "the finished image was not removed");
}

/// `zhuque fail DIR` sent the instant `zhuque resume DIR` starts (before the tree's init
/// holds the image, when it used to say "not running (state SAVED)" while the program ran
/// on) saves the resumed program: five resumes, each failed at once, then one to the end;
/// the output is the oracle's.
#[test]
fn fail_reaches_a_resume_from_its_first_instant() {
    let zq = Zhuque::real();
    let prog = Program::compile(COMPUTE_LOOP.file);
    let args: Vec<String> = COMPUTE_LOOP.args.iter().map(|s| s.to_string()).collect();
    let image = ImageDir::new();
    let cwd = prog.workdir();
    let native = run_native(&prog, &args, &cwd, None);
    let first = zq.exec(
        Zhuque::run_args(&image.path, Some(0.05), &prog, &args),
        &cwd,
        None,
    );
    assert_eq!(first.status, SAVED, "{}", tail_lines(&first.stderr, 10));
    let mut stdout = first.stdout;
    for round in 0..5 {
        let resume = spawn(
            zq.command(
                [
                    std::ffi::OsString::from("resume"),
                    image.path.clone().into(),
                ],
                &cwd,
            ),
            "zhuque resume",
        );
        let fail = zq.exec(
            [std::ffi::OsString::from("fail"), image.path.clone().into()],
            &cwd,
            None,
        );
        let resumed = resume.wait(LAUNCH_TIMEOUT);
        assert_eq!(
            (fail.status, resumed.status),
            (0, SAVED),
            "round {round}: fail said {}; resume said {}",
            tail_lines(&fail.stderr, 5),
            tail_lines(&resumed.stderr, 5)
        );
        stdout.extend(resumed.stdout);
    }
    let last = zq.exec(
        [
            std::ffi::OsString::from("resume"),
            image.path.clone().into(),
        ],
        &cwd,
        None,
    );
    stdout.extend(last.stdout);
    assert_eq!(
        last.status,
        native.status,
        "{}",
        tail_lines(&last.stderr, 10)
    );
    assert!(
        stdout == native.stdout,
        "the output differs from the oracle's"
    );
}

/// Waits that time out (`wait_timeouts.c`: `poll`, `epoll_wait`, `select`, and `ppoll`,
/// `epoll_pwait`, `epoll_pwait2`, `pselect` without a signal mask, on an empty pipe, 2 ms
/// each, `poll` with no timeout, `semtimedop` and `sem_timedwait` on semaphores at 0):
/// none may return `EINTR`, as natively nothing
/// interrupts them. A failure landing inside one made it return `EINTR` after the resume.
#[test]
fn waits_that_time_out_are_not_cut_short() {
    let case = Case {
        file: "wait_timeouts.c",
        args: &["150"],
        status: 0,
    };
    crash_case("wait_timeouts", &case, CrashPlan::default());
}
