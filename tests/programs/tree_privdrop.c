/*
 * tree_privdrop
 *
 * A daemon's shape, run as root: child A is forked while still root (a crash-resistant
 * member), then the process drops to nobody (glibc's setgroups/setgid/setuid) and, as nobody:
 * - forks child B, which exits with status 7 at once;
 * - runs `id -u` through system() (sh is executed after the drop);
 * - forks child C, which, like A, waits on a pipe for "go".
 * Children B and C, and sh, cannot write the tree's image (it is root's): they run
 * unprotected, said once each by a `zhuque:` warning (B's covers C), and natively otherwise.
 * Prints "started", waits until a file `go` appears in the working directory, tells A and C
 * to finish, and prints how each ended. After a failure and resume in between, A (resumed)
 * exits 0 and C (lost) is reported killed by SIGKILL; the parent itself comes back as nobody.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t waiter(int *to_child)
{
    int p[2];
    if (pipe(p) != 0)
        exit(98);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        char buf[2];
        _exit(read(p[0], buf, 2) == 2 ? 0 : 3);
    }
    close(p[0]);
    *to_child = p[1];
    return pid;
}

static void report(const char *who, pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) != pid)
        printf("%s: waitpid failed\n", who);
    else if (WIFEXITED(status))
        printf("%s: exited %d\n", who, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", who, WTERMSIG(status));
    fflush(stdout);
}

int main(void)
{
    int to_a, to_c;
    /* A lost child's pipe has no reader: say so instead of dying of SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    pid_t a = waiter(&to_a);
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
        perror("dropping privileges");
        return 1;
    }
    printf("main: uid %u\n", getuid());
    fflush(stdout);
    pid_t b = fork();
    if (b == 0)
        _exit(7);
    report("B", b);
    int s = system("id -u");
    printf("system: status %d\n", WIFEXITED(s) ? WEXITSTATUS(s) : -1);
    pid_t c = waiter(&to_c);
    printf("started\n");
    fflush(stdout);
    while (access("go", F_OK) != 0)
        usleep(10000);
    printf("main: uid %u after the wait\n", getuid());
    if (write(to_a, "go", 2) != 2)
        printf("A: gone\n");
    report("A", a);
    if (write(to_c, "go", 2) != 2)
        printf("C: gone\n");
    report("C", c);
    return 0;
}
