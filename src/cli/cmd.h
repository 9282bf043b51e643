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

int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tree(int argc, char **argv);

/* Open the buffer for reading: --db PATH if given, else the library's
 * default. Prints a one-line error and returns NULL on failure. */
taskspan *cli_open_readonly(const char *db_path);

#endif
