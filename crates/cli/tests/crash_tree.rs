//! Acceptance tests of process trees (issue 9): `zhuque run -- PROG` makes PROG and every
//! process it starts crash-resistant, and one failure saves the whole tree at one instant.
//!
//! Each crash test runs its command natively (the oracle), once under zhuque without
//! injected failures, then 20 times with failures injected at random moments (`--fail-after`
//! and `zhuque fail DIR`), resuming after each (`zhuque run` of the same command, or `zhuque
//! resume DIR`) until it ends. The concatenated stdout and the final exit status must equal
//! the native run's, every run must really go through its failures (a launch that ended with
//! 75 followed by one that resumed), the image must be gone at the end, and where stated the
//! files left in the working directory must be byte-identical to the native run's. Commands
//! run with a fixed environment (`TREE_ENV`: system PATH, C locale). The harness is
//! `common/crash.rs` (the crash loop, over any `Subject`) and `common/tree.rs` (command lines
//! as subjects, file comparison).
//!
//! What each test proves:
//! - `bash_script_with_pipelines_jobs_and_files` (`tests/trees/pipeline.sh`): a shell and
//!   the hundreds of short-lived processes it forks and execs — pipelines whose `head` ends
//!   early, command substitution, subshells, background jobs collected with `wait` (one with
//!   status 3), `while read` loops over a pipeline and a process substitution, `set -e`
//!   ending the script with status 1 and an EXIT trap — resume wherever a failure lands: same
//!   output, same status, same files (out/*).
//! - `make_j2_builds_a_c_project`: `make -s -j2 check` on a generated 20-file C project
//!   (`tests/trees/gen_c_project.py`): make, its jobserver pipe shared by make and its
//!   children, parallel `gcc -O2` (gcc → cc1 → as, with temporary files), awk, ar and the
//!   link all survive failures; every object file, the library and the program are
//!   byte-identical to a native build, and the program prints the same.
//! - `gcc_compiles_one_large_file`: `gcc -O2 -c` of one large generated file (cc1 busy for
//!   seconds, then `as`): the same object file, byte for byte.
//! - `python_pool_fork`, `python_pool_spawn`, `python_pool_forkserver`,
//!   `python_process_pool_executor` (`tests/trees/pools.py`): `multiprocessing.Pool` with the
//!   fork start method (forked workers, replaced every 4 tasks), with the spawn start method
//!   (workers are new python3 processes started by fork+exec), with the forkserver start
//!   method (python 3.14's default: a server forks each worker when asked over a Unix
//!   socket, with the worker's pipe ends in flight on it), and
//!   `concurrent.futures.ProcessPoolExecutor`, with their pipes, semaphores and helper
//!   threads: identical results, in order.
//! - `socketpair_between_processes_with_fds_in_flight` (`tree_in_flight.c`) and
//!   `unix_connections_between_processes_pending_and_accepted` (`tree_pending.c`): Unix
//!   connections whose ends two processes hold, with unread bytes and fds in flight, and
//!   connections a listener in another process has not accepted yet.
//! - `terminal_session_over_a_pseudo_terminal` (`tree_pty.c`): `forkpty()`, the child a
//!   session leader whose controlling terminal is the slave: requests, ^C (SIGINT to the
//!   foreground group) and window changes (SIGWINCH) typed at the master, answered by the
//!   child with what it sees; the terminal, its queued bytes and the session come back.
//! - `a_shell_under_script_keeps_its_terminal` (`script -qfec` + `tests/trees/pty_session.sh`):
//!   a real program holding a pseudo-terminal's master for a shell whose terminal it is.
//! - `forks_from_a_signal_handler_that_blocks_every_signal` (`tree_fork_in_handler.c`):
//!   a fork inside a handler whose mask blocks every signal (PostgreSQL's postmaster), each
//!   child reaped there: every save and every pool settle after a child ends stops it.
//! - `a_python_pool_ends_with_its_helpers`: `zhuque run` of a python pool waits a moment for
//!   the helpers that end after the program (resource tracker, forkserver) and says nothing
//!   of processes running on.
//! - `python_duplex_pipe_fork`, `python_duplex_pipe_spawn` (`tests/trees/duplex_pipe.py`): a
//!   worker answering over `multiprocessing.Pipe(duplex=True)`, a socketpair whose ends two
//!   processes hold, with a connection passed over it: the same totals.
//! - `python_imports_extension_modules` (`tests/trees/imports.py`): python3 importing and
//!   using hashlib, ssl, sqlite3, zlib, bz2, lzma, decimal, ctypes, uuid... with failures early in
//!   most launches, many of them inside ld.so loading an extension module (issue 11): the same
//!   output every time.
//! - `zombies_orphans_sessions_sigchld_daemon` (`tests/programs/tree_procs.c`): a zombie
//!   reaped after the resume with its status (7), waitid(WNOHANG) and WNOWAIT, a child
//!   blocked in read() on a pipe from its parent, sessions (setsid) and process groups
//!   (setpgid from both sides, kill of a group), a SIGCHLD handler whose delivery count must
//!   equal the number of children that ended (no delivery lost or invented by a resume),
//!   an orphan reparented to init (or a subreaper above the root, as natively), an orphan
//!   adopted by the root as a child subreaper, and daemon() (whose file is compared). Three
//!   `zhuque_fail_now()` points hit the worst moments in every run, plus at least one random
//!   failure per run.
//! - `exec_through_env_and_shebang_scripts` (`tests/programs/tree_exec.c chain`): one process
//!   execs `/usr/bin/env` (which finds the next program on PATH), then a `#!/bin/bash`
//!   script (`tests/trees/exec_stage3.sh`, which runs external commands), which execs a
//!   `#!/usr/bin/env python3` script (`tests/trees/exec_stage4.py`, exit status 3): same pid
//!   throughout, an fd without O_CLOEXEC kept with its offset (exec.log compared), the
//!   O_CLOEXEC one closed; failures after the execs resume the exec'd program (at least 3
//!   of them must land after the last exec).
//! - `fork_children_execute_through_variadic_lists` (`tree_exec.c lists`): 120 fork children,
//!   each computing 0-20 ms (around the moment a fork child stops to copy its parent's pool),
//!   execute the program again through `execl`, `execle` and `execlp`, with more arguments
//!   than registers pass; each prints its arguments and ends with its own status.
//! - `programs_started_through_relative_paths` (`tree_exec.c relative`): fork children and
//!   `posix_spawn` start programs through paths relative to the working directory, one a
//!   `#!/bin/sh` script that prints its `$0`, one with a file action that changes the child's
//!   directory first; output and statuses as natively.
//! - `a_static_child_is_killed_and_reported` (`tree_exec.c static` + `tree_static.c`, linked
//!   with `cc -static` at test time): a child that cannot run under the runtime is reported
//!   by exactly one `zhuque:` line naming it each time it is started, and one still running
//!   at a failure is seen by its parent as killed by SIGKILL after the resume (the parent
//!   starts it again, so stdout is the same either way); this must have happened at least 3
//!   times over the 20 runs, and the parent never sees any other status.
//! - `programs_executed_through_fds` (`tree_exec.c fd`): the root and its children execute
//!   this program through an fd (`fexecve`, `execveat`), with and without close-on-exec;
//!   failures while they run resume them (the kernel names them `/dev/fd/N`).
//! - `a_child_run_from_a_memfd_is_killed_and_reported` (`tree_exec.c static` with
//!   `TREE_STATIC_MEMFD`): a child run from a memfd (no path a resume could execute) is
//!   treated as a static one: one warning per start, killed by SIGKILL at a failure.
//! - `a_program_started_by_hand_through_the_loader_says_a_failure_ends_it`: the same launch
//!   outside a tree (solo mode) runs natively, and its warning says a failure ends it.
//! - `an_image_replaced_while_its_tree_ran_is_left_alone`: a detached tree's init does not
//!   remove the image of a launch started at its path after its directory was removed.
//! - `programs_started_after_the_image_was_removed_say_they_run_natively`: a tree whose
//!   image directory is removed while it runs: the programs it starts after run natively,
//!   each saying so, and none makes the directory again.
//! - `threads_keep_their_ids_when_other_processes_run_on_first` (`tree_tids.c`): a root's
//!   threads keep their tids through resumes while its children fork all along.
//! - `a_failure_after_the_image_was_removed_says_nothing_was_saved`: the save of a tree whose
//!   image directory was removed fails with one line, and makes nothing again.
//! - `fds_in_flight_on_a_connection_not_yet_accepted` (`tree_pending_fds.c`): a pipe's write
//!   end sent on a connection the child's listener has not accepted yet comes back with it.
//! - `pipes_in_flight_on_a_connection_whose_client_closed` (`tree_pending_fds.c forkserver`):
//!   python's forkserver asking for a worker: two pipes' ends in flight on a connection whose
//!   client closed come back in the listener's queue, one with their other ends.
//! - `pipes_in_flight_in_every_message_queued_on_a_connection` (`tree_pending_fds.c queued`):
//!   pipe ends in two messages queued on an accepted connection come back one pipe with
//!   their other ends in the client.
//! - `a_script_keeps_the_dollar_zero_it_was_started_with`: `zhuque run -- ./count.sh` and a
//!   script found through `PATH` print the `$0` they print natively, through two failures.
//! - `a_sleeping_fork_child_joins_the_tree_by_itself` (`tree_lazy_join.c`): a fork child
//!   that sleeps in a blocking `read` joins the tree at the end of its grace period with no
//!   save to wake it, and its own first POSIX timer still gets id 0 (not a crash test).
//! - `commands_a_shell_runs_keep_their_standard_streams`: filters in pipelines (programs a
//!   shell's fork children execute, started without the init) read and close their
//!   standard input as natively, one of them joining while blocked in `read` (not a crash
//!   test).
//!
//! The tests `*_natively` run every command natively three times and require the same
//! stdout, status and files each time (the oracle of a crash test is one native run), so a
//! nondeterministic program or script is caught as such, not blamed on zhuque.
//!
//! Run: `cargo test --release -p zhuque --test crash_tree`
//! (`ZHUQUE_TEST_SEED` repeats a run's random choices, `ZHUQUE_TEST_KEEP=1` keeps the
//! working directories and images).

