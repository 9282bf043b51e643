/*
 * test_config.c -- the exporter's configuration (taskspan__config_load):
 * OTEL_* variables read through a fake getenv, options, defaults, warnings
 * for malformed values, endpoint and header rules, and the resource.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A fake environment: ctx is a NULL-terminated list of name, value. */
static const char *fake_getenv(const char *name, void *ctx)
{
    const char *const *kv = ctx;

    for (; kv != NULL && kv[0] != NULL; kv += 2) {
        if (strcmp(kv[0], name) == 0) {
            return kv[1];
        }
    }
    return NULL;
}

/* ENV("NAME", "value", ...): a fake environment for one call. */
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ENV ENV(NULL)

static void load_ok(taskspan__export_config *cfg, const taskspan_options *o,
                    const char *const *env)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan_code rc = taskspan__config_load(cfg, o, fake_getenv, (void *)env,
                                             err, sizeof err);
    if (rc != TASKSPAN_OK) {
        print_error("config_load: %s\n", err);
    }
    assert_int_equal(rc, TASKSPAN_OK);
}

/* Load opts and env, which must fail with INVALID_ARG naming word. */
static void load_fails(const taskspan_options *o, const char *const *env,
                       const char *word)
{
    taskspan__export_config cfg;
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan_code rc = taskspan__config_load(&cfg, o, fake_getenv, (void *)env,
                                             err, sizeof err);

    assert_int_equal(rc, TASKSPAN_E_INVALID_ARG);
    if (strstr(err, word) == NULL) {
        print_error("message '%s' does not name '%s'\n", err, word);
        fail();
    }
    /* Nothing is left to free. */
    assert_null(cfg.endpoint);
    assert_null(cfg.resource.attrs);
}

static void assert_no_warnings(const taskspan__export_config *cfg)
{
    if (cfg->warnings[0] != '\0') {
        print_error("unexpected warnings: %s\n", cfg->warnings);
        fail();
    }
}

