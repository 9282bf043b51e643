/*
 * config.h -- the exporter's configuration: the OpenTelemetry environment
 * variables (OTEL_*), with the spec's defaults, overridden by options.
 */
#ifndef TASKSPAN_CONFIG_H
#define TASKSPAN_CONFIG_H

#include "internal.h"

/* Span limits, as the OTel SDK spec names them. SIZE_MAX means no limit. */
typedef struct taskspan__limits {
    size_t span_attrs;  /* OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, default 128 */
    size_t span_events; /* OTEL_SPAN_EVENT_COUNT_LIMIT, default 32768 */
    size_t span_links;  /* OTEL_SPAN_LINK_COUNT_LIMIT, default 128 */
    size_t event_attrs; /* OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT, default 128 */
    size_t link_attrs;  /* OTEL_LINK_ATTRIBUTE_COUNT_LIMIT, default 128 */
    size_t value_len;   /* OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, none */
} taskspan__limits;

/* Everything the exporter needs, resolved once at open. Strings are owned
 * (malloc'd) and freed by taskspan__config_free(). */
typedef struct taskspan__export_config {
    bool enabled; /* false: OTEL_SDK_DISABLED=true, option off, or
                             an unusable setting (see disabled_reason) */
    char disabled_reason[256];
    char *endpoint; /* the full traces URL */
    char **headers; /* "Name: value" lines for the request */
    size_t n_headers;
    int timeout_ms;        /* one request; OTEL_EXPORTER_OTLP_TIMEOUT, 10000 */
    bool gzip;             /* OTEL_EXPORTER_OTLP_COMPRESSION=gzip */
    char *ca_file;         /* OTEL_EXPORTER_OTLP_CERTIFICATE */
    char *client_cert;     /* OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE */
    char *client_key;      /* OTEL_EXPORTER_OTLP_CLIENT_KEY */
    int schedule_delay_ms; /* OTEL_BSP_SCHEDULE_DELAY, 5000 */
    int export_timeout_ms; /* OTEL_BSP_EXPORT_TIMEOUT, 30000: one batch,
                               retries included, before it is put back */
    size_t max_batch_spans;   /* OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512 */
    size_t max_request_bytes; /* 4 MiB: far below the Collector's 20 MiB */
    int close_timeout_ms;     /* taskspan_close() drain bound, 5000 */
    /* TASKSPAN_CRASH_GRACE_MS, 30000: how long an incarnation whose runner
     * process is gone must have been silent before export closes it. */
    int crash_grace_ms;
    /* TASKSPAN_RETENTION_SECONDS, 604800 (7 days): the exporter prunes
     * delivered data of ended tasks older than this; 0: never. */
    size_t retention_s;
    taskspan__limits limits;
    /* The resource: service.name, telemetry.sdk.*, process.pid, host.name
     * and OTEL_RESOURCE_ATTRIBUTES. Strings live in resource_arena. */
    taskspan__attr_list resource;
    taskspan__arena resource_arena;
    /* Malformed variables that were ignored, one line each, e.g.
     * "OTEL_BSP_SCHEDULE_DELAY='soon' is not a number of milliseconds;
     * using 5000". Empty when all is well. */
    char warnings[1024];
} taskspan__export_config;

/* Where configuration values come from: getenv in production, a table in
 * unit tests. Returns NULL for an unset variable. */
typedef const char *(*taskspan__getenv_fn)(const char *name, void *ctx);

/* Resolve the configuration from opts (which win) and the environment.
 * Malformed environment values are ignored with a line in out->warnings;
 * malformed option values fail with TASKSPAN_E_INVALID_ARG and a message in
 * err naming the option. OUT: *out, free with taskspan__config_free(). */
taskspan_code taskspan__config_load(taskspan__export_config *out,
                                    const taskspan_options *opts,
                                    taskspan__getenv_fn env, void *env_ctx,
                                    char *err, size_t errlen);

void taskspan__config_free(taskspan__export_config *cfg);

#endif
