/*
 * buffer_runner.c -- a long-lived runner for tests/integration/
 * buffer_faults.sh: one recorder, open for the whole run, that emits when
 * told to on stdin, so the script can fill the disk, make the file system
 * read-only or free space between commands while the recorder stays open.
 *
 * Usage: buffer_runner DB [MAX_BYTES]
 * Commands, one per line; each gets one line of answer:
 *   emit N   emit N events of 2000 bytes: "ok=K failed=F code=NAME msg=..."
 *   fill     emit until the first failure (at most 5000):
 *            "recorded=K code=NAME msg=..."
 *   stats    "recorded=R failed=F refused_cap=C refused_disk=D last=NAME"
 *   quit     close the recorder and exit 0
 * It never stops on a failed emit: telemetry never stops the work.
 * Exit status: 0, or 2 for a usage error or a failed open.
 */
#include <taskspan/taskspan.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *name_of(taskspan_code rc)
{
    static const char *const names[] = {
        "OK",          "E_NOMEM",       "E_INVALID_ARG", "E_IO",
        "E_STORE",     "E_BUSY",        "E_FULL",        "E_READONLY",
        "E_CORRUPT",   "E_SCHEMA",      "E_NOT_FOUND",   "E_ENCODE",
        "E_TRANSPORT", "E_HTTP_STATUS", "E_TIMEOUT",
    };
    return (size_t)rc < sizeof names / sizeof names[0] ? names[rc] : "?";
}

static taskspan_code emit_one(taskspan *ts)
{
    static char text[2001];
    if (text[0] == '\0') {
        memset(text, 'r', sizeof text - 1);
    }
    taskspan_attr a = taskspan_attr_str("text", text);
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = "runner-task";
    ev.event_type = "step";
    ev.attrs = &a;
    ev.n_attrs = 1;
    return taskspan_emit(NULL, ts, &ev);
}

int main(int argc, char **argv)
{
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    char line[128];
    taskspan *ts = NULL;
    taskspan_options o = TASKSPAN_OPTIONS_INIT;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: buffer_runner DB [MAX_BYTES]\n");
        return 2;
    }
    o.db_path = argv[1];
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.max_bytes = argc == 3 ? strtoll(argv[2], NULL, 10) : 0;
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        printf("open failed: %s: %s\n", name_of(rc), err);
        return 2;
    }
    printf("open ok %s\n", taskspan_open_warning(ts));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        int n = 0, ok = 0, failed = 0;
        rc = TASKSPAN_OK;
        if (sscanf(line, "emit %d", &n) == 1) {
            for (int i = 0; i < n; i++) {
                taskspan_code r = emit_one(ts);
                ok += r == TASKSPAN_OK;
                failed += r != TASKSPAN_OK;
                rc = r != TASKSPAN_OK ? r : rc;
            }
            printf("ok=%d failed=%d code=%s msg=%s\n", ok, failed, name_of(rc),
                   rc != TASKSPAN_OK ? taskspan_errmsg(ts) : "");
        } else if (strncmp(line, "fill", 4) == 0) {
            while (ok < 5000 && (rc = emit_one(ts)) == TASKSPAN_OK) {
                ok++;
            }
            printf("recorded=%d code=%s msg=%s\n", ok, name_of(rc),
                   taskspan_errmsg(ts));
        } else if (strncmp(line, "stats", 5) == 0) {
            taskspan_stats st;
            taskspan_capacity cap;
            taskspan_get_stats(&st, ts);
            memset(&cap, 0, sizeof cap);
            taskspan_get_capacity(&cap, ts);
            printf("recorded=%llu failed=%llu refused_cap=%llu "
                   "refused_disk=%llu last=%s\n",
                   (unsigned long long)st.events_recorded,
                   (unsigned long long)st.events_failed,
                   (unsigned long long)cap.refused_cap,
                   (unsigned long long)cap.refused_disk,
                   name_of(st.last_error));
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("unknown command\n");
        }
        fflush(stdout);
    }
    taskspan_close(ts);
    return 0;
}
