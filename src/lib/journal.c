/*
 * journal.c -- the journal mode: an emit copies one record into this
 * recorder's own append-only file, mapped with MAP_SHARED, and returns; a
 * thread moves the records into the SQLite buffer in large transactions.
 *
 * Why it survives kill -9: the pages of a shared file mapping are the
 * file's pages in the kernel's page cache, not the process's memory. A
 * store into them is in the file the moment it is made, with no system
 * call, and the kernel keeps (and writes back) those pages whatever
 * happens to the process. Power loss is another matter (no fsync per
 * record): docs/durability.md states the promise.
 *
 * Room: the file is extended ahead of the records with posix_fallocate(),
 * CHUNK_MIN and more at a time, before the new part is mapped. Allocating
 * the blocks first is what makes a full disk an error of the emit
 * (TASKSPAN_E_FULL) instead of a SIGBUS when a store hits a page that has
 * no block behind it. The space after the last record reads as zeros,
 * which is not a record: a reader stops there as at any torn tail.
 *
 * File: <db>.journal-<pid>-<nonce>, created under a temporary name, locked
 * with flock(LOCK_EX) and only then renamed, so an open that finds it by
 * its name can tell a live recorder's journal (locked) from an orphan (the
 * process died, the kernel dropped the lock). Records:
 *   u32 magic | u32 body length | u32 check | body | u32 end mark
 * where check is the low 32 bits of XXH3-64 of the body (a checksum that
 * costs ~20 ns a record, where zlib's CRC-32 was the emit's largest cost).
 * A record whose length runs past the end of the file, whose checksum or
 * end mark is wrong, is the torn tail of a write the process never
 * returned from; it and anything after it are ignored.
 *
 * fork: a child process gets a copy of the journal's descriptor, and with
 * it a share of the flock, which would make the journal of a parent that
 * died look alive for as long as the child lives (a server that forks
 * workers without exec). A pthread_atfork handler closes the journals'
 * descriptors and unmaps them in the child (a mapping holds the open file
 * too), which leaves the parent's lock as it was; a
 * journal in a child refuses appends (threading.md: a child opens its
 * own recorder).
 *
 * How far a journal was moved is stored in the same transaction as the
 * records (export_state, name "journal:<file name>"), so a crash between
 * two moves neither loses nor duplicates a record.
 */
#define _GNU_SOURCE /* flock */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define REC_MAGIC 0x314a5354u /* "TSJ1" */
#define REC_END 0x444e454au   /* "JEND" */
#define REC_HEAD 12
#define STR_NULL 0xffffffffu
/* Records per move transaction, and bytes read per pass. */
#define MOVE_BATCH 4096
#define READ_CHUNK ((size_t)4 << 20)
/* The mover runs this often, or sooner once WAKE_AT records wait. */
#define MOVE_EVERY_MS 10
#define WAKE_AT 2048
/* A fully moved journal larger than this is replaced by a new file. */
#define ROTATE_AT ((off_t)16 << 20)
/* At most this much not yet moved: an emit that would go past it waits
 * for the mover, up to BACKLOG_WAIT_MS, then fails with TASKSPAN_E_FULL. */
#define BACKLOG_MAX ((size_t)256 << 20)
#define BACKLOG_WAIT_MS 2000
/* The file grows by doubling, from CHUNK_MIN, at most CHUNK_MAX a step. */
#define CHUNK_MIN ((size_t)1 << 20)
#define CHUNK_MAX ((size_t)16 << 20)

