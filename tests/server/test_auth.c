/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c: access control of weftd (server/auth.c, docs/security.md).
 * Token code tested directly (srv__token_make / srv__token_check: round trip,
 * every byte flipped, non-canonical encodings, limits), then through real
 * weftd processes started with --token-secret-file and tokens issued by
 * `weftd token`: accepted tokens (the token's name replaces HELLO's); bad
 * signature, wrong document, expired, garbage and missing tokens refused with
 * ERROR unauthorized and close 1008 before any document data; prefix tokens;
 * the read role (sees edits and presence, its UPDATE, SYNC2 and restore get
 * ERROR read_only and it stays connected); a token expiring during a session
 * (close 4001, then a reconnect with a new token); REST 401/403/200; the
 * Origin allow-list (403 vs 101); the start-up notice without a secret and
 * the warning for a world-readable secret file. Fixed seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "srv_internal.h"

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_http.h"
#include "wt_net.h"
#include "wt_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT 10000
#define SECRET "weft-test-secret-0123456789abcdef"

/* ---- token code ---------------------------------------------------------------- */

static const uint8_t *key(void)
{
    return (const uint8_t *)SECRET;
}

static int make(const char *doc, const char *name, int role, uint64_t expires, char *out)
{
    srv_token_t c;
    memset(&c, 0, sizeof(c));
    snprintf(c.doc, sizeof(c.doc), "%s", doc);
    snprintf(c.name, sizeof(c.name), "%s", name);
    c.role = role;
    c.expires = expires;
    return srv__token_make(key(), strlen(SECRET), &c, out, SRV_MAX_TOKEN + 1);
}

static int check(const char *tok, uint64_t now, srv_token_t *out)
{
    return srv__token_check(key(), strlen(SECRET), tok, strlen(tok), now, out);
}

static void test_token_round_trip(void **state)
{
    char tok[SRV_MAX_TOKEN + 1];
    srv_token_t c;
    (void)state;
    assert_true(make("notes", "Zoë", SRV_ROLE_READ, 2000, tok) > 0);
    assert_int_equal(check(tok, 1999, &c), 0);
    assert_string_equal(c.doc, "notes");
    assert_string_equal(c.name, "Zoë");
    assert_int_equal(c.role, SRV_ROLE_READ);
    assert_int_equal(c.expires, 2000);
    assert_int_equal(check(tok, 2000, &c), SRV_TOKEN_EEXPIRED);
    assert_int_equal(check(tok, 5000, &c), SRV_TOKEN_EEXPIRED);
    /* Another secret. */
    assert_int_equal(
        srv__token_check((const uint8_t *)"another-secret-0123", 19, tok, strlen(tok), 0, &c),
        SRV_TOKEN_EBADMAC);
    /* Prefixes. */
    assert_true(make("team-*", "Ada", SRV_ROLE_WRITE, 2000, tok) > 0);
    assert_int_equal(check(tok, 0, &c), 0);
    assert_true(srv__token_doc_matches(c.doc, strlen(c.doc), "team-a", 6));
    assert_true(srv__token_doc_matches(c.doc, strlen(c.doc), "team-", 5));
    assert_false(srv__token_doc_matches(c.doc, strlen(c.doc), "team", 4));
    assert_false(srv__token_doc_matches(c.doc, strlen(c.doc), "teamb", 5));
    assert_true(srv__token_doc_matches("*", 1, "anything", 8));
    assert_true(srv__token_doc_matches("notes", 5, "notes", 5));
    assert_false(srv__token_doc_matches("notes", 5, "notes2", 6));
    /* Claims a token cannot hold. */
    assert_int_equal(make("a/b", "Ada", SRV_ROLE_WRITE, 1, tok), -1);
    assert_int_equal(make("a*b", "Ada", SRV_ROLE_WRITE, 1, tok), -1);
    assert_int_equal(make("notes", "", SRV_ROLE_WRITE, 1, tok), -1);
    assert_int_equal(make("notes", "a\nb", SRV_ROLE_WRITE, 1, tok), -1);
    assert_int_equal(make("notes", "\xc3", SRV_ROLE_WRITE, 1, tok), -1);
    assert_int_equal(make("notes", "Ada", 7, 1, tok), -1);
}

