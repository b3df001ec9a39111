/*
 * tree_exec chain WORK STAGE3_SCRIPT
 * tree_exec stage2 PID WORK STAGE3_SCRIPT      (what `chain` execs, through /usr/bin/env)
 * TREE_STATIC=STATIC_PROG tree_exec static ROUNDS WORK
 *
 * exec inside a crash-resistant tree (issue 9).
 *
 * chain: a chain of execs in one process, each stage computing (WORK steps, lines printed as
 * it goes) so that failures land before and after every exec:
 *     tree_exec chain  --execve-->  /usr/bin/env PATH=<its dir>:$PATH tree_exec stage2 ...
 *     (env finds tree_exec on PATH)  --execvp-->  tree_exec stage2
 *     --execv-->  STAGE3_SCRIPT (#!/bin/bash; tests/trees/exec_stage3.sh), which runs
 *     external commands and then execs tests/trees/exec_stage4.py (#!/usr/bin/env python3),
 *     which ends the process with status 3.
 * Every stage checks that the pid is still the first stage's, and writes a line to exec.log
 * through fd 5, which the first stage opened without O_CLOEXEC (one open file description,
 * its offset shared by all stages); an fd opened with O_CLOEXEC (fd 6) must be gone after the
 * first exec. stdout is flushed before each exec.
 *
 * static: ROUNDS times, the program computes, then forks and execs STATIC_PROG (a statically
 * linked program, tree_static.c, which cannot run under the zhuque runtime) and waits for it.
 * (Its path comes from the environment, so that zhuque's messages that repeat the command
 * line do not name it: a test counts the `zhuque:` lines that do.)
 * A static child that exits 0 prints its result file; one killed by SIGKILL (what a parent
 * sees after a failure landed while its static child ran) is started again, with a line on
 * stderr (not stdout), so stdout is the same whether or not failures hit the static child.
 * Before each start the program writes "tree_exec: starting the static child" on stderr: a
 * test counts them against zhuque's warnings. Any other status ends the program with 99.
 * With TREE_STATIC_MEMFD=1 the child copies STATIC_PROG (then a dynamically linked build)
 * into a memfd named "tree_static" and executes that (fexecve): a program with no path a
 * resume could execute, which zhuque runs natively with a warning, as a static one.
 * With TREE_STATIC_LOADER=LD_SO the child executes the dynamic loader LD_SO with STATIC_PROG
 * (then a dynamically linked build) as its argument (`ld.so PROG ARG`), which zhuque runs
 * natively with a warning too.
 *
 * lists: ROUNDS times, the program forks a child that computes for a moment (0 to 20 ms,
 * around the runtime's grace before a fork child copies its parent's pool, which stops its
 * thread) and then executes this program again through execl, execle or execlp, in turn,
 * with more arguments than registers pass (the rest travel on the stack). The new program
 * (`echo`) prints its arguments and one environment variable, and ends with its argument
 * count as status; the parent checks the status. glibc's execl & co. reach the kernel
 * through an internal execve no preloaded library sees: a stop signal that came at that
 * instant killed the new program (pg_ctl start lost its server that way now and then).
 *
 * relative: ROUNDS times, the program starts itself (`echo`) or a shell script through a
 * path relative to its working directory, in turn: a fork child's execv("./tree_exec_here")
 * (a symbolic link to this program it makes there), execv("tree_exec_here") (no slash: still
 * the working directory's, execv does not search), execvp("./tree_exec_here") (a slash: no
 * search), posix_spawn("./tree_exec_here") (without file actions, or every other time with
 * one that leaves the directory alone, a dup2 of fd 1 onto itself), posix_spawn of a path relative to "/" with a file
 * action that changes the child's directory to "/" (relative to the parent's directory it
 * names nothing: the exec must resolve it in the child's), and execv("./rel_script.sh"), a
 * script it writes, which prints its $0 (natively the path as given). The runtime gives the
 * kernel an ELF program's relative path in its absolute form (the new program's runtime
 * would execute itself again otherwise), and must not change anything the program sees.
 *
 * fd: the program executes itself through an fd it holds open (fexecve, no close-on-exec:
 * the kernel names the new program /dev/fd/N, a path that leads to it only while N is open),
 * and the new program (`fd_root`) starts ROUNDS children that do the same, in turn with
 * fexecve and execveat(AT_EMPTY_PATH), of an fd with and without close-on-exec. Each exec'd
 * child (`fd_child`) computes for about 150 ms in steps, printing each, and reports whether
 * the fd it came through is still open (exactly when it was not close-on-exec). A failure
 * while such a program runs must resume it: its launch names a path a resume cannot execute
 * again, so the runtime must not save that path as the program.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t checksum = TL_HASH_INIT;

static void out(const char *line)
{
    checksum = tl_hash(checksum, line, strlen(line));
    printf("%s\n", line);
}

static void work(const char *what, unsigned long steps)
{
    uint64_t s = tl_hash(TL_HASH_INIT, what, strlen(what)) ^ steps, h = TL_HASH_INIT;
    unsigned long every = steps / 8 ? steps / 8 : 1;
    for (unsigned long i = 1; i <= steps; i++) {
        h = tl_mix(h, tl_next(&s));
        if (i % every == 0) {
            char line[128];
            snprintf(line, sizeof line, "%s %lu/8: %016llx", what, i / every,
                     (unsigned long long)h);
            out(line);
        }
    }
}

static void log_line(const char *text)
{
    size_t n = strlen(text);
    TL_CHECK(write(5, text, n) == (ssize_t)n, "write exec.log: %s", strerror(errno));
}

static int chain(int argc, char **argv)
{
    TL_CHECK(argc == 4, "usage: tree_exec chain WORK STAGE3_SCRIPT");
    unsigned long steps = tl_arg(argc, argv, 2, 1000000);
    out("stage 1: tree_exec chain");
    int fd = open("exec.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TL_CHECK(fd >= 0, "exec.log: %s", strerror(errno));
    TL_CHECK(dup2(fd, 5) == 5, "dup2");
    close(fd);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    TL_CHECK(fd >= 0 && dup3(fd, 6, O_CLOEXEC) == 6, "dup3");
    close(fd);
    log_line("stage 1\n");
    work("stage 1", steps);

    char pid[32], dir[4096], path_var[8192];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    /* tree_exec's directory first on PATH, so that env finds it by name. */
    TL_CHECK(argv[0][0] == '/', "run tree_exec by its absolute path");
    snprintf(dir, sizeof dir, "%s", argv[0]);
    *strrchr(dir, '/') = '\0';
    const char *old = getenv("PATH");
    snprintf(path_var, sizeof path_var, "PATH=%s:%s", dir, old ? old : "/usr/bin:/bin");
    out("stage 1: exec /usr/bin/env tree_exec stage2");
    fflush(stdout);
    char *args[] = {"env", path_var, "tree_exec", "stage2", pid, argv[2], argv[3], NULL};
    execv("/usr/bin/env", args);
    TL_CHECK(0, "exec /usr/bin/env: %s", strerror(errno));
    return 99;
}