mod common;

use common::*;
use std::ffi::OsString;
use std::process::Command;

/// Natively, three times: deterministic, with the expected status. Returns the first run
/// and its working directory.
fn native_check(tree: &Tree, status: i32) -> (Finished, std::path::PathBuf) {
    let (first, dir, longest) = tree.native_runs(3);
    assert_eq!(
        first.status,
        status,
        "{}: unexpected status; stderr:\n{}",
        tree.command_line(),
        tail_lines(&first.stderr, 15)
    );
    println!(
        "[{}] natively 3 times alike: status {}, {} bytes of stdout, longest run {:.3}s",
        tree.name,
        first.status,
        first.stdout.len(),
        longest.as_secs_f64()
    );
    (first, dir)
}

/// The oracle (which must have `status`) and the crash test of `tree`.
fn crash(tree: &Tree, status: i32, plan: &CrashPlan) -> (Oracle, CrashReport) {
    let h = Harness::new(&tree.name);
    let oracle = h.oracle_of(tree);
    assert_eq!(
        oracle.outcome.status, status,
        "[{}] unexpected native exit status",
        tree.name
    );
    let report = h.crash_test_of(tree, &oracle, plan);
    (oracle, report)
}

/// A crash test of the C program `file` (built with warnings as errors, and `flags`), run as
/// tree `name` with `args`: ten runs, each with at least two failures (the program's own fail
/// points, random ones besides), its files not compared. The oracle and the report.
fn fail_points(name: &str, file: &str, args: &[&str], flags: &[&str]) -> (Oracle, CrashReport) {
    let prog = Program::compile(file);
    let mut all = vec!["-Wall", "-Wextra", "-Werror"];
    all.extend_from_slice(flags);
    prog.build(&all);
    let plan = CrashPlan {
        runs: 10,
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    let tree = Tree::new(name, &prog.path, args.iter().copied()).compare_files(&[]);
    crash(&tree, 0, &plan)
}

fn os(p: impl Into<OsString>) -> OsString {
    p.into()
}

// ---- the subjects ----

const PIPELINE_ROUNDS: &str = "50";

fn bash_pipeline() -> Tree {
    Tree::new(
        "bash_pipeline",
        "/bin/bash",
        [os(trees_file("pipeline.sh")), os(PIPELINE_ROUNDS)],
    )
    .compare_files(&[])
}

fn make_project() -> Tree {
    let tree = Tree::new("make_j2", "/usr/bin/make", ["-s", "-j2", "check"]);
    let template = tree.dir.path.join("template");
    let mut generator = Command::new("/usr/bin/python3");
    generator
        .arg(trees_file("gen_c_project.py"))
        .arg("project")
        .arg(&template)
        .args(["18", "12"]);
    prepare(generator, "gen_c_project.py project");
    tree.setup(move |dir| copy_tree(&template, dir))
        .compare_files(&[])
}

fn gcc_big() -> Tree {
    let tree = Tree::new(
        "gcc_big",
        "/usr/bin/gcc",
        ["-O2", "-c", "big.c", "-o", "big.o"],
    );
    let source = tree.dir.path.join("big.c");
    let mut generator = Command::new("/usr/bin/python3");
    generator
        .arg(trees_file("gen_c_project.py"))
        .arg("big")
        .arg(&source)
        .arg("180");
    prepare(generator, "gen_c_project.py big");
    tree.setup(move |dir| {
        std::fs::copy(&source, dir.join("big.c")).expect("copy big.c");
    })
    .compare_files(&[])
}

/// Tasks and sha256 rounds per task of `pools.py`.
const PY_TASKS: &str = "60";
const PY_ROUNDS: &str = "30000";

fn python_pool(mode: &str) -> Tree {
    Tree::new(
        &format!("python_{mode}"),
        "/usr/bin/python3",
        [
            os(trees_file("pools.py")),
            os(mode),
            os(PY_TASKS),
            os(PY_ROUNDS),
        ],
    )
}

/// `duplex_pipe.py`: a parent and a worker over `multiprocessing.Pipe(duplex=True)`.
fn python_duplex_pipe(mode: &str) -> Tree {
    Tree::new(
        &format!("python_duplex_{mode}"),
        "/usr/bin/python3",
        [os(trees_file("duplex_pipe.py")), os(mode), os("3000")],
    )
}

/// `imports.py`: extension modules imported (dlopen'ed) while failures land.
fn python_imports() -> Tree {
    Tree::new(
        "python_imports",
        "/usr/bin/python3",
        [os(trees_file("imports.py"))],
    )
}

/// tree_procs with its three fail points.
const TREE_PROCS_ARGS: &[&str] = &["45000000", "3"];

fn tree_procs(prog: &Program) -> Tree {
    Tree::new("tree_procs", &prog.path, TREE_PROCS_ARGS).compare_files(&[])
}

fn exec_chain(prog: &Program) -> Tree {
    let stage3 = trees_file("exec_stage3.sh");
    let stage4 = trees_file("exec_stage4.py");
    for script in [&stage3, &stage4] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(script)
            .expect("stat")
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "{} must be executable (it is exec'd through its #! line)",
            script.display()
        );
    }
    exec_mode(prog, "chain", [os("30000000"), os(stage3)])
}

/// `tree_exec MODE ARGS...` (tree_exec.c), as the tree `tree_exec_MODE`.
fn exec_mode(prog: &Program, mode: &str, args: impl IntoIterator<Item = OsString>) -> Tree {
    let argv = std::iter::once(os(mode)).chain(args);
    Tree::new(&format!("tree_exec_{mode}"), &prog.path, argv).compare_files(&[])
}

