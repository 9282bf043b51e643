/*
 * cmd_exec.c -- `taskspan exec`: run a command as a step of a task.
 *
 * The step is recorded as two events on its own span, exec_start (argv,
 * cwd, the command's pid) and exec_end (exit_code, or signal and
 * signal_name; duration_seconds), and the command gets that span as
 * TRACEPARENT, so the OpenTelemetry spans it makes itself join the task's
 * trace under the step.
 *
 * The command's exit status is what matters to the caller, so recording is
 * best effort: whatever goes wrong with the buffer costs one warning line
 * on stderr and never changes the exit status. The sequence is:
 *   1. fork; the child waits on a pipe for its TRACEPARENT;
 *   2. the parent records exec_start with the child's pid, builds the
 *      task's spans, finds the one exec_start landed on, and writes its
 *      traceparent into the pipe (nothing if recording failed);
 *   3. the child sets TRACEPARENT and execs the command; an exec failure
 *      comes back through a close-on-exec pipe (127 not found, 126 else);
 *   4. the parent waits, passing SIGINT and SIGTERM on, then records
 *      exec_end and exits with the command's status (128+N for signal N).
 */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

static void exec_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan exec --task T [--span KEY] [--parent KEY] "
            "[--name STEP]\n"
            "                     [--db PATH] [--] CMD [ARG...]\n\n"
            "Run CMD as a step of task T and exit with its exit status.\n"
            "Records exec_start (argv, cwd, pid) and exec_end (exit_code,\n"
            "or signal and signal_name; duration_seconds) with actor exec\n"
            "on span KEY, and passes that span to CMD as TRACEPARENT, so\n"
            "the OpenTelemetry spans CMD makes join the task's trace.\n\n"
            "  --task T      the task (required)\n"
            "  --name STEP   the step's name (default: CMD's basename)\n"
            "  --span KEY    the span key (default exec_STEP)\n"
            "  --parent KEY  the parent span key (default main; '' for "
            "none)\n"
            "  --db PATH     the buffer (default $TASKSPAN_DB, else the\n"
            "                per-user state directory)\n"
            "Options also take their value as --name=VALUE.\n\n"
            "Exit status: CMD's; 128+N when CMD was killed by signal N;\n"
            "127 when CMD was not found, 126 when it could not be run;\n"
            "2 for bad arguments (then nothing runs). Recording never\n"
            "changes it: when the buffer cannot be written, one warning\n"
            "goes to stderr and CMD runs all the same. SIGINT and SIGTERM\n"
            "sent to this command are passed on to CMD.\n\n"
            "Export is off: this command never waits for the network. The\n"
            "spans reach the collector through a runner's exporter on the\n"
            "same buffer, or through 'taskspan export'. The step's span\n"
            "closes at the task's runner_exit (docs/cli.md).\n");
}

typedef struct exec_opts {
    const char *task, *span, *parent, *name, *db;
    char **cmd; /* the tail of argv, NULL-terminated */
    size_t n_cmd;
} exec_opts;

/* The recording side. Its failures print one warning, once. */
typedef struct step_recorder {
    taskspan *ts; /* NULL once recording is given up */
    const exec_opts *o;
    char *span;
    bool warned;
} step_recorder;

/* ---- options ------------------------------------------------------------ */

static const char **option_slot(exec_opts *o, const char *arg, size_t n)
{
    static const char *const names[] = {"--task", "--span", "--parent",
                                        "--name", "--db"};
    const char **slots[] = {&o->task, &o->span, &o->parent, &o->name, &o->db};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == n && strncmp(arg, names[i], n) == 0) {
            return slots[i];
        }
    }
    return NULL;
}

/* Options up to "--" or the first argument that is not one; CMD is the
 * rest. Returns CLI_OK, or CLI_USAGE after printing why. */