static void test_token_every_change_refused(void **state)
{
    char tok[SRV_MAX_TOKEN + 1], bad[SRV_MAX_TOKEN + 2];
    static const char alphabet[] = "AQgw_-.v1=+/ \n";
    srv_token_t c;
    size_t n;
    (void)state;
    assert_true(make("doc", "Ada", SRV_ROLE_WRITE, UINT64_MAX, tok) > 0);
    n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof(alphabet) - 1; k++) {
            if (tok[i] == alphabet[k])
                continue;
            memcpy(bad, tok, n + 1);
            bad[i] = alphabet[k];
            if (check(bad, 0, &c) == 0)
                fail_msg("token changed at %zu to '%c' accepted: %s", i, alphabet[k], bad);
        }
    }
    /* Truncated and extended. */
    for (size_t len = 0; len < n; len++)
        assert_int_not_equal(srv__token_check(key(), strlen(SECRET), tok, len, 0, &c), 0);
    memcpy(bad, tok, n);
    bad[n] = 'A';
    bad[n + 1] = '\0';
    assert_int_not_equal(check(bad, 0, &c), 0);
    /* Garbage. */
    static const char *const garbage[] = {"",
                                          "v1",
                                          "v1.",
                                          "v1..",
                                          "v2.AAAA.AAAA",
                                          "Bearer x",
                                          "v1.AAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                          "\xff\xfe"};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        assert_int_not_equal(check(garbage[i], 0, &c), 0);
    /* Too long: refused before any work. */
    char *big = malloc(5000);
    memset(big, 'A', 4999);
    memcpy(big, "v1.", 3);
    big[4999] = '\0';
    assert_int_equal(check(big, 0, &c), SRV_TOKEN_EMALFORMED);
    free(big);
    /* A NUL inside. */
    assert_int_not_equal(srv__token_check(key(), strlen(SECRET), tok, n + 1, 0, &c), 0);
}

/* ---- helpers for the integration tests --------------------------------------- */

typedef struct {
    wt_fixture_t *fx;
    char secret_file[256];
} ctx_t;

