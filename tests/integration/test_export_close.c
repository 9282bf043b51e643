/*
 * test_export_close.c -- closing a recorder never hangs the runner's exit,
 * and never loses what it could not deliver.
 *
 * Real HTTP over loopback: a collector that accepts connections and never
 * answers, and a port where nothing listens. In both cases taskspan_close()
 * must return within its bound, and every span must still be in the buffer,
 * pending, for the next exporter.
 */
#include <taskspan/taskspan.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/test_util.h"

/* A server that accepts and reads but never answers (a hung collector). */
typedef struct hung_server {
    int fd;
    int port;
    pthread_t thread;
    atomic_int stop;
    int conns[16];
    atomic_int n_conns; /* read by the test thread while this one runs */
} hung_server;

static void *hung_accept(void *arg)
{
    hung_server *h = arg;
    while (!atomic_load(&h->stop) && atomic_load(&h->n_conns) < 16) {
        int c = accept(h->fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        /* Keep it open and say nothing. */
        h->conns[atomic_load(&h->n_conns)] = c;
        atomic_fetch_add(&h->n_conns, 1);
    }
    return NULL;
}

static void hung_start(hung_server *h)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    memset(h, 0, sizeof *h);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(h->fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(h->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(h->fd, 16), 0);
    assert_int_equal(getsockname(h->fd, (struct sockaddr *)&a, &len), 0);
    h->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&h->thread, NULL, hung_accept, h), 0);
}

static void hung_stop(hung_server *h)
{
    atomic_store(&h->stop, 1);
    shutdown(h->fd, SHUT_RDWR);
    close(h->fd);
    pthread_join(h->thread, NULL);
    for (int i = 0; i < atomic_load(&h->n_conns); i++) {
        close(h->conns[i]);
    }
}

/* A loopback port with nothing listening: bind, read the port, close. */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A path name in a fresh scratch directory (which stays afterwards). */
static void scratch_db(char *out, size_t n, const char *name)
{
    char *dir = new_tmpdir("export_close");
    assert_non_null(dir);
    snprintf(out, n, "%s/%s", dir, name);
    free(dir);
}

/* Record one task with two closed spans (main and one work item). */
static taskspan *record_task(const char *db, const char *endpoint,
                             int close_timeout_ms)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    o.db_path = db;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_ON;
    o.endpoint = endpoint;
    o.close_timeout_ms = close_timeout_ms;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, "T", 1, "t", NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(NULL, ts, "T", "w1", "x", NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_done(NULL, ts, "T", "w1", "x", NULL, 0, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_runner_exit(NULL, ts, "T", 1, "done", 1, NULL),
        TASKSPAN_OK);
    return ts;
}

/* Spans of the buffer in state (0 pending, 1 delivered, 2 rejected). */
static int count_state(const char *db, int state)
{
    return (int)spans_in_state(db, state);
}

/* A collector that accepts and never answers. The request timeout is
 * 60 s and the worker retries every 100 ms, so a request is in flight when
 * close begins: flush times out on time, close returns within its bound
 * (1 s drain, then the abort ends the request), and both spans stay
 * pending for the next exporter. */
static void test_close_with_hung_collector(void **state)
{
    (void)state;
    hung_server h;
    char db[600], url[128];
    struct timespec pause = {2, 0};
    hung_start(&h);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", h.port);
    setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60000", 1);
    setenv("OTEL_BSP_SCHEDULE_DELAY", "100", 1);
    scratch_db(db, sizeof db, "hung.db");
    taskspan *ts = record_task(db, url, 1000);

    double t0 = now_s();
    assert_int_equal(taskspan_flush(ts, 500), TASKSPAN_E_TIMEOUT);
    double flush_s = now_s() - t0;
    assert_true(flush_s >= 0.45 && flush_s < 2.0);
    nanosleep(&pause, NULL); /* past the backoff: the worker posts again */

    t0 = now_s();
    taskspan_close(ts);
    double close_s = now_s() - t0;
    print_message("flush returned after %.3f s, close after %.3f s, "
                  "%d connections\n",
                  flush_s, close_s, atomic_load(&h.n_conns));
    assert_true(close_s >= 0.9 && close_s < 3.0);
    assert_int_equal(count_state(db, 0), 2);
    assert_int_equal(count_state(db, 1), 0);
    assert_true(atomic_load(&h.n_conns) >= 1);
    unsetenv("OTEL_EXPORTER_OTLP_TIMEOUT");
    unsetenv("OTEL_BSP_SCHEDULE_DELAY");
    hung_stop(&h);
}

/* Nothing listens: close stops at the first failed request instead of
 * waiting out the 5 s default drain, and the spans stay pending. */
static void test_close_with_collector_down(void **state)
{
    (void)state;
    char db[600], url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", free_port());
    scratch_db(db, sizeof db, "down.db");
    taskspan *ts = record_task(db, url, 0 /* default: 5000 ms */);
    double t0 = now_s();
    taskspan_close(ts);
    double close_s = now_s() - t0;
    print_message("close with the collector down took %.3f s\n", close_s);
    assert_true(close_s < 1.5);
    assert_int_equal(count_state(db, 0), 2);

    /* The spans are intact: the export statistics of a new recorder on
     * the buffer count them as pending, with the connection error. */
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan_export_stats st;
    taskspan *again = NULL;
    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    assert_int_equal(taskspan_open(&again, &o, NULL), TASKSPAN_OK);
    assert_int_equal(taskspan_get_export_stats(&st, again), TASKSPAN_OK);
    assert_int_equal(st.spans_pending, 2);
    assert_int_equal(st.enabled, 0);
    assert_true(strstr(st.last_error, "127.0.0.1") != NULL);
    assert_true(st.last_error_ns > 0);
    taskspan_close(again);
}

/* close_timeout_ms < 0: close at once, without even one attempt; the
 * events stay in the buffer, and a later flush finds both spans. */
static void test_close_without_drain(void **state)
{
    (void)state;
    hung_server h;
    char db[600], url[128];
    hung_start(&h);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", h.port);
    scratch_db(db, sizeof db, "nodrain.db");
    taskspan *ts = record_task(db, url, -1);
    double t0 = now_s();
    taskspan_close(ts);
    assert_true(now_s() - t0 < 1.5);
    assert_int_equal(atomic_load(&h.n_conns), 0);
    assert_int_equal(count_state(db, 1), 0);

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *again = NULL;
    o.db_path = db;
    o.endpoint = url;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    assert_int_equal(taskspan_open(&again, &o, NULL), TASKSPAN_OK);
    assert_int_equal(taskspan_flush(again, 200), TASKSPAN_E_TIMEOUT);
    taskspan_close(again);
    assert_int_equal(count_state(db, 0), 2);
    hung_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_with_hung_collector),
        cmocka_unit_test(test_close_with_collector_down),
        cmocka_unit_test(test_close_without_drain),
    };
    /* ctest turns export off by default; these tests turn it on per
     * recorder with export_mode, whatever the environment says. */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
