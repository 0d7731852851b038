/* SPDX-License-Identifier: MIT */
/*
 * test_config.c: weftd's command line and naming rules through the public
 * header server/srv.h: srv_config_init() defaults, srv_config_parse() for every
 * flag in both the `--flag value` and `--flag=value` forms, its refusals (unknown
 * flag, missing value, non-numeric and out-of-range numbers, bad --listen) with a
 * one-line reason, --help, srv_config_usage(), srv_docname_valid() for every
 * character class and the length limit, and srv_strerror() for every code.
 * Pure unit tests: no server is started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses a NULL-terminated argument list (argv[0] is added) into a fresh
 * default config. Returns srv_config_parse()'s result; err receives the reason. */
static int parse(srv_config_t *cfg, char *err, size_t errlen, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"weftd";
    for (size_t i = 0; args[i] != NULL; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    srv_config_init(cfg);
    err[0] = '\0';
    return srv_config_parse(cfg, argc, argv, err, errlen);
}

/* Expects SRV_EUSAGE with a non-empty one-line reason that names `mention`. */
static void expect_usage_error(const char *const *args, const char *mention)
{
    srv_config_t cfg;
    char err[256];
    int rc = parse(&cfg, err, sizeof err, args);
    if (rc != SRV_EUSAGE)
        fail_msg("weftd %s %s: returned %d, want SRV_EUSAGE", args[0], args[1] ? args[1] : "", rc);
    if (err[0] == '\0')
        fail_msg("weftd %s: no reason in err", args[0]);
    if (strchr(err, '\n') != NULL)
        fail_msg("weftd %s: the reason is not one line: \"%s\"", args[0], err);
    if (mention != NULL && strstr(err, mention) == NULL)
        fail_msg("weftd %s: the reason \"%s\" does not mention \"%s\"", args[0], err, mention);
}

static void test_srv_config_init_defaults(void **state)
{
    (void)state;
    srv_config_t cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    srv_config_init(&cfg);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.data_dir, "./data");
    assert_non_null(cfg.web_root);
    assert_int_equal(cfg.max_message, 1u << 20);
    assert_int_equal(cfg.max_queued, 8u << 20);
    assert_int_equal(cfg.ping_interval, 20);
    assert_int_equal(cfg.ping_timeout, 10);
    assert_int_equal(cfg.unload_after, 30);
    assert_int_equal(cfg.snapshot_every, 1000);
    assert_int_equal(cfg.snapshot_log_percent, 100);
    assert_int_equal(cfg.map_size_mb, 64);
}

static void test_srv_config_parse_no_arguments_keeps_defaults(void **state)
{
    (void)state;
    srv_config_t cfg, def;
    char err[128];
    static const char *const none[] = {NULL};
    assert_int_equal(parse(&cfg, err, sizeof err, none), 0);
    srv_config_init(&def);
    assert_string_equal(cfg.listen_host, def.listen_host);
    assert_int_equal(cfg.listen_port, def.listen_port);
    assert_int_equal(cfg.max_message, def.max_message);
    assert_int_equal(cfg.unload_after, def.unload_after);
}

/* Every flag, first as `--flag value`, then as `--flag=value`. */
static void check_every_flag(int equals_form)
{
    static const char *const pairs[][2] = {
        {"--listen", "0.0.0.0:9090"},      {"--data", "/var/lib/weft"},
        {"--web-root", "/srv/demo"},       {"--max-message", "4096"},
        {"--max-queued", "65536"},         {"--ping-interval", "3"},
        {"--ping-timeout", "4"},           {"--unload-after", "0"},
        {"--snapshot-every", "7"},         {"--map-size", "128"},
        {"--snapshot-log-percent", "250"},
    };
    size_t n = sizeof pairs / sizeof pairs[0];
    char joined[16][64];
    const char *args[32];
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        if (equals_form) {
            snprintf(joined[i], sizeof joined[i], "%s=%s", pairs[i][0], pairs[i][1]);
            args[a++] = joined[i];
        } else {
            args[a++] = pairs[i][0];
            args[a++] = pairs[i][1];
        }
    }
    args[a] = NULL;
    srv_config_t cfg;
    char err[256];
    int rc = parse(&cfg, err, sizeof err, args);
    if (rc != 0)
        fail_msg("%s form: %d (%s)", equals_form ? "--flag=value" : "--flag value", rc, err);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 9090);
    assert_string_equal(cfg.data_dir, "/var/lib/weft");
    assert_string_equal(cfg.web_root, "/srv/demo");
    assert_int_equal(cfg.max_message, 4096);
    assert_int_equal(cfg.max_queued, 65536);
    assert_int_equal(cfg.ping_interval, 3);
    assert_int_equal(cfg.ping_timeout, 4);
    assert_int_equal(cfg.unload_after, 0);
    assert_int_equal(cfg.snapshot_every, 7);
    assert_int_equal(cfg.snapshot_log_percent, 250);
    assert_int_equal(cfg.map_size_mb, 128);
}