/// Whether an ELF64 executable names a program interpreter (PT_INTERP): a dynamically
/// linked one does, a static one does not.
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2,
        "not an ELF64 file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let o = phoff + i * size;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

const STARTING_STATIC: &str = "tree_exec: starting the static child";
const STATIC_KILLED: &str = "tree_exec: the static child was killed by SIGKILL, starting it again";

/// Rounds of `tree_exec.c lists`: fork children that compute around the grace before they
/// would copy their parent's pool, then `execl`/`execle`/`execlp`.
const LIST_ROUNDS: &str = "120";

fn exec_lists(prog: &Program) -> Tree {
    exec_mode(prog, "lists", [os(LIST_ROUNDS)])
}

/// Rounds of `tree_exec.c relative`: programs started through paths relative to the
/// working directory.
const RELATIVE_ROUNDS: &str = "60";

fn exec_relative(prog: &Program) -> Tree {
    exec_mode(prog, "relative", [os(RELATIVE_ROUNDS)])
}

/// Rounds of `tree_exec.c fd`: programs executed through an fd (`fexecve`, `execveat`).
const FD_ROUNDS: &str = "8";

fn exec_fd(prog: &Program) -> Tree {
    exec_mode(prog, "fd", [os(FD_ROUNDS)])
}

/// `tree_exec static` with a statically linked child; checks that zhuque printed exactly
/// one `zhuque:` line naming the static program per start of it.
fn exec_static(prog: &Program) -> Tree {
    let exe = compile_static("tree_static.c", &prog.dir.path);
    assert!(
        !has_interpreter(&std::fs::read(&exe).expect("read tree_static")),
        "{} is not statically linked",
        exe.display()
    );
    exec_unkeepable(prog, &exe)
}

/// `tree_exec static` whose child, a dynamically linked build of `tree_static.c`, runs from
/// a memfd named `tree_static` (`TREE_STATIC_MEMFD`): a program with no path.
fn exec_memfd(prog: &Program, child: &Program) -> Tree {
    exec_unkeepable(prog, &child.path).env("TREE_STATIC_MEMFD", "1")
}

/// `tree_exec static` whose child executes the dynamic loader with a dynamically linked
/// build of `tree_static.c` as its argument (`ld.so tree_static ROUND`,
/// `TREE_STATIC_LOADER`).
fn exec_through_loader(prog: &Program, child: &Program) -> Tree {
    exec_unkeepable(prog, &child.path).env("TREE_STATIC_LOADER", LOADER)
}

/// The dynamic loader of x86_64 glibc, as programs name it.
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// `tree_exec static` with `exe` as the child zhuque cannot keep.
fn exec_unkeepable(prog: &Program, exe: &std::path::Path) -> Tree {
    exec_mode(prog, "static", [os("4"), os("5000000")])
        .env("TREE_STATIC", exe)
        .check(|end| {
            let starts = count_stderr_lines(end.launches, STARTING_STATIC);
            let warnings: Vec<String> = zhuque_lines_with(end.launches, "tree_static")
                .into_iter()
                .filter(|l| !l.starts_with("zhuque: resuming"))
                .collect();
            if warnings.len() == starts {
                Ok(())
            } else {
                Err(format!(
                    "the static child was started {starts} times, but zhuque printed {} \
                 `zhuque:` lines naming it (one per start expected):\n{}",
                    warnings.len(),
                    warnings.join("\n")
                ))
            }
        })
}

// ---- the crash tests ----

#[test]
fn bash_script_with_pipelines_jobs_and_files() {
    crash(&bash_pipeline(), 1, &CrashPlan::default());
}

#[test]
fn make_j2_builds_a_c_project() {
    let (oracle, _) = crash(&make_project(), 0, &CrashPlan::default());
    assert!(
        String::from_utf8_lossy(&oracle.outcome.stdout).contains("\nall "),
        "the program did not run"
    );
}

#[test]
fn gcc_compiles_one_large_file() {
    crash(&gcc_big(), 0, &CrashPlan::default());
}

/// python3 importing hashlib, ssl, sqlite3, zlib, bz2, lzma, decimal, ctypes and more (each a
/// dlopen of an extension module and its libraries) with failures in the first tens of
/// milliseconds of a run and of most resumes, many inside ld.so; the same output every time.
/// (The window where a failure used to lose relocations, between ld.so write-protecting RELRO
/// and the runtime converting it, is short in these loads: the old runtime passed this test;
/// `crash_single`'s `failures_inside_dlopen` is the one that caught it.)
#[test]
fn python_imports_extension_modules() {
    let plan = CrashPlan {
        window: (0.05, 0.6),
        resume_fail_chance: 0.8,
        ..CrashPlan::default()
    };
    let (_, report) = crash(&python_imports(), 0, &plan);
    println!("[python_imports] {} failures in all", report.failures());
}

#[test]
fn python_pool_fork() {
    crash(&python_pool("fork"), 0, &CrashPlan::default());
}

#[test]
fn python_pool_spawn() {
    crash(&python_pool("spawn"), 0, &CrashPlan::default());
}

/// Before, a failure while the parent asked the forkserver for a worker (it sends the
/// worker's pipe ends on a connection and closes it; the server accepts once it gets to it)
/// lost that worker's pipes, and the parent died of `EOFError` after the resume.
#[test]
fn python_pool_forkserver() {
    crash(&python_pool("forkserver"), 0, &CrashPlan::default());
}

/// A socketpair between a python parent and its worker (`multiprocessing.Pipe(duplex=True)`),
/// with a connection passed over it once: before, the two ends came back unconnected and the
/// worker died of `EOFError` at the first failure.
#[test]
fn python_duplex_pipe_fork() {
    let plan = CrashPlan {
        runs: 8,
        ..CrashPlan::default()
    };
    crash(&python_duplex_pipe("fork"), 0, &plan);
}

#[test]
fn python_duplex_pipe_spawn() {
    let plan = CrashPlan {
        runs: 8,
        ..CrashPlan::default()
    };
    crash(&python_duplex_pipe("spawn"), 0, &plan);
}

#[test]
fn python_process_pool_executor() {
    crash(&python_pool("executor"), 0, &CrashPlan::default());
}

#[test]
fn zombies_orphans_sessions_sigchld_daemon() {
    let prog = Program::compile("tree_procs.c");
    // Three fail points and at least one random failure in every run; the first fail point
    // comes at about a fifth of the run, so random delays are kept short.
    let plan = CrashPlan {
        min_failures_per_run: 4,
        window: (0.02, 0.3),
        resume_fail_chance: 0.5,
        ..CrashPlan::default()
    };
    crash(&tree_procs(&prog), 0, &plan);
}

#[test]
fn named_semaphores_between_processes() {
    let prog = Program::compile("tree_sem.c");
    prog.build(&["-Wall", "-Wextra", "-Werror"]);
    // Two fail points in the root and random failures: children spawned after a resume open
    // the root's semaphores by name, and each post must reach the other side.
    let plan = CrashPlan {
        min_failures_per_run: 2,
        ..CrashPlan::default()
    };
    let tree = Tree::new("tree_sem", &prog.path, ["40", "2"]).compare_files(&[]);
    let (oracle, _) = crash(&tree, 0, &plan);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.contains("tree_sem: done"), "{out}");
}

#[test]
fn system_v_ipc_and_message_queues_between_processes() {
    let prog = Program::compile("tree_ipc.c");
    prog.build(&["-Wall", "-Wextra", "-Werror"]);
    // Every failure ends the tree's IPC namespace: segments (one removed while attached),
    // semaphores and both kinds of message queues come back from the image, or a round or
    // the final checks of every property fail. Three fail points in the root, random
    // failures besides.
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 3,
        ..CrashPlan::default()
    };
    let tree = Tree::new("tree_ipc", &prog.path, ["300", "2"]).compare_files(&[]);
    let (oracle, _) = crash(&tree, 0, &plan);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.contains("tree_ipc: done"), "{out}");
    assert!(
        out.contains("removed segment: key 0, removed 1, size 8192, attached 2"),
        "{out}"
    );
}