/* A warning names the variable (at the start of one of its lines). */
static void assert_warns(const taskspan__export_config *cfg, const char *name)
{
    const char *p = cfg->warnings;
    size_t n = strlen(name);

    while (p != NULL) {
        if (strncmp(p, name, n) == 0 && (p[n] == '=' || p[n] == ':')) {
            return;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    print_error("no warning names %s: '%s'\n", name, cfg->warnings);
    fail();
}

static size_t count_lines(const char *s)
{
    size_t n = s[0] != '\0';

    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

static const taskspan_attr *res_find(const taskspan__export_config *cfg,
                                     const char *key)
{
    const taskspan_attr *found = NULL;

    for (size_t i = 0; i < cfg->resource.n; i++) {
        if (strcmp(cfg->resource.attrs[i].key, key) == 0) {
            assert_null(found); /* every key once */
            found = &cfg->resource.attrs[i];
        }
    }
    return found;
}

static void assert_res_str(const taskspan__export_config *cfg, const char *key,
                           const char *value)
{
    const taskspan_attr *a = res_find(cfg, key);

    if (a == NULL) {
        print_error("resource has no %s\n", key);
        fail();
    }
    assert_int_equal(a->type, TASKSPAN_ATTR_STRING);
    assert_string_equal(a->value.s, value);
}

static void assert_keys_unique(const taskspan__export_config *cfg)
{
    for (size_t i = 0; i < cfg->resource.n; i++) {
        for (size_t j = i + 1; j < cfg->resource.n; j++) {
            assert_string_not_equal(cfg->resource.attrs[i].key,
                                    cfg->resource.attrs[j].key);
        }
    }
}

static void assert_header(const taskspan__export_config *cfg, size_t i,
                          const char *line)
{
    assert_true(i < cfg->n_headers);
    assert_string_equal(cfg->headers[i], line);
}

/* ---- defaults ----------------------------------------------------------- */

static void test_defaults(void **state)
{
    taskspan__export_config cfg;
    char host[256] = "";
    (void)state;

    load_ok(&cfg, NULL, NO_ENV);
    assert_true(cfg.enabled);
    assert_string_equal(cfg.disabled_reason, "");
    assert_string_equal(cfg.endpoint, "http://localhost:4318/v1/traces");
    assert_int_equal(cfg.n_headers, 0);
    assert_int_equal(cfg.timeout_ms, 10000);
    assert_false(cfg.gzip);
    assert_null(cfg.ca_file);
    assert_null(cfg.client_cert);
    assert_null(cfg.client_key);
    assert_int_equal(cfg.schedule_delay_ms, 5000);
    assert_int_equal(cfg.export_timeout_ms, 30000);
    assert_int_equal(cfg.max_batch_spans, 512);
    assert_int_equal(cfg.max_request_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg.close_timeout_ms, 5000);
    assert_int_equal(cfg.limits.span_attrs, 128);
    assert_int_equal(cfg.limits.span_events, 32768);
    assert_int_equal(cfg.limits.span_links, 128);
    assert_int_equal(cfg.limits.event_attrs, 128);
    assert_int_equal(cfg.limits.link_attrs, 128);
    assert_true(cfg.limits.value_len == SIZE_MAX);
    assert_no_warnings(&cfg);

    assert_res_str(&cfg, "telemetry.sdk.name", "taskspan");
    assert_res_str(&cfg, "telemetry.sdk.language", "c");
    assert_res_str(&cfg, "telemetry.sdk.version", taskspan_version());
    const taskspan_attr *pid = res_find(&cfg, "process.pid");
    assert_non_null(pid);
    assert_int_equal(pid->type, TASKSPAN_ATTR_INT);
    assert_int_equal(pid->value.i, (int64_t)getpid());
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    assert_res_str(&cfg, "host.name", host);
    const taskspan_attr *exe = res_find(&cfg, "process.executable.name");
    assert_non_null(exe);
    assert_non_null(strstr(exe->value.s, "test_config"));
    char service[300];
    snprintf(service, sizeof service, "unknown_service:%s", exe->value.s);
    assert_res_str(&cfg, "service.name", service);
    assert_keys_unique(&cfg);
    taskspan__config_free(&cfg);
}

/* With no getenv function, the process environment is read. */
static void test_real_getenv(void **state)
{
    taskspan__export_config cfg;
    char err[TASKSPAN__MSG_SIZE] = "";
    (void)state;

    assert_int_equal(setenv("OTEL_SERVICE_NAME", "from-environ", 1), 0);
    assert_int_equal(
        taskspan__config_load(&cfg, NULL, NULL, NULL, err, sizeof err),
        TASKSPAN_OK);
    unsetenv("OTEL_SERVICE_NAME");
    assert_res_str(&cfg, "service.name", "from-environ");
    taskspan__config_free(&cfg);
}

static const char *const all_names[] = {
    "OTEL_CONFIG_FILE",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "TASKSPAN_MAX_REQUEST_BYTES",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
};

/* The spec: an empty value is the same as an unset variable. */
static void test_empty_values_are_unset(void **state)
{
    const char *env[2 * ARRAY_LEN(all_names) + 1];
    taskspan__export_config cfg;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(all_names); i++) {
        env[2 * i] = all_names[i];
        env[2 * i + 1] = "";
    }
    env[2 * ARRAY_LEN(all_names)] = NULL;
    load_ok(&cfg, NULL, env);
    assert_true(cfg.enabled);
    assert_string_equal(cfg.endpoint, "http://localhost:4318/v1/traces");
    assert_int_equal(cfg.timeout_ms, 10000);
    assert_int_equal(cfg.n_headers, 0);
    assert_null(cfg.ca_file);
    assert_int_equal(cfg.limits.span_events, 32768);
    assert_non_null(
        strstr(res_find(&cfg, "service.name")->value.s, "unknown_service"));
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);
}

/* ---- export on or off --------------------------------------------------- */

static void test_export_mode_off(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan__export_config cfg;
    (void)state;

    o.export_mode = TASKSPAN_EXPORT_OFF;
    load_ok(&cfg, &o, NO_ENV);
    assert_false(cfg.enabled);
    /* Off on purpose is not unusable: an explicit flush may export. */
    assert_string_equal(cfg.disabled_reason, "");
    /* The rest is resolved all the same (for stats and `taskspan export`). */
    assert_string_equal(cfg.endpoint, "http://localhost:4318/v1/traces");
    taskspan__config_free(&cfg);

    /* An unusable setting is reported even when export is off. */
    load_ok(&cfg, &o, ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    assert_false(cfg.enabled);
    assert_non_null(strstr(cfg.disabled_reason, "PROTOCOL=grpc"));
    taskspan__config_free(&cfg);

    /* The first unusable setting is the one reported. */
    load_ok(&cfg, NULL,
            ENV("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_PROTOCOL",
                "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT", "junk"));
    assert_false(cfg.enabled);
    assert_non_null(strstr(cfg.disabled_reason, "PROTOCOL=grpc"));
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_ENDPOINT");
    taskspan__config_free(&cfg);
}

static void test_export_mode_on(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan__export_config cfg;
    (void)state;

    o.export_mode = TASKSPAN_EXPORT_ON;
    load_ok(&cfg, &o,
            ENV("OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "none"));
    assert_true(cfg.enabled);
    assert_string_equal(cfg.disabled_reason, "");
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* Even ON cannot speak grpc. */
    load_ok(&cfg, &o, ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    assert_false(cfg.enabled);
    taskspan__config_free(&cfg);
}

static void test_sdk_disabled(void **state)
{
    static const struct {
        const char *value;
        bool enabled;
        bool warns;
    } cases[] = {
        {"true", false, false}, {"TRUE", false, false}, {"True", false, false},
        {"false", true, false}, {"FALSE", true, false}, {"yes", true, true},
        {"1", true, true},      {"on", true, true},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        taskspan__export_config cfg;
        load_ok(&cfg, NULL, ENV("OTEL_SDK_DISABLED", cases[i].value));
        assert_int_equal(cfg.enabled, cases[i].enabled);
        assert_string_equal(cfg.disabled_reason, "");
        if (cases[i].warns) {
            assert_warns(&cfg, "OTEL_SDK_DISABLED");
            assert_non_null(strstr(cfg.warnings, "using false"));
        } else {
            assert_no_warnings(&cfg);
        }
        taskspan__config_free(&cfg);
    }
}

static void test_traces_exporter(void **state)
{
    static const struct {
        const char *value;
        bool enabled;
        bool warns;
    } cases[] = {
        {"none", false, false},       {"NONE", false, false},
        {"otlp", true, false},        {"OTLP", true, false},
        {" otlp , ", true, false},    {"console", true, true},
        {"otlp,console", true, true}, {"none,zipkin", false, true},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        taskspan__export_config cfg;
        load_ok(&cfg, NULL, ENV("OTEL_TRACES_EXPORTER", cases[i].value));
        assert_int_equal(cfg.enabled, cases[i].enabled);
        assert_string_equal(cfg.disabled_reason, "");
        if (cases[i].warns) {
            assert_warns(&cfg, "OTEL_TRACES_EXPORTER");
        } else {
            assert_no_warnings(&cfg);
        }
        taskspan__config_free(&cfg);
    }
}

static void test_protocol(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL, ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    assert_false(cfg.enabled);
    assert_string_equal(cfg.disabled_reason,
                        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: "
                        "taskspan exports http/protobuf; unset it or set "
                        "http/protobuf");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_PROTOCOL");
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL, ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"));
    assert_false(cfg.enabled);
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL, ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf"));
    assert_true(cfg.enabled);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* The TRACES_ variant wins, either way. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"));
    assert_true(cfg.enabled);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"));
    assert_false(cfg.enabled);
    assert_non_null(strstr(cfg.disabled_reason,
                           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"));
    taskspan__config_free(&cfg);
}

/* ---- the endpoint ------------------------------------------------------- */

static void endpoint_case(const char *const *env, const char *expected)
{
    taskspan__export_config cfg;

    load_ok(&cfg, NULL, env);
    assert_true(cfg.enabled);
    assert_string_equal(cfg.endpoint, expected);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);
}

/* The spec's examples and the slash normalisation of otlp-facts.md. */
static void test_endpoint_base(void **state)
{
    static const char *const cases[][2] = {
        {"http://c:4318", "http://c:4318/v1/traces"},
        {"http://c:4318/", "http://c:4318/v1/traces"},
        {"http://c:4318//", "http://c:4318/v1/traces"},
        {"http://collector:4318/mycollector/",
         "http://collector:4318/mycollector/v1/traces"},
        {"http://c:4318/my", "http://c:4318/my/v1/traces"},
        {"https://c", "https://c/v1/traces"},
        {"HTTPS://c:443/a/b/", "HTTPS://c:443/a/b/v1/traces"},
        {"http://c:4318/p?x=1", "http://c:4318/p/v1/traces?x=1"},
        {"http://u:p@c:4318", "http://u:p@c:4318/v1/traces"},
        {"http://[::1]:4318/", "http://[::1]:4318/v1/traces"},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        endpoint_case(ENV("OTEL_EXPORTER_OTLP_ENDPOINT", cases[i][0]),
                      cases[i][1]);
    }
}

static void test_endpoint_traces(void **state)
{
    static const char *const cases[][2] = {
        {"http://collector:4318", "http://collector:4318/"},
        {"http://c:4318/", "http://c:4318/"},
        {"http://c:4318/custom/path", "http://c:4318/custom/path"},
        {"http://c:4318/v1/traces/", "http://c:4318/v1/traces/"},
        {"http://c:4318?x=1", "http://c:4318/?x=1"},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        endpoint_case(ENV("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", cases[i][0]),
                      cases[i][1]);
    }
    /* It wins over the generic variable. */
    endpoint_case(ENV("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1",
                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/x"),
                  "http://b:2/x");
}

/* A malformed URL turns export off rather than send to localhost. */
static void test_endpoint_malformed_env(void **state)
{
    static const char *const bad[] = {
        "collector:4318", "ftp://c:21",    "http://",  "http://:4318",
        "http:///path",   "http://c :1",   "//c:4318", "localhost",
        "http://u@",      "https://c\n/x",
    };
    static const char *const names[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"};
    (void)state;

    for (size_t n = 0; n < ARRAY_LEN(names); n++) {
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            taskspan__export_config cfg;
            load_ok(&cfg, NULL, ENV(names[n], bad[i]));
            assert_false(cfg.enabled);
            assert_non_null(strstr(cfg.disabled_reason, names[n]));
            assert_warns(&cfg, names[n]);
            assert_int_equal(count_lines(cfg.warnings), 1);
            assert_string_not_equal(cfg.endpoint,
                                    "http://localhost:4318/v1/traces");
            taskspan__config_free(&cfg);
        }
    }
    /* A bad TRACES_ URL is not saved by a good generic one. */
    taskspan__export_config cfg;
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "b:2"));
    assert_false(cfg.enabled);
    assert_non_null(
        strstr(cfg.disabled_reason, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    taskspan__config_free(&cfg);
}

static void test_endpoint_option(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan__export_config cfg;
    (void)state;

    /* Used as is: no path added, and it wins over both variables. */
    o.endpoint = "http://opt:4318";
    load_ok(&cfg, &o,
            ENV("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/x"));
    assert_string_equal(cfg.endpoint, "http://opt:4318");
    assert_true(cfg.enabled);
    taskspan__config_free(&cfg);

    /* An option wins over a malformed variable too. */
    o.endpoint = "https://opt/v1/traces";
    load_ok(&cfg, &o, ENV("OTEL_EXPORTER_OTLP_ENDPOINT", "junk"));
    assert_string_equal(cfg.endpoint, "https://opt/v1/traces");
    assert_true(cfg.enabled);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);
}

static void test_endpoint_option_errors(void **state)
{
    static const char *const bad[] = {
        "", "opt:4318", "ftp://opt", "http://", "http://:1", "http://a b",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        taskspan_options o = TASKSPAN_OPTIONS_INIT;
        o.endpoint = bad[i];
        load_fails(&o, NO_ENV, "endpoint");
    }
}

/* ---- headers ------------------------------------------------------------ */

static void test_headers(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_HEADERS",
                " api-key = secret , X-Team=a%20b%2Cc%3Dd ,x=y=z,e=,"));
    assert_int_equal(cfg.n_headers, 4);
    assert_header(&cfg, 0, "api-key: secret");
    assert_header(&cfg, 1, "X-Team: a b,c=d");
    assert_header(&cfg, 2, "x: y=z");
    assert_header(&cfg, 3, "e: ");
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* '+' is not a space in percent-encoding; %25 is '%'. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Basic%20dXNlcjpwYXNz,p=1+1%25"));
    assert_int_equal(cfg.n_headers, 2);
    assert_header(&cfg, 0, "Authorization: Basic dXNlcjpwYXNz");
    assert_header(&cfg, 1, "p: 1+1%");
    taskspan__config_free(&cfg);
}

/* The TRACES_ variable is read last and replaces same-named keys. */
static void test_headers_traces_override(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2,a=3",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "B=20,c=30"));
    assert_int_equal(cfg.n_headers, 3);
    assert_header(&cfg, 0, "a: 3");
    assert_header(&cfg, 1, "B: 20");
    assert_header(&cfg, 2, "c: 30");
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* A malformed TRACES_ variable is ignored; the generic one stays. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_HEADERS", "a=1",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=2,broken"));
    assert_int_equal(cfg.n_headers, 1);
    assert_header(&cfg, 0, "a: 1");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
    taskspan__config_free(&cfg);
}

/* One bad entry discards the whole variable, and the warning does not
 * print the value (it may hold a token). */
static void test_headers_malformed(void **state)
{
    static const char *const bad[] = {
        "good=1,noequals",         /* no '=' */
        "good=1,=value",           /* empty key */
        "good=1, =value",          /* blank key */
        "good=1,k=%zz",            /* bad escape */
        "good=1,k=50%",            /* truncated escape */
        "good=1,k=%4",             /* truncated escape */
        "good=1,k=%00",            /* NUL */
        "good=1,bad key=v",        /* not a token */
        "good=1,k:x=v",            /* not a token */
        "good=1,k=line%0D%0AX: y", /* CR LF: header injection */
        "good=1,k=a%0Ab",          /* LF */
        "good=1,k=a%7Fb",          /* DEL */
    };
    static const char *const names[] = {"OTEL_EXPORTER_OTLP_HEADERS",
                                        "OTEL_EXPORTER_OTLP_TRACES_HEADERS"};
    (void)state;

    for (size_t n = 0; n < ARRAY_LEN(names); n++) {
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            taskspan__export_config cfg;
            load_ok(&cfg, NULL, ENV(names[n], bad[i]));
            if (cfg.n_headers != 0) {
                print_error("'%s' gave %zu headers\n", bad[i], cfg.n_headers);
                fail();
            }
            assert_warns(&cfg, names[n]);
            assert_null(strstr(cfg.warnings, "good"));
            assert_true(cfg.enabled);
            taskspan__config_free(&cfg);
        }
    }
}

/* ---- numbers ------------------------------------------------------------ */

/* Load one variable and return the config; the caller frees it. */
static void load_one(taskspan__export_config *cfg, const char *name,
                     const char *value)
{
    load_ok(cfg, NULL, ENV(name, value));
}

static void test_timeout(void **state)
{
    taskspan__export_config cfg;
    static const char *const bad[] = {"-1",          "10s",  "1.5", "abc",
                                      "99999999999", "0x10", " "};
    (void)state;

    load_one(&cfg, "OTEL_EXPORTER_OTLP_TIMEOUT", "2500");
    assert_int_equal(cfg.timeout_ms, 2500);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* 0 means no limit, and is kept as 0. */
    load_one(&cfg, "OTEL_EXPORTER_OTLP_TIMEOUT", "0");
    assert_int_equal(cfg.timeout_ms, 0);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_one(&cfg, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", " 700 ");
    assert_int_equal(cfg.timeout_ms, 700);
    taskspan__config_free(&cfg);

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        load_one(&cfg, "OTEL_EXPORTER_OTLP_TIMEOUT", bad[i]);
        assert_int_equal(cfg.timeout_ms, 10000);
        assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TIMEOUT");
        assert_non_null(strstr(cfg.warnings, "using 10000"));
        taskspan__config_free(&cfg);
    }
}

/* The TRACES_ variant wins; when it is bad, the generic value is used and
 * the warning says so. */
static void test_timeout_precedence(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TIMEOUT", "1000",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000"));
    assert_int_equal(cfg.timeout_ms, 2000);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TIMEOUT", "1000",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"));
    assert_int_equal(cfg.timeout_ms, 1000);
    assert_string_equal(cfg.warnings,
                        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='soon' is not a "
                        "number of milliseconds (0 or more); using 1000");
    taskspan__config_free(&cfg);

    /* A bad generic value that the TRACES_ one overrides is not read. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TIMEOUT", "never",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000"));
    assert_int_equal(cfg.timeout_ms, 3000);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TIMEOUT", "never",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-5"));
    assert_int_equal(cfg.timeout_ms, 10000);
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TIMEOUT");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
    assert_int_equal(count_lines(cfg.warnings), 2);
    taskspan__config_free(&cfg);
}

static void test_compression(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_one(&cfg, "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
    assert_true(cfg.gzip);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_one(&cfg, "OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP");
    assert_true(cfg.gzip);
    taskspan__config_free(&cfg);

    load_one(&cfg, "OTEL_EXPORTER_OTLP_COMPRESSION", "none");
    assert_false(cfg.gzip);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_one(&cfg, "OTEL_EXPORTER_OTLP_COMPRESSION", "zstd");
    assert_false(cfg.gzip);
    assert_string_equal(cfg.warnings,
                        "OTEL_EXPORTER_OTLP_COMPRESSION='zstd' is not gzip "
                        "or none; using none");
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"));
    assert_false(cfg.gzip);
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"));
    assert_true(cfg.gzip);
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION");
    assert_non_null(strstr(cfg.warnings, "using gzip"));
    taskspan__config_free(&cfg);
}

static void test_bsp(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_BSP_SCHEDULE_DELAY", "250", "OTEL_BSP_EXPORT_TIMEOUT",
                "0", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1",
                "OTEL_BSP_MAX_QUEUE_SIZE", "1"));
    assert_int_equal(cfg.schedule_delay_ms, 250);
    assert_int_equal(cfg.export_timeout_ms, 0);
    assert_int_equal(cfg.max_batch_spans, 1);
    assert_no_warnings(&cfg); /* MAX_QUEUE_SIZE is ignored, not checked */
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_BSP_SCHEDULE_DELAY", "soon", "OTEL_BSP_EXPORT_TIMEOUT",
                "-1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0",
                "OTEL_BSP_MAX_QUEUE_SIZE", "garbage"));
    assert_int_equal(cfg.schedule_delay_ms, 5000);
    assert_int_equal(cfg.export_timeout_ms, 30000);
    assert_int_equal(cfg.max_batch_spans, 512);
    assert_warns(&cfg, "OTEL_BSP_SCHEDULE_DELAY");
    assert_warns(&cfg, "OTEL_BSP_EXPORT_TIMEOUT");
    assert_warns(&cfg, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
    assert_int_equal(count_lines(cfg.warnings), 3);
    assert_non_null(strstr(cfg.warnings,
                           "OTEL_BSP_SCHEDULE_DELAY='soon' is not a number "
                           "of milliseconds (0 or more); using 5000"));
    taskspan__config_free(&cfg);

    load_one(&cfg, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048");
    assert_int_equal(cfg.max_batch_spans, 2048);
    taskspan__config_free(&cfg);
}

static void test_max_request_bytes(void **state)
{
    taskspan__export_config cfg;
    static const char *const bad[] = {"65535", "0", "-1", "1MiB", "67108865"};
    (void)state;

    load_one(&cfg, "TASKSPAN_MAX_REQUEST_BYTES", "65536");
    assert_int_equal(cfg.max_request_bytes, 65536);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    load_one(&cfg, "TASKSPAN_MAX_REQUEST_BYTES", "67108864");
    assert_int_equal(cfg.max_request_bytes, 67108864);
    taskspan__config_free(&cfg);

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        load_one(&cfg, "TASKSPAN_MAX_REQUEST_BYTES", bad[i]);
        assert_int_equal(cfg.max_request_bytes, 4 * 1024 * 1024);
        assert_warns(&cfg, "TASKSPAN_MAX_REQUEST_BYTES");
        taskspan__config_free(&cfg);
    }
}