static int stage2(int argc, char **argv)
{
    TL_CHECK(argc == 5, "usage: tree_exec stage2 PID WORK STAGE3_SCRIPT");
    char line[256];
    out("stage 2: tree_exec stage2, exec'd by env");
    snprintf(line, sizeof line, "stage 2: same pid as stage 1: %s",
             atoi(argv[2]) == (int)getpid() ? "yes" : "no");
    out(line);
    snprintf(line, sizeof line, "stage 2: fd 5 kept across exec: %s, fd 6 (O_CLOEXEC) closed: %s",
             fcntl(5, F_GETFD) == 0 ? "yes" : "no",
             fcntl(6, F_GETFD) < 0 && errno == EBADF ? "yes" : "no");
    out(line);
    log_line("stage 2\n");
    work("stage 2", tl_arg(argc, argv, 3, 1000000));
    out("stage 2: exec the shell script");
    fflush(stdout);
    char *args[] = {argv[4], argv[2], NULL};
    execv(argv[4], args);
    TL_CHECK(0, "exec %s: %s", argv[4], strerror(errno));
    return 99;
}

extern char **environ;

/* Executes a copy of `prog` in a memfd named "tree_static"; returns only on failure. */
static void exec_from_memfd(const char *prog, char **args)
{
    int src = open(prog, O_RDONLY | O_CLOEXEC);
    int m = memfd_create("tree_static", MFD_CLOEXEC);
    if (src < 0 || m < 0)
        return;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(m, buf, (size_t)n) != n)
            return;
    fexecve(m, args, environ);
}

