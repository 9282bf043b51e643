/*
 * error.c -- result codes as text, the version, and the failure helpers.
 *
 * Two layers of text, as in SQLite and curl: taskspan_strerror() gives the
 * fixed meaning of a code; each handle keeps the one-line detail of its most
 * recent failure, written once at the failure site so the root cause wins.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const code_text[] = {
    [TASKSPAN_OK] = "success",
    [TASKSPAN_E_NOMEM] = "out of memory",
    [TASKSPAN_E_INVALID_ARG] = "invalid argument",
    [TASKSPAN_E_IO] = "input/output error on the buffer file",
    [TASKSPAN_E_STORE] = "buffer database error",
    [TASKSPAN_E_BUSY] = "the buffer is locked by another writer",
    [TASKSPAN_E_FULL] = "the buffer's cap, the disk or the size limit is full",
    [TASKSPAN_E_READONLY] = "the buffer is read-only",
    [TASKSPAN_E_CORRUPT] = "the buffer file is corrupt or not a database",
    [TASKSPAN_E_SCHEMA] = "the buffer's schema is newer than this library",
    [TASKSPAN_E_NOT_FOUND] = "not found",
    [TASKSPAN_E_ENCODE] = "a value could not be encoded",
    [TASKSPAN_E_TRANSPORT] = "the network request failed",
    [TASKSPAN_E_HTTP_STATUS] = "the collector answered with an error",
    [TASKSPAN_E_TIMEOUT] = "the operation timed out",
};

_Static_assert(sizeof code_text / sizeof code_text[0] == TASKSPAN_CODE_LAST,
               "every taskspan_code needs its text");

const char *taskspan_strerror(taskspan_code code)
{
    if ((int)code < 0 || code >= TASKSPAN_CODE_LAST) {
        return "unknown error";
    }
    return code_text[code];
}

int taskspan_code_is_retryable(taskspan_code code)
{
    switch (code) {
    case TASKSPAN_E_BUSY:
    case TASKSPAN_E_IO:
    case TASKSPAN_E_FULL:
    case TASKSPAN_E_NOMEM:
    case TASKSPAN_E_TRANSPORT:
    case TASKSPAN_E_TIMEOUT:
        return 1;
    default:
        return 0;
    }
}

const char *taskspan_version(void)
{
    return TASKSPAN_VERSION_STRING;
}

int taskspan_version_num(void)
{
    return TASKSPAN_VERSION_NUM;
}

taskspan_code taskspan__fail(char *buf, size_t size, taskspan_code code,
                             const char *fmt, ...)
{
    if (buf != NULL && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, size, fmt, ap);
        va_end(ap);
    }
    return code;
}
