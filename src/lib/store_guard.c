/*
 * store_guard.c -- the buffer's defences: the size cap, a full disk, a
 * read-only file or file system, and a damaged file.
 *
 * The cap is SQLite's own: PRAGMA max_page_count on the connection that
 * appends makes SQLite refuse a transaction that would grow the database
 * past it (SQLITE_FULL), so an emit pays nothing for the check. A full disk
 * (ENOSPC), a file size limit (EFBIG, RLIMIT_FSIZE) and a read-only file
 * system (EROFS) reach us as SQLite I/O errors; the errno SQLite saw tells
 * them apart. In every case the transaction is rolled back and the events
 * committed before are untouched: SQLite never overwrites a committed page
 * in WAL mode, it appends to the -wal file.
 *
 * A damaged buffer (a destroyed header, a truncated file, a corrupt page on
 * the paths an append reads) is found at open, moved aside with its -wal
 * and -shm, and a new buffer is started; deeper damage is reported as
 * TASKSPAN_E_CORRUPT by the call that reads it.
 */
#include "store_sqlite.h"

#include "inspect.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* The -wal file is truncated back to this after a checkpoint resets it,
 * so a burst of large transactions does not leave it large for good. It
 * holds the WAL the checkpointer lets grow between restarts (about 4000
 * frames, store_checkpoint.c): a file cut shorter than that is extended
 * again on every cycle, which made each emit ~30% slower. */
#define WAL_KEEP_BYTES (32 * 1024 * 1024)

/* Room one event may need beyond its payload: its row, index entries, a
 * task row, and a page split on each b-tree path. */
#define EVENT_OVERHEAD_PAGES 16

/* The byte of the -shm file on which every connection of a WAL database
 * holds a shared lock while it is open (SQLite's UNIX_SHM_DMS). */
#define SHM_DMS_BYTE 128

/* Less free space than this (or this close to RLIMIT_FSIZE) explains a
 * failed write: more than one transaction of an event writes at once. */
#define SPACE_SLACK (64 * 1024)

/* The page size of every buffer: SQLite's default, which taskspan never
 * changes. */
#define BUFFER_PAGE_SIZE 4096

/* The errno a failed write of the database at file most likely met, from
 * the state of things now: SQLite's own errno is not always kept (it is
 * read after other calls may have replaced it). 0 when none applies. */
static int write_errno(const char *file)
{
    char wal[PATH_MAX];
    struct statvfs fs;
    struct rlimit rl;
    struct stat sb;

    if (file == NULL || file[0] == '\0' || statvfs(file, &fs) != 0) {
        return 0;
    }
    /* Touching the file (no descriptor is opened, so none of SQLite's
     * locks can be lost) tells a file system that went read-only under
     * us, as ext4 does on errors, which statvfs may not show. */
    if ((fs.f_flag & ST_RDONLY) ||
        (utimensat(AT_FDCWD, file, NULL, 0) != 0 && errno == EROFS)) {
        return EROFS;
    }
    if ((uint64_t)fs.f_bavail * fs.f_frsize < SPACE_SLACK) {
        return ENOSPC;
    }
    snprintf(wal, sizeof wal, "%s-wal", file);
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        ((stat(file, &sb) == 0 &&
          (uint64_t)sb.st_size + SPACE_SLACK > rl.rlim_cur) ||
         (stat(wal, &sb) == 0 &&
          (uint64_t)sb.st_size + SPACE_SLACK > rl.rlim_cur))) {
        return EFBIG;
    }
    return 0;
}

taskspan_code taskspan__guard_code(sqlite3 *db, int rc, int *out_errno)
{
    int primary = rc & 0xff;

    *out_errno = 0;
    if (db != NULL &&
        (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN)) {
        int e = sqlite3_system_errno(db);
        if (primary == SQLITE_IOERR && e != ENOSPC && e != EFBIG &&
            e != EROFS) {
            int now = write_errno(sqlite3_db_filename(db, "main"));
            e = now != 0 ? now : e;
        }
        switch (e) {
        case ENOSPC:
        case EFBIG:
#ifdef EDQUOT
        case EDQUOT:
#endif
            *out_errno = e;
            return TASKSPAN_E_FULL;
        case EROFS:
        case EACCES:
        case EPERM:
            *out_errno = e;
            return TASKSPAN_E_READONLY;
        default:
            break;
        }
    }
    return taskspan__sqlite_code(rc);
}