static void test_srv_config_parse_every_flag_space_form(void **state)
{
    (void)state;
    check_every_flag(0);
}

static void test_srv_config_parse_every_flag_equals_form(void **state)
{
    (void)state;
    check_every_flag(1);
}

static void test_srv_config_parse_later_flag_wins(void **state)
{
    (void)state;
    static const char *const args[] = {"--ping-interval", "5", "--ping-interval=6", NULL};
    srv_config_t cfg;
    char err[128];
    assert_int_equal(parse(&cfg, err, sizeof err, args), 0);
    assert_int_equal(cfg.ping_interval, 6);
}

static void test_srv_config_parse_help_returns_1(void **state)
{
    (void)state;
    static const char *const h[] = {"-h", NULL};
    static const char *const help[] = {"--help", NULL};
    static const char *const late[] = {"--ping-interval", "3", "--help", NULL};
    /* --help wins even over a bad flag before it is reached. */
    static const char *const before_bad[] = {"--help", "--no-such-flag", NULL};
    srv_config_t cfg;
    char err[128];
    assert_int_equal(parse(&cfg, err, sizeof err, h), 1);
    assert_int_equal(parse(&cfg, err, sizeof err, help), 1);
    assert_int_equal(parse(&cfg, err, sizeof err, late), 1);
    assert_int_equal(parse(&cfg, err, sizeof err, before_bad), 1);
}

/* Every flag that takes a value. */
static const char *const value_flags[] = {"--listen",
                                          "--data",
                                          "--web-root",
                                          "--max-message",
                                          "--max-queued",
                                          "--ping-interval",
                                          "--ping-timeout",
                                          "--unload-after",
                                          "--snapshot-every",
                                          "--map-size",
                                          "--snapshot-log-percent"};

static void test_srv_config_usage_lists_every_flag(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    srv_config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof value_flags / sizeof value_flags[0]; i++)
        if (strstr(text, value_flags[i]) == NULL)
            fail_msg("--help does not mention %s", value_flags[i]);
    if (strstr(text, "--help") == NULL)
        fail_msg("--help does not mention --help");
    free(text);
}

static void test_srv_config_parse_unknown_flag(void **state)
{
    (void)state;
    static const char *const unknown[] = {"--no-such-flag", "1", NULL};
    static const char *const unknown_eq[] = {"--no-such-flag=1", NULL};
    static const char *const positional[] = {"data", NULL};
    static const char *const single_dash[] = {"-x", NULL};
    static const char *const prefix[] = {"--max", "10", NULL};
    expect_usage_error(unknown, "--no-such-flag");
    expect_usage_error(unknown_eq, "--no-such-flag");
    expect_usage_error(positional, "data");
    expect_usage_error(single_dash, "-x");
    expect_usage_error(prefix, "--max");
}

static void test_srv_config_parse_missing_value(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof value_flags / sizeof value_flags[0]; i++) {
        const char *args[] = {value_flags[i], NULL};
        expect_usage_error(args, value_flags[i]);
    }
}

static void test_srv_config_parse_empty_values(void **state)
{
    (void)state;
    static const char *const flags[] = {"--listen=",
                                        "--data=",
                                        "--web-root=",
                                        "--max-message=",
                                        "--max-queued=",
                                        "--ping-interval=",
                                        "--ping-timeout=",
                                        "--unload-after=",
                                        "--snapshot-every=",
                                        "--map-size=",
                                        "--snapshot-log-percent="};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const char *args[] = {flags[i], NULL};
        expect_usage_error(args, NULL);
    }
    static const char *const data_space[] = {"--data", "", NULL};
    expect_usage_error(data_space, "--data");
}

static void test_srv_config_parse_non_numeric(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--max-message",  "--max-queued",     "--ping-interval", "--ping-timeout",
        "--unload-after", "--snapshot-every", "--map-size",      "--snapshot-log-percent"};
    static const char *const values[] = {"abc", "12abc", "-5",  "+5",
                                         " 5",  "5 ",    "1e3", "0x10",
                                         "",    "1.5",   "--1", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        for (size_t j = 0; j < sizeof values / sizeof values[0]; j++) {
            const char *args[] = {flags[i], values[j], NULL};
            expect_usage_error(args, flags[i]);
        }
    }
}

