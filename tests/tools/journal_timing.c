/*
 * journal_timing.c -- tool: what one taskspan_emit() costs on the calling
 * thread in a given sync mode, and what a benchmark span costs
 * (work_item_start, lease_acquired, lease_renewed, work_item_done, each
 * with 3 attributes). Prints figures; asserts none (bench/ owns the
 * benchmark suite; this is the journal mode's own measuring stick).
 *
 *   journal_timing DIR [normal|journal] [EVENTS]
 *
 * Exit: 0, or 1 when an emit fails, 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const uint64_t *s, size_t n, double p)
{
    size_t rank = (size_t)((double)n * p + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)s[rank - 1] / 1000.0;
}

static void report(const char *what, uint64_t *s, size_t n)
{
    qsort(s, n, sizeof *s, cmp_u64);
    printf("%-22s n=%zu p50 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.2f "
           "us\n",
           what, n, pct_us(s, n, 0.5), pct_us(s, n, 0.99), pct_us(s, n, 0.999),
           (double)s[n - 1] / 1000.0);
}

/* One event as the runner would hand it over: built before the clock
 * starts, so only taskspan_emit() is timed. */
typedef struct prepared {
    char wi[32], span[40];
    taskspan_attr a[3];
    taskspan_event ev;
} prepared;

static void prepare(prepared *p, const char *task, const char *type, size_t i)
{
    snprintf(p->wi, sizeof p->wi, "wi_%06zu", i);
    snprintf(p->span, sizeof p->span, "work_%s", p->wi);
    p->a[0] = taskspan_attr_str("work_item_id", p->wi);
    p->a[1] = taskspan_attr_int("index", (int64_t)i);
    p->a[2] = taskspan_attr_str("work_type", "code_change");
    taskspan_event init = TASKSPAN_EVENT_INIT;
    p->ev = init;
    p->ev.task_id = task;
    p->ev.event_type = type;
    p->ev.actor = "worker";
    p->ev.span_key = p->span;
    p->ev.parent_span_key = "main";
    p->ev.phase = "executing";
    p->ev.attrs = p->a;
    p->ev.n_attrs = 3;
}

static int emit_prepared(taskspan *ts, const prepared *p)
{
    if (taskspan_emit(NULL, ts, &p->ev) != TASKSPAN_OK) {
        fprintf(stderr, "emit: %s\n", taskspan_errmsg(ts));
        return -1;
    }
    return 0;
}

static int emit(taskspan *ts, const char *task, const char *type, size_t i)
{
    prepared p;
    prepare(&p, task, type, i);
    return emit_prepared(ts, &p);
}

int main(int argc, char **argv)
{
    char path[4096], err[TASKSPAN_ERRBUF_SIZE];
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;

    if (argc < 2) {
        fprintf(stderr, "usage: journal_timing DIR [normal|journal] "
                        "[EVENTS]\n");
        return 2;
    }
    bool journal = argc > 2 && strcmp(argv[2], "journal") == 0;
    size_t n = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 20000;
    if (n < 4) {
        n = 4;
    }
    snprintf(path, sizeof path, "%s/timing-%s.db", argv[1],
             journal ? "journal" : "normal");
    o.db_path = path;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.sync_mode = journal ? TASKSPAN_SYNC_JOURNAL : TASKSPAN_SYNC_NORMAL;
    if (taskspan_open(&ts, &o, err) != TASKSPAN_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL) {
        taskspan_close(ts);
        return 1;
    }
    int rc = 0;
    /* Warm-up, not counted. */
    for (size_t i = 0; i < n / 4 && rc == 0; i++) {
        rc = emit(ts, "warmup", "work_item_start", i);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        prepared p;
        prepare(&p, "task-events", "work_item_start", i);
        uint64_t t0 = mono_ns();
        rc = emit_prepared(ts, &p);
        s[i] = mono_ns() - t0;
    }
    if (rc == 0) {
        report(journal ? "emit journal" : "emit normal", s, n);
    }
    /* Spans: four events each, timed together. */
    static const char *const types[4] = {"work_item_start", "lease_acquired",
                                         "lease_renewed", "work_item_done"};
    size_t spans = n / 4;
    for (size_t i = 0; i < spans && rc == 0; i++) {
        prepared p[4];
        for (int k = 0; k < 4; k++) {
            prepare(&p[k], "task-spans", types[k], i);
        }
        uint64_t t0 = mono_ns();
        for (int k = 0; k < 4 && rc == 0; k++) {
            rc = emit_prepared(ts, &p[k]);
        }
        s[i] = mono_ns() - t0;
    }
    if (rc == 0) {
        report(journal ? "span journal" : "span normal", s, spans);
    }
    uint64_t t0 = mono_ns();
    taskspan_close(ts);
    printf("close (moves the rest): %.1f ms\n",
           (double)(mono_ns() - t0) / 1e6);
    free(s);
    return rc == 0 ? 0 : 1;
}