taskspan_code taskspan__guard_writable(sqlite3 *db, const char *path,
                                       char *err, size_t errlen)
{
    if (sqlite3_db_readonly(db, "main") != 1) {
        return TASKSPAN_OK;
    }
    return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                          "%.120s can be opened read-only only (the file or "
                          "its directory is not writable, or the file system "
                          "is read-only); open it with TASKSPAN_OPEN_READONLY "
                          "to inspect it",
                          path);
}

/* Why path cannot be written, as an errno that says read-only (EROFS,
 * EACCES, EPERM), or 0. */
static int not_writable(const char *path)
{
    if (access(path, W_OK) == 0) {
        return 0;
    }
    return errno == EROFS || errno == EACCES || errno == EPERM ? errno : 0;
}

taskspan_code taskspan__guard_cantopen(taskspan_code code, const char *path,
                                       char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int e;

    /* SQLite's own errno is not reliable here (it tries more than one way
     * to open a file), so ask the file system: the file, then the
     * directory, where the file or its -wal and -shm are created. */
    if ((e = not_writable(path)) != 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "cannot write %.120s: %s", path, strerror(e));
    }
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path + 1), path);
    }
    if ((e = not_writable(dir)) != 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "cannot create %.120s or its -wal and -shm in "
                              "%.120s: %s",
                              path, dir, strerror(e));
    }
    return code;
}

bool taskspan__guard_immutable_uri(char *out, size_t n, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    struct statvfs fs;
    size_t k;

    if (statvfs(path, &fs) != 0 || !(fs.f_flag & ST_RDONLY)) {
        return false;
    }
    k = (size_t)snprintf(out, n, "file:");
    for (const char *p = path; *p != '\0' && k + 4 < n; p++) {
        /* The characters a URI path cannot hold as they are. */
        if (*p == '%' || *p == '?' || *p == '#') {
            out[k++] = '%';
            out[k++] = hex[(unsigned char)*p >> 4];
            out[k++] = hex[(unsigned char)*p & 0xf];
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
    return snprintf(out + k, n - k, "?immutable=1") < (int)(n - k);
}

/* One integer a pragma returns, or -1. */
static int64_t pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

int taskspan__guard_limit(sqlite3 *db, int64_t bytes)
{
    char sql[64];
    int64_t page = pragma_int(db, "PRAGMA page_size");
    if (page <= 0) {
        return SQLITE_ERROR;
    }
    int64_t pages = bytes / page;
    /* SQLite's own ceiling for the pragma. */
    if (pages > 4294967294LL) {
        pages = 4294967294LL;
    }
    snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)pages);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof sql, "PRAGMA journal_size_limit=%d",
                 WAL_KEEP_BYTES);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    return rc;
}

/* Read the rightmost path of each b-tree an append touches (and that of
 * the export table), which is where the next write goes. A missing table
 * (an older schema) is not damage. Returns an SQLite code. */
static int probe_rc(sqlite3 *db)
{
    static const char *const probes[] = {
        "SELECT max(id) FROM task_events",
        "SELECT task_id FROM tasks ORDER BY task_id DESC LIMIT 1",
        "SELECT max(id) FROM resources",
        "SELECT max(id) FROM export_spans",
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, probes[i], -1, &st, NULL);
        if ((rc & 0xff) == SQLITE_ERROR) {
            sqlite3_finalize(st);
            continue; /* no such table */
        }
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE && rc != SQLITE_OK) {
            return rc;
        }
    }
    return SQLITE_OK;
}

/* PRAGMA quick_check: SQLITE_CORRUPT when it reports anything but "ok"
 * (its first finding in why), else what running it returned. */