static void test_close_timeout(void **state)
{
    static const int cases[][2] = {
        {0, 5000}, {1234, 1234}, {-1, 0}, {-5000, 0}, {1, 1}};
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        taskspan_options o = TASKSPAN_OPTIONS_INIT;
        taskspan__export_config cfg;
        o.close_timeout_ms = cases[i][0];
        load_ok(&cfg, &o, NO_ENV);
        assert_int_equal(cfg.close_timeout_ms, cases[i][1]);
        taskspan__config_free(&cfg);
    }
}

static void test_limits(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_ATTRIBUTE_COUNT_LIMIT", "10",
                "OTEL_SPAN_EVENT_COUNT_LIMIT", "100",
                "OTEL_SPAN_LINK_COUNT_LIMIT", "3",
                "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "4",
                "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "0",
                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256"));
    assert_int_equal(cfg.limits.span_attrs, 10);
    assert_int_equal(cfg.limits.span_events, 100);
    assert_int_equal(cfg.limits.span_links, 3);
    assert_int_equal(cfg.limits.event_attrs, 4);
    assert_int_equal(cfg.limits.link_attrs, 0);
    assert_int_equal(cfg.limits.value_len, 256);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* The span-specific variables win over the general ones. */
    load_ok(&cfg, NULL,
            ENV("OTEL_ATTRIBUTE_COUNT_LIMIT", "10",
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "20",
                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256",
                "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "512"));
    assert_int_equal(cfg.limits.span_attrs, 20);
    assert_int_equal(cfg.limits.value_len, 512);
    taskspan__config_free(&cfg);
}

static void test_limits_malformed(void **state)
{
    static const char *const names[] = {
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "OTEL_SPAN_LINK_COUNT_LIMIT",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        taskspan__export_config cfg;
        load_one(&cfg, names[i], "-3");
        assert_warns(&cfg, names[i]);
        assert_int_equal(count_lines(cfg.warnings), 1);
        assert_int_equal(cfg.limits.span_attrs, 128);
        assert_int_equal(cfg.limits.span_events, 32768);
        assert_int_equal(cfg.limits.span_links, 128);
        assert_int_equal(cfg.limits.event_attrs, 128);
        assert_int_equal(cfg.limits.link_attrs, 128);
        assert_true(cfg.limits.value_len == SIZE_MAX);
        taskspan__config_free(&cfg);
    }
    taskspan__export_config cfg;
    load_one(&cfg, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "long");
    assert_non_null(strstr(cfg.warnings, "using no limit"));
    taskspan__config_free(&cfg);
}

/* ---- certificate files -------------------------------------------------- */

static void test_cert_paths(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_CERTIFICATE", "/dev/null",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/dev/null",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY", "/"));
    assert_string_equal(cfg.ca_file, "/dev/null");
    assert_string_equal(cfg.client_cert, "/dev/null");
    assert_string_equal(cfg.client_key, "/");
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);

    /* Missing files are kept, with a warning each. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/no/such/ca.pem",
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "/no/such/c.pem", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "/no/such/k.pem"));
    assert_string_equal(cfg.ca_file, "/no/such/ca.pem");
    assert_string_equal(cfg.client_cert, "/no/such/c.pem");
    assert_string_equal(cfg.client_key, "/no/such/k.pem");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE");
    assert_warns(&cfg, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY");
    assert_int_equal(count_lines(cfg.warnings), 3);
    taskspan__config_free(&cfg);

    /* The TRACES_ variants win. */
    load_ok(&cfg, NULL,
            ENV("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/generic",
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/dev/null",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY", "/dev/null"));
    assert_string_equal(cfg.ca_file, "/dev/null");
    assert_string_equal(cfg.client_key, "/dev/null");
    assert_null(cfg.client_cert);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);
}