static int run_static(int argc, char **argv)
{
    TL_CHECK(argc == 4, "usage: TREE_STATIC=STATIC_PROG tree_exec static ROUNDS WORK");
    const char *prog = getenv("TREE_STATIC");
    TL_CHECK(prog && *prog, "TREE_STATIC is not set");
    unsigned long rounds = tl_arg(argc, argv, 2, 4);
    unsigned long steps = tl_arg(argc, argv, 3, 1000000);
    char line[256];
    unsigned long restarts = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        snprintf(line, sizeof line, "round %lu", r);
        work(line, steps);
        char arg[32];
        snprintf(arg, sizeof arg, "%lu", r);
        for (;;) {
            fprintf(stderr, "tree_exec: starting the static child\n");
            fflush(stdout);
            pid_t c = fork();
            TL_CHECK(c >= 0, "fork: %s", strerror(errno));
            if (c == 0) {
                char *args[] = {"tree_static", arg, NULL};
                if (getenv("TREE_STATIC_MEMFD"))
                    exec_from_memfd(prog, args);
                const char *loader = getenv("TREE_STATIC_LOADER");
                if (loader) {
                    char *largs[] = {"ld.so", (char *)prog, arg, NULL};
                    execv(loader, largs);
                }
                execv(prog, args);
                _exit(127);
            }
            int st;
            pid_t w;
            do
                w = waitpid(c, &st, 0);
            while (w < 0 && errno == EINTR);
            TL_CHECK(w == c, "waitpid: %s", strerror(errno));
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                break;
            TL_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                     "the static child ended with status %#x, neither 0 nor SIGKILL", st);
            TL_CHECK(++restarts < 100, "the static child was killed 100 times");
            fprintf(stderr, "tree_exec: the static child was killed by SIGKILL, starting it "
                            "again\n");
        }
        char result[128] = "";
        FILE *f = fopen("static.out", "r");
        TL_CHECK(f && fgets(result, sizeof result, f), "static.out missing");
        fclose(f);
        result[strcspn(result, "\n")] = '\0';
        snprintf(line, sizeof line, "round %lu: the static child says: %s", r, result);
        out(line);
    }
    snprintf(line, sizeof line, "checksum %016llx", (unsigned long long)checksum);
    out(line);
    return 0;
}

/* Computes for about `ms` milliseconds. */
static void spin_ms(unsigned long ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < (long)ms * 1000000L);
}

static int echo(int argc, char **argv)
{
    const char *v = getenv("TREE_EXEC_LIST");
    printf("echo:");
    for (int i = 2; i < argc; i++)
        printf(" %s", argv[i]);
    printf(" (TREE_EXEC_LIST=%s)\n", v ? v : "unset");
    return argc;
}

static int lists(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 2, 60);
    char *const env[] = {"TREE_EXEC_LIST=from execle", NULL};
    /* execlp searches PATH: this program's directory. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    TL_CHECK(n > 0, "readlink");
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    TL_CHECK(setenv("PATH", self, 1) == 0, "setenv");
    *slash = '/';
    for (unsigned long r = 1; r <= rounds; r++) {
        char round[32];
        snprintf(round, sizeof round, "%lu", r);
        fflush(stdout);
        pid_t pid = fork();
        TL_CHECK(pid >= 0, "fork");
        if (pid == 0) {
            spin_ms(r * 7 % 21);
            if (r % 3 == 0)
                execl(self, "tree_exec", "echo", "execl", round, "a", "b", "c", "d", "e", (char *)NULL);
            else if (r % 3 == 1)
                execle(self, "tree_exec", "echo", "execle", round, "a", "b", "c", "d", (char *)NULL,
                       env);
            else
                execlp(slash + 1, "tree_exec", "echo", "execlp", round, "a", "b", "c", (char *)NULL);
            _exit(98);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            TL_CHECK(errno == EINTR, "waitpid");
        int want = 9 - (int)(r % 3 == 1) - 2 * (int)(r % 3 == 2);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != want) {
            printf("round %lu: the child ended with status %#x, not exit %d\n", r, status, want);
            return 99;
        }
    }
    printf("lists: %lu children executed\n", rounds);
    return 0;
}

/* Starts round `r`'s program through a relative path; returns its pid. */
static pid_t start_relative(unsigned long r, const char *round, const char *from_root)
{
    char *const echo_args[] = {"tree_exec", "echo", "relative", (char *)round, NULL};
    char *const script_args[] = {"rel_script.sh", (char *)round, NULL};
    pid_t pid;
    if (r % 6 == 3 || r % 6 == 4) {
        posix_spawn_file_actions_t fa;
        TL_CHECK(posix_spawn_file_actions_init(&fa) == 0, "file actions");
        if (r % 6 == 4)
            TL_CHECK(posix_spawn_file_actions_addchdir_np(&fa, "/") == 0, "addchdir");
        /* File actions that leave the directory alone (Rust's Command passes its stdio so),
         * every other such round; none at all in the rest. */
        else if (r % 12 == 9)
            TL_CHECK(posix_spawn_file_actions_adddup2(&fa, 1, 1) == 0, "adddup2");
        int e = r % 6 == 3
                    ? posix_spawn(&pid, "./tree_exec_here", r % 12 == 9 ? &fa : NULL, NULL,
                                  echo_args, environ)
                    : posix_spawn(&pid, from_root, &fa, NULL, echo_args, environ);
        posix_spawn_file_actions_destroy(&fa);
        TL_CHECK(e == 0, "posix_spawn");
        return pid;
    }
    fflush(stdout);
    pid = fork();
    TL_CHECK(pid >= 0, "fork");
    if (pid == 0) {
        spin_ms(r * 7 % 21);
        if (r % 6 == 0)
            execv("./tree_exec_here", echo_args);
        else if (r % 6 == 1)
            execv("tree_exec_here", echo_args);
        else if (r % 6 == 2)
            execvp("./tree_exec_here", echo_args);
        else
            execv("./rel_script.sh", script_args);
        _exit(98);
    }
    return pid;
}