static void test_srv_config_parse_ranges(void **state)
{
    (void)state;
    /* flag, lowest accepted, highest accepted, one below (NULL: none), one above */
    static const char *const r[][5] = {
        {"--max-message", "64", "67108864", "63", "67108865"},
        {"--max-queued", "1024", "17179869184", "1023", "17179869185"},
        {"--ping-interval", "1", "86400", "0", "86401"},
        {"--ping-timeout", "1", "86400", "0", "86401"},
        {"--unload-after", "0", "86400", NULL, "86401"},
        {"--snapshot-every", "1", "1073741824", "0", "1073741825"},
        {"--snapshot-log-percent", "1", "100000", "0", "100001"},
        {"--map-size", "1", "1048576", "0", "1048577"},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        for (int k = 1; k <= 2; k++) {
            const char *args[] = {r[i][0], r[i][k], NULL};
            srv_config_t cfg;
            char err[256];
            int rc = parse(&cfg, err, sizeof err, args);
            if (rc != 0)
                fail_msg("%s %s refused: %s", r[i][0], r[i][k], err);
        }
        for (int k = 3; k <= 4; k++) {
            if (r[i][k] == NULL)
                continue;
            const char *args[] = {r[i][0], r[i][k], NULL};
            expect_usage_error(args, r[i][0]);
        }
    }
    /* The highest values land in the fields unchanged (no truncation). */
    static const char *const highs[] = {"--max-queued",   "17179869184", "--map-size", "1048576",
                                        "--ping-timeout", "86400",       NULL};
    srv_config_t cfg;
    char err[256];
    assert_int_equal(parse(&cfg, err, sizeof err, highs), 0);
    assert_true(cfg.max_queued == (size_t)1 << 34);
    assert_int_equal(cfg.map_size_mb, 1u << 20);
    assert_int_equal(cfg.ping_timeout, 86400);
}

/* The limits of docs/server.md ("Limits"): flag, default, lowest and highest
 * accepted, one below (NULL: none) and one above. */
typedef struct {
    const char *flag;
    unsigned long long def;
    const char *lo, *hi, *below, *above;
} limit_flag_t;

static const limit_flag_t limit_flags[] = {
    {"--max-connections-per-ip", 64, "0", "1048576", NULL, "1048577"},
    {"--max-messages-per-second", 1000, "1", "1000000", "0", "1000001"},
    {"--max-document-bytes", 67108864, "1", "1099511627776", "0", "1099511627777"},
    {"--max-documents", 10000, "1", "16777216", "0", "16777217"},
    {"--max-pending", 10000, "1", "16777216", "0", "16777217"},
    {"--broadcast-pace", 25, "0", "50000", NULL, "50001"},
    {"--commit-spacing", 1000, "0", "100000", NULL, "100001"},
    {"--snapshot-compression", 1, "0", "1", NULL, "2"},
};

/* The field a limit flag sets. */
static unsigned long long limit_value(const srv_config_t *cfg, const char *flag)
{
    if (strcmp(flag, "--max-connections-per-ip") == 0)
        return cfg->max_conns_per_ip;
    if (strcmp(flag, "--max-messages-per-second") == 0)
        return cfg->max_msgs_per_sec;
    if (strcmp(flag, "--max-document-bytes") == 0)
        return cfg->max_doc_bytes;
    if (strcmp(flag, "--max-documents") == 0)
        return cfg->max_documents;
    if (strcmp(flag, "--max-pending") == 0)
        return cfg->max_pending;
    if (strcmp(flag, "--broadcast-pace") == 0)
        return cfg->broadcast_pace_us;
    if (strcmp(flag, "--commit-spacing") == 0)
        return cfg->commit_spacing_us;
    if (strcmp(flag, "--snapshot-compression") == 0)
        return cfg->snapshot_compression;
    fail_msg("no field for %s", flag);
    return 0;
}