#[test]
fn socketpair_between_processes_with_fds_in_flight() {
    // A parent sends its child a pipe, a memfd and a socket end over a socketpair whose ends
    // the two hold; the child takes them 2 ms later, so failures land while they are in
    // flight (two fail points in the parent with fds in flight, random failures besides).
    // The connection, its unread bytes and the fds come back (before: the ends came
    // back unconnected and the fds were closed); the child checks each fd, and answers on
    // the socket end it was sent.
    let (oracle, _) = fail_points("tree_in_flight", "tree_in_flight.c", &["300", "2"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
}

#[test]
fn queued_datagrams_keep_their_senders_credentials() {
    // A child sends its parent's Unix datagram socket (SO_PASSCRED on, a log daemon's way)
    // three datagrams a round; the parent leaves one or two queued (two fail points exactly
    // then, random failures besides) and checks every datagram's text, sender address and
    // credentials. Before, the queue came back from a socket of the resume's, and the parent
    // read its own pid as the sender's.
    let (oracle, _) = fail_points("tree_passcred", "tree_passcred.c", &["3000", "2"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done: 9000 datagrams\n"), "{out}");
}

/// The same with the sender the reader's nephew, its socket unnamed: at a resume the reader
/// restores its fds while the sender's parent is still laying its memory back, and its queue
/// is sent again in the sender's name once every process of the tree is back (before, the
/// sender often did not exist yet and the datagrams came with the reader's own pid).
#[test]
fn queued_datagrams_from_another_branch_keep_their_senders_credentials() {
    let (oracle, _) = fail_points("tree_passcred", "tree_passcred.c", &["3000", "2", "1"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(
        out.ends_with("done: 9000 datagrams from another branch of the tree\n"),
        "{out}"
    );
}

/// Datagrams queued from a child's socket that has shut down its sending side since
/// (`tree_dgram_shutdown.c`: a child per round sends three and shuts down; two fail points
/// exactly then, random failures besides): a resume sends them again from the child's own
/// socket, which no longer sends, and then from an unnamed one. Before, they were lost and
/// the parent blocked in `recvfrom`.
#[test]
fn queued_datagrams_whose_sender_shut_down_its_sending_side() {
    let (oracle, _) = fail_points(
        "tree_dgram_shutdown",
        "tree_dgram_shutdown.c",
        &["200", "2"],
        &[],
    );
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("round 200 datagram 2\ndone\n"), "{out}");
}

#[test]
fn unix_connections_between_processes_pending_and_accepted() {
    // A child connects to its parent's Unix listener every round; the parent accepts only
    // once told (two fail points exactly then, with the connection in the listener's queue,
    // random failures besides), reads the request, answers. Before, the child read
    // end-of-file and the parent blocked in accept().
    let (oracle, _) = fail_points("tree_pending", "tree_pending.c", &["1000", "2"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
}

/// Thread ids through resumes of a tree (`tree_tids.c`): the root's 12 threads, started
/// first, check their `gettid()` every round while two children fork a grandchild each round.
/// Before, a process recreated its threads only once the tree ran on, and a child running on
/// first (its coordinator, its next fork) took an id one of the root's threads still needed:
/// in every run the root's threads came back with other ids.
#[test]
fn threads_keep_their_ids_when_other_processes_run_on_first() {
    let (oracle, report) = fail_points("tree_tids", "tree_tids.c", &["2000", "2"], &["-pthread"]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.contains("same tids throughout"), "{out}");
    let warned = zhuque_lines_with(report.launches(), "thread ids change");
    assert!(warned.is_empty(), "{warned:?}");
}

/// Fds in flight on a Unix connection its listener has not accepted yet (`tree_pending_fds.c`:
/// the parent connects to its child's listener, sends a request with a pipe's write end in
/// flight, closes its copy; two fail points exactly then, random failures besides): the
/// child's answer comes through that pipe. Before, those fds were dropped at a save, with a
/// warning, and the parent read end-of-file.
#[test]
fn fds_in_flight_on_a_connection_not_yet_accepted() {
    let (oracle, report) = fail_points(
        "tree_pending_fds",
        "tree_pending_fds.c",
        &["1000", "2"],
        &[],
    );
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
    let warned = zhuque_lines_with(report.launches(), "in flight");
    assert!(warned.is_empty(), "{warned:?}");
}

/// python's `forkserver` start method (the default from python 3.14) asks for a worker so:
/// the parent sends one end of each of two pipes on a connection to the server's listener,
/// closes the connection and those ends at once, and waits on the pipes' other ends; the
/// failure lands while the connection waits to be accepted (two fail points, random failures
/// besides). Before, the connection was dropped with its fds (its client had closed), and the
/// pipe ends in flight came back apart from their other ends in the parent.
///
/// Random failures besides land anywhere in the loop, also while the parent still sends after
/// the server has stopped: the fds in flight are reported once the whole tree has stopped
/// (before, such a failure split the pipes a few times in a hundred: said at the save). No
/// run may say a pipe came back apart.
#[test]
fn pipes_in_flight_on_a_connection_whose_client_closed() {
    pipes_in_flight("forkserver");
}

/// Two messages queued on a connection the server accepted and has not read, each with one
/// end of a pipe whose other end the client keeps (`tree_pending_fds.c queued`: the server
/// saves the connection, the client holds the ends). Before, only the first message queued
/// on a connection was looked at: the pipe end in the second came back apart from its other
/// end (said at the save), and the client read end-of-file instead of its answer.
#[test]
fn pipes_in_flight_in_every_message_queued_on_a_connection() {
    pipes_in_flight("queued");
}

/// `tree_pending_fds.c MODE`: two fail points with fds in flight, random failures besides;
/// identical output, and no pipe end said to come back apart.
fn pipes_in_flight(mode: &str) {
    let name = format!("tree_pending_fds_{mode}");
    let (oracle, report) = fail_points(&name, "tree_pending_fds.c", &["1000", "2", mode], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
    let warned = zhuque_lines_with(report.launches(), "warning");
    assert!(warned.is_empty(), "{warned:?}");
}

#[test]
fn terminal_session_over_a_pseudo_terminal() {
    // forkpty(): the parent types requests, ^C and window changes at the master; the child
    // leads a session whose controlling terminal is the slave and answers with what it sees
    // (signals, rows, /dev/tty, foreground group). Two fail points with a request queued,
    // random failures besides.
    let (oracle, _) = fail_points("tree_pty", "tree_pty.c", &["600", "2"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
}

#[test]
fn terminal_session_whose_leader_holds_no_fd_of_it() {
    // As `terminal_session_over_a_pseudo_terminal`, but the child, a session leader, keeps no
    // fd of its terminal (0-2 are /dev/null) and opens /dev/tty for each request. Before, its
    // session came back without a controlling terminal: /dev/tty failed and the child died.
    let (oracle, _) = fail_points("tree_pty_nofd", "tree_pty.c", &["600", "2", "nofd"], &[]);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
}

/// The same session (its leader holds no fd of its terminal) when the pseudo-terminal's number
/// is another program's at the resume: the process holding the master makes it again under
/// another number (said), and the leader takes that one as its controlling terminal. Before,
/// it looked for its terminal at the saved number, found another session's, and came back
/// without one (two concurrent CI tests with ptys caught it: the child died, `/dev/tty`
/// ENXIO). The test holds the saved number (read with `inspect`) between save and resume.
#[test]
fn terminal_session_whose_pty_comes_back_under_another_number() {
    let prog = Program::compile("tree_pty.c");
    let zq = Zhuque::real();
    let cwd = prog.workdir();
    let image = cwd.join("image");
    let args = ["600".to_string(), "2".into(), "nofd".into()];
    // The program's first fail point (round 200) saves it.
    let first = zq.launch(
        &prog,
        &args,
        &image,
        &cwd,
        Via::Run { fail_after: None },
        None,
    );
    assert_eq!(
        first.status(),
        75,
        "{}",
        String::from_utf8_lossy(&first.result.stderr)
    );
    let json = zq.exec(
        [
            OsString::from("inspect"),
            image.clone().into(),
            "--json".into(),
        ],
        &cwd,
        None,
    );
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("inspect --json");
    let slave = json["tree"]
        .as_array()
        .expect("a tree")
        .iter()
        .find_map(|p| p["details"]["process"]["controlling_terminal"]["slave"].as_u64())
        .expect("the child's controlling terminal") as u32;
    let held = hold_pty_number(slave);
    let mut out = first.result.stdout.clone();
    let mut stderr = String::from_utf8_lossy(&first.result.stderr).into_owned();
    let mut status = 75;
    for _ in 0..3 {
        if status != 75 {
            break;
        }
        let r = zq.exec([OsString::from("resume"), image.clone().into()], &cwd, None);
        out.extend_from_slice(&r.stdout);
        stderr.push_str(&String::from_utf8_lossy(&r.stderr));
        status = r.status;
    }
    drop(held);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "/dev/pts/{slave} is taken; the pseudo-terminal comes back as"
        )),
        "{stderr}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("round 600: ") && out.ends_with("done\n"),
        "{out}\n{stderr}"
    );
}

/// Opens pseudo-terminal masters until `/dev/pts/<n>` exists (one of them, or another
/// program's), and keeps them open.
fn hold_pty_number(n: u32) -> Vec<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut held = Vec::new();
    while std::fs::metadata(format!("/dev/pts/{n}")).is_err() {
        assert!(held.len() < 4096, "/dev/pts/{n} never appeared");
        let m = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .expect("/dev/ptmx");
        let mut got: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int.
        assert_eq!(
            unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTN, &mut got) },
            0
        );
        held.push(m);
    }
    held
}

#[test]
fn a_shell_under_script_keeps_its_terminal() {
    // util-linux `script` holds a pseudo-terminal's master and copies what a bash script
    // (`tests/trees/pty_session.sh`), whose terminal the slave is, writes there; the script
    // checks its terminal's settings, size and controlling-terminal status every round and
    // runs external commands on it.
    let plan = CrashPlan {
        runs: 6,
        ..CrashPlan::default()
    };
    let command = format!("/bin/bash {} 60", trees_file("pty_session.sh").display());
    let tree = Tree::new(
        "script_pty_session",
        "/usr/bin/script",
        [os("-qfec"), os(command), os("/dev/null")],
    )
    .compare_files(&[]);
    let (oracle, _) = crash(&tree, 0, &plan);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\r\n"), "{out}");
}

#[test]
fn forks_from_a_signal_handler_that_blocks_every_signal() {
    let prog = Program::compile("tree_fork_in_handler.c");
    prog.build(&["-Wall", "-Wextra", "-Werror"]);
    // Every round forks (and reaps) a child inside a handler whose mask blocks every signal,
    // as PostgreSQL's postmaster does. Before, a fork that waited for the coordinator (which
    // settles the pool with every thread stopped right after a child ends, or saves) could
    // not stop: the process ended with "keep sleeping with every signal blocked".
    let plan = CrashPlan {
        runs: 8,
        ..CrashPlan::default()
    };
    let tree = Tree::new("tree_fork_in_handler", &prog.path, ["1500"]).compare_files(&[]);
    let (oracle, _) = crash(&tree, 0, &plan);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.ends_with("done\n"), "{out}");
}

#[test]
fn process_shared_synchronization_and_map_files_truncation() {
    let prog = Program::compile("tree_pshared.c");
    prog.build(&["-Wall", "-Wextra", "-Werror", "-pthread"]);
    // A robust mutex, a condition variable, a barrier and an unnamed semaphore in shared
    // anonymous memory, with waiters in three processes at every fail point and random
    // failure; then a shared object truncated through /proc/self/map_files, which must change
    // that object only.
    let plan = CrashPlan {
        runs: 8,
        min_failures_per_run: 3,
        ..CrashPlan::default()
    };
    let tree = Tree::new("tree_pshared", &prog.path, ["300", "2"]).compare_files(&[]);
    let (oracle, _) = crash(&tree, 0, &plan);
    let out = String::from_utf8_lossy(&oracle.outcome.stdout);
    assert!(out.contains("tree_pshared: done"), "{out}");
}

/// Failures counted in `report` (the attempt that counts of each run) that landed after
/// stdout had shown `marker`.
fn failures_after(report: &CrashReport, marker: &str) -> usize {
    let marker = marker.as_bytes();
    let mut n = 0;
    for attempt in report.runs.iter().filter_map(|r| r.attempts.last()) {
        let mut seen = Vec::new();
        for w in attempt.launches.windows(2) {
            seen.extend_from_slice(&w[0].result.stdout);
            let counted = w[0].status() == SAVED && w[1].status() != REFUSED;
            if counted && seen.windows(marker.len()).any(|x| x == marker) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn exec_through_env_and_shebang_scripts() {
    let prog = Program::compile("tree_exec.c");
    // `--fail-after` counts from the launch (the init's clock, not each program's), and the
    // python stage comes last: most resumes fail again, so failures reach every stage; the
    // python stage also fails once by itself in every run (zhuque_fail_now through ctypes).
    let plan = CrashPlan {
        window: (0.3, 0.95),
        resume_fail_chance: 0.8,
        ..CrashPlan::default()
    };
    let (_, report) = crash(&exec_chain(&prog), 3, &plan);
    let after_python = failures_after(&report, "stage 4: python3");
    let after_env = failures_after(&report, "stage 2: tree_exec stage2");
    println!(
        "[tree_exec_chain] failures after the exec through env: {after_env}, after the exec \
         of the python script: {after_python}"
    );
    assert!(
        after_python >= plan.runs,
        "only {after_python} failures landed after the exec of the python script"
    );
}

/// Fork children that execute through `execl`, `execle` and `execlp` (variadic lists, which
/// glibc hands to an internal `execve` no preloaded library sees), each after computing for
/// 0 to 20 ms, across the moment a fork child stops its thread to copy its parent's pool:
/// every exec'd program runs and ends with its own status (a stop signal at the instant of
/// the `exec` used to kill it: `pg_ctl start` lost its server so, a child in a thousand
/// under load).
#[test]
fn fork_children_execute_through_variadic_lists() {
    let prog = Program::compile("tree_exec.c");
    crash(&exec_lists(&prog), 0, &CrashPlan::default());
}

/// Programs started through paths relative to the working directory (`execv`, `execvp` with
/// a slash, `posix_spawn`, with and without a file action that changes the child's
/// directory, and a shell script): the runtime gives the kernel an ELF program's path in its
/// absolute form, so that the new program need not execute itself again to make its launch
/// canonical (one `exec` instead of two), without changing what anyone sees: the output
/// (a script's `$0` included) and statuses are the native run's through the failures.
#[test]
fn programs_started_through_relative_paths() {
    let prog = Program::compile("tree_exec.c");
    crash(&exec_relative(&prog), 0, &CrashPlan::default());
}

/// Programs executed through an fd (`fexecve`, `execveat` with `AT_EMPTY_PATH`), the root
/// and its children, through fds with and without close-on-exec: the kernel names such a
/// program `/dev/fd/N`, which leads to it only while that fd is open, so the runtime must
/// not save that path as the program (a resume could not execute it: it refused with
/// "cannot execute"); the fd a program came through is open after a resume exactly when it
/// was not close-on-exec.
#[test]
fn programs_executed_through_fds() {
    let prog = Program::compile("tree_exec.c");
    let plan = CrashPlan::default();
    let (_, report) = crash(&exec_fd(&prog), 0, &plan);
    let in_children = failures_after(&report, "fd child 1: step 1");
    println!("[tree_exec_fd] failures while children executed through fds ran: {in_children}");
    assert!(
        in_children >= plan.runs / 2,
        "only {in_children} failures landed while children executed through fds ran"
    );
}

/// A script started as `./count.sh` or found through `PATH` (`count.sh`) prints the `$0` it
/// prints natively (`./count.sh`, `DIR/count.sh`) before and after two failures: the CLI
/// gives the kernel the file name `execvp` would, where it gave the script's canonical path
/// (and `$0` was that absolute path).
#[test]
fn a_script_keeps_the_dollar_zero_it_was_started_with() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("script_dollar_zero");
    let script = dir.path.join("count.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor i in $(seq 1 16); do echo \"$0 $i $(echo external)\"; sleep 0.04; done\n",
    )
    .expect("write count.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!("{}:/usr/bin:/bin", dir.path.display());
    let zq = Zhuque::real();
    for prog in ["./count.sh", "count.sh"] {
        let mut native = Command::new("/bin/sh");
        native
            .args(["-c", &format!("exec {prog}")])
            .current_dir(&dir.path)
            .env("PATH", &path);
        let native = run_to_end(native, None, "count.sh natively");
        assert_eq!(
            native.status,
            0,
            "{}",
            String::from_utf8_lossy(&native.stderr)
        );
        let image = ImageDir::new();
        let (mut out, mut failures) = (Vec::new(), 0);
        for launch in 0.. {
            assert!(launch < 10, "{prog}: still not finished after 10 launches");
            let mut args: Vec<String> = vec!["run".into(), "--image".into()];
            args.push(image.path.display().to_string());
            if launch < 2 {
                args.extend(["--fail-after".into(), "0.25".into()]);
            }
            args.extend(["--".into(), prog.into()]);
            let mut cmd = zq.command(&args, &dir.path);
            cmd.env("PATH", &path);
            let end = run_to_end(cmd, None, prog);
            out.extend_from_slice(&end.stdout);
            match end.status {
                75 => failures += 1,
                0 => break,
                s => panic!(
                    "{prog}: status {s}: {}",
                    String::from_utf8_lossy(&end.stderr)
                ),
            }
        }
        assert_eq!(failures, 2, "{prog}: the failures did not land");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&native.stdout),
            "{prog}"
        );
    }
}

/// A tree whose root ended while a child runs on keeps its image until the child ends, and
/// then removes it. If someone removed that directory meanwhile and started another launch
/// there, the first tree's init must leave the new image alone: it used to write its
/// FINISHED `meta` into it and remove it, under the running launch.
#[test]
fn an_image_replaced_while_its_tree_ran_is_left_alone() {
    let dir = TempDir::new("image_replaced");
    let image = ImageDir::new();
    let zq = Zhuque::real();
    let args = |keep: bool, script: &str| {
        let mut v = vec!["run".to_string(), "--image".into()];
        v.push(image.path.display().to_string());
        if keep {
            v.push("--keep".into());
        }
        v.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
        v
    };
    // The root ends at once; its child runs on until the file `go` exists.
    let first = zq.exec(
        args(
            false,
            "(while [ ! -e go ]; do sleep 0.02; done) & echo first",
        ),
        &dir.path,
        None,
    );
    assert_eq!(
        first.status,
        0,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    std::fs::remove_dir_all(&image.path).expect("the first tree's image, kept while it runs");
    let mut second = zq.command(args(true, "sleep 1.5; echo second"), &dir.path);
    second.stdin(std::process::Stdio::null());
    let second = spawn(second, "the second launch");
    // The first tree's last process ends while the second launch runs.
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::write(dir.path.join("go"), b"").expect("write go");
    let second = second.wait(std::time::Duration::from_secs(60));
    assert_eq!(
        (
            second.status,
            String::from_utf8_lossy(&second.stdout).into_owned()
        ),
        (0, "second\n".to_string()),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(image.meta().state(), zhuque_image::State::Finished);
}

/// A program a tree starts after its image directory was removed runs natively, saying so in
/// one line, and makes no image of its own: before, its runtime made the directory again and
/// ran crash-resistant there on its own, where no init would save it nor `zhuque resume`
/// find it, and its children said "process trees need `zhuque run`".
#[test]
fn programs_started_after_the_image_was_removed_say_they_run_natively() {
    let script = "while [ ! -e removed ]; do sleep 0.02; done; /bin/echo after; /bin/true";
    let (done, image) = run_removing_the_image("image_removed", &[], script, 300, |dir| {
        std::fs::write(dir.join("removed"), b"").expect("write removed");
    });
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(
        (
            done.status,
            String::from_utf8_lossy(&done.stdout).into_owned()
        ),
        (0, "after\n".to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not exist (removed while the tree ran?)"),
        "{stderr}"
    );
    assert!(!stderr.contains("process trees need"), "{stderr}");
    assert!(!image.path.exists(), "the image directory was made again");
}

/// A failure after a running tree's image directory was removed saves nothing, and says why
/// in one line: before, the init made the directory again to write its plans of shared fds
/// into, and every member failed, saying the plan was missing.
#[test]
fn a_failure_after_the_image_was_removed_says_nothing_was_saved() {
    let script = "/bin/sleep 5; echo never";
    let (done, image) = run_removing_the_image(
        "image_removed_fail",
        &["--fail-after", "1.5"],
        script,
        500,
        |_| {},
    );
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status, 125, "{stderr}");
    assert!(done.stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("was removed while the tree ran"),
        "{stderr}"
    );
    assert!(!stderr.contains("plan of shared fds"), "{stderr}");
    assert!(!image.path.exists(), "the image directory was made again");
}

/// `zhuque run --image IMAGE OPTIONS -- /bin/sh -c SCRIPT` in a working directory of its own;
/// `after_ms` into the run, its image directory is removed and `then` runs (given the working
/// directory); returns the run's end and the image.
fn run_removing_the_image(
    name: &str,
    options: &[&str],
    script: &str,
    after_ms: u64,
    then: impl FnOnce(&std::path::Path),
) -> (Finished, ImageDir) {
    let dir = TempDir::new(name);
    let image = ImageDir::new();
    let mut args = vec!["run".to_string(), "--image".into()];
    args.push(image.path.display().to_string());
    args.extend(options.iter().map(|o| o.to_string()));
    args.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
    let mut run = Zhuque::real().command(args, &dir.path);
    run.stdin(std::process::Stdio::null());
    let run = spawn(run, "zhuque run");
    std::thread::sleep(std::time::Duration::from_millis(after_ms));
    std::fs::remove_dir_all(&image.path).expect("the running tree's image");
    then(&dir.path);
    (run.wait(std::time::Duration::from_secs(60)), image)
}

#[test]
fn a_static_child_is_killed_and_reported() {
    let prog = Program::compile("tree_exec.c");
    unkept_children_are_killed(&exec_static(&prog), "static");
}

/// A child that runs a program from a memfd (`fexecve`; or a program whose file was deleted):
/// a resume could not execute it again, so it runs natively with one warning per start,
/// as a static one does, and a failure while it runs ends it with `SIGKILL` for its parent
/// (it used to refuse to start: "cannot re-execute /memfd:...", status 125; and the init
/// waited 3 s at a failure for it to connect).
#[test]
fn a_child_run_from_a_memfd_is_killed_and_reported() {
    let prog = Program::compile("tree_exec.c");
    let child = Program::compile("tree_static.c");
    unkept_children_are_killed(&exec_memfd(&prog, &child), "memfd");
}

/// A child that runs a program by executing the dynamic loader (`ld.so PROG ARG`, as `ldd`
/// and some launchers do): the loader shifts the arguments in place, so a resume could not
/// execute it again as started; it runs natively with one warning per start, and a failure
/// while it runs ends it with `SIGKILL` for its parent (it used to fail at once: its runtime
/// executed the loader again without the program's path, "tree_static: cannot open shared
/// object file").
#[test]
fn a_child_run_through_the_dynamic_loader_is_killed_and_reported() {
    let prog = Program::compile("tree_exec.c");
    let child = Program::compile("tree_static.c");
    unkept_children_are_killed(&exec_through_loader(&prog, &child), "loader");
}

/// Crash-tests `tree` (`tree_exec static` with a child zhuque cannot keep) and requires that
/// failures landed while that child ran.
fn unkept_children_are_killed(tree: &Tree, what: &str) {
    let (_, report) = crash(tree, 0, &CrashPlan::default());
    let kills: usize = report
        .launches()
        .map(|l| count_stderr_lines(std::slice::from_ref(l), STATIC_KILLED))
        .sum();
    println!("[tree_exec {what}] the parent saw its child killed by SIGKILL {kills} times");
    assert!(
        kills >= 3,
        "a failure landed while the {what} child ran only {kills} times in 20 runs: the \
         SIGKILL path was not shown"
    );
}

/// A daemon that drops its privileges (`tree_privdrop.c`, run as root): child A, forked while
/// root, is a member; as `nobody` the process forks B and C and runs `id -u` through `sh`,
/// none of which can write the tree's image (root's). They run as natively, unprotected, with
/// one `zhuque:` line for the fork children and one for `sh` (before: the fork child ended with
/// 125, and `sh` was refused). After a failure while A and C wait, A (resumed) ends normally,
/// C (lost) comes back killed by SIGKILL, and the parent is `nobody` again.
#[test]
fn children_of_a_process_that_dropped_privileges() {
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "this test drops privileges: run it as root"
    );
    let prog = Program::compile("tree_privdrop.c");
    // As nobody, the program looks for `go` in its working directory and its `sh` loads
    // zhuque's runtime: both where every user can reach them.
    let work = TempDir::for_everyone("privdrop");
    let cwd = work.path.clone();
    let zq = Zhuque::for_everyone();
    let launch = |image: &ImageDir| {
        let mut cmd = zq.command(Zhuque::run_args(&image.path, None, &prog, &[]), &cwd);
        cmd.stdin(std::process::Stdio::null());
        spawn(cmd, "zhuque run tree_privdrop")
    };
    let go = cwd.join("go");
    let _ = std::fs::remove_file(&go);

    let image = ImageDir::new();
    let mut run = launch(&image);
    run.wait_for_stdout(b"started\n", LAUNCH_TIMEOUT);
    std::fs::write(&go, "").unwrap();
    let f = run.wait(LAUNCH_TIMEOUT);
    let stderr = String::from_utf8_lossy(&f.stderr).into_owned();
    assert_eq!(f.status, 0, "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        "main: uid 65534\nB: exited 7\n65534\nsystem: status 0\nstarted\n\
         main: uid 65534 after the wait\nA: exited 0\nC: exited 0\n"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not crash-resistant"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("runs as uid 65534") || l.contains("run as uid 65534")),
        "{stderr}"
    );
    std::fs::remove_file(&go).unwrap();

    let image = ImageDir::new();
    let mut run = launch(&image);
    run.wait_for_stdout(b"started\n", LAUNCH_TIMEOUT);
    let failed = zq.fail(&image.path, &cwd);
    assert_eq!(
        failed.status,
        0,
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(run.wait(LAUNCH_TIMEOUT).status, SAVED);
    let resumed = launch(&image);
    std::fs::write(&go, "").unwrap();
    let f = resumed.wait(LAUNCH_TIMEOUT);
    assert_eq!(f.status, 0, "{}", String::from_utf8_lossy(&f.stderr));
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        "main: uid 65534 after the wait\nA: exited 0\nC: gone\nC: killed by signal 9\n"
    );
    std::fs::remove_file(&go).unwrap();
}

/// A fork child that sleeps past its grace period joins the tree by itself, with no save to
/// wake it (`tree_lazy_join.c`): otherwise a save of a tree of sleeping children first made
/// each of them join, one after another, and each parent kept its memory private meanwhile.
/// The runtime's means for it (a POSIX timer in the child) leave the child's own first timer
/// id as it is natively.
#[test]
fn a_sleeping_fork_child_joins_the_tree_by_itself() {
    let prog = Program::compile("tree_lazy_join.c");
    let cwd = prog.workdir();
    let native = run_native(&prog, &[], &cwd, None);
    assert_eq!(
        native.status,
        0,
        "{}",
        String::from_utf8_lossy(&native.stderr)
    );
    let image = ImageDir::new();
    let zq = Zhuque::real();
    let args = [image.path.to_str().expect("UTF-8 path").to_string()];
    let mut cmd = zq.command(Zhuque::run_args(&image.path, None, &prog, &args), &cwd);
    cmd.stdin(std::process::Stdio::null());
    let f = spawn(cmd, "zhuque run tree_lazy_join").wait(LAUNCH_TIMEOUT);
    assert_eq!(f.status, 0, "{}", String::from_utf8_lossy(&f.stderr));
    let expected = format!(
        "the sleeping child joined the tree\n{}",
        String::from_utf8_lossy(&native.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&f.stdout), expected);
}

/// Filters that read their standard input to its end and close it as they exit (`cat`,
/// `tr`, `wc`, `sort`, coreutils all check that close), each a program a shell's fork child
/// executes (the runtime starts those without the init, `tree::member::lazy_pool`), one of
/// them blocked in `read` past its grace period (it joins the tree then, in the
/// background): every stage of every pipeline ends with status 0, prints what it prints
/// natively, and nothing is said on standard error.
#[test]
fn commands_a_shell_runs_keep_their_standard_streams() {
    let script = r#"
        printf 'b\na\nc\n' | cat | tr a-z A-Z | sort | wc -l
        echo "status ${PIPESTATUS[*]}"
        x=$(printf 'one two\n' | tr o 0 | cat)
        echo "substituted $x"
        (sleep 0.2; echo late) | cat | tr a-z A-Z
        echo "status ${PIPESTATUS[*]}"
        cat </dev/null
        echo "empty input: $?"
    "#;
    let dir = TempDir::new("shell_streams");
    let native = Command::new("/bin/bash")
        .args(["-c", script])
        .current_dir(&dir.path)
        .output()
        .expect("run bash");
    assert!(
        native.status.success() && native.stderr.is_empty(),
        "{native:?}"
    );
    let image = ImageDir::new();
    let zq = Zhuque::real();
    let mut args: Vec<OsString> = vec!["run".into(), "--image".into(), image.path.clone().into()];
    args.extend(["--".into(), "/bin/bash".into(), "-c".into(), script.into()]);
    let f = run_to_end(zq.command(args, &dir.path), None, "zhuque run bash");
    let stderr = String::from_utf8_lossy(&f.stderr);
    assert_eq!(f.status, 0, "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        String::from_utf8_lossy(&native.stdout)
    );
    assert!(f.stderr.is_empty(), "{stderr}");
}

// ---- natively: the commands are deterministic ----

#[test]
fn bash_pipeline_natively() {
    native_check(&bash_pipeline(), 1);
}

#[test]
fn make_project_natively() {
    let tree = make_project();
    let (first, dir) = native_check(&tree, 0);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("\nall "), "{out}");
    for o in [
        "main.o",
        "util.o",
        "mod00.o",
        "mod17.o",
        "libmods.a",
        "prog",
    ] {
        assert!(dir.join(o).is_file(), "{o} was not built");
        assert!(
            out.contains(&format!("  {o}\n")),
            "no sha256 of {o}:\n{out}"
        );
    }
}

#[test]
fn gcc_big_natively() {
    let tree = gcc_big();
    let (_, dir) = native_check(&tree, 0);
    assert!(dir.join("big.o").is_file());
}

/// A python pool's helpers (the resource tracker, the forkserver) end a moment after the
/// program does, when they see its pipes close: `zhuque run` waits that moment out, and says
/// nothing of processes running on. It used to say "2 processes keep running
/// crash-resistant ..." at the end of every such program. (A process that does run on is
/// still said: `an_image_replaced_while_its_tree_ran_is_left_alone`.)
#[test]
fn a_python_pool_ends_with_its_helpers() {
    let dir = TempDir::new("pool_end");
    let image = ImageDir::new();
    let zq = Zhuque::real();
    for mode in ["forkserver", "spawn"] {
        let done = zq.exec(
            [
                "run".to_string(),
                "--image".into(),
                image.path.display().to_string(),
                "--".into(),
                "/usr/bin/python3".into(),
                trees_file("pools.py").display().to_string(),
                mode.into(),
                "4".into(),
                "10".into(),
            ],
            &dir.path,
            None,
        );
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        assert_eq!(done.status, 0, "{mode}: {stderr}");
        assert!(
            !stderr.contains("running crash-resistant"),
            "{mode}: {stderr}"
        );
        assert!(!image.path.exists(), "{mode}: the image is left");
    }
}

#[test]
fn python_pools_natively() {
    let mut outputs = Vec::new();
    for mode in ["fork", "spawn", "forkserver", "executor"] {
        let tree = python_pool(mode);
        let (first, _) = native_check(&tree, 0);
        let text = String::from_utf8_lossy(&first.stdout).into_owned();
        assert!(text.contains("checked in the parent: ok"), "{text}");
        // The tasks' results are the same in every mode.
        outputs.push(
            text.lines()
                .filter(|l| l.starts_with("task ") || l.starts_with("all "))
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
    }
    for other in &outputs[1..] {
        assert_eq!(&outputs[0], other);
    }
}

#[test]
fn tree_procs_natively() {
    let prog = Program::compile("tree_procs.c");
    prog.build(&["-Wall", "-Wextra", "-Werror"]);
    let tree = tree_procs(&prog);
    let (first, dir) = native_check(&tree, 0);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(all_yes(&out), "a relation does not hold natively:\n{out}");
    assert!(out.contains("\nchecksum "), "{out}");
    assert!(dir.join("daemon.out").is_file());
}

#[test]
fn exec_chain_natively() {
    let prog = Program::compile("tree_exec.c");
    prog.build(&["-Wall", "-Wextra", "-Werror"]);
    let tree = exec_chain(&prog);
    let (first, dir) = native_check(&tree, 3);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(all_yes(&out), "{out}");
    assert!(out.contains("stage 4: done"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("exec.log")).expect("exec.log"),
        "stage 1\nstage 2\nstage 3\nstage 4\nstage 4 done\n"
    );
}

#[test]
fn exec_lists_natively() {
    let prog = Program::compile("tree_exec.c");
    let (first, _) = native_check(&exec_lists(&prog), 0);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.contains("echo: execle 1 a b c d (TREE_EXEC_LIST=from execle)")
            && out.contains("echo: execlp 2 a b c (TREE_EXEC_LIST=unset)")
            && out.contains("echo: execl 3 a b c d e (TREE_EXEC_LIST=unset)")
            && out.ends_with(&format!("lists: {LIST_ROUNDS} children executed\n")),
        "{out}"
    );
}

#[test]
fn exec_relative_natively() {
    let prog = Program::compile("tree_exec.c");
    let (first, _) = native_check(&exec_relative(&prog), 0);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.contains("echo: relative 4 (TREE_EXEC_LIST=unset)")
            && out.contains("script: ./rel_script.sh 5\n")
            && out.ends_with(&format!("relative: {RELATIVE_ROUNDS} programs started\n")),
        "{out}"
    );
}

#[test]
fn exec_fd_natively() {
    let prog = Program::compile("tree_exec.c");
    let (first, _) = native_check(&exec_fd(&prog), 0);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.starts_with("fd root: the fd it came through is open\n")
            && out.contains("fd child 1: came through a kept fd, open now\n")
            && out.contains("fd child 2: came through a cloexec fd, closed now\n")
            && out.ends_with(&format!("fd: {FD_ROUNDS} programs executed through fds\n")),
        "{out}"
    );
}

#[test]
fn exec_memfd_natively() {
    let prog = Program::compile("tree_exec.c");
    let child = Program::compile("tree_static.c");
    static_children_run_natively(&exec_memfd(&prog, &child));
}

#[test]
fn exec_through_loader_natively() {
    let prog = Program::compile("tree_exec.c");
    let child = Program::compile("tree_static.c");
    static_children_run_natively(&exec_through_loader(&prog, &child));
}

/// The same launch by hand, without `zhuque run` (solo mode: `CRASH_RESISTANT` and
/// `LD_PRELOAD` set by the user): the program runs natively and its one warning says what a
/// failure does to it there — nothing saves it, the signal ends it — not the tree's "its
/// parent sees it killed by SIGKILL".
#[test]
fn a_program_started_by_hand_through_the_loader_says_a_failure_ends_it() {
    let dir = TempDir::new("solo_loader");
    let mut cmd = Command::new(LOADER);
    cmd.args(["/bin/echo", "through the loader"])
        .env("CRASH_RESISTANT", &dir.path)
        .env("LD_PRELOAD", runtime_lib());
    let out = run_to_end(cmd, None, "the loader by hand");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status, 0, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the loader\n");
    let lines = out.zhuque_lines();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("is not crash-resistant: its program /bin/echo was started by executing the dynamic loader")
            && lines[0].ends_with("; a failure ends it unsaved"),
        "{stderr}"
    );
}

