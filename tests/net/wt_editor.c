/* SPDX-License-Identifier: MIT */
/*
 * wt_editor.c: the simulated editor of tests/net (see wt_editor.h). Joining is
 * driven by the same message handler as pumping: the handler answers the
 * server's SYNC1 and marks the editor synced at SYNC2, and join only waits for
 * that state. Acknowledgements are cumulative per connection, so an ACK(seq)
 * drops every unacked update sent with a number up to seq.
 */
#define _GNU_SOURCE
#include "wt_editor.h"
#include "wt_net.h"
#include "wt_proto.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 8;
    while (c < need)
        c *= 2;
    void *p = realloc(arr, c * elem);
    if (p == NULL)
        abort();
    *cap = c;
    return p;
}

int wt_editor_init(wt_editor_t *ed, const char *host, uint16_t port, const char *doc_name,
                   uint64_t replica, const char *name, const char *color, uint64_t seed)
{
    memset(ed, 0, sizeof *ed);
    snprintf(ed->host, sizeof ed->host, "%s", host);
    ed->port = port;
    snprintf(ed->doc_name, sizeof ed->doc_name, "%s", doc_name);
    snprintf(ed->name, sizeof ed->name, "%s", name);
    snprintf(ed->color, sizeof ed->color, "%s", color);
    ed->replica = replica;
    ed->_seed = seed;
    wt_ws_init(&ed->ws, seed);
    return crdt_doc_new(replica, NULL, &ed->doc);
}

static void end_connection(wt_editor_t *ed, int rc)
{
    ed->state = WT_ED_ENDED;
    ed->end_rc = rc;
}

static int send_unacked(wt_editor_t *ed, wt_unacked_t *u)
{
    u->seq = ed->next_seq++;
    int rc = wt_proto_send_update(&ed->ws, u->seq, u->update.base, u->update.len);
    if (rc != 0)
        u->seq = 0;
    return rc;
}

static int handle_sync1(wt_editor_t *ed, const proto_msg_t *msg)
{
    if (ed->send_sync2) {
        proto_bytes_t b = msg->u.sync1.sv;
        uint8_t *copy = malloc(b.len ? b.len : 1);
        if (copy == NULL)
            return CRDT_ENOMEM;
        if (b.len)
            memcpy(copy, b.base, b.len);
        free(ed->_server_sv);
        ed->_server_sv = copy;
        ed->_server_sv_len = b.len;
    }
    crdt_buf_t sv = {0};
    int rc = crdt_doc_state_vector(ed->doc, &sv);
    if (rc == 0)
        rc = wt_proto_send_bytes(&ed->ws, PROTO_SYNC1, sv.base, sv.len);
    crdt_buf_dispose(&sv);
    return rc;
}

static void apply_remote(wt_editor_t *ed, proto_bytes_t b)
{
    int rc = crdt_doc_apply_update(ed->doc, b.base, b.len);
    if (rc != 0) {
        ed->apply_failures++;
        ed->last_apply_error = rc;
        fprintf(stderr, "wt_editor %s: a remote update (%zu bytes) was rejected: %s\n", ed->name,
                b.len, crdt_strerror(rc));
    }
}

static wt_peer_t *peer_slot(wt_editor_t *ed, uint64_t replica)
{
    for (size_t i = 0; i < ed->n_peers; i++)
        if (ed->peers[i].replica == replica)
            return &ed->peers[i];
    ed->peers = grow(ed->peers, &ed->_cap_peers, ed->n_peers + 1, sizeof *ed->peers);
    wt_peer_t *p = &ed->peers[ed->n_peers++];
    memset(p, 0, sizeof *p);
    p->replica = replica;
    return p;
}

