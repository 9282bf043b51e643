/*
 * store_checkpoint.c -- checkpoints off the emitting thread.
 *
 * SQLite checkpoints a WAL database automatically inside the commit that
 * takes the -wal file past 1000 pages: that emit copies ~4 MB into the
 * database and syncs it twice, milliseconds in all. Here the appending
 * connection instead reports each commit's WAL size to a thread of the
 * store (sqlite3_wal_hook, which replaces SQLite's automatic checkpoint),
 * and that thread checkpoints from a connection of its own.
 *
 * DESIGN
 *   Wake-up: the hook runs after every commit on the writer's thread. It
 *   compares an integer and returns, except every WAKE_FRAMES frames, when
 *   it sets a flag and signals a condition variable (the thread holds that
 *   mutex only to read the flag, never across I/O).
 *   PASSIVE: the thread copies every frame no reader still needs, while
 *   writers go on appending; it never blocks them. It runs again (up to
 *   CATCHUP_TRIES times) while writers added many frames meanwhile.
 *   Restart: SQLite starts the -wal file over only when a write begins
 *   with the whole WAL copied. Writers arriving without a pause never let a
 *   PASSIVE checkpoint catch up, so once the WAL holds RESTART_FRAMES the
 *   thread syncs the -wal file, then runs a FULL checkpoint: it holds the
 *   write lock while it syncs and copies the few frames committed since,
 *   and syncs the database (writers wait for that, a few hundred
 *   microseconds on a quiet disk), and the next commit starts the -wal
 *   file over. It waits at most FULL_WAIT_NS for the lock or for a reader,
 *   then gives up until the next wake-up. The database file grows in
 *   DB_CHUNK_BYTES steps, so that sync rarely commits a new file size.
 *   Fallback: past HARD_FRAMES (the thread fell behind, or a reader keeps
 *   old frames) the hook runs a FULL checkpoint inside the commit, which
 *   holds other writers too, so the WAL does get started over (first
 *   waiting for a checkpoint of the thread's in progress); whenever
 *   the thread is not running, it does what SQLite would have done (a
 *   PASSIVE checkpoint inside the commit past 1000 frames).
 *   Start: the thread is created at the first wake-up (WAKE_FRAMES into
 *   the first WAL), not at the first append: a process that appends a few
 *   events and exits (the CLI) never starts it.
 *   Shutdown: stop sets a flag, interrupts a checkpoint in progress and
 *   joins; every wait of the thread is bounded, so close never hangs.
 *   fork: the thread exists in the process that started it only. A child
 *   must not use the store (threading.md); if it does, its hook finds the
 *   pid changed and checkpoints inline, and its close leaves the thread's
 *   state alone.
 */
#include "store_sqlite.h"

#include <pthread.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* SQLite's own automatic checkpoint threshold (pages). */
#define SQLITE_AUTO_FRAMES 1000
/* Wake the thread every this many new frames. Half SQLite's 1000: with
 * PASSIVE checkpoints twice as often (each syncing half as much), the
 * one-thread emit's p50 was 1.19x to 1.23x the raw commit in seven
 * alternate runs of bench_emit, against 1.19x to 1.34x at 1000; the
 * restarts, and so the emits' waits, are as frequent as before. */
#define WAKE_FRAMES 500
/* Try to get the WAL started over once it holds this many frames: the
 * fewer restarts, the fewer emits wait for one (each waits a few hundred
 * microseconds). */
#define RESTART_FRAMES 4000
#define HARD_FRAMES TASKSPAN__CKPT_HARD_FRAMES
/* PASSIVE again (at most CATCHUP_TRIES times) while writers added more
 * than this during the last one. */
#define CATCHUP_FRAMES 64
#define CATCHUP_TRIES 4
/* The database file grows in steps of this, so that the sync of a
 * checkpoint rarely has a new file size to commit. */
