/*
 * bench_growth.c -- how per-task operations cost as the buffer fills with
 * other tasks: the latency of taskspan_emit() and of taskspan_task_events()
 * (what `taskspan events` calls) with 1, 100, 10,000, 100,000 and
 * 1,000,000 tasks already in the buffer (--short: 1, 100, 10,000).
 *
 * Building the buffer. One template task is recorded through the library
 * (export off): runner_spawn, one work span (work_item_start,
 * lease_acquired, lease_renewed, work_item_done, 3 attributes each),
 * runner_exit: 6 events. The buffer then grows level by level with plain
 * SQL through the public schema (buffer-format.md): INSERT ... SELECT copies
 * the template's tasks row and its task_events rows under new task ids, in
 * one transaction per level. Not timed beyond a line of information.
 *
 * At each level, untimed: open a recorder on the buffer (the open time is
 * printed), emit a warm-up. Timed, each call alone: --events emits of a
 * fresh task of this level (work spans of 4 events), then --queries calls
 * of taskspan_task_events() on the template task (6 events).
 *
 * Output: a table (p50/p99/p99.9 per level and the ratio of each p50 to the
 * first level's) and one "BENCH_JSON {...}" line per level. A p50 that
 * grows more than GROWTH_FLAG times from the first level is flagged in the
 * output (a per-task operation that grows with the number of other tasks);
 * the program never fails on a figure, only on an error.
 */
#include "taskspan/taskspan.h"

#include "bench_util.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_EVENTS 5000
#define SHORT_EVENTS 1000
#define DEFAULT_QUERIES 500
#define SHORT_QUERIES 100
#define WARMUP_EVENTS 500
#define MAX_LEVELS 8
#define TEMPLATE_TASK "growth-0000000"
#define TEMPLATE_EVENTS 6
#define SPAN_EVENTS 4

/* The buffer's size cap: room for the largest level. */
#define GROWTH_MAX_BYTES ((int64_t)16 << 30)

/* A p50 this many times the first level's is flagged. */
#define GROWTH_FLAG 1.5

static const long full_levels[] = {1, 100, 10000, 100000, 1000000};
static const long short_levels[] = {1, 100, 10000};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted samples, in microseconds. */
static double pct_us(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)((double)n * p + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)sorted[rank - 1] / 1000.0;
}

typedef struct latency {
    double p50, p99, p999, max;
} latency;

static latency summarize(uint64_t *ns, size_t n)
{
    latency l;
    qsort(ns, n, sizeof *ns, cmp_u64);
    l.p50 = pct_us(ns, n, 0.50);
    l.p99 = pct_us(ns, n, 0.99);
    l.p999 = pct_us(ns, n, 0.999);
    l.max = (double)ns[n - 1] / 1000.0;
    return l;
}

static int open_recorder(taskspan **out, const char *path)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    /* 1,000,000 tasks take about 1.1 GB, above the default 1 GiB cap. */
    o.max_bytes = GROWTH_MAX_BYTES;
    return open_recorder_with(out, path, &o);
}

static int emit_ok(taskspan *ts, taskspan_code code, const char *what)
{
    if (code != TASKSPAN_OK) {
        die_msg("%s: %s (%s)", what, taskspan_errmsg(ts),
                taskspan_strerror(code));
        return -1;
    }
    return 0;
}

/* The four events of work span work_wi_<i> of task_id. ns (may be NULL)
 * gets each call's time, SPAN_EVENTS samples. */
