/*
 * journal.h -- the journal mode's append-only file (journal.c): emits copy
 * one checksummed record into it (a shared memory mapping of the file) and
 * return; a background thread moves the records into the SQLite buffer in
 * large transactions.
 */
#ifndef TASKSPAN_JOURNAL_H
#define TASKSPAN_JOURNAL_H

#include "internal.h"

typedef struct taskspan__journal taskspan__journal;

/* Moves what is in the journal into the store: the recorder's callback,
 * which takes its lock and calls taskspan__journal_move(). */
typedef void (*taskspan__journal_mover)(void *ctx);

/* Create this recorder's journal next to db_path
 * (<db_path>.journal-<pid>-<nonce>), locked with flock for its lifetime,
 * and start the thread that calls mover(ctx) every few milliseconds or
 * once enough records wait. */
taskspan_code taskspan__journal_open(taskspan__journal **out,
                                     const char *db_path,
                                     taskspan__journal_mover mover, void *ctx,
                                     char *err, size_t errlen);

/* Append ev as one record. Durable against a crash of the process when it
 * returns OK (the kernel holds it). Thread-safe. */
taskspan_code taskspan__journal_append(taskspan__journal *j,
                                       const taskspan__append *ev, char *err,
                                       size_t errlen);

/* Move every complete record not moved yet into store, in transactions of
 * up to a few thousand records that also record how far the journal was
 * moved. The caller serialises calls on store. OUT: *out_n, records moved. */
taskspan_code taskspan__journal_move(taskspan__journal *j,
                                     const taskspan__store_ops *ops,
                                     void *store, size_t *out_n, char *err,
                                     size_t errlen);

/* Stop the thread (before the final move). */
void taskspan__journal_stop(taskspan__journal *j);

/* Close; when everything was moved, the file is removed and its progress
 * row forgotten (store may be NULL: the file then stays, for replay). */
void taskspan__journal_close(taskspan__journal *j,
                             const taskspan__store_ops *ops, void *store,
                             bool all_moved);

/* Replay journals of recorders that are gone (no lock on them): move them
 * into store and remove them. OUT: *out_n, records moved. */
taskspan_code taskspan__journal_replay(const char *db_path,
                                       const taskspan__store_ops *ops,
                                       void *store, size_t *out_n, char *err,
                                       size_t errlen);

#endif