#define DB_CHUNK_BYTES (1024 * 1024)
/* How long a FULL checkpoint may wait for the write lock or a reader. */
#define FULL_WAIT_NS (2 * 1000 * 1000)
/* After a failed try to start the WAL over, try again this soon, at most
 * RETRIES times (1 s) unless a commit wakes the thread. */
#define RETRY_NS (10 * 1000 * 1000)
#define RETRIES 100
/* How long a writer far behind waits for the thread's checkpoint. */
#define ROUND_WAIT_NS (1000 * 1000 * 1000)
/* The poll interval of that wait. */
#define POLL_NS (20 * 1000)

struct taskspan__ckpt {
    sqlite3 *writer;
    char *path;
    bool sync_full;
    pid_t pid;
    pthread_t thread;
    /* The thread was created: at the first wake-up, not at the first
     * append, so a process that appends a few events (taskspan emit,
     * taskspan exec) never pays for a thread and a second connection. */
    atomic_bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC, as idle */
    pthread_cond_t idle; /* a round ended */
    /* Under lock. */
    bool stop;
    bool pending;
    bool in_round;
    int retries; /* tries left to start the WAL over without a wake-up */
    sqlite3 *db; /* the thread's connection while it is open */
    /* The thread is not checkpointing (it failed to open, or stopped):
     * the writer does it itself. */
    atomic_bool down;
    atomic_bool stopping;
    /* The writer's side, touched on its thread only: its busy handler,
     * and when hard_checkpoint() stops waiting. */
    int next_wake;
    int (*writer_busy)(void *, int);
    void *writer_busy_arg;
    int64_t hard_deadline_ns;
    /* The thread's side: when its wait for a lock ends. */
    int64_t deadline_ns;
    int64_t last_busy_ns;
    /* Under lock. */
    taskspan__ckpt_stats st;
    /* Counters the writer updates and stats() reads. */
    atomic_uint_fast64_t inline_ckpts;
    atomic_int max_frames;
    /* The WAL's size after the writer's last commit, and how often it
     * was smaller than after the commit before (started over). */
    atomic_int frames;
    atomic_uint_fast64_t restarts;
};

static void sleep_ns(long ns)
{
    struct timespec t = {.tv_sec = 0, .tv_nsec = ns};
    nanosleep(&t, NULL);
}

/* The checkpointer connection's busy handler: poll finely until the
 * deadline of the checkpoint in progress, or until stop. */
static int ckpt_busy(void *arg, int count)
{
    taskspan__ckpt *c = arg;
    (void)count;
    if (atomic_load(&c->stopping) || taskspan__mono_ns() >= c->deadline_ns) {
        return 0;
    }
    sleep_ns(POLL_NS);
    c->last_busy_ns = taskspan__mono_ns();
    return 1;
}

/* The writer's busy handler while it runs hard_checkpoint(). */
static int hard_busy(void *arg, int count)
{
    taskspan__ckpt *c = arg;
    (void)count;
    if (taskspan__mono_ns() >= c->hard_deadline_ns) {
        return 0;
    }
    sleep_ns(POLL_NS);
    return 1;
}

/* The WAL passed HARD_FRAMES: checkpoint in the commit. PASSIVE first,
 * as SQLite would; when that copied everything, FULL, which other
 * writers (other processes) wait for, so the WAL is all copied when it
 * ends and the next commit starts it over (with PASSIVE alone, they could
 * keep it growing). FULL waits for the lock or a reader at most
 * FULL_WAIT_NS, not the writer's busy timeout. */
static int hard_checkpoint(taskspan__ckpt *c, sqlite3 *db, const char *name)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
                                       &log, &done);
    if (rc != SQLITE_OK || done < log) {
        return rc; /* a reader needs old frames: nothing can restart it */
    }
    c->hard_deadline_ns = taskspan__mono_ns() + FULL_WAIT_NS;
    sqlite3_busy_handler(db, hard_busy, c);
    rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_FULL, NULL,
                                   NULL);
    sqlite3_busy_handler(db, c->writer_busy, c->writer_busy_arg);
    return rc;
}