static int quick_check_rc(sqlite3 *db, char *why, size_t whylen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        rc = SQLITE_OK;
        if (r == NULL || strcmp(r, "ok") != 0) {
            snprintf(why, whylen, "%s", r != NULL ? r : "quick_check failed");
            rc = SQLITE_CORRUPT;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

taskspan_code taskspan__guard_probe(sqlite3 *db, bool deep, char *err,
                                    size_t errlen)
{
    char why[128] = "";
    int rc = probe_rc(db);
    if (rc == SQLITE_OK && deep) {
        rc = quick_check_rc(db, why, sizeof why);
        if (rc == SQLITE_CORRUPT && why[0] != '\0') {
            return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                                  "checking the buffer: %s", why);
        }
    }
    if (rc == SQLITE_OK) {
        return TASKSPAN_OK;
    }
    return taskspan__sqlite_fail(db, rc, "checking the buffer", err, errlen);
}

/* How long a make-room pass that freed nothing keeps the next one away. */
#define MAKE_ROOM_RETRY_NS (10 * (int64_t)1000000000)

int64_t taskspan__store_make_room(store *s, int64_t want_bytes)
{
    struct timespec now;
    taskspan__gc_counts counts = {0};
    char ignored[TASKSPAN__MSG_SIZE];

    (void)want_bytes; /* whatever can go goes: it is all at the collector */
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t mono = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if (mono < s->next_make_room_ns) {
        return 0;
    }
    int64_t page = pragma_int(s->db, "PRAGMA page_size");
    int64_t free_before = pragma_int(s->db, "PRAGMA freelist_count");
    /* Delivered data of ended tasks, whatever its age: the cap comes before
     * the retention, and what is pruned is already at the collector. */
    taskspan_code rc = taskspan__gc_store(s, taskspan__now_ns(), &counts,
                                          ignored, sizeof ignored);
    int64_t free_after = pragma_int(s->db, "PRAGMA freelist_count");
    int64_t freed = (free_after - free_before) * page;
    if (rc != TASKSPAN_OK || counts.events == 0 || freed <= 0) {
        s->next_make_room_ns = mono + MAKE_ROOM_RETRY_NS;
        return 0;
    }
    s->pruned_for_room += counts.tasks;
    return freed;
}

bool taskspan__guard_on_full(store *s, size_t payload_len, bool at_commit,
                             int sys_errno, bool may_make_room, char *err,
                             size_t errlen)
{
    const char *file = sqlite3_db_filename(s->db, "main");
    int64_t page = pragma_int(s->db, "PRAGMA page_size");
    int64_t pages = pragma_int(s->db, "PRAGMA page_count");
    int64_t need = (int64_t)payload_len + EVENT_OVERHEAD_PAGES * page;

    if (file == NULL) {
        file = "";
    }
    /* The cap stops a transaction while it allocates pages, before
     * anything is written; a full disk shows when the commit writes the
     * -wal file. */
    bool at_cap = s->cap_bytes > 0 && !at_commit && sys_errno == 0 &&
                  page > 0 && pages >= 0 && pages * page + need > s->cap_bytes;
    if (at_cap) {
        int64_t freed = may_make_room ? taskspan__store_make_room(s, need) : 0;
        if (freed > 0) {
            /* Free pages are reused first; the limit may have been
             * clamped to a larger file when it was set: set it again. */
            taskspan__guard_limit(s->db, s->cap_bytes);
            return true;
        }
        s->refused_cap++;
        taskspan__fail(err, errlen, TASKSPAN_E_FULL,
                       "buffer at its cap of %lld bytes (max_bytes, "
                       "TASKSPAN_MAX_BYTES): event not recorded, nothing "
                       "stored was dropped; export and prune the buffer, "
                       "or raise the cap",
                       (long long)s->cap_bytes);
        return false;
    }
    s->refused_disk++;
    taskspan__fail(err, errlen, TASKSPAN_E_FULL,
                   "%s writing %.120s: event not recorded, nothing stored "
                   "was dropped; free space, then retry",
                   sys_errno == EFBIG ? "file size limit (RLIMIT_FSIZE) "
                                        "reached"
#ifdef EDQUOT
                   : sys_errno == EDQUOT ? "disk quota exceeded"
#endif
                                         : "disk full",
                   file);
    return false;
}

taskspan_code taskspan__sqlite_capacity(void *h, taskspan__store_capacity *out,
                                        char *err, size_t errlen)
{
    store *s = h;
    int64_t page = pragma_int(s->db, "PRAGMA page_size");
    int64_t pages = pragma_int(s->db, "PRAGMA page_count");
    int64_t free_pages = pragma_int(s->db, "PRAGMA freelist_count");

    memset(out, 0, sizeof *out);
    if (page < 0 || pages < 0 || free_pages < 0) {
        return taskspan__sqlite_fail(s->db, sqlite3_errcode(s->db),
                                     "reading the buffer's size", err, errlen);
    }
    out->max_bytes = s->cap_bytes;
    out->used_bytes = pages * page;
    out->reusable_bytes = free_pages * page;
    out->refused_cap = s->refused_cap;
    out->refused_disk = s->refused_disk;
    out->pruned_for_room = s->pruned_for_room;
    return TASKSPAN_OK;
}

/* ---- a damaged buffer --------------------------------------------------- */

typedef enum verdict {
    VERDICT_HEALTHY, /* SQLite reads it: someone else's, or no schema */
    VERDICT_DAMAGED, /* a database SQLite finds corrupt */
    VERDICT_FOREIGN  /* not a database, and not shaped like one */
} verdict;

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* path + suffix in out; "" when it does not fit, so that the stat() or
 * rename() that follows fails instead of touching a truncated name. */
static void sidecar(char *out, size_t n, const char *path, const char *suffix)
{
    int w = snprintf(out, n, "%s%s", path, suffix);
    if (w < 0 || (size_t)w >= n) {
        out[0] = '\0';
    }
}

/* Whether a file SQLite cannot read was a database, whose damage is ours to
 * handle, rather than some other file named by mistake (left alone): it
 * starts with SQLite's magic (a truncated file, a damaged page), or it has
 * a -wal or -shm file beside it, or, its header destroyed, it is whole
 * pages of taskspan's page size with a b-tree page second (the root of the
 * tasks table, the first table a buffer creates). */
static bool shaped_like_database(const char *path)
{
    static const char magic[16] = "SQLite format 3";
    unsigned char head[16], page2 = 0;
    char wal[PATH_MAX], shm[PATH_MAX];
    struct stat sb;
    bool magic_ok = false, page2_ok = false;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        magic_ok = read(fd, head, sizeof head) == (ssize_t)sizeof head &&
                   memcmp(head, magic, sizeof magic) == 0;
        page2_ok = fstat(fd, &sb) == 0 && sb.st_size >= 2 * BUFFER_PAGE_SIZE &&
                   sb.st_size % BUFFER_PAGE_SIZE == 0 &&
                   pread(fd, &page2, 1, BUFFER_PAGE_SIZE) == 1 &&
                   (page2 == 0x02 || page2 == 0x05 || page2 == 0x0a ||
                    page2 == 0x0d);
        close(fd);
    }
    sidecar(wal, sizeof wal, path, "-wal");
    sidecar(shm, sizeof shm, path, "-shm");
    return magic_ok || page2_ok || file_exists(wal) || file_exists(shm);
}

