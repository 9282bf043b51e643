/*
 * cmd_export.c -- `taskspan export`: deliver what a buffer holds to the
 * configured OTLP endpoint, from outside the runner. This is how the spans
 * of a runner that died, or of one that records with export off, reach the
 * collector. It runs the library's own export loop through taskspan_flush().
 */
#include "cmd.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Show progress once this many spans are to be delivered in one run. */
#define PROGRESS_MIN_SPANS 1000
#define PROGRESS_BAR_WIDTH 40

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void export_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan export [--db PATH] [--once | --follow] "
            "[--timeout MS]\n\n"
            "Deliver the closed spans in the buffer to the OTLP endpoint\n"
            "(OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318).\n"
            "  --once        deliver what is there and exit (the default):\n"
            "                0 when everything was delivered, 1 otherwise\n"
            "  --follow      keep delivering until interrupted\n"
            "  --timeout MS  how long --once may take (default 60000)\n"
            "With --once, more than 1000 spans to deliver show progress on\n"
            "stderr: a bar on a terminal, else a line a second.\n"
            "The spans of a runner killed without runner_exit are closed as\n"
            "crashed and delivered once its process is gone and its task\n"
            "has been silent for TASKSPAN_CRASH_GRACE_MS (default 30000).\n");
}

static int parse_ms(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 86400000) {
        return 0;
    }
    *out = v;
    return 1;
}

static void report(taskspan *ts, FILE *out)
{
    taskspan_export_stats st;
    if (taskspan_get_export_stats(&st, ts) != TASKSPAN_OK) {
        return;
    }
    fprintf(out,
            "taskspan export: %llu spans delivered, %llu rejected, %llu "
            "pending (endpoint %s)\n",
            (unsigned long long)st.spans_delivered,
            (unsigned long long)st.spans_rejected,
            (unsigned long long)st.spans_pending, st.endpoint);
    if (st.spans_pending > 0 && st.last_error[0] != '\0') {
        fprintf(out, "taskspan export: last error: %s\n", st.last_error);
    }
    if (st.config_warnings[0] != '\0') {
        fprintf(out, "taskspan export: configuration: %s\n",
                st.config_warnings);
    }
}

/* The flush of --once, run in a thread so the main thread can draw
 * progress meanwhile (taskspan_flush and taskspan_get_export_stats may run
 * at once on one recorder). */
typedef struct flush_job {
    taskspan *ts;
    int timeout_ms;
    taskspan_code rc;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
} flush_job;

static void *flush_thread(void *arg)
{
    flush_job *job = arg;
    taskspan_code rc = taskspan_flush(job->ts, job->timeout_ms);
    pthread_mutex_lock(&job->lock);
    job->rc = rc;
    job->done = 1;
    pthread_cond_signal(&job->done_cond);
    pthread_mutex_unlock(&job->lock);
    return NULL;
}

/* Wait up to ms for the flush to end; 1 when it has. */
static int wait_done(flush_job *job, long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&job->lock);
    while (!job->done) {
        if (pthread_cond_timedwait(&job->done_cond, &job->lock, &t) != 0) {
            break;
        }
    }
    int done = job->done;
    pthread_mutex_unlock(&job->lock);
    return done;
}

/* Progress of this run: spans it delivered or rejected, of those plus the
 * ones still pending (the total grows while the flush discovers spans). */
typedef struct progress {
    int tty;   /* stderr is a terminal: one bar, redrawn */
    int shown; /* the backlog was large enough to show */
    int drawn; /* a bar is on screen (needs a newline) */
    uint64_t last_done;
    time_t last_line;
} progress;

static void show_progress(progress *p, taskspan *ts, int final)
{
    taskspan_export_stats st;
    if (taskspan_get_export_stats(&st, ts) != TASKSPAN_OK) {
        return;
    }
    uint64_t done = st.spans_delivered + st.spans_rejected;
    uint64_t total = done + st.spans_pending;
    if (!p->shown && total <= PROGRESS_MIN_SPANS) {
        return;
    }
    p->shown = 1;
    if (p->tty) {
        int fill = total ? (int)(done * PROGRESS_BAR_WIDTH / total) : 0;
        char bar[PROGRESS_BAR_WIDTH + 1];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(PROGRESS_BAR_WIDTH - fill));
        bar[PROGRESS_BAR_WIDTH] = '\0';
        fprintf(stderr, "\rtaskspan export: [%s] %llu/%llu spans (%d%%)", bar,
                (unsigned long long)done, (unsigned long long)total,
                total ? (int)(done * 100 / total) : 100);
        p->drawn = 1;
        if (final) {
            fputc('\n', stderr);
            p->drawn = 0;
        }
    } else {
        /* A log, not a screen: a line a second at most, and the last. */
        time_t now = time(NULL);
        if (!final && (now == p->last_line || done == p->last_done)) {
            return;
        }
        fprintf(stderr, "taskspan export: progress %llu/%llu spans\n",
                (unsigned long long)done, (unsigned long long)total);
        p->last_line = now;
        p->last_done = done;
    }
    fflush(stderr);
}

static int run_once(taskspan *ts, long timeout_ms)
{
    flush_job job = {.ts = ts, .timeout_ms = (int)timeout_ms};
    progress p = {.tty = isatty(STDERR_FILENO)};
    pthread_t thread;
    taskspan_code rc;

    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.done_cond, NULL);
    if (pthread_create(&thread, NULL, flush_thread, &job) != 0) {
        rc = taskspan_flush(ts, (int)timeout_ms); /* no progress, then */
    } else {
        while (!wait_done(&job, 200)) {
            show_progress(&p, ts, 0);
        }
        pthread_join(thread, NULL);
        rc = job.rc;
        show_progress(&p, ts, 1); /* the last state, if large enough */
    }
    pthread_cond_destroy(&job.done_cond);
    pthread_mutex_destroy(&job.lock);
    report(ts, stdout);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan export: %s (%s); the spans stay in the "
                "buffer: run it again once the collector is reachable\n",
                taskspan_errmsg(ts), taskspan_strerror(rc));
        return CLI_FAILURE;
    }
    return CLI_OK;
}

static int run_follow(taskspan *ts)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop_requested) {
        /* Short rounds, so an interrupt is served within a second. */
        taskspan_code rc = taskspan_flush(ts, 1000);
        if (rc != TASKSPAN_OK && rc != TASKSPAN_E_TIMEOUT) {
            fprintf(stderr, "taskspan export: %s\n", taskspan_errmsg(ts));
            return CLI_FAILURE;
        }
    }
    report(ts, stdout);
    return CLI_OK;
}

int cmd_export(int argc, char **argv)
{
    const char *db = NULL;
    int follow = 0;
    long timeout_ms = 60000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            export_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--once") == 0) {
            follow = 0;
        } else if (strcmp(argv[i], "--follow") == 0) {
            follow = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
                   parse_ms(argv[i + 1], &timeout_ms)) {
            i++;
        } else {
            fprintf(stderr,
                    "taskspan export: bad argument '%s'; see "
                    "'taskspan export --help'\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.flags = TASKSPAN_OPEN_NO_CREATE;
    /* No background thread: this process's flushes do the work. */
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.close_timeout_ms = -1;
    taskspan *ts = cli_open("taskspan export", &o);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    int status = follow ? run_follow(ts) : run_once(ts, timeout_ms);
    taskspan_close(ts);
    return status;
}