/* Wait (at most ROUND_WAIT_NS) for the thread to finish the checkpoint
 * it is running: past HARD_FRAMES the writer's own one returns BUSY while
 * the thread's runs, and the writer went on appending meanwhile, which on
 * a slow disk took the WAL well past the limit. */
static void wait_round(taskspan__ckpt *c)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ROUND_WAIT_NS / 1000000000;
    pthread_mutex_lock(&c->lock);
    while (c->in_round &&
           pthread_cond_timedwait(&c->idle, &c->lock, &until) == 0) {
    }
    pthread_mutex_unlock(&c->lock);
}

static int start_thread(taskspan__ckpt *c);

/* Runs after every commit of the writer, on its thread: nframes is the
 * size of the WAL (all its frames, copied or not). Below HARD_FRAMES it
 * never blocks beyond the mutex that the thread holds only to read and
 * set its flags. */
static int on_commit(void *arg, sqlite3 *db, const char *name, int nframes)
{
    taskspan__ckpt *c = arg;

    if (nframes < atomic_load_explicit(&c->frames, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&c->restarts, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&c->frames, nframes, memory_order_relaxed);
    if (nframes > atomic_load_explicit(&c->max_frames, memory_order_relaxed)) {
        atomic_store_explicit(&c->max_frames, nframes, memory_order_relaxed);
    }
    if (nframes < c->next_wake - WAKE_FRAMES) {
        /* The WAL was started over. */
        c->next_wake = WAKE_FRAMES;
    }
    if (nframes < c->next_wake && nframes < HARD_FRAMES) {
        return SQLITE_OK;
    }
    bool no_thread = atomic_load(&c->down) || getpid() != c->pid;
    if (nframes >= HARD_FRAMES) {
        atomic_fetch_add(&c->inline_ckpts, 1);
        if ((hard_checkpoint(c, db, name) & 0xff) == SQLITE_BUSY &&
            !no_thread) {
            wait_round(c);
            hard_checkpoint(c, db, name);
        }
        return SQLITE_OK;
    }
    if (no_thread) {
        /* No thread: SQLite's own behaviour, as without this file. */
        if (nframes >= SQLITE_AUTO_FRAMES) {
            atomic_fetch_add(&c->inline_ckpts, 1);
            sqlite3_wal_checkpoint(db, name);
        }
        return SQLITE_OK;
    }
    if (!atomic_load(&c->started)) {
        if (start_thread(c) != 0) {
            /* No thread: SQLite's own behaviour from now on. */
            atomic_store(&c->down, true);
            atomic_fetch_add(&c->inline_ckpts, 1);
            sqlite3_wal_checkpoint(db, name);
            return SQLITE_OK;
        }
        atomic_store(&c->started, true);
    }
    c->next_wake = nframes + WAKE_FRAMES;
    pthread_mutex_lock(&c->lock);
    c->pending = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    return SQLITE_OK;
}

static int open_db(taskspan__ckpt *c, sqlite3 **out)
{
    int rc = sqlite3_open_v2(
        c->path, out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        return rc;
    }
    sqlite3_extended_result_codes(*out, 1);
    sqlite3_busy_handler(*out, ckpt_busy, c);
    /* This connection only checkpoints: it is never the one that should
     * checkpoint and remove the WAL at close (the writer is). */
    sqlite3_db_config(*out, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    int chunk = DB_CHUNK_BYTES;
    sqlite3_file_control(*out, "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk);
    /* A checkpoint syncs the WAL before it copies and the database after:
     * what synchronous NORMAL (or FULL) asks for; never OFF. */
    return sqlite3_exec(*out,
                        c->sync_full ? "PRAGMA synchronous=FULL"
                                     : "PRAGMA synchronous=NORMAL",
                        NULL, NULL, NULL);
}

/* Sync the -wal file through the thread's own handle of it (opening a
 * descriptor of our own would drop SQLite's locks when it is closed). */
static void sync_wal(sqlite3 *db)
{
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) ==
            SQLITE_OK &&
        wal != NULL && wal->pMethods != NULL) {
        wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    }
}

/* One wake-up: copy what can be copied; when the WAL is large, finish
 * the copy under the write lock so the next commit starts it over. Counts
 * what it did in *st. Returns true when the WAL is large and could not be
 * made ready to start over (try again soon). */
static bool checkpoint_once(taskspan__ckpt *c, sqlite3 *db,
                            taskspan__ckpt_stats *st)
{
    int log = 0, done = 0, rc = SQLITE_OK;

    /* Writers add frames while a PASSIVE checkpoint syncs and copies;
     * run it again while they added many, so little is left for the
     * step that makes them wait. */
    for (int i = 0; i < CATCHUP_TRIES; i++) {
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                       &log, &done);
        st->passive++;
        if (rc != SQLITE_OK || done < log ||
            atomic_load(&c->frames) - done < CATCHUP_FRAMES) {
            break;
        }
    }
    if (rc != SQLITE_OK) {
        /* Another process is checkpointing (BUSY), or the disk failed:
         * the next wake-up tries again; the writer's fallback bounds the
         * WAL meanwhile. */
        st->failed++;
        st->last_rc = rc;
        return log >= RESTART_FRAMES;
    }
    /* A reader still needs frames that were not copied: a FULL would
     * hold the writers while it waits for that reader. */
    if (log < RESTART_FRAMES || atomic_load(&c->stopping)) {
        return false;
    }
    if (done < log) {
        return true;
    }
    /* What the FULL checkpoint syncs under the write lock is then only
     * what was committed since this sync. */
    sync_wal(db);
    int64_t t0 = taskspan__mono_ns();
    c->deadline_ns = t0 + FULL_WAIT_NS;
    c->last_busy_ns = t0;
    rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_FULL, &log,
                                   &done);
    /* From the last failed try for the lock on: how long writers wait. */
    int64_t held = taskspan__mono_ns() - c->last_busy_ns;
    st->full++;
    st->full_ns_total += held;
    if (held > st->full_ns_max) {
        st->full_ns_max = held;
    }
    if (rc != SQLITE_OK || done < log) {
        st->full_incomplete++;
        st->last_rc = rc;
        return true;
    }
    return false;
}

