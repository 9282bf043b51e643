/* consumer.c -- records one event through an installed libtaskspan. */
#include <taskspan/taskspan.h>

#include <inttypes.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    int64_t seq = 0;

    if (argc != 2) {
        return 2;
    }
    o.db_path = argv[1];
    if (taskspan_open(&ts, &o, err) != TASKSPAN_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    taskspan_code rc = taskspan_emit_runner_spawn(&seq, ts, "consumer", 1,
                                                  taskspan_version(), NULL);
    printf("%s seq=%" PRId64 " version=%s\n", taskspan_strerror(rc), seq,
           taskspan_version());
    taskspan_close(ts);
    return rc == TASKSPAN_OK ? 0 : 1;
}