static void test_srv_config_parse_limit_flags(void **state)
{
    (void)state;
    srv_config_t cfg;
    char err[256];
    srv_config_init(&cfg);
    for (size_t i = 0; i < sizeof limit_flags / sizeof limit_flags[0]; i++) {
        const limit_flag_t *l = &limit_flags[i];
        if (limit_value(&cfg, l->flag) != l->def)
            fail_msg("%s defaults to %llu, want %llu", l->flag, limit_value(&cfg, l->flag), l->def);
    }
    for (size_t i = 0; i < sizeof limit_flags / sizeof limit_flags[0]; i++) {
        const limit_flag_t *l = &limit_flags[i];
        const char *vals[] = {l->lo, l->hi};
        for (int k = 0; k < 2; k++) {
            char eq[96];
            snprintf(eq, sizeof eq, "%s=%s", l->flag, vals[k]);
            const char *space_form[] = {l->flag, vals[k], NULL};
            const char *eq_form[] = {eq, NULL};
            unsigned long long want = strtoull(vals[k], NULL, 10);
            int rc = parse(&cfg, err, sizeof err, space_form);
            if (rc != 0 || limit_value(&cfg, l->flag) != want)
                fail_msg("%s %s: rc %d (%s), value %llu", l->flag, vals[k], rc, err,
                         limit_value(&cfg, l->flag));
            rc = parse(&cfg, err, sizeof err, eq_form);
            if (rc != 0 || limit_value(&cfg, l->flag) != want)
                fail_msg("%s: rc %d (%s), value %llu", eq, rc, err, limit_value(&cfg, l->flag));
        }
        const char *out_of_range[] = {l->below, l->above};
        for (int k = 0; k < 2; k++) {
            if (out_of_range[k] == NULL)
                continue;
            const char *args[] = {l->flag, out_of_range[k], NULL};
            expect_usage_error(args, l->flag);
        }
        static const char *const junk[] = {
            "", "-1", "abc", "5x", "1e3", "0x10", "99999999999999999999999"};
        for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++) {
            const char *args[] = {l->flag, junk[j], NULL};
            expect_usage_error(args, l->flag);
        }
        const char *missing[] = {l->flag, NULL};
        expect_usage_error(missing, l->flag);
    }
}

static void test_srv_config_usage_lists_limit_flags(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    srv_config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof limit_flags / sizeof limit_flags[0]; i++) {
        char def[48];
        if (strstr(text, limit_flags[i].flag) == NULL)
            fail_msg("--help does not mention %s", limit_flags[i].flag);
        snprintf(def, sizeof def, "default %llu", limit_flags[i].def);
        if (strstr(strstr(text, limit_flags[i].flag), def) == NULL)
            fail_msg("--help does not give %s's default (%s)", limit_flags[i].flag, def);
    }
    free(text);
}

static void test_srv_config_parse_listen(void **state)
{
    (void)state;
    srv_config_t cfg;
    char err[256];
    static const char *const port0[] = {"--listen", "127.0.0.1:0", NULL};
    assert_int_equal(parse(&cfg, err, sizeof err, port0), 0);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 0);
    static const char *const top[] = {"--listen=localhost:65535", NULL};
    assert_int_equal(parse(&cfg, err, sizeof err, top), 0);
    assert_string_equal(cfg.listen_host, "localhost");
    assert_int_equal(cfg.listen_port, 65535);
    /* The last colon separates the port, so a bare IPv6 address works. */
    static const char *const v6[] = {"--listen", "::1:8081", NULL};
    assert_int_equal(parse(&cfg, err, sizeof err, v6), 0);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 8081);
    /* Longest host that fits listen_host. */
    char host[80];
    memset(host, 'h', 63);
    snprintf(host + 63, sizeof host - 63, ":1");
    const char *fits[] = {"--listen", host, NULL};
    assert_int_equal(parse(&cfg, err, sizeof err, fits), 0);
    assert_int_equal(strlen(cfg.listen_host), 63);

    static const char *const bad[] = {"127.0.0.1",
                                      "127.0.0.1:",
                                      ":8080",
                                      "127.0.0.1:70000",
                                      "127.0.0.1:65536",
                                      "127.0.0.1:-1",
                                      "127.0.0.1:http",
                                      "127.0.0.1:80x",
                                      "",
                                      ":"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--listen", bad[i], NULL};
        expect_usage_error(args, "--listen");
    }
    memset(host, 'h', 64);
    snprintf(host + 64, sizeof host - 64, ":1");
    const char *too_long[] = {"--listen", host, NULL};
    expect_usage_error(too_long, "--listen");
}

static void test_srv_config_parse_small_err_buffer(void **state)
{
    (void)state;
    static const char *const args[] = {"--no-such-flag-with-a-long-name", NULL};
    srv_config_t cfg;
    char err[8];
    memset(err, 'x', sizeof err);
    assert_int_equal(parse(&cfg, err, sizeof err, args), SRV_EUSAGE);
    assert_true(memchr(err, '\0', sizeof err) != NULL);
}

