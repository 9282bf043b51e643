/*
 * trace_id.c -- test tool: print a task's derived trace id.
 *
 *   trace_id TASK_ID     prints the 32 lowercase hex digits of
 *                        taskspan_task_trace_id_hex(TASK_ID)
 * Exit: 0, 1 when the library refuses the task id, 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    char hex[33];

    if (argc != 2) {
        fprintf(stderr, "usage: trace_id TASK_ID\n");
        return 2;
    }
    taskspan_code rc = taskspan_task_trace_id_hex(hex, argv[1]);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "trace_id: %s\n", taskspan_strerror(rc));
        return 1;
    }
    printf("%s\n", hex);
    return 0;
}
