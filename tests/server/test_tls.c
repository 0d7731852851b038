/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c: weftd with --tls-cert/--tls-key. Each test makes a self-signed
 * certificate for "localhost" at test time (wt_fixture_new_tls, EC P-256, in
 * the fixture's data directory) and talks to weftd through tests/net's TLS
 * layer, verifying the certificate against that file: wss:// editors converge
 * and are acknowledged; https:// /healthz, /api/docs and /metrics answer; an
 * untrusted certificate is refused by the client; TLS 1.1 is refused and TLS
 * 1.2 accepted; ALPN never selects h2; plain HTTP on the TLS port gets no HTTP
 * answer and the server keeps serving; a lone --tls-cert or --tls-key exits
 * 2; a missing or mismatched key exits 1 with a message; SIGTERM with a wss://
 * editor and a half-open handshake connected exits 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_http.h"
#include "wt_net.h"
#include "wt_tls.h"

#include <openssl/ssl.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT 10000

static int setup(void **state)
{
    wt_fixture_t *fx = wt_fixture_new_tls(0x7150, NULL);
    if (fx == NULL)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    wt_fixture_free(*state);
    return 0;
}

/* GET `path` over TLS with the fixture's client config. */
static int https_get(wt_fixture_t *fx, const char *path, wt_http_resp_t *r)
{
    return wt_http_request_tls(&fx->tls, "127.0.0.1", fx->server.port, "GET", path, NULL, NULL, 0,
                               TIMEOUT, r);
}

/* A TCP connection to the fixture's server and a handshake with `cfg`. Returns
 * wt_tls_connect()'s result; *fd is the socket (close it), *t the session. */
static int tls_dial(wt_fixture_t *fx, const wt_tls_config_t *cfg, int *fd, wt_tls_t **t)
{
    char why[256];
    int rc;
    *t = NULL;
    *fd = wt_tcp_connect("127.0.0.1", fx->server.port, TIMEOUT);
    assert_true(*fd >= 0);
    rc = wt_tls_connect(*fd, cfg, TIMEOUT, t, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "test_tls: handshake failed: %s (%s)\n", wt_strerror(rc), why);
    return rc;
}

static void test_tls_wss_editors_converge_and_are_acked(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "tls-doc", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "tls-doc", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(a->ws.tls);
    assert_true(wt_tls_version(a->ws.tls) >= TLS1_2_VERSION);

    assert_int_equal(wt_editor_insert(a, 0, "hello", NULL), 0);
    assert_int_equal(wt_editor_insert(b, 0, "[b]", NULL), 0);
    assert_int_equal(wt_editor_insert(a, 5, " world", NULL), 0);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_acked(b, TIMEOUT), 0);
    char *ta = wt_editor_text(a);
    assert_non_null(strstr(ta, "hello world"));
    assert_non_null(strstr(ta, "[b]"));
    free(ta);

    /* A large message crosses several TLS records. */
    char big[60000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(wt_editor_insert(b, 0, big, NULL), 0);
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(wt_editor_close(a, TIMEOUT), 0);
}

static void test_tls_https_healthz_api_docs_metrics(void **state)
{
    wt_fixture_t *fx = *state;
    wt_http_resp_t r;
    assert_int_equal(https_get(fx, "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body.data, "ok"));
    wt_http_resp_dispose(&r);

    assert_int_equal(https_get(fx, "/api/docs/never-written", &r), 0);
    assert_int_equal(r.status, 404);
    wt_http_resp_dispose(&r);

    wt_editor_t *a = wt_fixture_editor(fx, "written", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "over tls", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    assert_int_equal(https_get(fx, "/api/docs/written", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body.data, "\"text\":\"over tls\""));
    wt_http_resp_dispose(&r);

    char *m = wt_fixture_metrics(fx);
    assert_non_null(m);
    double v = 0;
    assert_int_equal(wt_metric(m, "weft_connections", &v), 1);
    assert_true(v >= 1);
    free(m);
}

static void test_tls_untrusted_certificate_refused_by_client(void **state)
{
    wt_fixture_t *fx = *state;
    char other_cert[700], other_key[700];
    snprintf(other_cert, sizeof other_cert, "%s/other-cert.pem", fx->server.data_dir);
    snprintf(other_key, sizeof other_key, "%s/other-key.pem", fx->server.data_dir);
    assert_int_equal(wt_tls_make_cert(other_cert, other_key, "localhost"), 0);

    wt_tls_config_t cfg;
    wt_tls_t *t;
    int fd;
    /* Trusting another certificate: verification fails. */
    wt_tls_config_init(&cfg, other_cert);
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), WT_ETLS);
    close(fd);
    /* The right certificate under another name: fails too. */
    wt_tls_config_init(&cfg, fx->tls_cert);
    cfg.server_name = "weft.example";
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), WT_ETLS);
    close(fd);
    /* And the real thing works. */
    wt_tls_config_init(&cfg, fx->tls_cert);
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), 0);
    wt_tls_free(t);
    close(fd);
}