/* ---- the resource ------------------------------------------------------- */

static void test_resource_attributes(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_RESOURCE_ATTRIBUTES",
                " deployment.environment = prod ,team=a%2Cb%3Dc,"
                "k%3Dey=v,empty=,dup=1,dup=2,"));
    assert_res_str(&cfg, "deployment.environment", "prod");
    assert_res_str(&cfg, "team", "a,b=c");
    assert_res_str(&cfg, "k=ey", "v");
    assert_res_str(&cfg, "empty", "");
    assert_res_str(&cfg, "dup", "2");
    assert_keys_unique(&cfg);
    assert_no_warnings(&cfg);
    taskspan__config_free(&cfg);
}

static void test_resource_malformed(void **state)
{
    static const char *const bad[] = {
        "a=1,b", "a=1,=2", "a=1,b=%zz", "a=1,b=%2", "a=1,%zz=2", "a=1,b=%00",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        taskspan__export_config cfg;
        load_ok(&cfg, NULL,
                ENV("OTEL_RESOURCE_ATTRIBUTES", bad[i], "OTEL_SERVICE_NAME",
                    "svc"));
        /* The whole variable is discarded, its good entries too. */
        assert_null(res_find(&cfg, "a"));
        assert_warns(&cfg, "OTEL_RESOURCE_ATTRIBUTES");
        assert_non_null(strstr(cfg.warnings, bad[i]));
        assert_res_str(&cfg, "service.name", "svc");
        assert_res_str(&cfg, "telemetry.sdk.name", "taskspan");
        taskspan__config_free(&cfg);
    }
}