static int parse_args(exec_opts *o, int argc, char **argv, bool *help)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-') {
            break;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return CLI_OK;
        }
        const char *eq = strchr(arg, '=');
        size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const char **slot = option_slot(o, arg, n);
        if (slot == NULL) {
            fprintf(stderr,
                    "taskspan exec: unknown option '%s'; put the command "
                    "after '--'; see 'taskspan exec --help'\n",
                    arg);
            return CLI_USAGE;
        }
        if (cli_take_value("taskspan exec", argc, argv, &i, slot) != CLI_OK) {
            return CLI_USAGE;
        }
    }
    o->cmd = argv + i;
    o->n_cmd = i < argc ? (size_t)(argc - i) : 0;
    if (o->task == NULL) {
        fprintf(stderr, "taskspan exec: which task? usage: taskspan exec "
                        "--task T [options] -- CMD [ARG...]\n");
        return CLI_USAGE;
    }
    if (o->n_cmd == 0) {
        fprintf(stderr, "taskspan exec: which command? usage: taskspan exec "
                        "--task T [options] -- CMD [ARG...]\n");
        return CLI_USAGE;
    }
    if (o->name != NULL && o->name[0] == '\0') {
        fprintf(stderr, "taskspan exec: --name is empty; give the step a "
                        "name or leave --name out\n");
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* exec_<STEP>, STEP being --name or CMD's basename; caller frees. */
static char *default_span(const exec_opts *o)
{
    const char *step = o->name;
    if (step == NULL) {
        const char *slash = strrchr(o->cmd[0], '/');
        step = slash != NULL && slash[1] != '\0' ? slash + 1 : o->cmd[0];
    }
    size_t n = strlen("exec_") + strlen(step) + 1;
    char *key = malloc(n);
    if (key != NULL) {
        snprintf(key, n, "exec_%s", step);
    }
    return key;
}

/* ---- recording ---------------------------------------------------------- */

static void warn_once(step_recorder *r, const char *what, const char *why)
{
    if (!r->warned) {
        fprintf(stderr,
                "taskspan exec: warning: %s: %s; the step goes on "
                "unrecorded, its exit status is not affected\n",
                what, why);
        r->warned = true;
    }
}

static void recorder_stop(step_recorder *r)
{
    taskspan_close(r->ts);
    r->ts = NULL;
}

static void recorder_start(step_recorder *r, const exec_opts *o)
{
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    char why[TASKSPAN_ERRBUF_SIZE + 64];

    r->o = o;
    r->span = o->span != NULL ? NULL : default_span(o);
    if (o->span == NULL && r->span == NULL) {
        warn_once(r, "cannot record the step", "out of memory");
        return;
    }
    taskspan_code rc = cli_open_recorder(&r->ts, o->db, err);
    if (rc != TASKSPAN_OK) {
        snprintf(why, sizeof why, "%s (%s)", err, taskspan_strerror(rc));
        warn_once(r, "cannot record the step", why);
        r->ts = NULL;
    }
}

static bool record(step_recorder *r, const char *type,
                   const taskspan_attr *attrs, size_t n_attrs,
                   int64_t *out_seq)
{
    char why[TASKSPAN_ERRBUF_SIZE + 64];
    char what[64];

    if (r->ts == NULL) {
        return false;
    }
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = r->o->task;
    ev.event_type = type;
    ev.actor = "exec";
    ev.span_key = r->o->span != NULL ? r->o->span : r->span;
    ev.parent_span_key = r->o->parent == NULL      ? "main"
                         : r->o->parent[0] == '\0' ? NULL
                                                   : r->o->parent;
    ev.attrs = attrs;
    ev.n_attrs = n_attrs;
    taskspan_code rc = taskspan_emit(out_seq, r->ts, &ev);
    if (rc != TASKSPAN_OK) {
        snprintf(what, sizeof what, "cannot record %s", type);
        snprintf(why, sizeof why, "%s (%s)", taskspan_errmsg(r->ts),
                 taskspan_strerror(rc));
        warn_once(r, what, why);
        return false;
    }
    return true;
}

/* The traceparent of the span that the event seq landed on. */
static bool step_traceparent(step_recorder *r, int64_t seq,
                             char out[TASKSPAN_TRACEPARENT_LEN + 1])
{
    const char *key = r->o->span != NULL ? r->o->span : r->span;
    taskspan_spans *spans = NULL;
    taskspan_code rc = taskspan_task_spans(&spans, r->ts, r->o->task);
    bool found = false;

    if (rc != TASKSPAN_OK) {
        char why[TASKSPAN_ERRBUF_SIZE + 64];
        snprintf(why, sizeof why, "%s (%s)", taskspan_errmsg(r->ts),
                 taskspan_strerror(rc));
        warn_once(r, "cannot pass TRACEPARENT", why);
        return false;
    }
    /* The latest instance of the key holds it: search from the end. */
    for (size_t i = taskspan_spans_count(spans); i-- > 0 && !found;) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        if (strcmp(s->name, key) != 0) {
            continue;
        }
        for (size_t k = 0; k < s->n_events && !found; k++) {
            if (s->events[k].seq == seq) {
                found = taskspan_traceparent_format(
                            out, s->trace_id, s->span_id, 0x01) == TASKSPAN_OK;
            }
        }
    }
    taskspan_spans_free(spans);
    if (!found) {
        warn_once(r, "cannot pass TRACEPARENT",
                  "the step's span was not found");
    }
    return found;
}

