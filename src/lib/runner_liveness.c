/*
 * runner_liveness.c -- kill(pid, 0) tells whether a pid exists; on Linux
 * /proc/<pid>/stat also tells a zombie (killed, not yet reaped by its
 * parent) from a live process, and a zombie records nothing more.
 */
#include "runner_liveness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* 'Z' (zombie) or 'X' (dead) in the state field of /proc/<pid>/stat. The
 * field follows the command name in parentheses, which may itself contain
 * ") ", so look after the last ')'. */
static int proc_says_dead(int64_t pid)
{
    char path[64];
    char buf[512];
    FILE *f;
    size_t n;
    const char *close_paren;

    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    if (close_paren == NULL || close_paren[1] != ' ') {
        return 0;
    }
    return close_paren[2] == 'Z' || close_paren[2] == 'X';
}

taskspan__liveness taskspan__runner_liveness(int64_t pid)
{
    if (pid <= 0 || (int64_t)(pid_t)pid != pid) {
        return TASKSPAN__RUNNER_UNKNOWN;
    }
    if (kill((pid_t)pid, 0) != 0) {
        /* EPERM: it exists but belongs to someone else. */
        return errno == ESRCH ? TASKSPAN__RUNNER_GONE : TASKSPAN__RUNNER_ALIVE;
    }
    return proc_says_dead(pid) ? TASKSPAN__RUNNER_GONE
                               : TASKSPAN__RUNNER_ALIVE;
}