/* service.name: option, else OTEL_SERVICE_NAME, else the resource
 * attributes, else unknown_service:<exe>; always exactly once. */
static void test_service_name_precedence(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan__export_config cfg;
    (void)state;

    o.service_name = "from-option";
    load_ok(&cfg, &o,
            ENV("OTEL_SERVICE_NAME", "from-env", "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs"));
    assert_res_str(&cfg, "service.name", "from-option");
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_SERVICE_NAME", "from-env", "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs"));
    assert_res_str(&cfg, "service.name", "from-env");
    taskspan__config_free(&cfg);

    load_ok(&cfg, NULL,
            ENV("OTEL_RESOURCE_ATTRIBUTES", "service.name=from%20attrs"));
    assert_res_str(&cfg, "service.name", "from attrs");
    taskspan__config_free(&cfg);

    /* An empty service.name is no name. */
    load_ok(&cfg, NULL, ENV("OTEL_RESOURCE_ATTRIBUTES", "service.name="));
    assert_non_null(
        strstr(res_find(&cfg, "service.name")->value.s, "unknown_service:"));
    taskspan__config_free(&cfg);

    o.service_name = NULL;
    load_ok(&cfg, &o, NO_ENV);
    assert_non_null(strstr(res_find(&cfg, "service.name")->value.s,
                           "unknown_service:test_config"));
    taskspan__config_free(&cfg);
}