struct taskspan__journal {
    int fd;
    char *path;
    char *db_path;
    off_t rotate_at;    /* ROTATE_AT, or TASKSPAN_JOURNAL_ROTATE_BYTES */
    char key[96];       /* "journal:<file name>" */
    pthread_mutex_t mu; /* appends, growth and rotation */
    uint8_t *map;       /* the file's first map_len bytes, MAP_SHARED */
    size_t map_len;     /* = the file's allocated size */
    size_t tail;        /* end of the records; under mu */
    /* tail as the mover may read it: stored after the record is whole. */
    _Atomic size_t published;
    off_t moved; /* only the mover side touches it */
    /* moved, as appends may read it (it only lags behind moved). */
    _Atomic size_t moved_published;
    size_t backlog_max; /* BACKLOG_MAX, or TASKSPAN_JOURNAL_BACKLOG_BYTES */
    bool stalled;       /* a wait for room timed out; under mu */
    atomic_uint pending;
    taskspan__journal_mover mover;
    void *ctx;
    pthread_t thread;
    bool thread_running;
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cv;
    bool stop;
    /* This is a forked child's copy (set by the atfork handler). */
    bool forked;
    taskspan__journal *next; /* in the registry of open journals */
};

/* ---- fork ---------------------------------------------------------------- */

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static taskspan__journal *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Before fork: no journal is in the middle of an append or a rotation
 * (its descriptor is the one the child closes). */
static void before_fork(void)
{
    pthread_mutex_lock(&registry_mu);
    for (taskspan__journal *j = registry; j != NULL; j = j->next) {
        pthread_mutex_lock(&j->mu);
    }
}