static void handle_ack(wt_editor_t *ed, uint64_t seq)
{
    ed->acks_in++;
    if (seq > ed->acked)
        ed->acked = seq;
    size_t w = 0;
    for (size_t i = 0; i < ed->n_unacked; i++) {
        wt_unacked_t *u = &ed->unacked[i];
        if (u->seq != 0 && u->seq <= seq) {
            crdt_buf_dispose(&u->update);
            continue;
        }
        ed->unacked[w++] = *u;
    }
    ed->n_unacked = w;
}

int wt_editor_handle(wt_editor_t *ed, const proto_msg_t *msg)
{
    switch (msg->type) {
    case PROTO_WELCOME:
        ed->max_message = msg->u.welcome.max_message;
        return 0;
    case PROTO_SYNC1:
        return handle_sync1(ed, msg);
    case PROTO_SYNC2:
        apply_remote(ed, msg->u.sync2.update);
        ed->sync2_in++;
        if (ed->state == WT_ED_JOINING)
            ed->state = WT_ED_SYNCED;
        return 0;
    case PROTO_UPDATE:
        ed->updates_in++;
        apply_remote(ed, msg->u.update.update);
        return 0;
    case PROTO_ACK:
        handle_ack(ed, msg->u.ack.seq);
        return 0;
    case PROTO_PRESENCE_STATE: {
        wt_peer_t *p = peer_slot(ed, msg->u.presence_state.replica);
        wt_proto_str(msg->u.presence_state.name, p->name, sizeof p->name);
        wt_proto_str(msg->u.presence_state.color, p->color, sizeof p->color);
        p->has_selection = msg->u.presence_state.anchor.base != NULL;
        p->anchor_len = p->head_len = 0;
        if (p->has_selection) {
            p->anchor_len = msg->u.presence_state.anchor.len;
            p->head_len = msg->u.presence_state.head.len;
            memcpy(p->anchor, msg->u.presence_state.anchor.base, p->anchor_len);
            memcpy(p->head, msg->u.presence_state.head.base, p->head_len);
        }
        p->present = 1;
        p->updates++;
        ed->presence_in++;
        return 0;
    }
    case PROTO_PRESENCE_LEAVE: {
        wt_peer_t *p = peer_slot(ed, msg->u.presence_leave.replica);
        p->present = 0;
        p->leaves++;
        ed->leaves_in++;
        return 0;
    }
    case PROTO_ERROR: {
        ed->errors = grow(ed->errors, &ed->_cap_errors, ed->n_errors + 1, sizeof *ed->errors);
        wt_error_t *e = &ed->errors[ed->n_errors++];
        e->code = msg->u.error.code;
        e->seq = msg->u.error.seq;
        wt_proto_str(msg->u.error.message, e->message, sizeof e->message);
        return 0;
    }
    default:
        return WT_EUNEXPECTED;
    }
}

/* Receives and handles one message; 1 handled, 0 timeout, or an ending error. */
static int pump_one(wt_editor_t *ed, int timeout_ms)
{
    if (ed->state == WT_ED_OFFLINE || ed->state == WT_ED_ENDED || ed->ws.fd < 0)
        return ed->state == WT_ED_ENDED ? ed->end_rc : WT_EEOF;
    proto_msg_t msg;
    int rc = wt_proto_recv(&ed->ws, timeout_ms, &msg);
    if (rc == WT_ETIMEOUT)
        return 0;
    if (rc <= -100 && rc > -200) {
        fprintf(stderr, "wt_editor %s: undecodable message from the server: %s\n", ed->name,
                wt_strerror(rc));
        return 1;
    }
    if (rc != 0) {
        end_connection(ed, rc);
        return rc;
    }
    rc = wt_editor_handle(ed, &msg);
    if (rc != 0 && rc != WT_EUNEXPECTED) {
        end_connection(ed, rc);
        return rc;
    }
    return 1;
}

int wt_editor_pump(wt_editor_t *ed, int timeout_ms)
{
    int n = 0;
    int rc = pump_one(ed, timeout_ms);
    while (rc == 1) {
        n++;
        rc = pump_one(ed, 0);
    }
    if (rc < 0)
        return n > 0 ? n : rc;
    return n;
}

