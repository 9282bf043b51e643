/*
 * buffer_view.h -- `taskspan serve --db BUFFER`: the tasks of a recorder
 * buffer on this machine as traces, open spans included, read straight
 * from the buffer (read-only) on every request, so a running task shows
 * before any of its spans closed or was exported. Internal names.
 *
 * The task list reads the buffer's tasks table directly (read-only SQL):
 * the library has no public task-list call yet. The spans come from the
 * public taskspan_task_spans().
 * Thread-safety: any thread; calls are serialised by a mutex.
 */
#ifndef TASKSPAN_VIEWER_BUFFER_VIEW_H
#define TASKSPAN_VIEWER_BUFFER_VIEW_H

#include "store.h"

#include <jansson.h>

/* How many of the most recently updated tasks a list looks at. */
#define TASKSPAN__BUFFER_VIEW_MAX_TASKS 200

typedef struct taskspan__buffer_view taskspan__buffer_view;

/* Open path read-only; it must exist. OUT: *out, free with
 * taskspan__buffer_view_close. Errors as taskspan_open(); err says why. */
taskspan_code taskspan__buffer_view_open(taskspan__buffer_view **out,
                                         const char *path, char *err,
                                         size_t errlen);

void taskspan__buffer_view_close(taskspan__buffer_view *bv);

/* Summaries of the recent tasks that match f (limit included), newest
 * first; running means the task has an open span. */
taskspan_code taskspan__buffer_view_list(taskspan__buffer_view *bv,
                                         const taskspan__vstore_filter *f,
                                         taskspan__vstore_trace_cb cb,
                                         void *payload);

/* The task whose trace is trace_id: cb gets its summary, *out_spans (a
 * new reference) the spans as the API renders them.
 * Returns TASKSPAN_E_NOT_FOUND when no recent task has that trace. */
taskspan_code taskspan__buffer_view_trace(taskspan__buffer_view *bv,
                                          const char *trace_id,
                                          taskspan__vstore_trace_cb cb,
                                          void *payload, json_t **out_spans);

/* The task whose trace is trace_id as OTLP/JSON, with
 * taskspan_task_dump(): open spans included, ended at their last event
 * and marked taskspan.open = true. OUT: *out, free with taskspan_free();
 * *out_len its length. Returns TASKSPAN_E_NOT_FOUND when no recent task
 * has that trace, else as taskspan_task_dump(). */
taskspan_code taskspan__buffer_view_dump(taskspan__buffer_view *bv,
                                         const char *trace_id, char **out,
                                         size_t *out_len);

#endif