/* telemetry.sdk.* describe this library: the environment cannot change
 * them. Detected attributes are defaults the environment may correct. */
static void test_resource_precedence(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_RESOURCE_ATTRIBUTES",
                "telemetry.sdk.name=other,telemetry.sdk.language=go,"
                "telemetry.sdk.version=9,host.name=node-7,"
                "process.executable.name=runner"));
    assert_res_str(&cfg, "telemetry.sdk.name", "taskspan");
    assert_res_str(&cfg, "telemetry.sdk.language", "c");
    assert_res_str(&cfg, "telemetry.sdk.version", taskspan_version());
    assert_res_str(&cfg, "host.name", "node-7");
    assert_res_str(&cfg, "process.executable.name", "runner");
    assert_keys_unique(&cfg);
    taskspan__config_free(&cfg);
}

/* ---- warnings ----------------------------------------------------------- */

static void test_warning_quotes_value_truncated(void **state)
{
    char value[201];
    char expected[80];
    taskspan__export_config cfg;
    (void)state;

    memset(value, 'x', 200);
    value[200] = '\0';
    load_one(&cfg, "OTEL_BSP_SCHEDULE_DELAY", value);
    /* 60 characters of the value, then "...". */
    snprintf(expected, sizeof expected, "='%.60s...' ", value);
    assert_non_null(strstr(cfg.warnings, expected));
    assert_null(strstr(cfg.warnings, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                     "xxxxxxxxxxxxxxxxxxxxxxxxx'"));
    taskspan__config_free(&cfg);

    /* Control characters cannot split a warning into lines. */
    load_one(&cfg, "OTEL_BSP_SCHEDULE_DELAY", "1\n2\r3");
    assert_int_equal(count_lines(cfg.warnings), 1);
    assert_non_null(strstr(cfg.warnings, "'1?2?3'"));
    taskspan__config_free(&cfg);

    /* A cut never splits a UTF-8 character: after "a", each "\xc3\xa9"
     * starts at an odd offset, so byte 60 is the middle of one. */
    char utf8[82] = "a";
    for (size_t i = 0; i < 40; i++) {
        memcpy(utf8 + 1 + 2 * i, "\xc3\xa9", 2);
    }
    utf8[81] = '\0';
    load_one(&cfg, "OTEL_BSP_SCHEDULE_DELAY", utf8);
    const char *q = strchr(cfg.warnings, '\'');
    assert_non_null(q);
    const char *dots = strstr(q, "...'");
    assert_non_null(dots);
    assert_int_equal(dots - q - 1, 59);
    taskspan__config_free(&cfg);
}