/* Read the file on a connection of its own, as the open did, and say
 * whether SQLite finds it damaged. */
static verdict diagnose(const char *path, bool deep, char *why, size_t whylen)
{
    char finding[128] = "";
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (db != NULL) {
        /* Keep the evidence as it is: no checkpoint into a bad file. */
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, 1000);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL,
                          NULL);
    }
    if (rc == SQLITE_OK) {
        rc = probe_rc(db);
    }
    if (rc == SQLITE_OK && deep) {
        rc = quick_check_rc(db, finding, sizeof finding);
    }
    snprintf(why, whylen, "%s",
             finding[0] != '\0' ? finding
             : db != NULL       ? sqlite3_errmsg(db)
                                : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    if ((rc & 0xff) != SQLITE_CORRUPT && (rc & 0xff) != SQLITE_NOTADB) {
        return VERDICT_HEALTHY;
    }
    return shaped_like_database(path) ? VERDICT_DAMAGED : VERDICT_FOREIGN;
}

/* The pid of another process that has the buffer open, or 0: every
 * connection to a WAL database holds a read lock on the -shm file's DMS
 * byte. (Connections of this process do not show; it has none left.) */
static long other_user(const char *path)
{
    char shm[PATH_MAX];
    struct flock fl;
    long pid = 0;

    sidecar(shm, sizeof shm, path, "-shm");
    int fd = open(shm, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = SHM_DMS_BYTE;
    fl.l_len = 1;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
        pid = fl.l_pid > 0 ? (long)fl.l_pid : -1;
    }
    close(fd);
    return pid;
}