static void add_stats(taskspan__ckpt_stats *to, const taskspan__ckpt_stats *d)
{
    to->passive += d->passive;
    to->failed += d->failed;
    to->full += d->full;
    to->full_incomplete += d->full_incomplete;
    to->full_ns_total += d->full_ns_total;
    if (d->full_ns_max > to->full_ns_max) {
        to->full_ns_max = d->full_ns_max;
    }
    if (d->last_rc != SQLITE_OK) {
        to->last_rc = d->last_rc;
    }
}

static void *ckpt_main(void *arg)
{
    taskspan__ckpt *c = arg;
    sqlite3 *db = NULL;

#ifdef __linux__
    /* Poll for the write lock at the interval asked for, not 50 us
     * later: writers add frames while this thread waits for the lock. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
#endif
    if (open_db(c, &db) != SQLITE_OK) {
        sqlite3_close_v2(db);
        atomic_store(&c->down, true);
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    c->db = db;
    while (!c->stop) {
        if (!c->pending && c->retries == 0) {
            pthread_cond_wait(&c->wake, &c->lock);
            continue;
        }
        if (!c->pending) {
            /* The last try to start the WAL over failed (writers held
             * the lock, a reader old frames): again soon, even if no
             * commit comes to wake the thread, at most RETRIES times. */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += RETRY_NS;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&c->wake, &c->lock, &until);
            if (c->stop) {
                break;
            }
            c->retries--;
        }
        taskspan__ckpt_stats d = {0};
        c->pending = false;
        c->in_round = true;
        pthread_mutex_unlock(&c->lock);
        bool again = checkpoint_once(c, db, &d);
        pthread_mutex_lock(&c->lock);
        if (!again) {
            c->retries = 0;
        } else if (c->retries == 0) {
            c->retries = RETRIES;
        }
        c->in_round = false;
        pthread_cond_broadcast(&c->idle);
        add_stats(&c->st, &d);
    }
    c->db = NULL;
    pthread_mutex_unlock(&c->lock);
    atomic_store(&c->down, true);
    sqlite3_close_v2(db);
    return NULL;
}