/* exec_start: argv, cwd, pid. Fills tp with the step's traceparent, or ""
 * when recording failed. */
static void record_start(step_recorder *r, pid_t pid,
                         char tp[TASKSPAN_TRACEPARENT_LEN + 1])
{
    char cwd[4096];
    taskspan_attr a[3];
    size_t n = 0;
    int64_t seq = 0;

    tp[0] = '\0';
    a[n++] = taskspan_attr_array("argv", TASKSPAN_ATTR_STRING_ARRAY, r->o->cmd,
                                 r->o->n_cmd);
    if (getcwd(cwd, sizeof cwd) != NULL) {
        a[n++] = taskspan_attr_str("cwd", cwd);
    }
    a[n++] = taskspan_attr_int("pid", (int64_t)pid);
    if (!record(r, "exec_start", a, n, &seq)) {
        /* Without its start, an exec_end alone would open a span of its
         * own: record nothing more. */
        recorder_stop(r);
        return;
    }
    if (!step_traceparent(r, seq, tp)) {
        tp[0] = '\0';
    }
}

static const char *signal_name(int sig)
{
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},       {SIGQUIT, "SIGQUIT"},
        {SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"},     {SIGABRT, "SIGABRT"},
        {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},       {SIGKILL, "SIGKILL"},
        {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},     {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},     {SIGTERM, "SIGTERM"},
        {SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"},     {SIGSTOP, "SIGSTOP"},
        {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},     {SIGTTOU, "SIGTTOU"},
        {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},     {SIGXFSZ, "SIGXFSZ"},
        {SIGPROF, "SIGPROF"}, {SIGVTALRM, "SIGVTALRM"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].sig == sig) {
            return names[i].name;
        }
    }
    return NULL;
}

/* What exec(3) failing with errno e means, as a shell would say it. */
static const char *exec_error(const char *cmd, int e)
{
    if (e == ENOENT && strchr(cmd, '/') == NULL) {
        return "command not found";
    }
    return strerror(e);
}

/* exec_end: exit_code (and error when CMD never ran), or signal and
 * signal_name; duration_seconds. */
static void record_end(step_recorder *r, int wstatus, int exec_errno,
                       double seconds)
{
    taskspan_attr a[4];
    size_t n = 0;
    char sig_text[32];

    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        const char *name = signal_name(sig);
        if (name == NULL) {
            snprintf(sig_text, sizeof sig_text, "SIG%d", sig);
            name = sig_text;
        }
        a[n++] = taskspan_attr_int("signal", sig);
        a[n++] = taskspan_attr_str("signal_name", name);
    } else {
        a[n++] = taskspan_attr_int("exit_code", WEXITSTATUS(wstatus));
        if (exec_errno != 0) {
            a[n++] = taskspan_attr_str("error",
                                       exec_error(r->o->cmd[0], exec_errno));
        }
    }
    a[n++] = taskspan_attr_double("duration_seconds", seconds);
    record(r, "exec_end", a, n, NULL);
}

/* ---- the child ---------------------------------------------------------- */

/* In the child: wait for the traceparent, then exec CMD. Never returns.
 * If exec itself died meanwhile (kill -9), CMD is not started. */