int wt_editor_join(wt_editor_t *ed, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    char path[160];
    snprintf(path, sizeof path, "/ws/%s", ed->doc_name);
    ed->state = WT_ED_OFFLINE;
    ed->end_rc = 0;
    int rc = wt_ws_connect(&ed->ws, ed->host, ed->port, path, NULL, timeout_ms);
    if (rc != 0)
        return rc;
    ed->next_seq = 1;
    ed->acked = 0;
    for (size_t i = 0; i < ed->n_unacked; i++)
        ed->unacked[i].seq = 0;
    free(ed->_server_sv); /* none yet on this connection: a diff from nothing */
    ed->_server_sv = NULL;
    ed->_server_sv_len = 0;
    size_t errors_before = ed->n_errors;
    ed->state = WT_ED_JOINING;
    rc = wt_proto_send_hello(&ed->ws, PROTO_VERSION, ed->replica, ed->name, ed->color);
    if (rc != 0) {
        end_connection(ed, rc);
        return rc;
    }
    while (ed->state == WT_ED_JOINING) {
        if (ed->n_errors > errors_before)
            return WT_ESERVER;
        int left = wt_ms_left(deadline);
        if (left == 0)
            return WT_ETIMEOUT;
        rc = pump_one(ed, left);
        if (rc < 0)
            return ed->n_errors > errors_before ? WT_ESERVER : rc;
    }
    if (ed->state != WT_ED_SYNCED)
        return ed->end_rc ? ed->end_rc : WT_EEOF;
    if (ed->send_sync2) {
        crdt_buf_t missing = {0};
        rc = crdt_doc_diff(ed->doc, ed->_server_sv, ed->_server_sv_len, &missing);
        if (rc == 0)
            rc = wt_proto_send_bytes(&ed->ws, PROTO_SYNC2, missing.base, missing.len);
        crdt_buf_dispose(&missing);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < ed->n_unacked; i++) {
        rc = send_unacked(ed, &ed->unacked[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int record_local(wt_editor_t *ed, crdt_buf_t *update, uint64_t *seq_out)
{
    ed->unacked = grow(ed->unacked, &ed->_cap_unacked, ed->n_unacked + 1, sizeof *ed->unacked);
    wt_unacked_t *u = &ed->unacked[ed->n_unacked++];
    u->seq = 0;
    u->update = *update;
    *update = (crdt_buf_t){0};
    int rc = 0;
    if (ed->state == WT_ED_SYNCED)
        rc = send_unacked(ed, u);
    if (seq_out)
        *seq_out = u->seq;
    return rc;
}

int wt_editor_insert(wt_editor_t *ed, size_t index, const char *text, uint64_t *seq_out)
{
    crdt_buf_t up = {0};
    int rc = crdt_doc_insert(ed->doc, index, text, strlen(text), &up);
    if (rc != 0)
        return rc;
    return record_local(ed, &up, seq_out);
}

int wt_editor_delete(wt_editor_t *ed, size_t index, size_t len, uint64_t *seq_out)
{
    crdt_buf_t up = {0};
    int rc = crdt_doc_delete(ed->doc, index, len, &up);
    if (rc != 0)
        return rc;
    return record_local(ed, &up, seq_out);
}

int wt_editor_set_presence(wt_editor_t *ed, size_t anchor, size_t head)
{
    crdt_relpos_t a, h;
    int rc = crdt_doc_relpos_from_index(ed->doc, anchor, CRDT_ASSOC_AFTER, &a);
    if (rc == 0)
        rc = crdt_doc_relpos_from_index(ed->doc, head, CRDT_ASSOC_AFTER, &h);
    if (rc != 0)
        return rc;
    uint8_t ab[CRDT_RELPOS_MAX], hb[CRDT_RELPOS_MAX];
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_PRESENCE;
    m.u.presence.anchor = (proto_bytes_t){ab, crdt_relpos_encode(&a, ab)};
    m.u.presence.head = (proto_bytes_t){hb, crdt_relpos_encode(&h, hb)};
    return wt_proto_send(&ed->ws, &m);
}

int wt_editor_clear_presence(wt_editor_t *ed)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_PRESENCE;
    return wt_proto_send(&ed->ws, &m);
}

char *wt_editor_text(const wt_editor_t *ed)
{
    crdt_buf_t t = {0};
    if (crdt_doc_text(ed->doc, &t) != 0)
        abort();
    char *s = strdup(t.base ? (const char *)t.base : "");
    crdt_buf_dispose(&t);
    if (s == NULL)
        abort();
    return s;
}

int wt_editor_text_is(const wt_editor_t *ed, const char *text)
{
    char *s = wt_editor_text(ed);
    int eq = strcmp(s, text) == 0;
    free(s);
    return eq;
}

const wt_peer_t *wt_editor_peer(const wt_editor_t *ed, uint64_t replica)
{
    for (size_t i = 0; i < ed->n_peers; i++)
        if (ed->peers[i].replica == replica)
            return &ed->peers[i];
    return NULL;
}

size_t wt_editor_peers_present(const wt_editor_t *ed)
{
    size_t n = 0;
    for (size_t i = 0; i < ed->n_peers; i++)
        n += ed->peers[i].present != 0;
    return n;
}

const wt_error_t *wt_editor_error(const wt_editor_t *ed, uint32_t code)
{
    for (size_t i = ed->n_errors; i-- > 0;)
        if (code == 0 || ed->errors[i].code == code)
            return &ed->errors[i];
    return NULL;
}

/* Pumps until `cond` holds or the deadline passes. */
typedef int (*cond_fn)(wt_editor_t *ed, const void *arg);

static int wait_for(wt_editor_t *ed, cond_fn cond, const void *arg, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    for (;;) {
        if (cond(ed, arg))
            return 0;
        int left = wt_ms_left(deadline);
        if (left == 0)
            return WT_ETIMEOUT;
        int rc = wt_editor_pump(ed, left > 50 ? 50 : left);
        if (rc < 0)
            return cond(ed, arg) ? 0 : rc;
    }
}

static int cond_text(wt_editor_t *ed, const void *arg)
{
    return wt_editor_text_is(ed, arg);
}

int wt_editor_wait_text(wt_editor_t *ed, const char *text, int timeout_ms)
{
    return wait_for(ed, cond_text, text, timeout_ms);
}

static int cond_acked(wt_editor_t *ed, const void *arg)
{
    (void)arg;
    return ed->n_unacked == 0;
}

int wt_editor_wait_acked(wt_editor_t *ed, int timeout_ms)
{
    return wait_for(ed, cond_acked, NULL, timeout_ms);
}

static int cond_ack(wt_editor_t *ed, const void *arg)
{
    return ed->acked >= *(const uint64_t *)arg;
}

int wt_editor_wait_ack(wt_editor_t *ed, uint64_t seq, int timeout_ms)
{
    return wait_for(ed, cond_ack, &seq, timeout_ms);
}

struct presence_arg {
    uint64_t replica;
    int present;
};

static int cond_presence(wt_editor_t *ed, const void *arg)
{
    const struct presence_arg *a = arg;
    const wt_peer_t *p = wt_editor_peer(ed, a->replica);
    return a->present ? p != NULL && p->present : p != NULL && !p->present;
}

int wt_editor_wait_presence(wt_editor_t *ed, uint64_t replica, int present, int timeout_ms)
{
    struct presence_arg a = {replica, present};
    return wait_for(ed, cond_presence, &a, timeout_ms);
}

static int cond_error(wt_editor_t *ed, const void *arg)
{
    return wt_editor_error(ed, *(const uint32_t *)arg) != NULL;
}

int wt_editor_wait_error(wt_editor_t *ed, uint32_t code, int timeout_ms)
{
    return wait_for(ed, cond_error, &code, timeout_ms);
}

static int cond_ended(wt_editor_t *ed, const void *arg)
{
    (void)arg;
    return ed->state == WT_ED_ENDED;
}

int wt_editor_wait_ended(wt_editor_t *ed, int timeout_ms)
{
    return wait_for(ed, cond_ended, NULL, timeout_ms);
}

void wt_editor_drop(wt_editor_t *ed)
{
    wt_ws_abort(&ed->ws);
    ed->state = WT_ED_OFFLINE;
}

int wt_editor_close(wt_editor_t *ed, int timeout_ms)
{
    int rc = wt_ws_close(&ed->ws, 1000, "bye", timeout_ms);
    ed->state = WT_ED_OFFLINE;
    return rc;
}

int wt_editor_reconnect(wt_editor_t *ed, uint64_t new_replica, int timeout_ms)
{
    wt_editor_drop(ed);
    if (new_replica != 0 && new_replica != ed->replica) {
        crdt_buf_t state = {0};
        crdt_doc_t *doc = NULL;
        int rc = crdt_doc_encode_state(ed->doc, &state);
        if (rc == 0)
            rc = crdt_doc_load(new_replica, NULL, state.base, state.len, &doc);
        crdt_buf_dispose(&state);
        if (rc != 0)
            return rc;
        crdt_doc_free(ed->doc);
        ed->doc = doc;
        ed->replica = new_replica;
    }
    return wt_editor_join(ed, timeout_ms);
}

void wt_editor_dispose(wt_editor_t *ed)
{
    wt_ws_dispose(&ed->ws);
    crdt_doc_free(ed->doc);
    for (size_t i = 0; i < ed->n_unacked; i++)
        crdt_buf_dispose(&ed->unacked[i].update);
    free(ed->unacked);
    free(ed->peers);
    free(ed->errors);
    free(ed->_server_sv);
    memset(ed, 0, sizeof *ed);
    ed->ws.fd = -1;
}

int wt_editors_pump(wt_editor_t *const *eds, size_t n, int timeout_ms)
{
    struct pollfd pfd[256];
    size_t map[256];
    size_t np = 0;
    int handled = 0;
    /* Bytes already buffered are handled first; poll() would not show them. */
    for (size_t i = 0; i < n; i++) {
        if ((eds[i]->state == WT_ED_SYNCED || eds[i]->state == WT_ED_JOINING) &&
            wt_ws_buffered(&eds[i]->ws)) {
            int rc = wt_editor_pump(eds[i], 0);
            if (rc > 0)
                handled += rc;
        }
    }
    if (handled > 0)
        timeout_ms = 0;
    for (size_t i = 0; i < n && np < 256; i++) {
        if (eds[i]->state != WT_ED_SYNCED && eds[i]->state != WT_ED_JOINING)
            continue;
        pfd[np].fd = eds[i]->ws.fd;
        pfd[np].events = POLLIN;
        pfd[np].revents = 0;
        map[np++] = i;
    }
    if (np == 0)
        return handled;
    if (poll(pfd, np, timeout_ms) <= 0)
        return handled;
    for (size_t k = 0; k < np; k++) {
        if (pfd[k].revents == 0)
            continue;
        int rc = wt_editor_pump(eds[map[k]], 0);
        if (rc > 0)
            handled += rc;
    }
    return handled;
}

static int all_converged(wt_editor_t *const *eds, size_t n)
{
    char *first = wt_editor_text(eds[0]);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        if (eds[i]->n_unacked != 0 || (i > 0 && !wt_editor_text_is(eds[i], first)))
            ok = 0;
    }
    free(first);
    return ok;
}

int wt_editors_wait_converged(wt_editor_t *const *eds, size_t n, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    for (;;) {
        if (all_converged(eds, n))
            return 0;
        int left = wt_ms_left(deadline);
        if (left == 0)
            return WT_ETIMEOUT;
        wt_editors_pump(eds, n, left > 50 ? 50 : left);
    }
}