#[test]
fn exec_static_natively() {
    let prog = Program::compile("tree_exec.c");
    static_children_run_natively(&exec_static(&prog));
}

/// A tree starting a static child every round (from a file or a memfd), natively: each start
/// says so on stderr, and the child answers.
fn static_children_run_natively(tree: &Tree) {
    let (first, _) = native_check(tree, 0);
    assert_eq!(count_stderr_lines_of(&first.stderr, STARTING_STATIC), 4);
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("round 4: the static child says"),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
}

/// No line of `out` says "...: no".
fn all_yes(out: &str) -> bool {
    !out.lines()
        .any(|l| l.ends_with(": no") || l.contains(": no,"))
}

fn count_stderr_lines_of(stderr: &[u8], line: &str) -> usize {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Named objects of `/dev/shm` lost between the save and the resume, as a reboot loses them
/// while an image on disk survives (`named_objects.c`: a named semaphore and a small
/// `shm_open` object): the resume makes them again from their copies in the image, with
/// the saved value and bytes, shared by the old handles and by name. Before, the resume
/// refused ("no longer exists").
#[test]
fn named_objects_lost_before_the_resume_are_made_again() {
    let prog = Program::compile("named_objects.c");
    let cwd = prog.workdir();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let name = format!("zq-named-{}", std::process::id());
    let args = [name.clone()];
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
    for file in [
        format!("/dev/shm/sem.{name}-sem"),
        format!("/dev/shm/{name}-obj"),
    ] {
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let resumed = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &args),
        &cwd,
        None,
    );
    assert_eq!(
        resumed.status,
        0,
        "{}{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        out.contains("named_objects: semaphore 3, object shared; done"),
        "{out}"
    );
}

/// A process of a tree with an IPC namespace of its own (`own_ipc_ns.c`): its segment's
/// memory comes back as shared memory of the image, said in one line. Attached again by its
/// id, it named nothing in the tree's namespace and the resume failed.
#[test]
fn segments_of_a_process_with_its_own_ipc_namespace() {
    let prog = Program::compile("own_ipc_ns.c");
    let cwd = prog.workdir();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let first = zq.exec(Zhuque::run_args(&image.path, None, &prog, &[]), &cwd, None);
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let warned = String::from_utf8_lossy(&first.stderr);
    assert!(
        warned.contains("made an IPC namespace of its own"),
        "{warned}"
    );
    let resumed = zq.exec(Zhuque::run_args(&image.path, None, &prog, &[]), &cwd, None);
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert_eq!(
        resumed.status,
        0,
        "{out}{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        out.contains("kept through the failure, second page too"),
        "{out}"
    );
}
