/*
 * cmd.h -- the subcommands of the taskspan command and their shared helpers.
 * Each subcommand lives in cmd_<name>.c and uses only the public API.
 */
#ifndef TASKSPAN_CLI_CMD_H
#define TASKSPAN_CLI_CMD_H

#include <taskspan/taskspan.h>

/* Exit codes of every subcommand (docs/cli.md). */
#define CLI_OK 0
#define CLI_FAILURE 1
#define CLI_USAGE 2

int cmd_dump(int argc, char **argv);
int cmd_emit(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_tree(int argc, char **argv);

/* The value of the option at argv[*i], given as "--x=VALUE" or "--x VALUE"
 * (then *i moves past it), into *slot. CLI_OK, or CLI_USAGE after one line
 * naming who ("taskspan emit") and the option. */
int cli_take_value(const char *who, int argc, char **argv, int *i,
                   const char **slot);

/* Open a recorder with options o (traceparent is set to "": a command
 * joins no trace). On failure print one line, "<who>: <why>; pass --db PATH
 * or set TASKSPAN_DB", and return NULL. */
taskspan *cli_open(const char *who, taskspan_options *o);

/* Open the buffer at db_path (NULL: the library's default) read-only. */
taskspan *cli_open_readonly(const char *who, const char *db_path);

/* Open the buffer at db_path (NULL: the library's default) to record
 * events, as emit and exec do: export off (a recording command never waits
 * for the network; a runner's exporter or `taskspan export` delivers), and
 * TRACEPARENT honoured as by any runner (a task first recorded here joins
 * that trace). Prints nothing: on failure err (TASKSPAN_ERRBUF_SIZE bytes)
 * says why and the code is returned. */
taskspan_code cli_open_recorder(taskspan **out, const char *db_path,
                                char *err);

/* A time as UTC ISO 8601 with milliseconds, "2026-11-25T19:43:53.123Z",
 * into out (size bytes, 32 are enough); "-" for 0. In cli_time.c. */
void cli_format_time(char *out, size_t size, int64_t ns);

#endif