static void run_child(const exec_opts *o, pid_t parent, int go_fd,
                      int report_fd, const sigset_t *mask,
                      const struct sigaction *chld)
{
    char tp[TASKSPAN_TRACEPARENT_LEN + 2];
    size_t got = 0;

    for (;;) {
        ssize_t n = read(go_fd, tp + got, sizeof tp - 1 - got);
        if (n > 0) {
            got += (size_t)n;
            if (got == sizeof tp - 1) {
                break;
            }
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    close(go_fd);
    if (getppid() != parent) {
        _exit(EXIT_CANNOT_RUN);
    }
    tp[got] = '\0';
    if (got == TASKSPAN_TRACEPARENT_LEN) {
        setenv("TRACEPARENT", tp, 1);
    }
    sigaction(SIGCHLD, chld, NULL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    execvp(o->cmd[0], o->cmd);
    int e = errno;
    if (write(report_fd, &e, sizeof e) < 0) {
        /* the parent then sees a plain exit status */
    }
    _exit(e == ENOENT || e == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
}

/* ---- the parent --------------------------------------------------------- */

static bool make_pipe(int fds[2])
{
    if (pipe(fds) != 0) {
        return false;
    }
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return true;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return; /* the child is gone: waitpid tells */
        }
        s += w;
        n -= (size_t)w;
    }
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Wait for the child, passing SIGINT and SIGTERM on to it. The signals
 * stay blocked and are taken with sigtimedwait() rather than by a handler,
 * so nothing runs asynchronously (and sanitizers that defer handlers see
 * the same behaviour). A signal ignored when exec started is discarded by
 * the kernel and so never forwarded: the child ignores it too. SIGCHLD is
 * in the set, so the child's exit ends the wait at once. */
static int wait_child(pid_t pid, const sigset_t *signals, int *wstatus)
{
    for (;;) {
        pid_t w = waitpid(pid, wstatus, WNOHANG);
        if (w == pid) {
            return 0;
        }
        if (w < 0 && errno != EINTR) {
            return -1;
        }
        siginfo_t info;
        struct timespec tick = {0, 200 * 1000000L}; /* a safety net */
        int sig = sigtimedwait(signals, &info, &tick);
        if (sig <= 0 || sig == SIGCHLD) {
            continue;
        }
#ifdef SI_KERNEL
        /* A terminal's ^C reaches the whole foreground process group, CMD
         * included: passing it on would deliver it twice. */
        if (info.si_code == SI_KERNEL) {
            continue;
        }
#endif
        kill(pid, sig);
    }
}

static int run(const exec_opts *o)
{
    step_recorder r = {0};
    int go[2], report[2];
    sigset_t stop, mask;
    struct sigaction dfl, chld;

    /* Hold SIGINT, SIGTERM and SIGCHLD from now on: wait_child() takes
     * them. SIGCHLD must not be ignored, or waitpid would find no child. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGCHLD);
    sigprocmask(SIG_BLOCK, &stop, &mask);
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &chld);

    if (!make_pipe(go)) {
        fprintf(stderr, "taskspan exec: cannot run '%s': pipe: %s\n",
                o->cmd[0], strerror(errno));
        return EXIT_CANNOT_RUN;
    }
    if (!make_pipe(report)) {
        fprintf(stderr, "taskspan exec: cannot run '%s': pipe: %s\n",
                o->cmd[0], strerror(errno));
        close(go[0]);
        close(go[1]);
        return EXIT_CANNOT_RUN;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "taskspan exec: cannot run '%s': fork: %s\n",
                o->cmd[0], strerror(errno));
        return EXIT_CANNOT_RUN;
    }
    if (pid == 0) {
        close(go[1]);
        close(report[0]);
        run_child(o, parent, go[0], report[1], &mask, &chld);
    }
    close(go[0]);
    close(report[1]);
    signal(SIGPIPE, SIG_IGN); /* a child that died early closed its pipe */

    char tp[TASKSPAN_TRACEPARENT_LEN + 1] = "";
    recorder_start(&r, o);
    record_start(&r, pid, tp);
    write_all(go[1], tp, strlen(tp));
    close(go[1]);
    double started = now_seconds();

    int exec_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof exec_errno) {
        exec_errno = 0; /* EOF: the exec succeeded */
    }
    close(report[0]);

    int wstatus = 0;
    int status;
    if (wait_child(pid, &stop, &wstatus) != 0) {
        fprintf(stderr, "taskspan exec: lost '%s' (pid %ld): waitpid: %s\n",
                o->cmd[0], (long)pid, strerror(errno));
        status = CLI_FAILURE;
    } else {
        double seconds = now_seconds() - started;
        if (exec_errno != 0) {
            fprintf(stderr, "taskspan exec: cannot run '%s': %s%s\n",
                    o->cmd[0], exec_error(o->cmd[0], exec_errno),
                    exec_errno == EACCES ? " (is it executable?)" : "");
        }
        status = WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus)
                                      : WEXITSTATUS(wstatus);
        record_end(&r, wstatus, exec_errno, seconds);
    }
    recorder_stop(&r);
    free(r.span);
    return status;
}

int cmd_exec(int argc, char **argv)
{
    exec_opts o = {0};
    bool help = false;

    int rc = parse_args(&o, argc, argv, &help);
    if (help) {
        exec_usage(stdout);
        return CLI_OK;
    }
    if (rc != CLI_OK) {
        return rc;
    }
    return run(&o);
}