static void test_tls_tls11_refused_tls12_accepted(void **state)
{
    wt_fixture_t *fx = *state;
    wt_tls_config_t cfg;
    wt_tls_t *t;
    int fd;

    /* A client that can only speak TLS 1.1 (security level 0 so that it
     * really offers it): the server refuses the handshake. */
    wt_tls_config_init(&cfg, fx->tls_cert);
    cfg.legacy = 1;
    cfg.min_version = TLS1_1_VERSION;
    cfg.max_version = TLS1_1_VERSION;
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), WT_ETLS);
    close(fd);

    /* The same client allowed TLS 1.2 gets in, with 1.2. */
    cfg.max_version = TLS1_2_VERSION;
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), 0);
    assert_int_equal(wt_tls_version(t), TLS1_2_VERSION);
    wt_tls_free(t);
    close(fd);

    /* The server is still there. */
    wt_http_resp_t r;
    assert_int_equal(https_get(fx, "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
}

static void test_tls_alpn_never_h2(void **state)
{
    wt_fixture_t *fx = *state;
    wt_tls_config_t cfg;
    wt_tls_t *t;
    int fd;
    char alpn[32];

    /* Offering h2 and http/1.1: http/1.1 is selected. */
    wt_tls_config_init(&cfg, fx->tls_cert);
    cfg.alpn = "h2,http/1.1";
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), 0);
    assert_string_equal(wt_tls_alpn(t, alpn, sizeof alpn), "http/1.1");
    wt_tls_free(t);
    close(fd);

    /* Offering h2 alone: nothing is selected, and the connection speaks HTTP/1.1. */
    cfg.alpn = "h2";
    assert_int_equal(tls_dial(fx, &cfg, &fd, &t), 0);
    assert_string_equal(wt_tls_alpn(t, alpn, sizeof alpn), "");
    const char *req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_int_equal(wt_tls_write_all(t, req, strlen(req), TIMEOUT), 0);
    wt_buf_t in = {0};
    wt_http_resp_t r;
    assert_int_equal(wt_http_read_response_tls(fd, t, &in, 0, TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
    wt_buf_dispose(&in);
    wt_tls_free(t);
    close(fd);
}

static void test_tls_plain_http_to_tls_port_fails_cleanly(void **state)
{
    wt_fixture_t *fx = *state;
    for (int round = 0; round < 3; round++) {
        int fd = wt_tcp_connect("127.0.0.1", fx->server.port, TIMEOUT);
        assert_true(fd >= 0);
        const char *req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
        assert_int_equal(wt_write_all(fd, req, strlen(req), TIMEOUT), 0);
        /* The server answers no HTTP and ends the connection (a TLS alert at most). */
        char buf[4096];
        size_t got = 0;
        int64_t deadline = wt_now_ms() + TIMEOUT;
        for (;;) {
            ssize_t n = wt_read_some(fd, buf + got, sizeof buf - 1 - got, wt_ms_left(deadline));
            if (n == 0 || n == WT_EIO)
                break;          /* ended: EOF or reset */
            assert_true(n > 0); /* not a timeout: the connection must end */
            got += (size_t)n;
            assert_true(got < sizeof buf - 1);
        }
        buf[got] = 0;
        assert_null(strstr(buf, "HTTP/1."));
        close(fd);
    }
    wt_http_resp_t r;
    assert_int_equal(https_get(fx, "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
    wt_editor_t *a = wt_fixture_editor(fx, "after-plain", "ada", 1);
    assert_non_null(a);
}

static void test_tls_cert_without_key_exits_2(void **state)
{
    wt_fixture_t *fx = *state;
    char data[700], *out = NULL;
    snprintf(data, sizeof data, "%s/never", fx->server.data_dir);
    const char *only_cert[] = {"--listen",   "127.0.0.1:0", "--data", data,
                               "--tls-cert", fx->tls_cert,  NULL};
    assert_int_equal(wt_run_capture(NULL, only_cert, &out, TIMEOUT), 2);
    assert_non_null(strstr(out, "--tls-key"));
    free(out);
    const char *only_key[] = {"--listen",  "127.0.0.1:0", "--data", data,
                              "--tls-key", fx->tls_key,   NULL};
    assert_int_equal(wt_run_capture(NULL, only_key, &out, TIMEOUT), 2);
    assert_non_null(strstr(out, "--tls-cert"));
    free(out);
    /* Nothing was started: no data directory. */
    assert_int_not_equal(access(data, F_OK), 0);
}

static void test_tls_missing_or_mismatched_key_exits_1(void **state)
{
    wt_fixture_t *fx = *state;
    char data[700], missing[700], other_cert[700], other_key[700], *out = NULL;
    snprintf(data, sizeof data, "%s/never", fx->server.data_dir);
    snprintf(missing, sizeof missing, "%s/no-such-key.pem", fx->server.data_dir);
    snprintf(other_cert, sizeof other_cert, "%s/other-cert.pem", fx->server.data_dir);
    snprintf(other_key, sizeof other_key, "%s/other-key.pem", fx->server.data_dir);
    assert_int_equal(wt_tls_make_cert(other_cert, other_key, "localhost"), 0);

    const char *no_key[] = {"--listen",   "127.0.0.1:0", "--data", data, "--tls-cert",
                            fx->tls_cert, "--tls-key",   missing,  NULL};
    assert_int_equal(wt_run_capture(NULL, no_key, &out, TIMEOUT), 1);
    assert_non_null(strstr(out, "--tls-key"));
    assert_non_null(strstr(out, "No such file"));
    free(out);

    const char *mismatch[] = {"--listen",   "127.0.0.1:0", "--data",  data, "--tls-cert",
                              fx->tls_cert, "--tls-key",   other_key, NULL};
    assert_int_equal(wt_run_capture(NULL, mismatch, &out, TIMEOUT), 1);
    assert_non_null(strstr(out, "does not match"));
    free(out);

    /* A key given as the certificate is not a certificate. */
    const char *key_as_cert[] = {"--listen",  "127.0.0.1:0", "--data",    data, "--tls-cert",
                                 fx->tls_key, "--tls-key",   fx->tls_key, NULL};
    assert_int_equal(wt_run_capture(NULL, key_as_cert, &out, TIMEOUT), 1);
    assert_non_null(strstr(out, "certificate"));
    free(out);
    assert_int_not_equal(access(data, F_OK), 0);
}

static void test_tls_sigterm_with_wss_client_exits_0(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "bye", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "kept", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    /* Also a connection that never finishes its handshake. */
    int silent = wt_tcp_connect("127.0.0.1", fx->server.port, TIMEOUT);
    assert_true(silent >= 0);
    usleep(100 * 1000);

    assert_int_equal(wt_weftd_signal(&fx->server, SIGTERM), 0);
    assert_int_equal(wt_editor_wait_ended(a, TIMEOUT), 0);
    assert_int_equal(a->ws.close_code, 1001);
    assert_int_equal(wt_weftd_wait(&fx->server, TIMEOUT), 0);
    close(silent);

    /* And it comes back over TLS with the text. */
    assert_int_equal(wt_weftd_restart(&fx->server, TIMEOUT), 0);
    wt_editor_t *b = wt_fixture_editor(fx, "bye", "bob", 1);
    assert_non_null(b);
    assert_true(wt_editor_text_is(b, "kept"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_wss_editors_converge_and_are_acked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_https_healthz_api_docs_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_untrusted_certificate_refused_by_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_tls11_refused_tls12_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_alpn_never_h2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_plain_http_to_tls_port_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_cert_without_key_exits_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_missing_or_mismatched_key_exits_1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_sigterm_with_wss_client_exits_0, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