static int relative(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 2, 60);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    TL_CHECK(n > 0, "readlink");
    self[n] = 0;
    unlink("tree_exec_here");
    TL_CHECK(symlink(self, "tree_exec_here") == 0, "symlink");
    FILE *f = fopen("rel_script.sh", "w");
    TL_CHECK(f != NULL, "fopen");
    fprintf(f, "#!/bin/sh\necho \"script: $0 $1\"\nexit 7\n");
    TL_CHECK(fclose(f) == 0, "fclose");
    TL_CHECK(chmod("rel_script.sh", 0755) == 0, "chmod");
    for (unsigned long r = 1; r <= rounds; r++) {
        char round[32];
        snprintf(round, sizeof round, "%lu", r);
        pid_t pid = start_relative(r, round, self + 1);
        int status;
        while (waitpid(pid, &status, 0) < 0)
            TL_CHECK(errno == EINTR, "waitpid");
        int want = r % 6 == 5 ? 7 : 4;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != want) {
            printf("round %lu: the child ended with status %#x, not exit %d\n", r, status, want);
            return 99;
        }
        spin_ms(r * 5 % 13);
    }
    printf("relative: %lu programs started\n", rounds);
    return 0;
}

/* Executes this program through an fd (`how`: 0 fexecve, 1 execveat) opened with `cloexec`
 * or not, as `tree_exec MODE ROUND FD CLOEXEC`. */
static void exec_through_fd(const char *mode, unsigned long round, int how, int cloexec)
{
    int fd = open("/proc/self/exe", O_RDONLY | (cloexec ? O_CLOEXEC : 0));
    TL_CHECK(fd >= 0, "open /proc/self/exe");
    char r[32], n[32];
    snprintf(r, sizeof r, "%lu", round);
    snprintf(n, sizeof n, "%d", fd);
    char *const args[] = {"tree_exec", (char *)mode, r, n, cloexec ? "cloexec" : "kept", NULL};
    if (how == 0)
        fexecve(fd, args, environ);
    else
        syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
    TL_CHECK(0, "exec through an fd");
}

static int fd_child(int argc, char **argv)
{
    unsigned long round = tl_arg(argc, argv, 2, 0);
    int fd = (int)tl_arg(argc, argv, 3, 0);
    int open_now = fcntl(fd, F_GETFD) >= 0;
    for (int step = 1; step <= 6; step++) {
        spin_ms(25);
        printf("fd child %lu: step %d\n", round, step);
        fflush(stdout);
    }
    printf("fd child %lu: came through a %s fd, %s now\n", round, argv[4],
           open_now ? "open" : "closed");
    return (int)(round % 50);
}

static int fd_root(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 2, 8);
    int fd = (int)tl_arg(argc, argv, 3, 0);
    printf("fd root: the fd it came through is %s\n", fcntl(fd, F_GETFD) >= 0 ? "open" : "closed");
    for (unsigned long r = 1; r <= rounds; r++) {
        fflush(stdout);
        pid_t pid = fork();
        TL_CHECK(pid >= 0, "fork");
        if (pid == 0)
            exec_through_fd("fd_child", r, (int)(r % 2), (int)(r / 2 % 2));
        int status;
        while (waitpid(pid, &status, 0) < 0)
            TL_CHECK(errno == EINTR, "waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != (int)(r % 50)) {
            printf("round %lu: the child ended with status %#x\n", r, status);
            return 99;
        }
    }
    printf("fd: %lu programs executed through fds\n", rounds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "fd"))
        exec_through_fd("fd_root", tl_arg(argc, argv, 2, 8), 0, 0);
    if (argc > 1 && !strcmp(argv[1], "fd_root"))
        return fd_root(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "fd_child"))
        return fd_child(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "relative"))
        return relative(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "lists"))
        return lists(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "echo"))
        return echo(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "chain"))
        return chain(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "stage2"))
        return stage2(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "static"))
        return run_static(argc, argv);
    fprintf(stderr, "usage: tree_exec chain|stage2|static|lists|relative|fd ...\n");
    return 2;
}