static void test_srv_docname_valid_lengths(void **state)
{
    (void)state;
    char name[SRV_MAX_DOCNAME + 2];
    memset(name, 'a', sizeof name);
    assert_int_equal(srv_docname_valid(name, 0), 0);
    assert_int_equal(srv_docname_valid("", 0), 0);
    assert_int_equal(srv_docname_valid(name, 1), 1);
    assert_int_equal(srv_docname_valid(name, SRV_MAX_DOCNAME), 1);
    assert_int_equal(SRV_MAX_DOCNAME, 128);
    assert_int_equal(srv_docname_valid(name, SRV_MAX_DOCNAME + 1), 0);
    /* Only `len` bytes count: a longer buffer is fine, a NUL is not a terminator. */
    assert_int_equal(srv_docname_valid("doc/rest", 3), 1);
}

static void test_srv_docname_valid_characters(void **state)
{
    (void)state;
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._~-";
    assert_int_equal(srv_docname_valid(allowed, strlen(allowed)), 1);
    for (int c = 0; c < 256; c++) {
        char one[3] = {'a', (char)c, 'z'};
        int want = c != 0 && strchr(allowed, c) != NULL;
        if (srv_docname_valid(one, 3) != want)
            fail_msg("byte 0x%02x inside a name: valid=%d, want %d", c, !want, want);
        if (srv_docname_valid(one + 1, 1) != want)
            fail_msg("name of the single byte 0x%02x: valid=%d, want %d", c, !want, want);
    }
    assert_int_equal(srv_docname_valid("a/b", 3), 0);
    assert_int_equal(srv_docname_valid("a%20b", 5), 0);
    assert_int_equal(srv_docname_valid("a b", 3), 0);
    assert_int_equal(srv_docname_valid("a\0b", 3), 0);
    assert_int_equal(srv_docname_valid("\xc3\xa4", 2), 0);
    assert_int_equal(srv_docname_valid("..", 2), 1); /* only a name: never a path */
}

static void test_srv_strerror_every_code(void **state)
{
    (void)state;
    static const int codes[] = {SRV_EUSAGE, SRV_ELISTEN, SRV_ESTORE,
                                SRV_ENOMEM, SRV_ETLS,    SRV_EBUSY};
    const size_t n = sizeof codes / sizeof codes[0];
    const char *seen[sizeof codes / sizeof codes[0]];
    for (size_t i = 0; i < n; i++) {
        const char *s = srv_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, seen[j]);
        seen[i] = s;
    }
    assert_int_equal(SRV_EUSAGE, -300);
    assert_int_equal(SRV_ENOMEM, -303);
    assert_int_equal(SRV_EBUSY, -305);
    assert_string_equal(srv_strerror(0), "success");
    assert_string_equal(srv_strerror(-399), "unknown error");
    assert_string_equal(srv_strerror(-1), "unknown error");
    assert_string_equal(srv_strerror(1), "unknown error");
    assert_non_null(srv_strerror(INT32_MIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_srv_config_init_defaults),
        cmocka_unit_test(test_srv_config_parse_no_arguments_keeps_defaults),
        cmocka_unit_test(test_srv_config_parse_every_flag_space_form),
        cmocka_unit_test(test_srv_config_parse_every_flag_equals_form),
        cmocka_unit_test(test_srv_config_parse_later_flag_wins),
        cmocka_unit_test(test_srv_config_parse_help_returns_1),
        cmocka_unit_test(test_srv_config_usage_lists_every_flag),
        cmocka_unit_test(test_srv_config_parse_unknown_flag),
        cmocka_unit_test(test_srv_config_parse_missing_value),
        cmocka_unit_test(test_srv_config_parse_empty_values),
        cmocka_unit_test(test_srv_config_parse_non_numeric),
        cmocka_unit_test(test_srv_config_parse_ranges),
        cmocka_unit_test(test_srv_config_parse_limit_flags),
        cmocka_unit_test(test_srv_config_usage_lists_limit_flags),
        cmocka_unit_test(test_srv_config_parse_listen),
        cmocka_unit_test(test_srv_config_parse_small_err_buffer),
        cmocka_unit_test(test_srv_docname_valid_lengths),
        cmocka_unit_test(test_srv_docname_valid_characters),
        cmocka_unit_test(test_srv_strerror_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
