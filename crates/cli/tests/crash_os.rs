//! Crash tests of OS state (issue 4): files, pipes, sockets, event fds, signals and timers must
//! come back after every resume. Each program is run natively (the oracle) and then 20 times
//! with failures injected at random moments; output and exit status must equal the oracle's,
//! and each program checks the kernel's view of its own state as it goes (exit 99 otherwise).

mod common;

use common::*;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A file copier: offsets shared by dup/F_DUPFD_CLOEXEC fds, O_APPEND logs, pread/pwrite,
/// close-on-exec flags, /dev/null, a directory fd, cwd, umask, lowered rlimits.
#[test]
fn files_offsets_and_shared_descriptions() {
    let case = Case {
        file: "fd_files.c",
        args: &["60000"],
        status: 0,
    };
    crash_case("fd_files", &case, CrashPlan::default());
}

/// Credentials per thread (`cred_threads.c`, run as root): the main thread dropped to
/// `nobody` with a saved set-user-id of 0, supplementary groups and CAP_NET_BIND_SERVICE kept; a
/// worker thread with ids of its own. Every resume gives each thread its own back (a resume
/// once brought every thread back as root); the program checks them with the kernel as it goes
/// and becomes root again at the end through its saved set-user-id.
#[test]
fn credentials_of_each_thread() {
    let case = Case {
        file: "cred_threads.c",
        args: &["200", "5000000"],
        status: 0,
    };
    crash_case("cred_threads", &case, CrashPlan::default());
}

/// Thousands of fds (4500: pipes with unread data, descriptions of one file at their own
/// offsets, each dup'ed) with the soft RLIMIT_NOFILE lowered below the highest fd; three
/// failures at fail points (one at the start, before the program's fds: a resumed process
/// once kept two runtime fds in the numbers the program was about to use) and a random one
/// in every run.
#[test]
fn thousands_of_fds_under_a_lowered_limit() {
    let case = Case {
        file: "fd_many.c",
        args: &["120000", "1500", "2"],
        status: 0,
    };
    // The first fail point comes at a quarter of the run: random ones land before it.
    let plan = CrashPlan {
        min_failures_per_run: 3,
        window: (0.02, 0.2),
        ..CrashPlan::default()
    };
    crash_case("fd_many", &case, plan);
}