/* Create the thread (on the writer's thread, in its commit hook): 0 or
 * an errno value. */
static int start_thread(taskspan__ckpt *c)
{
    sigset_t all, old;
    /* The host's signals go to the host's threads, never to this one. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&c->thread, NULL, ckpt_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
static bool mono_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0) {
        return false;
    }
    bool ok = pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(cv, &a) == 0;
    pthread_condattr_destroy(&a);
    return ok;
}

taskspan_code taskspan__ckpt_start(taskspan__ckpt **out, sqlite3 *writer,
                                   bool sync_full,
                                   int (*writer_busy)(void *, int),
                                   void *writer_busy_arg)
{
    const char *path = sqlite3_db_filename(writer, "main");
    taskspan__ckpt *c;

    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return TASKSPAN_E_INVALID_ARG; /* in-memory or temporary */
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || (c->path = strdup(path)) == NULL) {
        free(c);
        return TASKSPAN_E_NOMEM;
    }
    c->writer = writer;
    c->writer_busy = writer_busy;
    c->writer_busy_arg = writer_busy_arg;
    c->sync_full = sync_full;
    c->pid = getpid();
    c->next_wake = WAKE_FRAMES;
    atomic_init(&c->down, false);
    atomic_init(&c->started, false);
    atomic_init(&c->stopping, false);
    atomic_init(&c->inline_ckpts, 0);
    atomic_init(&c->max_frames, 0);
    atomic_init(&c->frames, 0);
    atomic_init(&c->restarts, 0);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->path);
        free(c);
        return TASKSPAN_E_NOMEM;
    }
    if (!mono_cond_init(&c->wake)) {
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return TASKSPAN_E_NOMEM;
    }
    if (!mono_cond_init(&c->idle)) {
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return TASKSPAN_E_NOMEM;
    }
    /* Replaces SQLite's automatic checkpoint on this connection; the
     * thread starts at the first wake-up (start_thread). */
    sqlite3_wal_hook(writer, on_commit, c);
    *out = c;
    return TASKSPAN_OK;
}

void taskspan__ckpt_stop(taskspan__ckpt *c)
{
    if (c == NULL) {
        return;
    }
    /* SQLite's own checkpointing again, for whatever the writer still
     * commits before it closes. */
    sqlite3_wal_autocheckpoint(c->writer, SQLITE_AUTO_FRAMES);
    if (getpid() != c->pid) {
        return; /* a forked child: the thread and its lock are not here */
    }
    if (atomic_load(&c->started)) {
        atomic_store(&c->stopping, true);
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        if (c->db != NULL) {
            /* Ends a checkpoint in progress at its next page. */
            sqlite3_interrupt(c->db);
        }
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    pthread_cond_destroy(&c->idle);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

void taskspan__ckpt_get_stats(taskspan__ckpt *c, taskspan__ckpt_stats *out)
{
    memset(out, 0, sizeof *out);
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    out->idle = !c->pending && !c->in_round && c->retries == 0;
    pthread_mutex_unlock(&c->lock);
    out->running = atomic_load(&c->started) && !atomic_load(&c->down);
    out->inline_ckpts = atomic_load(&c->inline_ckpts);
    out->max_frames = atomic_load(&c->max_frames);
    out->restarts = atomic_load(&c->restarts);
}