static int emit_span(taskspan *ts, const char *task_id, size_t i, uint64_t *ns)
{
    static const char *const types[SPAN_EVENTS] = {
        "work_item_start", "lease_acquired", "lease_renewed",
        "work_item_done"};
    static const char *const int_keys[SPAN_EVENTS] = {
        "index", "lease_duration_seconds", "extended_by_seconds",
        "files_changed"};
    static const char *const str_keys[SPAN_EVENTS] = {
        "work_type", "lease_holder", "lease_holder", "title"};
    char wid[32], key[40];
    snprintf(wid, sizeof wid, "wi_%06zu", i);
    snprintf(key, sizeof key, "work_%s", wid);
    for (int e = 0; e < SPAN_EVENTS; e++) {
        taskspan_attr attrs[3];
        taskspan_event ev = TASKSPAN_EVENT_INIT;
        attrs[0] = taskspan_attr_str("work_item_id", wid);
        attrs[1] = taskspan_attr_int(int_keys[e], (int64_t)i);
        attrs[2] = taskspan_attr_str(str_keys[e], "code_change");
        ev.task_id = task_id;
        ev.event_type = types[e];
        ev.actor = "worker";
        ev.span_key = key;
        ev.parent_span_key = "main";
        ev.phase = "executing";
        ev.attrs = attrs;
        ev.n_attrs = 3;
        uint64_t t0 = mono_ns();
        taskspan_code code = taskspan_emit(NULL, ts, &ev);
        uint64_t t1 = mono_ns();
        if (emit_ok(ts, code, types[e]) != 0) {
            return -1;
        }
        if (ns != NULL) {
            ns[e] = t1 - t0;
        }
    }
    return 0;
}

/* The template task: runner_spawn, one work span, runner_exit. */
static int record_template(const char *path)
{
    taskspan *ts = NULL;
    int rc = -1;
    if (open_recorder(&ts, path) != 0) {
        return -1;
    }
    if (emit_ok(ts,
                taskspan_emit_runner_spawn(NULL, ts, TEMPLATE_TASK,
                                           (int64_t)getpid(), "bench", NULL),
                "runner_spawn") == 0 &&
        emit_span(ts, TEMPLATE_TASK, 0, NULL) == 0 &&
        emit_ok(ts,
                taskspan_emit_runner_exit(NULL, ts, TEMPLATE_TASK,
                                          (int64_t)getpid(), "done", 1, NULL),
                "runner_exit") == 0) {
        rc = 0;
    }
    taskspan_close(ts);
    return rc;
}

/* The figures of one level. */
typedef struct level_result {
    long tasks;
    double grow_s, open_ms, buffer_mib;
    latency emit, query;
} level_result;

static int measure(level_result *out, const char *path, int level,
                   size_t events, size_t queries, uint64_t *ns)
{
    taskspan *ts = NULL;
    char task_id[64], warm_id[64];
    int rc = -1;

    uint64_t t0 = mono_ns();
    if (open_recorder(&ts, path) != 0) {
        return -1;
    }
    out->open_ms = (double)(mono_ns() - t0) / 1e6;
    snprintf(warm_id, sizeof warm_id, "probe-warmup-%d", level);
    snprintf(task_id, sizeof task_id, "probe-%d", level);
    for (size_t i = 0; i < WARMUP_EVENTS / SPAN_EVENTS; i++) {
        if (emit_span(ts, warm_id, i, NULL) != 0) {
            goto done;
        }
    }
    size_t spans = events / SPAN_EVENTS > 0 ? events / SPAN_EVENTS : 1;
    for (size_t i = 0; i < spans; i++) {
        if (emit_span(ts, task_id, i, ns + i * SPAN_EVENTS) != 0) {
            goto done;
        }
    }
    out->emit = summarize(ns, spans * SPAN_EVENTS);
    for (size_t q = 0; q < queries; q++) {
        taskspan_event_list *list = NULL;
        uint64_t q0 = mono_ns();
        taskspan_code code = taskspan_task_events(&list, ts, TEMPLATE_TASK);
        uint64_t q1 = mono_ns();
        size_t count = taskspan_event_list_count(list);
        taskspan_event_list_free(list);
        if (emit_ok(ts, code, "taskspan_task_events") != 0) {
            goto done;
        }
        if (count != TEMPLATE_EVENTS) {
            die_msg("taskspan_task_events gave %zu events, expected %d", count,
                    TEMPLATE_EVENTS);
            goto done;
        }
        ns[q] = q1 - q0;
    }
    out->query = summarize(ns, queries);
    rc = 0;
done:
    taskspan_close(ts);
    return rc;
}

