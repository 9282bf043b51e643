/*
 * bench_util.c -- helpers every benchmark shares (see bench_util.h).
 */
#include "bench_util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *bench_name = "bench";

void bench_set_name(const char *name)
{
    bench_name = name;
}

void die_msg(const char *fmt, ...)
{
    va_list ap;
    fputs(bench_name, stderr);
    fputs(": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int make_path(char *out, const char *dir, const char *name, int run)
{
    int n = run == BENCH_NO_RUN
                ? snprintf(out, BENCH_PATH_LEN, "%s/%s", dir, name)
                : snprintf(out, BENCH_PATH_LEN, "%s/%s-%d", dir, name, run);
    if (n < 0 || n >= BENCH_PATH_LEN) {
        die_msg("path too long under %s", dir);
        return -1;
    }
    return 0;
}

void remove_db(const char *path)
{
    char side[BENCH_PATH_LEN + 8];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int make_bench_dir(char *dir, const char *base)
{
    int len = snprintf(dir, BENCH_PATH_LEN, "%s/taskspan-bench.XXXXXX", base);
    if (len < 0 || len >= BENCH_PATH_LEN - 64) {
        die_msg("--dir path too long");
        return 2;
    }
    if (mkdtemp(dir) == NULL) {
        die_msg("mkdtemp %s: %s", dir, strerror(errno));
        return 1;
    }
    return 0;
}

int parse_count(const char *opt, const char *v, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long x = v != NULL ? strtol(v, &end, 10) : 0;
    if (v == NULL || end == v || *end != '\0' || errno != 0 || x < 1 ||
        x > max) {
        die_msg("%s needs an integer from 1 to %ld", opt, max);
        return -1;
    }
    *out = x;
    return 0;
}

const char *opt_value(const char *opt, int argc, char **argv, int *i)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) {
        return NULL;
    }
    if (argv[*i][n] == '=') {
        return argv[*i] + n + 1;
    }
    if (argv[*i][n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        return "";
    }
    return argv[++*i];
}

int common_option(bench_args *a, int argc, char **argv, int *i, int *exit_code)
{
    const char *v;
    *exit_code = 2;
    if (strcmp(argv[*i], "--short") == 0) {
        a->short_mode = 1;
    } else if (strcmp(argv[*i], "--help") == 0 ||
               strcmp(argv[*i], "-h") == 0) {
        a->usage(stdout);
        *exit_code = 0;
        return 0;
    } else if ((v = opt_value("--dir", argc, argv, i)) != NULL) {
        if (v[0] == '\0') {
            die_msg("--dir needs a directory");
            return 0;
        }
        a->base = v;
    } else if ((v = opt_value("--runs", argc, argv, i)) != NULL) {
        if (parse_count("--runs", v, BENCH_MAX_RUNS, &a->runs) != 0) {
            return 0;
        }
    } else {
        die_msg("unknown argument '%s'", argv[*i]);
        a->usage(stderr);
        return 0;
    }
    return 1;
}

int open_recorder_with(taskspan **out, const char *path,
                       const taskspan_options *o)
{
    char errbuf[TASKSPAN_ERRBUF_SIZE];
    taskspan_options opts = *o;
    opts.db_path = path;
    opts.traceparent = ""; /* ignore TRACEPARENT from the environment */
    /* Benchmarks measure speed, not the cap: a backlog of 1,000,000 spans
     * is over the default 1 GiB (docs/buffer.md, "The size cap"). */
    if (opts.max_bytes == 0) {
        opts.max_bytes = (int64_t)16 << 30;
    }
    taskspan_code code = taskspan_open(out, &opts, errbuf);
    if (code != TASKSPAN_OK) {
        die_msg("taskspan_open %s: %s (%s)", path, errbuf,
                taskspan_strerror(code));
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

spread spread_of(const void *runs, size_t stride, int nruns, size_t offset)
{
    double v[BENCH_MAX_RUNS];
    spread s;
    int n = nruns < BENCH_MAX_RUNS ? nruns : BENCH_MAX_RUNS;
    for (int r = 0; r < n; r++) {
        const char *run = (const char *)runs + (size_t)r * stride;
        v[r] = *(const double *)(run + offset);
    }
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
    return s;
}

void print_machine(const char *dir, const char *libs)
{
    struct utsname u;
    long ncpu = -1;
#ifdef _SC_NPROCESSORS_ONLN
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    if (uname(&u) == 0) {
        printf("machine: %s %s %s, %ld cpus online\n", u.sysname, u.release,
               u.machine, ncpu);
    }
    printf("libtaskspan %s, SQLite %s%s, files in %s\n", taskspan_version(),
           sqlite3_libversion(), libs, dir);
}

int bench_copy_task(const char *path, const char *template_task,
                    const char *prefix, long from, long to)
{
    /* Copy k gets task number ?5 + k - ?1 (?5: one past the largest), and
     * its events the ids of that number (schema 7: tnum << 32 | seq),
     * read from the template's range of ids. Each event keeps its
     * export record (schema 10), as the task id is not in it. */
    static const char tasks_sql[] =
        "WITH RECURSIVE k(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM k"
        "  WHERE n + 1 < ?2)"
        " INSERT INTO tasks (task_id, last_seq, incarnation, trace_id,"
        "  parent_span_id, trace_flags, created_ns, updated_ns, id_scheme,"
        "  tnum)"
        " SELECT printf('%s%07d', ?4, k.n), last_seq, incarnation, NULL,"
        "  NULL, trace_flags, created_ns, updated_ns, id_scheme,"
        "  ?5 + k.n - ?1"
        " FROM tasks, k WHERE task_id = ?3";
    static const char events_sql[] =
        "WITH RECURSIVE k(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM k"
        "  WHERE n + 1 < ?2),"
        " tmpl AS MATERIALIZED (SELECT * FROM task_events WHERE id BETWEEN"
        "  (SELECT tnum FROM tasks WHERE task_id = ?3) * 4294967296 AND"
        "  (SELECT tnum FROM tasks WHERE task_id = ?3) * 4294967296"
        "  + 4294967295)"
        " INSERT INTO task_events (id, task_id, seq, event_type, actor,"
        "  span_id, parent_span_id, phase, payload, ts_ns, incarnation,"
        "  resource_id, otlp, export_record)"
        " SELECT (?5 + k.n - ?1) * 4294967296 + seq,"
        "  printf('%s%07d', ?4, k.n), seq, event_type, actor,"
        "  span_id, parent_span_id, phase, payload, ts_ns, incarnation,"
        "  resource_id, otlp, export_record"
        " FROM k, tmpl ORDER BY k.n, seq";
    const char *const sqls[2] = {tasks_sql, events_sql};
    int64_t next_tnum = 0;
    sqlite3 *db = NULL;
    int rc = -1;

    if (from >= to) {
        return 0;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        goto fail;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(tnum), 0) + 1 FROM tasks",
                           -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        goto fail;
    }
    next_tnum = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    for (int s = 0; s < 2; s++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sqls[s], -1, &st, NULL) != SQLITE_OK) {
            goto fail;
        }
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, to);
        sqlite3_bind_text(st, 3, template_task, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, prefix, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, next_tnum);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        if (r != SQLITE_DONE) {
            goto fail;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                  NULL) != SQLITE_OK) {
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    die_msg("copying task %s to %ld tasks: %s", template_task, to,
            db != NULL ? sqlite3_errmsg(db) : "cannot open");
done:
    sqlite3_close_v2(db);
    return rc;
}