static void after_fork_parent(void)
{
    for (taskspan__journal *j = registry; j != NULL; j = j->next) {
        pthread_mutex_unlock(&j->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

static void after_fork_child(void)
{
    for (taskspan__journal *j = registry; j != NULL; j = j->next) {
        /* The parent's descriptor keeps the lock. The mapping holds the
         * open file (and so the lock) too: it goes as well. */
        if (j->map != NULL) {
            munmap(j->map, j->map_len);
            j->map = NULL;
        }
        close(j->fd);
        j->fd = -1;
        j->forked = true;
        pthread_mutex_unlock(&j->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

static void install_atfork(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static void registry_add(taskspan__journal *j)
{
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&registry_mu);
    j->next = registry;
    registry = j;
    pthread_mutex_unlock(&registry_mu);
}

static void registry_remove(taskspan__journal *j)
{
    pthread_mutex_lock(&registry_mu);
    for (taskspan__journal **p = &registry; *p != NULL; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
}

/* ---- encoding ------------------------------------------------------------ */

static size_t str_size(const char *s)
{
    return 4 + (s != NULL ? strlen(s) + 1 : 0);
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    if (s == NULL) {
        return put_u32(p, STR_NULL);
    }
    uint32_t n = (uint32_t)strlen(s);
    p = put_u32(p, n);
    memcpy(p, s, n + 1); /* with its NUL: decoding points into the buffer */
    return p + n + 1;
}

static const char *const *fields(const taskspan__append *ev,
                                 const char *out[7])
{
    out[0] = ev->task_id;
    out[1] = ev->event_type;
    out[2] = ev->actor;
    out[3] = ev->span_key;
    out[4] = ev->parent_span_key;
    out[5] = ev->phase;
    out[6] = ev->payload_json;
    return out;
}

#define FIXED_BODY (8 + 8 + 3 + 16 + 8)

static uint32_t check_of(const uint8_t *body, size_t n)
{
    return (uint32_t)XXH3_64bits(body, n);
}

/* The errno of a failed allocation as the emit's code. */
static taskspan_code room_code(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG ? TASKSPAN_E_FULL
                                                    : TASKSPAN_E_IO;
}

/* Make the mapping reach at least need bytes (j->mu held): allocate the
 * file's blocks first, then map the longer file and drop the old map. The
 * records already in the file are not copied; the new map shows the same
 * pages. Returns 0 or an errno value. */
static int grow(taskspan__journal *j, size_t need)
{
    size_t step = j->map_len < CHUNK_MIN   ? CHUNK_MIN
                  : j->map_len < CHUNK_MAX ? j->map_len
                                           : CHUNK_MAX;
    size_t len = j->map_len + step;
    if (len < need) {
        len = need + CHUNK_MIN;
    }
    int e = posix_fallocate(j->fd, (off_t)j->map_len,
                            (off_t)(len - j->map_len));
    if (e != 0) {
        return e;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, j->fd, 0);
    if (m == MAP_FAILED) {
        return errno;
    }
    if (j->map != NULL) {
        munmap(j->map, j->map_len);
    }
    j->map = m;
    j->map_len = len;
    return 0;
}

static void wake_mover(taskspan__journal *j)
{
    pthread_mutex_lock(&j->wake_mu);
    pthread_cond_signal(&j->wake_cv);
    pthread_mutex_unlock(&j->wake_mu);
}

/* Whether a record of total bytes fits under the backlog limit, waiting
 * (j->mu held, released while asleep) up to BACKLOG_WAIT_MS for the mover
 * to make room. A runner that emits faster than the buffer takes events
 * is slowed down to the mover's pace instead of filling the disk; one
 * whose buffer refuses events (at its cap, a disk error) gets
 * TASKSPAN_E_FULL after the wait, and nothing already journaled is lost;
 * the emits after it fail at once until the mover makes room. */
static bool backlog_room(taskspan__journal *j, size_t total)
{
    for (int waited_ms = 0;; waited_ms++) {
        size_t moved = atomic_load(&j->moved_published);
        if (j->tail - moved + total <= j->backlog_max || j->tail == moved) {
            j->stalled = false;
            return true;
        }
        if (j->stalled || waited_ms >= BACKLOG_WAIT_MS) {
            j->stalled = true;
            return false;
        }
        pthread_mutex_unlock(&j->mu);
        wake_mover(j);
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
        pthread_mutex_lock(&j->mu);
    }
}

taskspan_code taskspan__journal_append(taskspan__journal *j,
                                       const taskspan__append *ev, char *err,
                                       size_t errlen)
{
    const char *f[7];
    size_t body = FIXED_BODY;

    fields(ev, f);
    for (int i = 0; i < 7; i++) {
        body += str_size(f[i]);
    }
    size_t total = REC_HEAD + body + 4;
    if (body > UINT32_MAX - REC_HEAD - 4) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "the event is too large for the journal");
    }
    pthread_mutex_lock(&j->mu);
    if (j->forked) {
        pthread_mutex_unlock(&j->mu);
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "this recorder belongs to the process that "
                              "opened it; a forked child must open its own "
                              "(docs/threading.md)");
    }
    if (!backlog_room(j, total)) {
        pthread_mutex_unlock(&j->mu);
        return taskspan__fail(err, errlen, TASKSPAN_E_FULL,
                              "the journal holds %zu bytes not yet moved "
                              "into the buffer, its limit; they stay there "
                              "until the buffer takes them (see the last "
                              "error of the recorder's reads, flush or close)",
                              j->tail - atomic_load(&j->moved_published));
    }
    if (j->tail + total > j->map_len) {
        int e = grow(j, j->tail + total);
        if (e != 0) {
            pthread_mutex_unlock(&j->mu);
            return taskspan__fail(err, errlen, room_code(e),
                                  "extending the journal %s: %s", j->path,
                                  strerror(e));
        }
    }
    /* Encoded in place: the stores are the write. A kill in the middle
     * leaves a record whose checksum or end mark is wrong (a torn tail). */
    uint8_t *rec = j->map + j->tail;
    uint8_t *p = rec + REC_HEAD;
    memcpy(p, &ev->ts_ns, 8);
    memcpy(p + 8, &ev->resource_id, 8);
    p[16] = ev->starts_incarnation;
    p[17] = ev->has_trace_context;
    p[18] = ev->trace_flags;
    memcpy(p + 19, ev->trace_id, 16);
    memcpy(p + 35, ev->parent_span_id, 8);
    p += FIXED_BODY;
    for (int i = 0; i < 7; i++) {
        p = put_str(p, f[i]);
    }
    put_u32(p, REC_END);
    put_u32(rec + 4, (uint32_t)body);
    put_u32(rec + 8, check_of(rec + REC_HEAD, body));
    put_u32(rec, REC_MAGIC);
    j->tail += total;
    /* The mover reads only up to here, so it never sees half a record. */
    atomic_store_explicit(&j->published, j->tail, memory_order_release);
    pthread_mutex_unlock(&j->mu);

    unsigned n = atomic_fetch_add(&j->pending, 1) + 1;
    if (n == WAKE_AT) {
        wake_mover(j);
    }
    return TASKSPAN_OK;
}

/* ---- decoding ------------------------------------------------------------ */

static bool get_str(const uint8_t **p, const uint8_t *end, const char **out)
{
    uint32_t n;
    if (end - *p < 4) {
        return false;
    }
    memcpy(&n, *p, 4);
    *p += 4;
    if (n == STR_NULL) {
        *out = NULL;
        return true;
    }
    if ((size_t)(end - *p) <= n || (*p)[n] != '\0') {
        return false;
    }
    *out = (const char *)*p;
    *p += n + 1;
    return true;
}

/* Decode the record at buf[0..avail): its total size in *used, or 0 when
 * there is no complete, intact record there. */
static bool decode(const uint8_t *buf, size_t avail, taskspan__append *ev,
                   size_t *used)
{
    uint32_t magic, body, crc, endmark;
    *used = 0;
    if (avail < REC_HEAD) {
        return false;
    }
    memcpy(&magic, buf, 4);
    memcpy(&body, buf + 4, 4);
    memcpy(&crc, buf + 8, 4);
    if (magic != REC_MAGIC || body < FIXED_BODY ||
        (size_t)body > avail - REC_HEAD - 4 || avail < REC_HEAD + 4) {
        return false;
    }
    const uint8_t *p = buf + REC_HEAD;
    memcpy(&endmark, p + body, 4);
    if (endmark != REC_END || check_of(p, body) != crc) {
        return false;
    }
    memset(ev, 0, sizeof *ev);
    memcpy(&ev->ts_ns, p, 8);
    memcpy(&ev->resource_id, p + 8, 8);
    ev->starts_incarnation = p[16] != 0;
    ev->has_trace_context = p[17] != 0;
    ev->trace_flags = p[18];
    memcpy(ev->trace_id, p + 19, 16);
    memcpy(ev->parent_span_id, p + 35, 8);
    const uint8_t *q = p + FIXED_BODY;
    const uint8_t *end = p + body;
    const char **f[7] = {&ev->task_id,     &ev->event_type,      &ev->actor,
                         &ev->span_key,    &ev->parent_span_key, &ev->phase,
                         &ev->payload_json};
    for (int i = 0; i < 7; i++) {
        if (!get_str(&q, end, f[i])) {
            return false;
        }
    }
    if (q != end || ev->task_id == NULL || ev->event_type == NULL) {
        return false;
    }
    *used = REC_HEAD + body + 4;
    return true;
}

/* Move the intact records of fd from *moved up to limit. */
static taskspan_code move_fd(int fd, const char *key, off_t *moved,
                             off_t limit, const taskspan__store_ops *ops,
                             void *store, size_t *out_n, char *err,
                             size_t errlen)
{
    taskspan__append *evs = malloc(MOVE_BATCH * sizeof *evs);
    uint8_t *buf = malloc(READ_CHUNK);
    taskspan_code code = TASKSPAN_OK;

    if (evs == NULL || buf == NULL) {
        free(evs);
        free(buf);
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    while (*moved < limit) {
        size_t want = (size_t)(limit - *moved) < READ_CHUNK
                          ? (size_t)(limit - *moved)
                          : READ_CHUNK;
        ssize_t got = pread(fd, buf, want, *moved);
        if (got <= 0) {
            break;
        }
        size_t at = 0, n = 0, used;
        while (n < MOVE_BATCH &&
               decode(buf + at, (size_t)got - at, &evs[n], &used)) {
            at += used;
            n++;
        }
        if (n == 0) {
            if (at == 0 && (size_t)got == READ_CHUNK) {
                code = taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                                      "a journal record is larger than "
                                      "%zu bytes",
                                      READ_CHUNK);
            }
            break; /* the torn tail, or nothing complete yet */
        }
        code = ops->append_batch(store, evs, n, key, *moved + (off_t)at, err,
                                 errlen);
        if (code != TASKSPAN_OK) {
            break;
        }
        *moved += (off_t)at;
        *out_n += n;
    }
    free(evs);
    free(buf);
    return code;
}

static void set_key(char *key, size_t n, const char *path);
static taskspan_code create_file(const char *db_path, int *fd, char **path,
                                 char *err, size_t errlen);

static void rotate(taskspan__journal *j, const taskspan__store_ops *ops,
                   void *store)
{
    char msg[TASKSPAN__MSG_SIZE];
    int fd;
    char *path;

    pthread_mutex_lock(&j->mu);
    if ((off_t)j->tail != j->moved ||
        create_file(j->db_path, &fd, &path, msg, sizeof msg) != TASKSPAN_OK) {
        pthread_mutex_unlock(&j->mu);
        return; /* records came in meanwhile, or no new file: later */
    }
    int old_fd = j->fd;
    char *old_path = j->path;
    uint8_t *old_map = j->map;
    size_t old_len = j->map_len;
    char old_key[sizeof j->key];
    memcpy(old_key, j->key, sizeof old_key);
    j->fd = fd;
    j->path = path;
    j->map = NULL;
    j->map_len = 0;
    j->tail = 0;
    atomic_store_explicit(&j->published, 0, memory_order_release);
    atomic_store(&j->moved_published, 0);
    set_key(j->key, sizeof j->key, path);
    j->moved = 0;
    /* No room yet is no failure here: the next append grows the file and
     * reports a full disk to its caller. */
    (void)grow(j, CHUNK_MIN);
    pthread_mutex_unlock(&j->mu);
    munmap(old_map, old_len);
    unlink(old_path);
    ops->journal_forget(store, old_key, msg, sizeof msg);
    close(old_fd);
    free(old_path);
}

taskspan_code taskspan__journal_move(taskspan__journal *j,
                                     const taskspan__store_ops *ops,
                                     void *store, size_t *out_n, char *err,
                                     size_t errlen)
{
    size_t n = 0;
    unsigned waiting = atomic_exchange(&j->pending, 0);
    off_t limit = (off_t)atomic_load_explicit(&j->published,
                                              memory_order_acquire);
    taskspan_code code = move_fd(j->fd, j->key, &j->moved, limit, ops, store,
                                 &n, err, errlen);
    atomic_store(&j->moved_published, (size_t)j->moved);
    if (code != TASKSPAN_OK) {
        /* Still waiting: the next pass tries again. */
        atomic_fetch_add(&j->pending, waiting);
    }
    if (out_n != NULL) {
        *out_n = n;
    }
    /* A long, fully moved journal is replaced by a new, empty file
     * (appends wait meanwhile). The old one is removed only after that,
     * and its offset row last: a crash at any point leaves either no old
     * file or one whose offset says it is all moved. */
    if (code == TASKSPAN_OK && j->moved >= j->rotate_at) {
        rotate(j, ops, store);
    }
    return code;
}

/* ---- the mover thread ---------------------------------------------------- */

static void *mover_main(void *arg)
{
    taskspan__journal *j = arg;
    pthread_mutex_lock(&j->wake_mu);
    while (!j->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += MOVE_EVERY_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (atomic_load(&j->pending) < WAKE_AT) {
            pthread_cond_timedwait(&j->wake_cv, &j->wake_mu, &until);
        }
        if (j->stop) {
            break;
        }
        if (atomic_load(&j->pending) == 0) {
            continue;
        }
        pthread_mutex_unlock(&j->wake_mu);
        j->mover(j->ctx);
        pthread_mutex_lock(&j->wake_mu);
    }
    pthread_mutex_unlock(&j->wake_mu);
    return NULL;
}

/* ---- open, close, replay ------------------------------------------------- */

static void set_key(char *key, size_t n, const char *path)
{
    const char *base = strrchr(path, '/');
    snprintf(key, n, "journal:%s", base != NULL ? base + 1 : path);
}

/* Create a new journal file next to db_path, locked: OUT *fd, *path
 * (malloc'd). Created under a temporary name and renamed once locked, so
 * a replayer never finds it unlocked. */
static taskspan_code create_file(const char *db_path, int *fd, char **path,
                                 char *err, size_t errlen)
{
    static atomic_uint counter;
    struct timespec now;
    size_t n = strlen(db_path) + 64;
    char *tmp = malloc(n);
    char *final = malloc(n);

    *fd = -1;
    *path = NULL;
    if (tmp == NULL || final == NULL) {
        free(tmp);
        free(final);
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long nonce = ((unsigned long)now.tv_nsec ^
                           ((unsigned long)atomic_fetch_add(&counter, 1)
                            << 20)) &
                          0xffffffffUL;
    snprintf(final, n, "%s.journal-%ld-%08lx", db_path, (long)getpid(), nonce);
    snprintf(tmp, n, "%s.jtmp-%ld-%08lx", db_path, (long)getpid(), nonce);
    int f = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int e = errno;
    if (f >= 0 &&
        (flock(f, LOCK_EX | LOCK_NB) != 0 || rename(tmp, final) != 0)) {
        e = errno;
        close(f);
        unlink(tmp);
        f = -1;
    }
    free(tmp);
    if (f < 0) {
        taskspan_code code = e == EACCES || e == EROFS ? TASKSPAN_E_READONLY
                                                       : TASKSPAN_E_IO;
        taskspan__fail(err, errlen, code, "creating the journal %s: %s", final,
                       strerror(e));
        free(final);
        return code;
    }
    *fd = f;
    *path = final;
    return TASKSPAN_OK;
}

taskspan_code taskspan__journal_open(taskspan__journal **out,
                                     const char *db_path,
                                     taskspan__journal_mover mover, void *ctx,
                                     char *err, size_t errlen)
{
    taskspan__journal *j = calloc(1, sizeof *j);

    *out = NULL;
    if (j == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    j->db_path = strdup(db_path);
    taskspan_code code = j->db_path == NULL
                             ? taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                              "out of memory")
                             : create_file(db_path, &j->fd, &j->path, err,
                                           errlen);
    if (code != TASKSPAN_OK) {
        free(j->db_path);
        free(j);
        return code;
    }
    set_key(j->key, sizeof j->key, j->path);
    int e = grow(j, CHUNK_MIN);
    if (e != 0) {
        code = taskspan__fail(err, errlen, room_code(e),
                              "extending the journal %s: %s", j->path,
                              strerror(e));
        unlink(j->path);
        close(j->fd);
        free(j->path);
        free(j->db_path);
        free(j);
        return code;
    }
    /* For the tests: rotation after a few records instead of 16 MiB. */
    const char *env = getenv("TASKSPAN_JOURNAL_ROTATE_BYTES");
    long long v = env != NULL ? strtoll(env, NULL, 10) : 0;
    j->rotate_at = v > 0 ? (off_t)v : ROTATE_AT;
    /* For the tests: a small backlog limit. */
    env = getenv("TASKSPAN_JOURNAL_BACKLOG_BYTES");
    v = env != NULL ? strtoll(env, NULL, 10) : 0;
    j->backlog_max = v > 0 ? (size_t)v : BACKLOG_MAX;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->wake_mu, NULL);
    pthread_cond_init(&j->wake_cv, NULL);
    atomic_init(&j->pending, 0);
    j->mover = mover;
    j->ctx = ctx;
    if (pthread_create(&j->thread, NULL, mover_main, j) != 0) {
        taskspan__journal_close(j, NULL, NULL, false);
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                              "cannot start the journal thread");
    }
    j->thread_running = true;
    registry_add(j);
    *out = j;
    return TASKSPAN_OK;
}

void taskspan__journal_stop(taskspan__journal *j)
{
    /* A forked child has no mover thread to stop. */
    if (j == NULL || !j->thread_running || j->forked) {
        return;
    }
    pthread_mutex_lock(&j->wake_mu);
    j->stop = true;
    pthread_cond_signal(&j->wake_cv);
    pthread_mutex_unlock(&j->wake_mu);
    pthread_join(j->thread, NULL);
    j->thread_running = false;
}

void taskspan__journal_close(taskspan__journal *j,
                             const taskspan__store_ops *ops, void *store,
                             bool all_moved)
{
    char msg[TASKSPAN__MSG_SIZE];
    if (j == NULL) {
        return;
    }
    taskspan__journal_stop(j);
    registry_remove(j);
    /* Unlink before the lock goes (with close): a replayer that then
     * takes the lock finds the name gone and leaves it alone. A forked
     * child's copy only lets go of its memory. */
    if (j->forked) {
        /* nothing of the file is the child's */
    } else if (all_moved && store != NULL && (off_t)j->tail == j->moved) {
        unlink(j->path);
        ops->journal_forget(store, j->key, msg, sizeof msg);
    } else if (ftruncate(j->fd, (off_t)j->tail) != 0) {
        /* Only the zeros after the records stay: a replay stops there. */
    }
    if (j->map != NULL) {
        munmap(j->map, j->map_len);
    }
    if (j->fd >= 0) {
        close(j->fd);
    }
    pthread_cond_destroy(&j->wake_cv);
    pthread_mutex_destroy(&j->wake_mu);
    pthread_mutex_destroy(&j->mu);
    free(j->path);
    free(j->db_path);
    free(j);
}

/* Replay one journal found by name, when no live recorder holds it. */
static taskspan_code replay_one(const char *path,
                                const taskspan__store_ops *ops, void *store,
                                size_t *out_n, char *err, size_t errlen)
{
    char key[96];
    struct stat a, b;
    int64_t offset = 0;

    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return TASKSPAN_OK; /* gone meanwhile */
    }
    /* Locked: its recorder is alive. Renamed or removed after we opened
     * it: another replayer finished it. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || stat(path, &a) != 0 ||
        fstat(fd, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        return TASKSPAN_OK;
    }
    set_key(key, sizeof key, path);
    taskspan_code code = ops->journal_offset(store, key, &offset, err, errlen);
    if (code == TASKSPAN_OK) {
        off_t moved = offset > b.st_size ? b.st_size : (off_t)offset;
        code = move_fd(fd, key, &moved, b.st_size, ops, store, out_n, err,
                       errlen);
    }
    if (code == TASKSPAN_OK) {
        unlink(path);
        code = ops->journal_forget(store, key, err, errlen);
    }
    close(fd);
    return code;
}

taskspan_code taskspan__journal_replay(const char *db_path,
                                       const taskspan__store_ops *ops,
                                       void *store, size_t *out_n, char *err,
                                       size_t errlen)
{
    glob_t g;
    size_t n = strlen(db_path) + 16;
    char *pattern = malloc(n);
    taskspan_code code = TASKSPAN_OK;

    *out_n = 0;
    if (pattern == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    /* The buffer's path is taken literally: glob metacharacters in it
     * only make the pattern miss (a journal then waits for a plain path). */
    snprintf(pattern, n, "%s.journal-*", db_path);
    int rc = glob(pattern, GLOB_NOSORT, NULL, &g);
    free(pattern);
    if (rc != 0) {
        return TASKSPAN_OK; /* none, or unreadable directory */
    }
    for (size_t i = 0; i < g.gl_pathc && code == TASKSPAN_OK; i++) {
        code = replay_one(g.gl_pathv[i], ops, store, out_n, err, errlen);
    }
    globfree(&g);
    return code;
}