static double file_mib(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size / 1048576.0 : 0.0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_growth [--dir DIR] [--events N] [--queries Q] "
            "[--max-tasks T] [--short]\n"
            "  --dir DIR      make the temporary directory inside DIR "
            "(default /tmp)\n"
            "  --events N     timed emits per level (default %d; --short: "
            "%d)\n"
            "  --queries Q    timed taskspan_task_events() per level "
            "(default %d; --short: %d)\n"
            "  --max-tasks T  stop at the level of T tasks (levels: 1, 100, "
            "10000, 100000, 1000000; --short: up to 10000)\n"
            "  --short        a quick pass\n",
            DEFAULT_EVENTS, SHORT_EVENTS, DEFAULT_QUERIES, SHORT_QUERIES);
}

int main(int argc, char **argv)
{
    bench_args args = BENCH_ARGS_INIT(usage);
    long events = -1, queries = -1, max_tasks = -1;

    bench_set_name("bench_growth");
    for (int i = 1; i < argc; i++) {
        const char *v;
        int exit_code;
        if ((v = opt_value("--events", argc, argv, &i)) != NULL) {
            if (parse_count("--events", v, 10000000L, &events) != 0) {
                return 2;
            }
        } else if ((v = opt_value("--queries", argc, argv, &i)) != NULL) {
            if (parse_count("--queries", v, 10000000L, &queries) != 0) {
                return 2;
            }
        } else if ((v = opt_value("--max-tasks", argc, argv, &i)) != NULL) {
            if (parse_count("--max-tasks", v, 1000000L, &max_tasks) != 0) {
                return 2;
            }
        } else if (!common_option(&args, argc, argv, &i, &exit_code)) {
            return exit_code;
        }
    }
    if (events < 0) {
        events = args.short_mode ? SHORT_EVENTS : DEFAULT_EVENTS;
    }
    if (queries < 0) {
        queries = args.short_mode ? SHORT_QUERIES : DEFAULT_QUERIES;
    }
    const long *levels = args.short_mode ? short_levels : full_levels;
    int nlevels = args.short_mode
                      ? (int)(sizeof short_levels / sizeof short_levels[0])
                      : (int)(sizeof full_levels / sizeof full_levels[0]);
    if (max_tasks > 0) {
        int keep = 0;
        while (keep < nlevels && levels[keep] <= max_tasks) {
            keep++;
        }
        nlevels = keep > 0 ? keep : 1;
    }

    char dir[BENCH_PATH_LEN], path[BENCH_PATH_LEN];
    int dir_status = make_bench_dir(dir, args.base);
    if (dir_status != 0) {
        return dir_status;
    }
    if (make_path(path, dir, "growth.db", BENCH_NO_RUN) != 0) {
        rmdir(dir);
        return 2;
    }
    size_t max_samples = (size_t)events > (size_t)queries ? (size_t)events
                                                          : (size_t)queries;
    max_samples += SPAN_EVENTS;
    uint64_t *ns = malloc(max_samples * sizeof *ns);
    level_result res[MAX_LEVELS];
    int status = 1;
    if (ns == NULL) {
        die_msg("out of memory");
        goto out;
    }

    print_machine(dir, "");
    printf("growth: per level, %ld timed emits of a fresh task (work spans "
           "of %d events) and %ld timed taskspan_task_events() of a "
           "%d-event task; other tasks copied from a %d-event template "
           "with SQL\n\n",
           events, SPAN_EVENTS, queries, TEMPLATE_EVENTS, TEMPLATE_EVENTS);
    fflush(stdout);
    if (record_template(path) != 0) {
        goto out;
    }
    long have = 1;
    for (int l = 0; l < nlevels; l++) {
        uint64_t g0 = mono_ns();
        if (bench_copy_task(path, TEMPLATE_TASK, "growth-", have, levels[l]) !=
            0) {
            goto out;
        }
        res[l].grow_s = (double)(mono_ns() - g0) / 1e9;
        have = levels[l] > have ? levels[l] : have;
        res[l].tasks = levels[l];
        res[l].buffer_mib = file_mib(path);
        if (measure(&res[l], path, l, (size_t)events, (size_t)queries, ns) !=
            0) {
            goto out;
        }
        fprintf(stderr,
                "bench_growth: %ld tasks (grown in %.1f s, %.0f MiB) "
                "done\n",
                levels[l], res[l].grow_s, res[l].buffer_mib);
    }

    printf("%10s %8s %8s  %9s %9s %9s %7s  %9s %9s %7s  %s\n", "tasks",
           "buf MiB", "open ms", "emit p50", "p99", "p99.9", "x p50",
           "query p50", "p99", "x p50", "flag");
    int flagged = 0;
    for (int l = 0; l < nlevels; l++) {
        double ge = res[0].emit.p50 > 0 ? res[l].emit.p50 / res[0].emit.p50
                                        : 0.0;
        double gq = res[0].query.p50 > 0 ? res[l].query.p50 / res[0].query.p50
                                         : 0.0;
        const char *flag = ge > GROWTH_FLAG && gq > GROWTH_FLAG
                               ? "GROWS WITH OTHER TASKS: emit, query"
                           : ge > GROWTH_FLAG ? "GROWS WITH OTHER TASKS: emit"
                           : gq > GROWTH_FLAG ? "GROWS WITH OTHER TASKS: query"
                                              : "";
        flagged |= flag[0] != '\0';
        printf("%10ld %8.1f %8.2f  %9.2f %9.2f %9.2f %6.2fx  %9.2f %9.2f "
               "%6.2fx  %s\n",
               res[l].tasks, res[l].buffer_mib, res[l].open_ms,
               res[l].emit.p50, res[l].emit.p99, res[l].emit.p999, ge,
               res[l].query.p50, res[l].query.p99, gq, flag);
    }
    printf("\n(us per call; x p50: this level's p50 / the first level's; "
           "flagged when above %.1fx)\n\n",
           GROWTH_FLAG);
    for (int l = 0; l < nlevels; l++) {
        printf("BENCH_JSON {\"bench\":\"growth\",\"case\":\"tasks_%ld\","
               "\"tasks\":%ld,\"buffer_mib\":%.1f,\"open_ms\":%.3f,"
               "\"emit_events\":%ld,\"emit_p50_us\":%.3f,"
               "\"emit_p99_us\":%.3f,\"emit_p999_us\":%.3f,"
               "\"emit_max_us\":%.3f,\"queries\":%ld,"
               "\"query_p50_us\":%.3f,\"query_p99_us\":%.3f,"
               "\"emit_growth\":%.3f,\"query_growth\":%.3f}\n",
               res[l].tasks, res[l].tasks, res[l].buffer_mib, res[l].open_ms,
               events, res[l].emit.p50, res[l].emit.p99, res[l].emit.p999,
               res[l].emit.max, queries, res[l].query.p50, res[l].query.p99,
               res[0].emit.p50 > 0 ? res[l].emit.p50 / res[0].emit.p50 : 0.0,
               res[0].query.p50 > 0 ? res[l].query.p50 / res[0].query.p50
                                    : 0.0);
    }
    if (flagged) {
        printf("bench_growth: FLAG: a per-task operation grew more than "
               "%.1fx with the number of other tasks (see the table)\n",
               GROWTH_FLAG);
    }
    status = 0;
out:
    fflush(stdout);
    free(ns);
    remove_db(path);
    if (rmdir(dir) != 0) {
        die_msg("rmdir %s: %s", dir, strerror(errno));
        status = 1;
    }
    return status;
}