static void test_warnings_bounded(void **state)
{
    static const char *const names[] = {
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "TASKSPAN_MAX_REQUEST_BYTES",
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "OTEL_SPAN_LINK_COUNT_LIMIT",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SDK_DISABLED",
        "OTEL_RESOURCE_ATTRIBUTES",
    };
    const char *env[2 * ARRAY_LEN(names) + 1];
    char value[4096];
    taskspan__export_config cfg;
    (void)state;

    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        env[2 * i] = names[i];
        env[2 * i + 1] = value;
    }
    env[2 * ARRAY_LEN(names)] = NULL;
    load_ok(&cfg, NULL, env);
    size_t len = strnlen(cfg.warnings, sizeof cfg.warnings);
    assert_true(len < sizeof cfg.warnings);
    assert_true(len > sizeof cfg.warnings / 2);
    assert_string_equal(cfg.warnings + len - 3, "...");
    assert_warns(&cfg, "OTEL_SDK_DISABLED");
    taskspan__config_free(&cfg);
}

static void test_config_file_unsupported(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    load_ok(&cfg, NULL,
            ENV("OTEL_CONFIG_FILE", "/etc/otel.yaml",
                "OTEL_EXPORTER_OTLP_TIMEOUT", "42"));
    assert_warns(&cfg, "OTEL_CONFIG_FILE");
    assert_int_equal(cfg.timeout_ms, 42);
    assert_true(cfg.enabled);
    taskspan__config_free(&cfg);
}

