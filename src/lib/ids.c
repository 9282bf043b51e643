/*
 * ids.c -- trace and span ids, and the W3C traceparent format.
 *
 * Ids are pure functions of what they name (the task; the span key, runner
 * incarnation and ordinal within the trace), so the exporter can send a span
 * again after a crash with exactly the same ids and a receiver can dedupe.
 * The hash is XXH3-128 from libxxhash, whose output is frozen since 0.8.0.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>
/* The state struct is only visible with XXH_STATIC_LINKING_ONLY; it lets
 * the streaming hash live on the stack instead of the heap. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* Domain separation: a trace id and a span id never hash the same input. */
static const char TRACE_DOMAIN[] = "taskspan/trace/v1";
static const char SPAN_DOMAIN[] = "taskspan/span/v1";
/* v2: the task's id too, for a trace that tasks may share. */
static const char SPAN_DOMAIN_V2[] = "taskspan/span/v2";

static void put_be64(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

void taskspan__derive_trace_id(uint8_t out[16], const char *task_id)
{
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, TRACE_DOMAIN, sizeof TRACE_DOMAIN);
    XXH3_128bits_update(&st, task_id, strlen(task_id));
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    put_be64(out, h.high64);
    put_be64(out + 8, h.low64);
    if (all_zero(out, 16)) {
        out[15] = 1; /* the spec forbids an all-zero trace id */
    }
}

/* The bytes a span id hashes, at most, to hash them in one call from the
 * stack: the one-shot XXH3 gives what the streaming one gives over the
 * same bytes, at a fifth of its cost (the streaming state, 576 bytes, is
 * reset and digested per call; the exporter derives an id per span). */
#define SPAN_INPUT_MAX 256

_Static_assert(sizeof SPAN_DOMAIN == sizeof SPAN_DOMAIN_V2,
               "the span domains have the same length");

void taskspan__derive_span_id(uint8_t out[8], const uint8_t trace_id[16],
                              const char *task_id, const char *span_key,
                              int64_t incarnation, int64_t ordinal)
{
    /* v1: domain, trace id, key and NUL, incarnation, ordinal (big-endian
     * 64 bits each); v2 puts the task id and its NUL before the key. */
    const char *domain = task_id == NULL ? SPAN_DOMAIN : SPAN_DOMAIN_V2;
    size_t tlen = task_id == NULL ? 0 : strlen(task_id) + 1;
    /* The key's NUL separates it from the numbers that follow. */
    size_t klen = strlen(span_key) + 1;
    uint8_t nums[16];
    uint64_t h;

    put_be64(nums, (uint64_t)incarnation);
    put_be64(nums + 8, (uint64_t)ordinal);
    if (sizeof SPAN_DOMAIN + 16 + tlen + klen + 16 <= SPAN_INPUT_MAX) {
        uint8_t buf[SPAN_INPUT_MAX], *p = buf;
        memcpy(p, domain, sizeof SPAN_DOMAIN);
        p += sizeof SPAN_DOMAIN;
        memcpy(p, trace_id, 16);
        p += 16;
        if (tlen > 0) {
            memcpy(p, task_id, tlen);
            p += tlen;
        }
        memcpy(p, span_key, klen);
        p += klen;
        memcpy(p, nums, 16);
        h = XXH3_64bits(buf, (size_t)(p + 16 - buf));
    } else {
        XXH3_state_t st;
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, domain, sizeof SPAN_DOMAIN);
        XXH3_64bits_update(&st, trace_id, 16);
        if (tlen > 0) {
            XXH3_64bits_update(&st, task_id, tlen);
        }
        XXH3_64bits_update(&st, span_key, klen);
        XXH3_64bits_update(&st, nums, sizeof nums);
        h = XXH3_64bits_digest(&st);
    }
    put_be64(out, h);
    if (all_zero(out, 8)) {
        out[7] = 1; /* the spec forbids an all-zero span id */
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1; /* W3C trace context allows lowercase hex only */
}

static bool parse_hex(uint8_t *out, const char *s, size_t nbytes)
{
    for (size_t i = 0; i < nbytes; i++) {
        int hi = hexval(s[2 * i]);
        int lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

taskspan_code taskspan_traceparent_parse(uint8_t out_trace_id[16],
                                         uint8_t out_span_id[8],
                                         uint8_t *out_flags, const char *text)
{
    uint8_t version, flags;

    if (out_trace_id == NULL || out_span_id == NULL || text == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    /* Layout: vv-<32 hex>-<16 hex>-ff, dashes at 2, 35 and 52. */
    size_t len = strlen(text);
    if (len < TASKSPAN_TRACEPARENT_LEN || text[2] != '-' || text[35] != '-' ||
        text[52] != '-') {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (!parse_hex(&version, text, 1) || version == 0xff) {
        return TASKSPAN_E_INVALID_ARG;
    }
    /* Version 00 is exactly 55 characters; a later version may append
     * fields, which must start with a dash (W3C trace-context,
     * "versioning"). */
    if ((version == 0 && len != TASKSPAN_TRACEPARENT_LEN) ||
        (len > TASKSPAN_TRACEPARENT_LEN && text[55] != '-')) {
        return TASKSPAN_E_INVALID_ARG;
    }
    uint8_t tid[16], sid[8];
    if (!parse_hex(tid, text + 3, 16) || !parse_hex(sid, text + 36, 8) ||
        !parse_hex(&flags, text + 53, 1)) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (all_zero(tid, 16) || all_zero(sid, 8)) {
        return TASKSPAN_E_INVALID_ARG;
    }
    memcpy(out_trace_id, tid, 16);
    memcpy(out_span_id, sid, 8);
    if (out_flags != NULL) {
        *out_flags = flags;
    }
    return TASKSPAN_OK;
}

static void put_hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
}

taskspan_code taskspan_traceparent_format(
    char out[TASKSPAN_TRACEPARENT_LEN + 1], const uint8_t trace_id[16],
    const uint8_t span_id[8], uint8_t flags)
{
    if (out == NULL || trace_id == NULL || span_id == NULL ||
        all_zero(trace_id, 16) || all_zero(span_id, 8)) {
        return TASKSPAN_E_INVALID_ARG;
    }
    memcpy(out, "00-", 3);
    put_hex(out + 3, trace_id, 16);
    out[35] = '-';
    put_hex(out + 36, span_id, 8);
    out[52] = '-';
    put_hex(out + 53, &flags, 1);
    out[55] = '\0';
    return TASKSPAN_OK;
}

taskspan_code taskspan_task_trace_id_hex(char out[33], const char *task_id)
{
    uint8_t tid[16];
    if (out == NULL || task_id == NULL || task_id[0] == '\0') {
        return TASKSPAN_E_INVALID_ARG;
    }
    taskspan__derive_trace_id(tid, task_id);
    put_hex(out, tid, 16);
    out[32] = '\0';
    return TASKSPAN_OK;
}
