/*
 * buffer_cap.c -- where the buffer's size cap comes from: the max_bytes
 * option, else the TASKSPAN_MAX_BYTES environment variable, else
 * TASKSPAN_DEFAULT_MAX_BYTES.
 *
 * As with the OTEL_* variables (config.c), a bad option is the caller's bug
 * and fails the open, while a malformed variable is ignored with a warning:
 * the runner's environment must not stop it from recording. Enforcing the
 * cap is the store's business (store_guard.c).
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most SQLite can address with 64 KiB pages is far beyond this; the
 * limit only keeps the arithmetic on bytes clear of overflow. */
#define MAX_CAP ((int64_t)1 << 50) /* 1 PiB */

/* s is want (lowercase) in any case, then nothing but blanks. */
static bool suffix_is(const char *s, const char *want)
{
    size_t n = strlen(want);
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)s[i]) != want[i]) {
            return false;
        }
    }
    for (s += n; *s == ' ' || *s == '\t'; s++) {
    }
    return *s == '\0';
}

bool taskspan__parse_size(const char *text, int64_t *out)
{
    static const struct {
        char letter;
        int shift;
    } units[] = {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}};
    const char *p = text;
    char *end;
    int shift = 0;

    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (!isdigit((unsigned char)*p)) {
        return false; /* no sign, no empty value */
    }
    errno = 0;
    long long n = strtoll(p, &end, 10);
    if (errno != 0) {
        return false;
    }
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (*end != '\0') {
        char letter = (char)tolower((unsigned char)*end);
        size_t u = 0;
        while (u < sizeof units / sizeof units[0] &&
               units[u].letter != letter) {
            u++;
        }
        if (u == sizeof units / sizeof units[0]) {
            return false;
        }
        if (!suffix_is(end + 1, "") && !suffix_is(end + 1, "b") &&
            !suffix_is(end + 1, "ib")) {
            return false;
        }
        shift = units[u].shift;
    }
    if (n > (MAX_CAP >> shift)) {
        return false;
    }
    *out = (int64_t)n << shift;
    return true;
}

taskspan_code taskspan__buffer_cap_resolve(int64_t *out, int64_t option,
                                           const char *env_value, char *warn,
                                           size_t warnlen, char *err,
                                           size_t errlen)
{
    int64_t v = 0;

    if (warn != NULL && warnlen > 0) {
        warn[0] = '\0';
    }
    *out = TASKSPAN_DEFAULT_MAX_BYTES;
    if (option != 0) {
        if (option < TASKSPAN_MIN_MAX_BYTES || option > MAX_CAP) {
            return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "max_bytes %lld is outside %lld to %lld "
                                  "(0 for the default)",
                                  (long long)option,
                                  (long long)TASKSPAN_MIN_MAX_BYTES,
                                  (long long)MAX_CAP);
        }
        *out = option;
        return TASKSPAN_OK;
    }
    if (env_value == NULL || env_value[0] == '\0') {
        return TASKSPAN_OK;
    }
    if (taskspan__parse_size(env_value, &v) && v >= TASKSPAN_MIN_MAX_BYTES) {
        *out = v;
        return TASKSPAN_OK;
    }
    taskspan__fail(warn, warnlen, TASKSPAN_OK,
                   "TASKSPAN_MAX_BYTES='%.40s' is not a size of at least "
                   "128K (bytes, or a number with K, M, G or T); using the "
                   "default 1G",
                   env_value);
    return TASKSPAN_OK;
}