/* ---- options ------------------------------------------------------------ */

static void test_option_errors(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    (void)state;

    o.version = 0;
    load_fails(&o, NO_ENV, "version");
    o.version = TASKSPAN_OPTIONS_VERSION + 1;
    load_fails(&o, NO_ENV, "version");
    o.version = TASKSPAN_OPTIONS_VERSION;
    o.export_mode = (taskspan_export_mode)7;
    load_fails(&o, NO_ENV, "export_mode");
    o.export_mode = TASKSPAN_EXPORT_AUTO;
    o.service_name = "";
    load_fails(&o, NO_ENV, "service_name");

    /* No error text is needed. */
    taskspan__export_config cfg;
    assert_int_equal(
        taskspan__config_load(&cfg, &o, fake_getenv, NULL, NULL, 0),
        TASKSPAN_E_INVALID_ARG);
    assert_int_equal(
        taskspan__config_load(NULL, NULL, fake_getenv, NULL, NULL, 0),
        TASKSPAN_E_INVALID_ARG);
}

/* A version 1 struct has no export fields: whatever follows flags in
 * memory must not be read. */
static void test_options_v1(void **state)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan__export_config cfg;
    (void)state;

    o.version = 1;
    o.export_mode = (taskspan_export_mode)99;
    o.endpoint = "not a url";
    o.service_name = "";
    o.close_timeout_ms = -1;
    load_ok(&cfg, &o, ENV("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:1"));
    assert_true(cfg.enabled);
    assert_string_equal(cfg.endpoint, "http://env:1/v1/traces");
    assert_int_equal(cfg.close_timeout_ms, 5000);
    assert_non_null(
        strstr(res_find(&cfg, "service.name")->value.s, "unknown_service"));
    taskspan__config_free(&cfg);
}

static void test_config_free(void **state)
{
    taskspan__export_config cfg;
    (void)state;

    taskspan__config_free(NULL);
    load_ok(&cfg, NULL, ENV("OTEL_EXPORTER_OTLP_HEADERS", "a=1"));
    taskspan__config_free(&cfg);
    assert_null(cfg.endpoint);
    assert_null(cfg.headers);
    assert_int_equal(cfg.resource.n, 0);
    taskspan__config_free(&cfg); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_real_getenv),
        cmocka_unit_test(test_empty_values_are_unset),
        cmocka_unit_test(test_export_mode_off),
        cmocka_unit_test(test_export_mode_on),
        cmocka_unit_test(test_sdk_disabled),
        cmocka_unit_test(test_traces_exporter),
        cmocka_unit_test(test_protocol),
        cmocka_unit_test(test_endpoint_base),
        cmocka_unit_test(test_endpoint_traces),
        cmocka_unit_test(test_endpoint_malformed_env),
        cmocka_unit_test(test_endpoint_option),
        cmocka_unit_test(test_endpoint_option_errors),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_headers_traces_override),
        cmocka_unit_test(test_headers_malformed),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_timeout_precedence),
        cmocka_unit_test(test_compression),
        cmocka_unit_test(test_bsp),
        cmocka_unit_test(test_max_request_bytes),
        cmocka_unit_test(test_close_timeout),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_malformed),
        cmocka_unit_test(test_cert_paths),
        cmocka_unit_test(test_resource_attributes),
        cmocka_unit_test(test_resource_malformed),
        cmocka_unit_test(test_service_name_precedence),
        cmocka_unit_test(test_resource_precedence),
        cmocka_unit_test(test_warning_quotes_value_truncated),
        cmocka_unit_test(test_warnings_bounded),
        cmocka_unit_test(test_config_file_unsupported),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_options_v1),
        cmocka_unit_test(test_config_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