/* "<path>.corrupt-<UTC time>", with -2, -3, ... if that is taken. */
static bool aside_name(char *out, size_t n, const char *path)
{
    char stamp[32], wal[PATH_MAX];
    struct tm tm;
    time_t now = time(NULL);

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 1; i < 100; i++) {
        int len = i == 1
                      ? snprintf(out, n, "%s.corrupt-%s", path, stamp)
                      : snprintf(out, n, "%s.corrupt-%s-%d", path, stamp, i);
        if (len < 0 || (size_t)len + 5 >= n) {
            return false;
        }
        sidecar(wal, sizeof wal, out, "-wal");
        if (!file_exists(out) && !file_exists(wal)) {
            return true;
        }
    }
    return false;
}

/* Rename path (and its -wal and -shm, first, so a new buffer can never
 * pick up the old -wal) to aside. On failure nothing stays moved. */
static taskspan_code move_aside(const char *path, const struct stat *seen,
                                const char *aside, char *err, size_t errlen)
{
    static const char *const sidecars[] = {"-wal", "-shm"};
    char from[PATH_MAX], to[PATH_MAX];
    struct stat now;
    size_t moved = 0;
    int e = 0;

    if (stat(path, &now) != 0 || now.st_ino != seen->st_ino ||
        now.st_dev != seen->st_dev) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "%.150s was replaced while it was checked; "
                              "not moved",
                              path);
    }
    for (; moved < 2; moved++) {
        sidecar(from, sizeof from, path, sidecars[moved]);
        sidecar(to, sizeof to, aside, sidecars[moved]);
        if (rename(from, to) != 0 && errno != ENOENT) {
            e = errno;
            break;
        }
    }
    if (e == 0 && rename(path, aside) != 0) {
        e = errno;
    }
    if (e == 0) {
        return TASKSPAN_OK;
    }
    while (moved-- > 0) {
        sidecar(from, sizeof from, path, sidecars[moved]);
        sidecar(to, sizeof to, aside, sidecars[moved]);
        rename(to, from);
    }
    return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                          "%.150s is damaged and could not be moved aside: "
                          "%s",
                          path, strerror(e));
}

int taskspan__guard_lock_dir(const char *path, int timeout_ms)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path + 1), path);
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited += 2) {
        if (errno != EWOULDBLOCK || waited >= timeout_ms) {
            close(fd);
            return -1;
        }
        sqlite3_sleep(2);
    }
    return fd;
}

void taskspan__guard_unlock_dir(int lock)
{
    if (lock >= 0) {
        close(lock); /* releases the flock */
    }
}

taskspan_code taskspan__guard_recover(const char *path,
                                      const taskspan__store_config *cfg,
                                      int timeout_ms, char *notice,
                                      size_t noticelen, char *err,
                                      size_t errlen)
{
    char why[128], aside[PATH_MAX];
    struct stat seen;

    if (stat(path, &seen) != 0) {
        return TASKSPAN_E_CORRUPT; /* the message of the open stands */
    }
    switch (
        diagnose(path, cfg->flags & TASKSPAN_OPEN_VERIFY, why, sizeof why)) {
    case VERDICT_HEALTHY:
        return TASKSPAN_E_CORRUPT;
    case VERDICT_FOREIGN:
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "%.120s is not a taskspan buffer: not an "
                              "SQLite database (%s) nor shaped like a damaged "
                              "one; left as it is",
                              path, why);
    case VERDICT_DAMAGED:
        break;
    }
    if (!cfg->may_repair) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "%.120s is a damaged buffer (%s); a read-only "
                              "open leaves it: a read-write open moves it "
                              "aside and starts a new one",
                              path, why);
    }
    /* Another process may be failing to open it just now: give it the
     * busy timeout to let go. */
    long pid = other_user(path);
    for (int waited = 0; pid != 0 && waited < timeout_ms; waited += 2) {
        sqlite3_sleep(2);
        pid = other_user(path);
    }
    if (pid != 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "%.120s is a damaged buffer (%s) that process "
                              "%ld still has open; not moved",
                              path, why, pid);
    }
    if (!aside_name(aside, sizeof aside, path)) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "%.120s is a damaged buffer (%s); no free name "
                              "to move it aside to",
                              path, why);
    }
    taskspan_code rc = move_aside(path, &seen, aside, err, errlen);
    if (rc == TASKSPAN_OK) {
        snprintf(notice, noticelen,
                 "%.200s was damaged (%s); moved it to %.220s and started "
                 "a new buffer",
                 path, why, aside);
    }
    return rc;
}