/// One inotify instance with 5000 watches (beyond the 4096 the runtime's shadow table once
/// held): every watch keeps its descriptor and path across failures.
#[test]
fn inotify_with_thousands_of_watches() {
    let case = Case {
        file: "fd_inotify_many.c",
        args: &["5000", "400", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_inotify_many", &case, plan);
}

/// POSIX message queues: messages queued at a failure (with their priorities) are there
/// after it, through a write-only and a non-blocking read-only descriptor, and a thread
/// blocked in mq_receive gets its message.
#[test]
fn message_queues() {
    let case = Case {
        file: "fd_mqueue.c",
        args: &["200000", "2"],
        status: 0,
    };
    // Two fail points and a random failure before the first one, in every run.
    let plan = CrashPlan {
        min_failures_per_run: 3,
        window: (0.02, 0.2),
        ..CrashPlan::default()
    };
    crash_case("fd_mqueue", &case, plan);
}

/// Netlink sockets: a route socket keeps its port id, groups (bound and joined), options
/// and answers dumps after every resume; a generic netlink socket resolves a family. With
/// the old runtime each was a placeholder (EBADF at the first dump after a resume).
#[test]
fn netlink_sockets() {
    let case = Case {
        file: "fd_netlink.c",
        args: &["120", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_netlink", &case, plan);
}

/// File leases: a read and a write lease held through failures, and the write lease still a
/// kernel lease at the end (a reader's open breaks it, with SIGIO). With the old runtime the
/// leases were gone after the first resume.
#[test]
fn file_leases() {
    let case = Case {
        file: "fd_lease.c",
        args: &["2000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_lease", &case, plan);
}

/// Directories removed while open (one for reading, one `O_PATH`) stay removed directories
/// with their permission bits: listing them and creating in them fail with ENOENT, as
/// natively. With the old runtime they were EBADF placeholders.
#[test]
fn removed_directories() {
    let case = Case {
        file: "fd_removed_dir.c",
        args: &["1000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_removed_dir", &case, plan);
}

/// Namespace fds of the process's own namespaces (eight kinds, and one O_PATH) are the
/// resumed process's own again: same namespace as /proc/self/ns says, type, link, setns.
/// With the old runtime they were EBADF placeholders.
#[test]
fn namespace_fds() {
    let case = Case {
        file: "fd_namespace.c",
        args: &["400", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 6,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_namespace", &case, plan);
}

/// A kernel AIO context (`aio_context.c`): completed events nobody has taken yet come back in
/// order with their results, the ring keeps its address and size, its head and tail are where
/// they were (also wrapped around), and new requests work. Before, the ring came back as a
/// plain copy and the first `io_submit` after a resume failed with `EINVAL`.
#[test]
fn aio_context_with_events_waiting() {
    let case = Case {
        file: "aio_context.c",
        args: &["3000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("aio_context", &case, plan);
}

/// fanotify groups (`fd_fanotify.c`, needs `CAP_SYS_ADMIN`): an inode mark on a file, one on
/// a directory with `FAN_REPORT_FID`, a mount mark with an ignored mask on one file; each
/// group's fdinfo (init flags, marks) stays as set up and every round's events arrive (those
/// queued at a failure are lost, said by the save). Before, every group was an EBADF
/// placeholder.
#[test]
fn fanotify_groups_and_their_marks() {
    let case = Case {
        file: "fd_fanotify.c",
        args: &["400", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_fanotify", &case, plan);
}

/// Close-on-exec is each fd's (`fd_cloexec.c`): a dup2 of an `O_CLOEXEC` open, an
/// `O_CLOEXEC` open cleared with `F_SETFD`, a plain open set with it; checked with `F_GETFD`
/// and by exec'ing the program. Before, fdinfo's flags (which show `O_CLOEXEC` for every fd of
/// a description opened with it) were taken for the fd's: after a resume the next exec closed
/// fds that should stay open.
#[test]
fn close_on_exec_of_each_fd() {
    let case = Case {
        file: "fd_cloexec.c",
        args: &["2000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_cloexec", &case, plan);
}

/// Pseudo-terminals the program opened: a canonical one with echo, one in packet and
/// exclusive mode with a raw slave, one still locked; half a typed line, its echo and output
/// queued at every fail point. Settings, window sizes, modes and every queued byte come back
/// (before: the masters were EBADF placeholders).
#[test]
fn pseudo_terminals() {
    let case = Case {
        file: "fd_pty.c",
        args: &["3000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 10,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_pty", &case, plan);
}

/// A raw ICMP socket with its ICMP_FILTER pings 127.0.0.1 through failures, and a packet
/// socket stays bound to the loopback interface with PACKET_AUXDATA and sees its traffic.
/// With the old runtime both were EBADF placeholders.
#[test]
fn raw_and_packet_sockets() {
    let case = Case {
        file: "sock_raw.c",
        args: &["300", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 6,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("sock_raw", &case, plan);
}

/// A packet socket's TPACKET_V3 receive ring, read the libpcap way, keeps getting the
/// program's pings after every failure: its mapping is the socket's ring again (same address,
/// socket:[INO] of the socket itself) and PACKET_VERSION is still TPACKET_V3. With the old
/// runtime the ring came back as a plain copy no kernel wrote: no ping showed up in it.
#[test]
fn packet_socket_rings_stay_live() {
    let case = Case {
        file: "sock_packet_ring.c",
        args: &["300", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 6,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("sock_packet_ring", &case, plan);
}

/// Device nodes removed while open (of null's and zero's devices, made in /dev, opened and
/// removed) stay those devices behind removed nodes. With the old runtime they were EBADF
/// placeholders.
#[test]
fn removed_device_nodes() {
    let case = Case {
        file: "fd_removed_dev.c",
        args: &["500", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 5,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_removed_dev", &case, plan);
}

/// A process with the runtime loaded but not crash-resistant (`LD_PRELOAD` alone, as `perf`
/// or a tool run with the runtime in its environment has it) has no save to lose: making those
/// objects says nothing (it used to warn that a failure could not save it).
#[test]
fn objects_zhuque_cannot_keep_are_not_announced_in_a_process_zhuque_does_not_keep() {
    let prog = Program::compile("fd_unkeepable.c");
    let mut cmd = std::process::Command::new(&prog.path);
    cmd.args(["probe", "10"])
        .env_remove("CRASH_RESISTANT")
        .env("LD_PRELOAD", runtime_lib());
    let out = run_to_end(cmd, None, "fd_unkeepable with the runtime inert");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status, 0, "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("probed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.zhuque_lines(), Vec::<String>::new(), "{stderr}");
}

/// Objects no resume can make again (an io_uring instance, a userfaultfd, a perf event
/// counter, a BPF map; `fd_unkeepable.c`) are announced when the program makes one (one
/// warning per kind), and a program that made and closed them (as libuv and feature probes do)
/// saves and resumes like any other: failures after the probe, counted.
#[test]
fn objects_zhuque_cannot_keep_are_announced_and_probes_stay_saveable() {
    let case = Case {
        file: "fd_unkeepable.c",
        args: &["probe", "20000"],
        status: 0,
    };
    // The probe is over within milliseconds of the start; a failure during it would end the
    // program unsaved, as it should: none comes in the first 0.25 s (the run takes ~1.5 s).
    let plan = CrashPlan {
        runs: 5,
        min_failures_per_run: 2,
        min_delay_secs: 0.25,
        resume_fail_chance: 0.9,
        ..CrashPlan::default()
    };
    let report = crash_case("fd_unkeepable", &case, plan);
    for run in &report.runs {
        let attempt = run.attempts.last().expect("an attempt");
        let first = String::from_utf8_lossy(&attempt.launches[0].result.stderr).into_owned();
        for kind in [
            "an io_uring instance",
            "a userfaultfd",
            "a perf event",
            "a BPF object",
        ] {
            let warning = format!(
                " is {kind}, which zhuque cannot keep: while it is open, a failure cannot \
                 save this process"
            );
            assert_eq!(
                first.matches(&warning).count(),
                1,
                "run {}: the warning about {kind} at its creation:\n{first}",
                run.run
            );
            for l in &attempt.launches[1..] {
                let later = String::from_utf8_lossy(&l.result.stderr);
                assert!(
                    !later.contains(&warning),
                    "run {}: a resume warned about {kind} again:\n{later}",
                    run.run
                );
            }
        }
    }
}

/// A failure while the program holds an object no resume can make again fails the save,
/// naming it (the fd, the process and the kind), and stops the program unsaved: exit 125,
/// one `zhuque:` line of the save, the image left as it was, which `zhuque resume` then
/// refuses. Never a resume with an fd silently become something else (before, each came
/// back as an `EBADF` placeholder). Also a ring whose fd was closed but stays mapped.
#[test]
fn holding_an_object_zhuque_cannot_keep_fails_the_save() {
    let prog = Program::compile("fd_unkeepable.c");
    let zq = Zhuque::real();
    let cases = [
        (
            "io_uring",
            "fd 3 of process 2 is an io_uring instance (anon_inode:[io_uring])",
        ),
        (
            "userfaultfd",
            "fd 3 of process 2 is a userfaultfd (anon_inode:[userfaultfd])",
        ),
        (
            "perf_event",
            "fd 3 of process 2 is a perf event (anon_inode:[perf_event])",
        ),
        (
            "bpf_map",
            "fd 3 of process 2 is a BPF object (anon_inode:bpf-map)",
        ),
        (
            "io_uring_mapped",
            "of process 2 is an io_uring instance (anon_inode:[io_uring])",
        ),
    ];
    for (kind, named) in cases {
        let cwd = prog.workdir();
        let image = cwd.join("image");
        let launch = hold(&zq, &prog, kind, &image, &cwd);
        let stderr = String::from_utf8_lossy(&launch.result.stderr);
        assert_eq!(
            launch.status(),
            125,
            "{kind}: {}\n{stderr}",
            launch.describe()
        );
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("the save failed"))
            .collect();
        assert_eq!(lines.len(), 1, "{kind}: one line about the save:\n{stderr}");
        assert!(
            lines[0].contains(named)
                && lines[0].ends_with(
                    "which zhuque cannot keep; the program is stopped unsaved (README, limits)"
                ),
            "{kind}: the line does not name the object:\n{stderr}"
        );
        let meta = std::fs::read(image.join("meta")).expect("the image stays");
        let resume = zq.exec(
            [std::ffi::OsString::from("resume"), image.clone().into()],
            &cwd,
            None,
        );
        assert_eq!(
            resume.status, 125,
            "{kind}: zhuque resume of an unsaved image"
        );
        assert!(
            contains(
                &resume.stderr,
                b"died without saving, or its last save failed"
            ),
            "{kind}: {}",
            String::from_utf8_lossy(&resume.stderr)
        );
        assert_eq!(
            std::fs::read(image.join("meta")).expect("meta"),
            meta,
            "{kind}: the refused resume changed the image"
        );
    }
}

/// A process that drops its privileges at once (root -> nobody, as nginx's workers do) stays
/// crash-resistant through failures: its coordinator, which writes the image and starts on
/// demand, starts before the credentials change (glibc's `setresuid` & co., or `syscall()`
/// with their numbers: `os::setid`) and keeps the launch's. Also a fork child that drops
/// them while its parent stays root.
#[test]
fn a_process_that_drops_its_privileges_stays_saveable() {
    for (label, args) in [
        ("proc_setid_glibc", &["glibc", "150"]),
        ("proc_setid_syscall", &["syscall", "150"]),
        ("proc_setid_child", &["child", "150"]),
    ] {
        let case = Case {
            file: "proc_setid.c",
            args,
            status: 0,
        };
        crash_case(label, &case, CrashPlan::default());
    }
}

/// Credentials changed with an inline `syscall` instruction, which the runtime cannot see:
/// the coordinator that a failure starts has the new ones and cannot write the image. It says
/// so in one line when it starts, and the save fails (125): never a silent loss.
#[test]
fn privileges_dropped_behind_the_runtimes_back_are_reported() {
    let prog = Program::compile("proc_setid.c");
    let zq = Zhuque::real();
    let cwd = prog.workdir();
    let image = cwd.join("image");
    let args = vec!["raw".to_string(), "150".to_string()];
    let via = Via::Run {
        fail_after: Some(0.15),
    };
    let launch = zq.launch(&prog, &args, &image, &cwd, via, None);
    let stderr = String::from_utf8_lossy(&launch.result.stderr);
    assert_eq!(launch.status(), 125, "{}\n{stderr}", launch.describe());
    let warnings = stderr
        .lines()
        .filter(|l| {
            l.contains("warning: process 2 changed its credentials with a system call the runtime does not see")
        })
        .count();
    assert_eq!(warnings, 1, "one warning naming the process:\n{stderr}");
}

/// A child process holding an object no resume can make again is left out of the save, as a
/// statically linked child is (issue 9): the rest of the tree is saved, one warning names the
/// object and the process, and after the resume the parent's `waitpid` sees the child killed
/// by `SIGKILL` — never a lost tree.
#[test]
fn a_child_holding_an_object_zhuque_cannot_keep_is_left_out_of_the_save() {
    let prog = Program::compile("fd_unkeepable.c");
    let zq = Zhuque::real();
    let cwd = prog.workdir();
    let image = cwd.join("image");
    let launch = hold(&zq, &prog, "child_io_uring", &image, &cwd);
    let stderr = String::from_utf8_lossy(&launch.result.stderr);
    assert_eq!(launch.status(), 75, "{}\n{stderr}", launch.describe());
    let warned = "zhuque: warning: fd 3 of process 4 is an io_uring instance \
                  (anon_inode:[io_uring]), which zhuque cannot keep: process 4 (fd_unkeepable) \
                  is left out of the save; after the resume its parent will see it killed by \
                  SIGKILL";
    assert_eq!(stderr.matches(warned).count(), 1, "{stderr}");
    let resume = zq.exec(
        [std::ffi::OsString::from("resume"), image.into()],
        &cwd,
        None,
    );
    assert_eq!(
        (
            resume.status,
            String::from_utf8_lossy(&resume.stdout).as_ref()
        ),
        (0, "child killed by signal 9\n"),
        "{}",
        String::from_utf8_lossy(&resume.stderr)
    );
}

/// `fd_unkeepable hold KIND` with a failure half a second in (the program holds its object
/// by then: checked on its output).
fn hold(
    zq: &Zhuque,
    prog: &Program,
    kind: &str,
    image: &std::path::Path,
    cwd: &std::path::Path,
) -> Launch {
    let args = vec!["hold".to_string(), kind.to_string()];
    let via = Via::Run {
        fail_after: Some(0.5),
    };
    let launch = zq.launch(prog, &args, image, cwd, via, None);
    let stdout = String::from_utf8_lossy(&launch.result.stdout);
    assert!(
        stdout.contains(&format!("holding {kind}")),
        "{kind}: the failure came before the program held it:\n{stdout}\n{}",
        String::from_utf8_lossy(&launch.result.stderr)
    );
    launch
}

/// A temporary file unlinked while open, an O_TMPFILE file (and a read-only second
/// description of it) and a sealed memfd keep their contents, offsets and seals.
#[test]
fn unlinked_files_and_memfds() {
    let case = Case {
        file: "fd_unlinked.c",
        args: &["80000"],
        status: 0,
    };
    crash_case("fd_unlinked", &case, CrashPlan::default());
}

/// An unlinked file used as shared memory (kept open and mapped `MAP_SHARED`) stays one file:
/// every write through the fd shows in the mapping and back, across failures and growth.
/// Before, the fd and the mapping came back as two copies that silently diverged.
#[test]
fn unlinked_file_shared_by_its_fd_and_a_mapping() {
    let case = Case {
        file: "fd_unlinked_mapped.c",
        args: &["20000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 10,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_unlinked_mapped", &case, plan);
}

/// Private mappings of an unlinked file and of a memfd whose fds the program keeps
/// (`fd_unlinked_private.c`): the pages the program never wrote through the mapping keep
/// showing the file's bytes as the fd writes them, the pages it wrote stay its own, and
/// smaps shows the mappings on the fds' files with exactly those pages anonymous. Before, the
/// mappings came back as copies of their pages at the save: the fds' later writes no longer
/// showed in them.
#[test]
fn private_mappings_of_unlinked_files_follow_their_fds() {
    let case = Case {
        file: "fd_unlinked_private.c",
        args: &["200000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 10,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_unlinked_private", &case, plan);
}

/// Two threads talking over a pipe (non-blocking writer) and over stream and seqpacket
/// socketpairs; unread data survives, including data whose writer has closed its end and a
/// FIFO's, at a deterministic failure point and at random ones.
#[test]
fn threads_over_pipes_and_socketpairs() {
    let case = Case {
        file: "fd_pipes.c",
        args: &["20000"],
        status: 0,
    };
    crash_case("fd_pipes", &case, CrashPlan::default());
}

/// A program that closes every fd it did not open and dup2s onto the highest fd numbers,
/// where the runtime keeps its own: the runtime's fds move out of its way and failures still
/// save and resume.
#[test]
fn runtime_fds_out_of_the_programs_way() {
    let case = Case {
        file: "fd_protect.c",
        args: &["200000"],
        status: 0,
    };
    crash_case("fd_protect", &case, CrashPlan::default());
}

/// A SIGALRM ticker (setitimer) with its own SA_SIGINFO handler on a sigaltstack, a
/// SIGVTALRM itimer, a POSIX timer, ignored SIGHUP, and the program's view of SIGPWR and
/// SIGRTMAX.
#[test]
fn signal_handlers_and_timers() {
    let case = Case {
        file: "sig_ticker.c",
        args: &["600"],
        status: 0,
    };
    crash_case("sig_ticker", &case, CrashPlan::default());
}

/// POSIX timers that notify by starting a thread (SIGEV_THREAD): periodic, self-rearming and
/// churning timers whose notification threads are stopped and resumed like the program's own
/// (glibc's helper thread, which blocks every signal, would make every save fail). Two
/// failures come from inside a notification thread; every run also takes a random one.
#[test]
fn sigev_thread_timers() {
    let case = Case {
        file: "sig_thread_timers.c",
        args: &["400", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        min_failures_per_run: 3,
        ..CrashPlan::default()
    };
    crash_case("sig_thread_timers", &case, plan);
}

/// Started by hand (no pid namespace: the pid and every thread id change at every resume),
/// `prog args` goes through its `fail_points` and ends as natively, with one warning about
/// ids and no other.
fn without_a_pid_namespace(file: &str, args: &[&str], fail_points: usize) {
    let prog = Program::compile(file);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let native = run_native(&prog, &args, &prog.workdir(), None);
    assert_eq!(
        native.status,
        0,
        "{}",
        String::from_utf8_lossy(&native.stderr)
    );
    let image = ImageDir::new();
    let (outcome, parts, stderr) = run_by_hand_to_end(&prog, &args, &image.path);
    assert_eq!(parts.len(), fail_points, "failures:\n{stderr}");
    assert_eq!(
        stderr.matches("thread ids change").count(),
        fail_points,
        "one warning per resume about ids:\n{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    if let Err(d) = compare(&native.outcome(), &outcome, &parts) {
        panic!("{d}\nstderr:\n{stderr}");
    }
}

/// SIGEV_THREAD timers follow the coordinator to its new id, SIGEV_THREAD_ID timers their
/// thread, and signals pending for a thread come back to it.
#[test]
fn sigev_thread_timers_without_a_pid_namespace() {
    without_a_pid_namespace("sig_thread_timers.c", &["300", "2"], 2);
}

/// Pending signals the program sent itself name it (its new pid) as their sender.
#[test]
fn pending_signals_without_a_pid_namespace() {
    without_a_pid_namespace("sig_signalfd.c", &["12000"], 3);
}

/// A signalfd consumer: process- and thread-directed signals pending at a failure (real-time
/// ones queued several times, with their values and senders) are pending again after it.
#[test]
fn signalfd_and_pending_signals() {
    let case = Case {
        file: "sig_signalfd.c",
        args: &["40000"],
        status: 0,
    };
    crash_case("sig_signalfd", &case, CrashPlan::default());
}

/// inotify (watch descriptors with a gap), epoll (level/edge-triggered, a disabled oneshot
/// entry, a nested instance), a semaphore eventfd, timerfds (an unread expiration, relative
/// and absolute timers, a periodic one expired and unread at most failures), a connected UDP
/// pair, Unix listeners on a path (socket file mode 0640) and an abstract name.
#[test]
fn inotify_epoll_timerfd_udp_and_unix_listeners() {
    let case = Case {
        file: "fd_events.c",
        args: &["3000"],
        status: 0,
    };
    crash_case("fd_events", &case, CrashPlan::default());
}

/// epoll entries whose fd number no longer holds the watched file: one number closed since,
/// one reused by another file, one reused by another watched file — two entries under one
/// number (`fd_epoll_moved.c`). The kernel keeps such entries while the file is open under
/// another number; a resume that dropped them left epoll_wait blocking forever (issue 12),
/// and one that took the second entry under a number for the first lost it (an nginx worker
/// never finished its graceful shutdown).
#[test]
fn epoll_entries_whose_fd_number_moved() {
    let case = Case {
        file: "fd_epoll_moved.c",
        args: &["200000"],
        status: 0,
    };
    crash_case("fd_epoll_moved", &case, CrashPlan::default());
}

/// A `SOCK_SEQPACKET` socketpair whose other end shut down its sending side, with messages
/// (zero-length ones too) queued at the failure (`fd_seqpacket.c`): such a program could not
/// be saved at all (the save read end-of-file as an endless run of empty messages).
#[test]
fn seqpacket_pair_with_a_shut_down_end() {
    let case = Case {
        file: "fd_seqpacket.c",
        args: &["200000"],
        status: 0,
    };
    crash_case("fd_seqpacket", &case, CrashPlan::default());
}

/// Lasting `madvise` advice (`mem_advice.c`): regions with `MADV_DONTFORK`, `DONTDUMP`,
/// `HUGEPAGE`, `NOHUGEPAGE`, `MERGEABLE`, `WIPEONFORK`, and file mappings with
/// `POSIX_MADV_RANDOM`/`SEQUENTIAL`, one changed half-way; each region's smaps `VmFlags` and
/// contents are checked against what the kernel reported at the start, and a fork child every
/// 100 rounds must lack the `MADV_DONTFORK` regions. Before, every flag came back cleared, and
/// a fork child had the `MADV_DONTFORK` regions (the parent losing its flags at the fork).
#[test]
fn lasting_memory_advice() {
    let case = Case {
        file: "mem_advice.c",
        args: &["2000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 10,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("mem_advice", &case, plan);
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)` (`mem_lock_future.c`): every mapping made later is
/// locked, also after a resume (before, future locking was lost), and what is locked stays
/// within 256 MiB of the heap in use (before: about 1 GiB, the allocator's reservations).
/// Needs `CAP_IPC_LOCK` or a `RLIMIT_MEMLOCK` of 512 MiB.
#[test]
fn memory_locked_as_it_is_mapped() {
    let case = Case {
        file: "mem_lock_future.c",
        args: &["300", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("mem_lock_future", &case, plan);
}

/// I/O signals (`fd_async.c`): a pipe that signals the process with `SIGIO` (`F_SETOWN`), a
/// socket that signals the main thread with a real-time signal (`F_SETOWN_EX`, `F_SETSIG`,
/// checked `si_fd`), a description with only a signal chosen; each checked with `F_GETFL`,
/// `F_GETOWN_EX` and `F_GETSIG` and made readable every round, one signal each. Before, all
/// three settings were lost and no signal came after a resume.
#[test]
fn io_signals_of_files() {
    let case = Case {
        file: "fd_async.c",
        args: &["20000", "2"],
        status: 0,
    };
    let plan = CrashPlan {
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    crash_case("fd_async", &case, plan);
}

/// File descriptors in flight (`SCM_RIGHTS` sent, not yet received) on stream, datagram and
/// seqpacket socketpairs at every failure (`fd_in_flight.c`): a pipe with unread data, a file
/// at an offset, a memfd, an eventfd, a second fd of a kept file (one description) and a
/// socketpair end with a queued message, each checked when it arrives; on the stream the fds
/// come with the same byte; and the same on an unnamed datagram socket's messages to one bound
/// to an abstract name, and on a stream connection and a datagram socketpair whose sender
/// closed its end after sending (python's multiprocessing resource sharer does that; their
/// fds, and the datagrams themselves, were lost until 2026-12-06).
/// Before, they were closed at the save and the messages came without them.
#[test]
fn fds_in_flight() {
    let case = Case {
        file: "fd_in_flight.c",
        args: &["1500"],
        status: 0,
    };
    crash_case("fd_in_flight", &case, CrashPlan::default());
}

/// Datagrams queued on bound UDP and Unix datagram sockets at the failure (`fd_dgram_queue.c`),
/// from senders of every kind (bound, closed, abstract, unnamed; a connected UDP receiver):
/// each comes back in order with its bytes and its sender's address. Before, the queues were
/// lost and the reader waiting for them blocked for ever.
#[test]
fn datagrams_queued_on_bound_sockets() {
    let case = Case {
        file: "fd_dgram_queue.c",
        args: &["20000"],
        status: 0,
    };
    crash_case("fd_dgram_queue", &case, CrashPlan::default());
}

/// Process attributes checked with the kernel's own view after every resume
/// (`proc_attrs.c`): umask, working directory, no_new_privs, child subreaper, THP disabled,
/// the parent death signal, oom_score_adj and the thread name. no_new_privs came back off
/// (the save read the coordinator thread's own), the last three were not kept at all.
#[test]
fn process_attributes() {
    let case = Case {
        file: "proc_attrs.c",
        args: &["2000"],
        status: 0,
    };
    crash_case("proc_attrs", &case, CrashPlan::default());
}

/// Each thread's scheduling, checked by each thread itself after every resume
/// (`thr_sched.c`): SCHED_OTHER with nice 3 and reset-on-fork, SCHED_BATCH with nice 7,
/// SCHED_IDLE, SCHED_RR priority 3 (as root), each pinned to its own CPUs with its own timer
/// slack. Before, every thread came back with the resuming process's.
#[test]
fn scheduling_of_each_thread() {
    let case = Case {
        file: "thr_sched.c",
        args: &["3000"],
        status: 0,
    };
    crash_case("thr_sched", &case, CrashPlan::default());
}

/// The flags the kernel keeps per thread, each checked by its own thread after every resume
/// (`thr_flags.c`): one thread with `no_new_privs` and `SIGUSR2` as its parent death signal,
/// one with neither, the main thread with only `SIGUSR1`. Before, every thread came back
/// with the main thread's.
#[test]
fn no_new_privs_and_death_signal_of_each_thread() {
    let case = Case {
        file: "thr_flags.c",
        args: &["2500"],
        status: 0,
    };
    crash_case("thr_flags", &case, CrashPlan::default());
}

/// The program's own rseq registrations (`proc_rseq.c`, run with
/// `GLIBC_TUNABLES=glibc.pthread.rseq=0`, so glibc registers none): the main thread and a
/// worker each register a thread-local area with `syscall(SYS_rseq, ...)` (the worker moves to
/// a second one half way), and a fork child inherits the main thread's; after every resume
/// each thread checks with the kernel that its area is still registered (registering it again
/// fails with `EBUSY`) and still written (a signal rewrites a cpu_id set to -1). Before, a
/// resume re-registered only glibc's area: the program's registration was lost, its cpu_id
/// stayed stale and per-cpu data built on it would silently corrupt.
#[test]
fn programs_own_rseq_registrations() {
    let prog = Program::compile("proc_rseq.c");
    let tree =
        Tree::new("proc_rseq", &prog.path, ["2000"]).env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
    let h = Harness::new("proc_rseq");
    let oracle = h.oracle_of(&tree);
    assert_eq!(
        oracle.outcome.status, 0,
        "proc_rseq: unexpected native exit status"
    );
    h.crash_test_of(&tree, &oracle, &CrashPlan::default());
}

/// Shared mappings of a file opened for writing, one read-only and made writable with
/// `mprotect` for each write, one writable, and one of the file opened read-only
/// (`map_shared_file.c`): after every resume the read-only view can still be made writable
/// (it came back over a read-only open: `EACCES`), the read-only file's cannot (`EACCES` as
/// natively), and all views and the file agree.
#[test]
fn shared_file_mappings_keep_their_write_permission() {
    let case = Case {
        file: "map_shared_file.c",
        args: &["400000"],
        status: 0,
    };
    crash_case("map_shared_file", &case, CrashPlan::default());
}

/// Unix sockets whose socket file is gone (`fd_unix_unlinked.c`): a listener and a datagram
/// socket whose files were unlinked keep their addresses with no file coming back, and a
/// listener whose path another listener of the program took since leaves that one reachable
/// (the resume used to bind them all again: the files reappeared, and the other listener's
/// was unlinked); a listener whose directory is gone too keeps its pending connection (its
/// bind used to fail with ENOENT, and it came back closed).
#[test]
fn unix_sockets_whose_file_is_gone() {
    let case = Case {
        file: "fd_unix_unlinked.c",
        args: &["20000"],
        status: 0,
    };
    crash_case("fd_unix_unlinked", &case, CrashPlan::default());
}

/// Shutdown states of sockets that are not a pair's end (`sock_shutdown.c`): UDP shut down
/// for writing, reading and both (unconnected), Unix datagram sockets shut down for reading
/// and for writing (unbound, and connected to another socket of the program), checked with
/// poll, reads and sends after every resume beside sockets that still carry datagrams.
/// Before, all came back open.
#[test]
fn shutdown_states_of_sockets() {
    let case = Case {
        file: "sock_shutdown.c",
        args: &["3000"],
        status: 0,
    };
    crash_case("sock_shutdown", &case, CrashPlan::default());
}

/// pidfds of a child and of the process itself, one in an epoll set (`fd_pidfd.c`): after
/// every resume they refer to the same processes (fdinfo, poll, pidfd_send_signal, flags), and
/// at the end the child's exit is seen through them (poll, epoll_wait, waitid(P_PIDFD)).
/// Before, they came back as placeholders.
#[test]
fn pidfds_of_a_child_and_of_itself() {
    let case = Case {
        file: "fd_pidfd.c",
        args: &["3000"],
        status: 0,
    };
    crash_case("fd_pidfd", &case, CrashPlan::default());
}

// ---- the server test ----------------------------------------------------------------------------

/// How one client connection ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// The server finished (its last answer).
    Bye,
    /// End of file or a reset: the server (process) went away.
    Gone,
    /// Anything else: a wrong answer, a timeout.
    Bad(String),
}

#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    answers: u64,
    end: End,
}

/// `tl_mix(TL_HASH_INIT, n)` of testlib.h: the value the server sends with answer `n`.
fn expected(n: u64) -> u64 {
    let h: u64 = 0xcbf2_9ce4_8422_2325;
    h ^ n
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2)
}

/// One connection: HELLO, then requests until the server says BYE or goes away.
fn converse(stream: TcpStream, id: u64) -> Conn {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            return Conn {
                id,
                answers: 0,
                end: End::Bad(e.to_string()),
            };
        }
    };
    let mut r = BufReader::new(stream);
    let mut answers = 0;
    let gone = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        )
    };
    if let Err(e) = w.write_all(format!("HELLO {id}\n").as_bytes()) {
        let end = if gone(&e) {
            End::Gone
        } else {
            End::Bad(e.to_string())
        };
        return Conn { id, answers, end };
    }
    let end = loop {
        if let Err(e) = w.write_all(b"REQ\n") {
            break if gone(&e) {
                End::Gone
            } else {
                End::Bad(e.to_string())
            };
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => break End::Gone,
            Ok(_) => {}
            Err(e) if gone(&e) => break End::Gone,
            Err(e) => break End::Bad(e.to_string()),
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["BYE", _] => break End::Bye,
            ["OK", n, h] => {
                let n: u64 = n.parse().unwrap_or(0);
                if u64::from_str_radix(h, 16).ok() != Some(expected(n)) {
                    break End::Bad(format!("wrong answer {line:?}"));
                }
                answers += 1;
            }
            _ => break End::Bad(format!("unexpected line {line:?}")),
        }
    };
    Conn { id, answers, end }
}

/// A client that keeps connecting to 127.0.0.1:`port` and making requests, reconnecting
/// whenever the server goes away, until `stop`.
fn client(port: u16, stop: Arc<AtomicBool>, log: Arc<Mutex<Vec<Conn>>>) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut id = 0;
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                id += 1;
                let c = converse(s, id);
                log.lock().unwrap().push(c);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Unix stream connection to a server outside the program (`fd_unix_outside.c`; the server
/// is a thread of this test): the server writes 64 KiB and closes at once, the program reads
/// them slowly, so failures land with unread data queued; after a resume the connection is
/// one whose peer has closed, with that data, then end of file, then `EPIPE` on a write, as
/// natively. (The kind had no test before.)
#[test]
fn unix_connection_to_an_outside_server() {
    let dir = TempDir::new("fd_unix_outside");
    let path = dir.path.join("server.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the server");
    listener.set_nonblocking(true).expect("non-blocking");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let payload: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(&payload);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
    };
    let prog = Program::compile("fd_unix_outside.c");
    let h = Harness::new("fd_unix_outside");
    let path_arg = path.to_str().expect("a UTF-8 path").to_string();
    let oracle = h.oracle(&prog, &[&path_arg, "300"]);
    assert_eq!(oracle.outcome.status, 0);
    h.crash_test(&prog, &oracle, &CrashPlan::default());
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server thread");
}

/// Connection ids listed on the server's stderr after `marker` (`?` for unknown ones).
fn ids_after(stderr: &[u8], marker: &str) -> Vec<Option<u64>> {
    let text = String::from_utf8_lossy(stderr);
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(marker) {
            let rest = rest.split(':').next().unwrap_or("");
            out.extend(rest.split_whitespace().map(|w| w.parse().ok()));
        }
    }
    out
}

/// An epoll server (listening TCP socket, eventfd, timerfd) with a real client that
/// reconnects after every resume. The connection open at a failure comes back as a socket
/// that fails on first use: the server drops it and keeps accepting; the client saw that same
/// connection end (EOF or reset) and then succeeded on a new one.
#[test]
fn epoll_server_with_reconnecting_client() {
    let port = free_port();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let c = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || client(port, stop, log))
    };
    let prog = Program::compile("fd_server.c");
    let h = Harness::new("fd_server");
    let port_arg = port.to_string();
    let oracle = h.oracle(&prog, &[&port_arg, "20000"]);
    assert_eq!(oracle.outcome.status, 0);
    let report = h.crash_test(&prog, &oracle, &CrashPlan::default());
    stop.store(true, Ordering::Relaxed);
    c.join().expect("client thread");
    let conns = log.lock().unwrap().clone();

    let bad: Vec<&Conn> = conns
        .iter()
        .filter(|c| matches!(c.end, End::Bad(_)))
        .collect();
    assert!(
        bad.is_empty(),
        "connections that did not end cleanly: {bad:?}"
    );
    let mut recovered_total = 0;
    for (run, r) in report.runs.iter().enumerate() {
        let attempt = r.attempts.last().expect("an attempt");
        let mut recovered: Vec<Option<u64>> = Vec::new();
        let mut dropped: Vec<Option<u64>> = Vec::new();
        for l in &attempt.launches {
            recovered.extend(ids_after(
                &l.result.stderr,
                "server: recovered with open connections:",
            ));
            dropped.extend(ids_after(&l.result.stderr, "server: dropped connection "));
        }
        for id in &recovered {
            assert!(
                dropped.contains(id),
                "run {run}: connection {id:?} was open at a failure but the server never \
                 dropped it (dropped: {dropped:?})"
            );
            let Some(id) = id else { continue };
            recovered_total += 1;
            let conn = conns
                .iter()
                .find(|c| c.id == *id)
                .unwrap_or_else(|| panic!("run {run}: the client has no connection {id}"));
            assert_eq!(
                conn.end,
                End::Gone,
                "run {run}: connection {id} was open at a failure; the client saw {conn:?}"
            );
            assert!(
                conns
                    .iter()
                    .any(|c| c.id > *id && (c.answers > 0 || c.end == End::Bye)),
                "run {run}: no connection after {id} succeeded"
            );
        }
    }
    let answered: u64 = conns.iter().map(|c| c.answers).sum();
    println!(
        "[fd_server] {} client connections, {answered} answers, {recovered_total} connections \
         open at a failure and dropped by the resumed server",
        conns.len()
    );
    assert!(
        recovered_total > 0,
        "no failure happened while a client connection was open"
    );
}
