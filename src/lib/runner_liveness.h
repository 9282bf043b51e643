/*
 * runner_liveness.h -- is the process that recorded an incarnation still
 * running on this machine? Used to call a runner that died without
 * runner_exit "crashed" rather than "running" (taskspan tasks, and the
 * exporter closing a killed incarnation's spans after a grace period).
 */
#ifndef TASKSPAN_RUNNER_LIVENESS_H
#define TASKSPAN_RUNNER_LIVENESS_H

#include <stdint.h>

typedef enum taskspan__liveness {
    /* A process with this pid exists (it may be another program that
     * reused the pid: liveness errs on the side of "still running"). */
    TASKSPAN__RUNNER_ALIVE = 0,
    /* No such process, or only its zombie is left. */
    TASKSPAN__RUNNER_GONE = 1,
    /* The pid is missing or out of range: nothing can be said. */
    TASKSPAN__RUNNER_UNKNOWN = 2
} taskspan__liveness;

/* Thread-safe, no allocation. Only meaningful for a runner on this host. */
taskspan__liveness taskspan__runner_liveness(int64_t pid);

#endif