static int write_secret(char *path, size_t cap, mode_t mode)
{
    snprintf(path, cap, "/tmp/weft-auth-secret-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    int ok = write(fd, SECRET "\n", strlen(SECRET) + 1) == (ssize_t)(strlen(SECRET) + 1);
    close(fd);
    chmod(path, mode);
    return ok ? 0 : -1;
}

static int setup_args(void **state, const char *const *more)
{
    ctx_t *c = calloc(1, sizeof(*c));
    const char *args[16];
    size_t n = 0;
    if (c == NULL || write_secret(c->secret_file, sizeof(c->secret_file), 0600) != 0)
        return -1;
    args[n++] = "--token-secret-file";
    args[n++] = c->secret_file;
    for (size_t i = 0; more != NULL && more[i] != NULL; i++)
        args[n++] = more[i];
    args[n] = NULL;
    c->fx = wt_fixture_new(0xa7700001, args);
    if (c->fx == NULL) {
        unlink(c->secret_file);
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int setup(void **state)
{
    return setup_args(state, NULL);
}

static int setup_origin(void **state)
{
    static const char *const more[] = {"--allow-origin", "https://docs.example.com",
                                       "--allow-origin", "http://localhost:5173", NULL};
    return setup_args(state, more);
}

static int teardown(void **state)
{
    ctx_t *c = *state;
    if (c != NULL) {
        wt_fixture_free(c->fx);
        unlink(c->secret_file);
        free(c);
    }
    return 0;
}

/* Runs `weftd token` with the context's secret file; returns the token
 * (malloc'd, without the newline). */
static char *issue(ctx_t *c, const char *doc, const char *name, const char *role, const char *ttl)
{
    const char *args[] = {"token", "--secret-file", c->secret_file, "--doc", doc, "--name",
                          name,    "--role",        role,           "--ttl", ttl, NULL};
    char *out = NULL;
    int rc = wt_run_capture(NULL, args, &out, TIMEOUT);
    if (rc != 0 || out == NULL || strncmp(out, "v1.", 3) != 0)
        fail_msg("weftd token exited %d: %s", rc, out ? out : "(no output)");
    out[strcspn(out, "\r\n")] = '\0';
    return out;
}

static int send_hello(wt_ws_t *ws, uint64_t replica, const char *name, const char *token,
                      size_t token_len)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_HELLO;
    m.u.hello.version = PROTO_VERSION;
    m.u.hello.replica = replica;
    m.u.hello.name = (proto_bytes_t){(const uint8_t *)name, strlen(name)};
    m.u.hello.color = (proto_bytes_t){(const uint8_t *)"#123456", 7};
    m.u.hello.token = (proto_bytes_t){(const uint8_t *)token, token != NULL ? token_len : 0};
    return wt_proto_send(ws, &m);
}

/* wt_editor_join() with a token in HELLO. */
static int join_with_token(wt_editor_t *ed, const char *token)
{
    int64_t deadline = wt_now_ms() + TIMEOUT;
    char path[160];
    size_t errors_before = ed->n_errors;
    int rc;
    snprintf(path, sizeof path, "/ws/%s", ed->doc_name);
    wt_ws_dispose(&ed->ws);
    wt_ws_init(&ed->ws, ed->_seed++);
    rc = wt_ws_connect(&ed->ws, ed->host, ed->port, path, NULL, TIMEOUT);
    if (rc != 0)
        return rc;
    ed->next_seq = 1;
    ed->acked = 0;
    ed->end_rc = 0;
    ed->state = WT_ED_JOINING;
    rc = send_hello(&ed->ws, ed->replica, ed->name, token, strlen(token));
    if (rc != 0)
        return rc;
    while (ed->state == WT_ED_JOINING) {
        if (ed->n_errors > errors_before)
            return WT_ESERVER;
        if (wt_ms_left(deadline) == 0)
            return WT_ETIMEOUT;
        rc = wt_editor_pump(ed, wt_ms_left(deadline));
        if (rc < 0)
            return ed->n_errors > errors_before ? WT_ESERVER : rc;
    }
    return ed->state == WT_ED_SYNCED ? 0 : WT_EEOF;
}

static wt_editor_t *editor(ctx_t *c, const char *doc, const char *hello_name, const char *token)
{
    wt_editor_t *ed = wt_fixture_editor(c->fx, doc, hello_name, 0);
    assert_non_null(ed);
    int rc = join_with_token(ed, token);
    if (rc != 0)
        fail_msg("join of %s with a token: %s", doc, wt_strerror(rc));
    return ed;
}

/* A HELLO with `token` on /ws/<doc> must get ERROR unauthorized as its first
 * message, then close 1008, and nothing else. */
static void assert_refused(ctx_t *c, const char *doc, const char *token, size_t len,
                           const char *what)
{
    char path[160];
    proto_msg_t m;
    snprintf(path, sizeof path, "/ws/%s", doc);
    wt_ws_t *ws = wt_fixture_client(c->fx, path);
    assert_non_null(ws);
    assert_int_equal(send_hello(ws, wt_fixture_replica(c->fx), "eve", token, len), 0);
    int rc = wt_proto_recv(ws, TIMEOUT, &m);
    if (rc != 0)
        fail_msg("%s: no ERROR (%s)", what, wt_strerror(rc));
    if (m.type != PROTO_ERROR || m.u.error.code != PROTO_ERR_UNAUTHORIZED)
        fail_msg("%s: first message is type %d (code %d), not ERROR unauthorized", what,
                 (int)m.type, m.type == PROTO_ERROR ? (int)m.u.error.code : -1);
    rc = wt_proto_recv(ws, TIMEOUT, &m);
    if (rc != WT_ECLOSED || ws->close_code != 1008)
        fail_msg("%s: after the ERROR: %s (close %d)", what, wt_strerror(rc), ws->close_code);
}

/* ---- integration tests -------------------------------------------------------------- */

static void test_auth_issued_token_accepted_name_from_token(void **state)
{
    ctx_t *c = *state;
    char *tw = issue(c, "notes", "Wanda", "write", "600");
    char *tr = issue(c, "notes", "Rita", "read", "600");
    wt_editor_t *w = editor(c, "notes", "hello-name-w", tw);
    wt_editor_t *r = editor(c, "notes", "hello-name-r", tr);
    uint64_t seq = 0;
    /* Each sees the other under the token's name. */
    assert_int_equal(wt_editor_wait_presence(w, r->replica, 1, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_presence(r, w->replica, 1, TIMEOUT), 0);
    assert_string_equal(wt_editor_peer(w, r->replica)->name, "Rita");
    assert_string_equal(wt_editor_peer(r, w->replica)->name, "Wanda");
    assert_int_equal(wt_editor_insert(w, 0, "hello", &seq), 0);
    assert_int_equal(wt_editor_wait_ack(w, seq, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_text(r, "hello", TIMEOUT), 0);
    free(tw);
    free(tr);
}

static void test_auth_bad_tokens_refused_before_any_data(void **state)
{
    ctx_t *c = *state;
    char *good = issue(c, "doc1", "Ada", "write", "600");
    char *expired = issue(c, "doc1", "Ada", "write", "0");
    char *other_doc = issue(c, "doc2", "Ada", "write", "600");
    char *prefix = issue(c, "team-*", "Ada", "write", "600");
    char foreign[SRV_MAX_TOKEN + 1], tampered[SRV_MAX_TOKEN + 1];
    srv_token_t cl;
    memset(&cl, 0, sizeof cl);
    strcpy(cl.doc, "doc1");
    strcpy(cl.name, "Ada");
    cl.role = SRV_ROLE_WRITE;
    cl.expires = (uint64_t)time(NULL) + 600;
    assert_true(srv__token_make((const uint8_t *)"some-other-secret-123", 21, &cl, foreign,
                                sizeof foreign) > 0);
    /* The payload of "doc2" with the signature of "doc1". */
    snprintf(tampered, sizeof tampered, "%.*s%s", (int)(strrchr(other_doc, '.') - other_doc),
             other_doc, strrchr(good, '.'));

    assert_refused(c, "doc1", NULL, 0, "no token");
    assert_refused(c, "doc1", "", 0, "empty token");
    assert_refused(c, "doc1", foreign, strlen(foreign), "signed with another secret");
    assert_refused(c, "doc1", tampered, strlen(tampered), "payload swapped");
    assert_refused(c, "doc1", other_doc, strlen(other_doc), "token of another document");
    assert_refused(c, "doc1", expired, strlen(expired), "expired");
    assert_refused(c, "doc1", prefix, strlen(prefix), "prefix not matching");
    assert_refused(c, "team", prefix, strlen(prefix), "prefix longer than the name");
    assert_refused(c, "doc1", "v1.garbage.garbage", 18, "garbage");
    assert_refused(c, "doc1", "\x00\x01\x02", 3, "binary");
    {
        char *big = malloc(PROTO_MAX_TOKEN);
        memset(big, 'A', PROTO_MAX_TOKEN);
        memcpy(big, "v1.", 3);
        assert_refused(c, "doc1", big, PROTO_MAX_TOKEN, "4096 bytes");
        free(big);
    }
    /* The good ones work on the same server. */
    wt_editor_t *a = editor(c, "doc1", "x", good);
    wt_editor_t *b = editor(c, "team-a", "x", prefix);
    wt_editor_t *b2 = editor(c, "team-", "x", prefix);
    assert_int_equal(a->state, WT_ED_SYNCED);
    assert_int_equal(b->state, WT_ED_SYNCED);
    assert_int_equal(b2->state, WT_ED_SYNCED);
    /* Refusals are counted as errors with code unauthorized. */
    char *metrics = wt_fixture_metrics(c->fx);
    double v = 0;
    assert_non_null(metrics);
    assert_true(wt_metric(metrics, "weft_errors_total{code=\"unauthorized\"}", &v));
    assert_true(v >= 11);
    free(metrics);
    free(good);
    free(expired);
    free(other_doc);
    free(prefix);
}

/* Receives messages for `ed` by hand until a HISTORY_RESULT for `req`;
 * returns its status. */
static int history_result(wt_editor_t *ed, uint64_t req)
{
    int64_t deadline = wt_now_ms() + TIMEOUT;
    proto_msg_t m;
    while (wt_ms_left(deadline) > 0) {
        int rc = wt_proto_recv(&ed->ws, wt_ms_left(deadline), &m);
        if (rc != 0)
            fail_msg("waiting for HISTORY_RESULT: %s", wt_strerror(rc));
        if (m.type == PROTO_HISTORY_RESULT && m.u.history_result.req == req)
            return (int)m.u.history_result.status;
        wt_editor_handle(ed, &m);
    }
    fail_msg("no HISTORY_RESULT");
    return -1;
}

static void send_history(wt_editor_t *ed, uint64_t req, const char *method, const char *path,
                         const char *body)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_HISTORY;
    m.u.history.req = req;
    m.u.history.method = (proto_bytes_t){(const uint8_t *)method, strlen(method)};
    m.u.history.path = (proto_bytes_t){(const uint8_t *)path, strlen(path)};
    if (body != NULL)
        m.u.history.body = (proto_bytes_t){(const uint8_t *)body, strlen(body)};
    assert_int_equal(wt_proto_send(&ed->ws, &m), 0);
}

static void test_auth_read_role_sees_but_cannot_change(void **state)
{
    ctx_t *c = *state;
    char *tw = issue(c, "shared", "Wanda", "write", "600");
    char *tr = issue(c, "shared", "Rita", "read", "600");
    wt_editor_t *w = editor(c, "shared", "w", tw);
    wt_editor_t *r = editor(c, "shared", "r", tr);
    uint64_t seq = 0;
    const wt_error_t *e;

    /* Edits and cursors reach the reader. */
    assert_int_equal(wt_editor_insert(w, 0, "abc", &seq), 0);
    assert_int_equal(wt_editor_wait_ack(w, seq, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_text(r, "abc", TIMEOUT), 0);
    assert_int_equal(wt_editor_set_presence(w, 1, 2), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    while (wt_editor_peer(r, w->replica) == NULL || !wt_editor_peer(r, w->replica)->has_selection) {
        assert_true(wt_ms_left(deadline) > 0);
        wt_editor_pump(r, 100);
    }
    /* The reader's cursor reaches the writer too. */
    assert_int_equal(wt_editor_set_presence(r, 0, 0), 0);
    assert_int_equal(wt_editor_wait_presence(w, r->replica, 1, TIMEOUT), 0);

    /* Its UPDATE is refused, the connection stays. */
    assert_int_equal(wt_editor_insert(r, 0, "X", &seq), 0);
    assert_true(seq > 0);
    assert_int_equal(wt_editor_wait_error(r, PROTO_ERR_READ_ONLY, TIMEOUT), 0);
    e = wt_editor_error(r, PROTO_ERR_READ_ONLY);
    assert_int_equal(e->seq, seq);
    /* SYNC2 too. */
    {
        crdt_buf_t st = {0};
        size_t before = r->n_errors;
        assert_int_equal(crdt_doc_encode_state(r->doc, &st), 0);
        assert_int_equal(wt_proto_send_bytes(&r->ws, PROTO_SYNC2, st.base, st.len), 0);
        crdt_buf_dispose(&st);
        while (r->n_errors == before)
            assert_true(wt_editor_pump(r, TIMEOUT) > 0);
        assert_int_equal(r->errors[r->n_errors - 1].code, PROTO_ERR_READ_ONLY);
    }
    /* History: reading is allowed, restoring and naming are not. */
    send_history(r, 1, "GET", "versions", NULL);
    assert_int_equal(history_result(r, 1), 200);
    {
        size_t before = r->n_errors;
        send_history(r, 2, "POST", "restore", "{\"version\":0}");
        send_history(r, 3, "POST", "versions/1/name", "{\"name\":\"x\"}");
        while (r->n_errors < before + 2)
            assert_true(wt_editor_pump(r, TIMEOUT) > 0);
        assert_int_equal(r->errors[before].code, PROTO_ERR_READ_ONLY);
        assert_int_equal(r->errors[before + 1].code, PROTO_ERR_READ_ONLY);
    }
    /* Still connected: the writer's next edit arrives, nothing of X anywhere. */
    uint64_t in = r->updates_in;
    assert_int_equal(wt_editor_insert(w, 3, "d", &seq), 0);
    assert_int_equal(wt_editor_wait_ack(w, seq, TIMEOUT), 0);
    deadline = wt_now_ms() + TIMEOUT;
    while (r->updates_in == in) {
        assert_true(wt_ms_left(deadline) > 0);
        assert_true(wt_editor_pump(r, 100) >= 0);
    }
    assert_int_equal(r->state, WT_ED_SYNCED);
    assert_int_equal(wt_editor_pump(w, 300) >= 0, 1);
    assert_true(wt_editor_text_is(w, "abcd"));
    /* A clean stop with token sessions open (their expiry timers) exits 0. */
    assert_int_equal(wt_weftd_stop(&c->fx->server, TIMEOUT), 0);
    free(tw);
    free(tr);
}

static void test_auth_expiry_closes_4001_then_reconnect(void **state)
{
    ctx_t *c = *state;
    char *t1 = issue(c, "exp", "Eve", "write", "2");
    wt_editor_t *ed = editor(c, "exp", "e", t1);
    int64_t start = wt_now_ms();
    assert_int_equal(wt_editor_wait_ended(ed, 5000), 0);
    print_message("closed after %lld ms\n", (long long)(wt_now_ms() - start));
    assert_int_equal(ed->end_rc, WT_ECLOSED);
    assert_int_equal(ed->ws.close_code, 4001);
    assert_non_null(wt_editor_error(ed, PROTO_ERR_UNAUTHORIZED));
    /* A new token: back in, and editing works. */
    char *t2 = issue(c, "exp", "Eve", "write", "600");
    uint64_t seq = 0;
    ed->state = WT_ED_OFFLINE;
    assert_int_equal(join_with_token(ed, t2), 0);
    assert_int_equal(wt_editor_insert(ed, 0, "again", &seq), 0);
    assert_int_equal(wt_editor_wait_ack(ed, seq, TIMEOUT), 0);
    free(t1);
    free(t2);
}

static int rest(ctx_t *c, const char *method, const char *path, const char *token, const char *body)
{
    char hdr[SRV_MAX_TOKEN + 64];
    wt_http_resp_t r;
    int status;
    if (token != NULL)
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n",
                 token);
    assert_int_equal(wt_http_request("127.0.0.1", c->fx->server.port, method, path,
                                     token != NULL ? hdr : NULL, body, body ? strlen(body) : 0,
                                     TIMEOUT, &r),
                     0);
    status = r.status;
    if (status == 401 || status == 403)
        assert_non_null(strstr((const char *)r.body.data, "\"error\""));
    wt_http_resp_dispose(&r);
    return status;
}

static void test_auth_rest_401_403_200(void **state)
{
    ctx_t *c = *state;
    char *tw = issue(c, "api", "Wanda", "write", "600");
    char *tr = issue(c, "api", "Rita", "read", "600");
    char *tother = issue(c, "other", "Rita", "write", "600");
    char *texp = issue(c, "api", "Rita", "write", "0");
    char path[SRV_MAX_TOKEN + 64];
    uint64_t seq = 0;
    wt_editor_t *w = editor(c, "api", "w", tw);
    assert_int_equal(wt_editor_insert(w, 0, "text", &seq), 0);
    assert_int_equal(wt_editor_wait_ack(w, seq, TIMEOUT), 0);

    assert_int_equal(rest(c, "GET", "/api/docs/api", NULL, NULL), 401);
    assert_int_equal(rest(c, "GET", "/api/docs/api", "v1.nope.nope", NULL), 401);
    assert_int_equal(rest(c, "GET", "/api/docs/api", tother, NULL), 401);
    assert_int_equal(rest(c, "GET", "/api/docs/api", texp, NULL), 401);
    assert_int_equal(rest(c, "GET", "/api/docs/api", tr, NULL), 200);
    assert_int_equal(rest(c, "GET", "/api/docs/api/versions", NULL, NULL), 401);
    assert_int_equal(rest(c, "GET", "/api/docs/api/versions", tr, NULL), 200);
    assert_int_equal(rest(c, "GET", "/api/docs/api/attribution", tr, NULL), 200);
    assert_int_equal(rest(c, "POST", "/api/docs/api/restore", NULL, "{\"version\":0}"), 401);
    assert_int_equal(rest(c, "POST", "/api/docs/api/restore", tr, "{\"version\":0}"), 403);
    assert_int_equal(rest(c, "POST", "/api/docs/api/versions/1/name", tr, "{\"name\":\"n\"}"), 403);
    assert_int_equal(rest(c, "POST", "/api/docs/api/versions/1/name", tw, "{\"name\":\"n\"}"), 200);
    assert_int_equal(rest(c, "POST", "/api/docs/api/restore", tw, "{\"version\":0}"), 200);
    /* ?token= works as well. */
    snprintf(path, sizeof path, "/api/docs/api?token=%s", tr);
    assert_int_equal(rest(c, "GET", path, NULL, NULL), 200);
    snprintf(path, sizeof path, "/api/docs/api/versions?limit=5&token=%s", tr);
    assert_int_equal(rest(c, "GET", path, NULL, NULL), 200);
    /* Health and metrics stay open. */
    assert_int_equal(rest(c, "GET", "/healthz", NULL, NULL), 200);
    free(tw);
    free(tr);
    free(tother);
    free(texp);
}

static int upgrade_status(ctx_t *c, const char *origin)
{
    char hdr[200];
    wt_ws_t ws;
    int rc, status;
    wt_ws_init(&ws, 7);
    if (origin != NULL)
        snprintf(hdr, sizeof hdr, "Origin: %s\r\n", origin);
    rc = wt_ws_connect(&ws, "127.0.0.1", c->fx->server.port, "/ws/o", origin != NULL ? hdr : NULL,
                       TIMEOUT);
    status = rc == 0 ? 101 : rc == WT_EHTTP ? ws.http.status : rc;
    wt_ws_dispose(&ws);
    return status;
}

static void test_auth_origin_allow_list(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(upgrade_status(c, "https://docs.example.com"), 101);
    assert_int_equal(upgrade_status(c, "http://localhost:5173"), 101);
    assert_int_equal(upgrade_status(c, "https://evil.example.com"), 403);
    assert_int_equal(upgrade_status(c, "https://docs.example.com.evil.org"), 403);
    assert_int_equal(upgrade_status(c, "http://docs.example.com"), 403);
    assert_int_equal(upgrade_status(c, "null"), 403);
    /* Not a browser (browsers always send Origin): tokens decide. */
    assert_int_equal(upgrade_status(c, NULL), 101);
}

static void test_auth_startup_messages(void **state)
{
    char file[256], data[300];
    char *out = NULL;
    (void)state;
    /* A regular file as --data: weftd stops after the start-up messages. */
    snprintf(data, sizeof data, "/tmp/weft-auth-data-XXXXXX");
    int fd = mkstemp(data);
    assert_true(fd >= 0);
    close(fd);
    const char *plain[] = {"--listen", "127.0.0.1:0", "--data", data, NULL};
    assert_true(wt_run_capture(NULL, plain, &out, TIMEOUT) > 0);
    assert_non_null(strstr(out, "weftd: no token secret: anyone may read and edit every document"));
    free(out);
    out = NULL;

    assert_int_equal(write_secret(file, sizeof file, 0644), 0);
    const char *world[] = {"--listen", "127.0.0.1:0", "--data", data, "--token-secret-file",
                           file,       NULL};
    assert_true(wt_run_capture(NULL, world, &out, TIMEOUT) > 0);
    assert_null(strstr(out, "no token secret"));
    assert_non_null(strstr(out, "world-readable"));
    free(out);
    out = NULL;
    chmod(file, 0600);
    assert_true(wt_run_capture(NULL, world, &out, TIMEOUT) > 0);
    assert_null(strstr(out, "world-readable"));
    free(out);
    out = NULL;

    /* Bad secrets and token commands. */
    const char *shorts[] = {"--token-secret", "short", NULL};
    assert_int_equal(wt_run_capture(NULL, shorts, &out, TIMEOUT), 2);
    free(out);
    out = NULL;
    const char *bad_role[] = {"token", "--secret-file", file,    "--doc", "d",  "--name",
                              "n",     "--role",        "admin", "--ttl", "60", NULL};
    assert_int_equal(wt_run_capture(NULL, bad_role, &out, TIMEOUT), 2);
    free(out);
    out = NULL;
    const char *bad_doc[] = {"token", "--secret-file", file,   "--doc", "a/b", "--name",
                             "n",     "--role",        "read", "--ttl", "60",  NULL};
    assert_int_equal(wt_run_capture(NULL, bad_doc, &out, TIMEOUT), 2);
    free(out);
    out = NULL;
    const char *help[] = {"token", "--help", NULL};
    assert_int_equal(wt_run_capture(NULL, help, &out, TIMEOUT), 0);
    assert_non_null(strstr(out, "--ttl"));
    free(out);
    unlink(file);
    unlink(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_token_every_change_refused),
        cmocka_unit_test_setup_teardown(test_auth_issued_token_accepted_name_from_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_bad_tokens_refused_before_any_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_read_role_sees_but_cannot_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_expiry_closes_4001_then_reconnect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_rest_401_403_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_origin_allow_list, setup_origin, teardown),
        cmocka_unit_test(test_auth_startup_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
