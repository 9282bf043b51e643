/*
 * trace_download.c -- a stored trace back as an OTLP/JSON request (see
 * trace_download.h). Spans whose resource and scope blobs are equal share
 * one ResourceSpans / ScopeSpans, in the order they were first stored.
 */
#include "trace_download.h"

#include "otlp_json_encode.h"

#include <stdlib.h>
#include <string.h>

/* The generated names run past 80 columns; these paste them together. */
#define COLLECTOR_INIT(name)                                                  \
    OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__##name##__INIT
#define SCOPE(name)                                                           \
    opentelemetry__proto__common__v1__instrumentation_scope__##name

typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;

/* One (resource, scope) group while collecting. */
typedef struct group {
    uint8_t *res, *scp;
    size_t res_len, scp_len;
    pb_span **spans;
    size_t n_spans, cap_spans;
} group;

typedef struct collect {
    group *groups;
    size_t n_groups, cap_groups;
    bool failed;
} collect;

static bool same(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static uint8_t *dup_blob(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n > 0 ? n : 1);
    if (d != NULL && n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

static bool add_span(const taskspan__stored_span *s, void *payload)
{
    collect *c = payload;
    group *g = NULL;

    for (size_t i = 0; i < c->n_groups; i++) {
        if (same(c->groups[i].res, c->groups[i].res_len, s->resource,
                 s->resource_len) &&
            same(c->groups[i].scp, c->groups[i].scp_len, s->scope,
                 s->scope_len)) {
            g = &c->groups[i];
            break;
        }
    }
    if (g == NULL) {
        if (c->n_groups == c->cap_groups) {
            size_t ncap = c->cap_groups == 0 ? 4 : c->cap_groups * 2;
            group *p = realloc(c->groups, ncap * sizeof *p);
            if (p == NULL) {
                goto fail;
            }
            c->groups = p;
            c->cap_groups = ncap;
        }
        g = &c->groups[c->n_groups];
        memset(g, 0, sizeof *g);
        g->res = dup_blob(s->resource, s->resource_len);
        g->scp = dup_blob(s->scope, s->scope_len);
        g->res_len = s->resource_len;
        g->scp_len = s->scope_len;
        c->n_groups++;
        if (g->res == NULL || g->scp == NULL) {
            goto fail;
        }
    }
    if (g->n_spans == g->cap_spans) {
        size_t ncap = g->cap_spans == 0 ? 16 : g->cap_spans * 2;
        pb_span **p = realloc(g->spans, ncap * sizeof *p);
        if (p == NULL) {
            goto fail;
        }
        g->spans = p;
        g->cap_spans = ncap;
    }
    pb_span *sp = opentelemetry__proto__trace__v1__span__unpack(
        NULL, s->span_len, s->span);
    if (sp == NULL) {
        goto fail;
    }
    g->spans[g->n_spans++] = sp;
    return true;
fail:
    c->failed = true;
    return false;
}

static json_t *encode(collect *c)
{
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        COLLECTOR_INIT(EXPORT_TRACE_SERVICE_REQUEST);
    pb_rs *rs = calloc(c->n_groups, sizeof *rs);
    pb_ss *ss = calloc(c->n_groups, sizeof *ss);
    pb_rs **rsp = calloc(c->n_groups, sizeof *rsp);
    pb_ss **ssp = calloc(c->n_groups, sizeof *ssp);
    Opentelemetry__Proto__Resource__V1__Resource **res = calloc(c->n_groups,
                                                                sizeof *res);
    Opentelemetry__Proto__Common__V1__InstrumentationScope **scp = calloc(
        c->n_groups, sizeof *scp);
    json_t *j = NULL;

    if (rs == NULL || ss == NULL || rsp == NULL || ssp == NULL ||
        res == NULL || scp == NULL) {
        goto out;
    }
    /* One ResourceSpans per group keeps this simple; OTLP allows the
     * same resource to appear more than once. */
    for (size_t i = 0; i < c->n_groups; i++) {
        group *g = &c->groups[i];
        opentelemetry__proto__trace__v1__resource_spans__init(&rs[i]);
        opentelemetry__proto__trace__v1__scope_spans__init(&ss[i]);
        if (g->res_len > 0) {
            res[i] = opentelemetry__proto__resource__v1__resource__unpack(
                NULL, g->res_len, g->res);
        }
        if (g->scp_len > 0) {
            scp[i] = SCOPE(unpack)(NULL, g->scp_len, g->scp);
        }
        rs[i].resource = res[i];
        ss[i].scope = scp[i];
        ss[i].n_spans = g->n_spans;
        ss[i].spans = g->spans;
        ssp[i] = &ss[i];
        rs[i].n_scope_spans = 1;
        rs[i].scope_spans = &ssp[i];
        rsp[i] = &rs[i];
    }
    req.n_resource_spans = c->n_groups;
    req.resource_spans = rsp;
    j = taskspan__otlp_json_encode(&req.base);
out:
    for (size_t i = 0; res != NULL && scp != NULL && i < c->n_groups; i++) {
        if (res[i] != NULL) {
            opentelemetry__proto__resource__v1__resource__free_unpacked(res[i],
                                                                        NULL);
        }
        if (scp[i] != NULL) {
            SCOPE(free_unpacked)(scp[i], NULL);
        }
    }
    free(rs);
    free(ss);
    free(rsp);
    free(ssp);
    free(res);
    free(scp);
    return j;
}

taskspan_code taskspan__trace_download(json_t **out, taskspan__vstore *st,
                                       const char *trace_id)
{
    collect c = {0};

    *out = NULL;
    taskspan_code rc = taskspan__vstore_trace_spans(st, trace_id, add_span,
                                                    &c);
    if (rc == TASKSPAN_OK && c.failed) {
        rc = TASKSPAN_E_NOMEM;
    }
    if (rc == TASKSPAN_OK) {
        *out = encode(&c);
        if (*out == NULL) {
            rc = TASKSPAN_E_NOMEM;
        }
    }
    for (size_t i = 0; i < c.n_groups; i++) {
        for (size_t k = 0; k < c.groups[i].n_spans; k++) {
            opentelemetry__proto__trace__v1__span__free_unpacked(
                c.groups[i].spans[k], NULL);
        }
        free(c.groups[i].spans);
        free(c.groups[i].res);
        free(c.groups[i].scp);
    }
    free(c.groups);
    return rc;
}
