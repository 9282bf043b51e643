/*
 * bench_util.h -- helpers every benchmark shares: messages, the clock,
 * scratch paths, option parsing, the spread of a figure over runs and the
 * machine line at the top of the output.
 *
 * Each benchmark calls bench_set_name() first, with its program name, which
 * die_msg() puts before every message.
 */
#ifndef TASKSPAN_BENCH_UTIL_H
#define TASKSPAN_BENCH_UTIL_H

#include "taskspan/taskspan.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Room for every path a benchmark makes. */
#define BENCH_PATH_LEN 4096

/* make_path(): a file name without a run suffix. */
#define BENCH_NO_RUN (-1)

/* The most runs --runs allows and spread_of() takes. */
#define BENCH_MAX_RUNS 256

/* The program name die_msg() prints, e.g. "bench_emit". */
void bench_set_name(const char *name);

/* Print "<name>: <message>" to stderr. Callers then return -1. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mono_ns(void);

/* "dir/name-run" (or "dir/name" when run is BENCH_NO_RUN) into out, which
 * holds BENCH_PATH_LEN bytes. -1 (said on stderr) if it does not fit. */
int make_path(char *out, const char *dir, const char *name, int run);

/* Remove a database and its WAL and shared-memory files, if present. */
void remove_db(const char *path);

/* Make the temporary directory "base/taskspan-bench.XXXXXX" in dir, which
 * holds BENCH_PATH_LEN bytes. 0 on success, else the exit status for main
 * (said on stderr): 2 when base is too long, 1 when mkdtemp fails. */
int make_bench_dir(char *dir, const char *base);

/* The options every benchmark takes, and its usage text. */
typedef struct bench_args {
    const char *base; /* --dir DIR: where the temporary directory goes */
    long runs;        /* --runs R, 1 to BENCH_MAX_RUNS; -1 if not given */
    int short_mode;   /* --short: a quick pass */
    void (*usage)(FILE *f);
} bench_args;

#define BENCH_ARGS_INIT(usage_fn)                                             \
    {                                                                         \
        "/tmp", -1, 0, usage_fn                                               \
    }

/* Take argv[*i], an argument the benchmark has no option of its own for:
 * --short, --dir DIR, --runs R (stepping *i past a separate value). 1 when
 * taken; 0 when main is to return *exit_code: 0 after --help or -h (usage
 * on stdout), 2 after a bad value or an unknown argument (said on stderr,
 * with the usage). */
int common_option(bench_args *a, int argc, char **argv, int *i,
                  int *exit_code);

/* Parse a positive integer option value, at most max. -1 (said on stderr)
 * if v is not one. */
int parse_count(const char *opt, const char *v, long max, long *out);

/* "--opt VALUE" or "--opt=VALUE" at argv[*i]: the value ("" when VALUE is
 * missing), or NULL if this is not opt. Steps *i past a separate VALUE. */
const char *opt_value(const char *opt, int argc, char **argv, int *i);

/* Open a recorder on path with the options o (db_path aside), ignoring
 * TRACEPARENT from the environment. -1 (said on stderr) on failure. */
int open_recorder_with(taskspan **out, const char *path,
                       const taskspan_options *o);

/* The min, median and max over runs of one field. */
typedef struct spread {
    double min, med, max;
} spread;

/* The spread of the double at offset in each of nruns results, stride
 * bytes apart from runs on (at most BENCH_MAX_RUNS of them). */
spread spread_of(const void *runs, size_t stride, int nruns, size_t offset);

/* Print the machine line and "libtaskspan X, SQLite Y<libs>, files in dir"
 * (libs: ", name version" of further libraries, or ""). */
void print_machine(const char *dir, const char *libs);

/* Grow a closed buffer with plain SQL through the public schema: copy the
 * tasks row and the task_events rows of template_task as tasks
 * "<prefix><n>" (n printed as %07d) for n in [from, to), in one
 * transaction, then checkpoint. trace_id is left NULL, so each copy gets
 * the trace id derived from its own task id. -1 (said on stderr) on a
 * SQLite error. */
int bench_copy_task(const char *path, const char *template_task,
                    const char *prefix, long from, long to);

#endif
