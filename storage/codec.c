/* SPDX-License-Identifier: MIT */
/*
 * codec.c: the storage module's on-disk encodings (docs/storage.md): big-endian
 * integers and (doc id, seq) keys, CRC-32C, and the encoders and checked
 * parsers of metadata (formats 1 and 2), log entry (formats 1 and 2), snapshot, version and
 * replica-name values, plus name validation, LMDB error translation and
 * store_strerror(). Every value read from the file is disk input: parsers
 * check lengths and format bytes with `if` and return STORE_ECORRUPT /
 * STORE_EFORMAT, never assert. Thread-safe: the only shared state is the CRC
 * table, built once under pthread_once.
 */
#define _POSIX_C_SOURCE 200809L
#include "store_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void store__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void store__put_u64(uint8_t *p, uint64_t v)
{
    store__put_u32(p, (uint32_t)(v >> 32));
    store__put_u32(p + 4, (uint32_t)v);
}

uint32_t store__get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t store__get_u64(const uint8_t *p)
{
    return (uint64_t)store__get_u32(p) << 32 | store__get_u32(p + 4);
}

void store__key(store__key_t *k, uint64_t doc_id, uint64_t seq)
{
    store__put_u64(k->b, doc_id);
    store__put_u64(k->b + 8, seq);
}

int store__key_in_doc(const MDB_val *v, uint64_t doc_id, uint64_t *seq)
{
    uint8_t id[8];
    store__put_u64(id, doc_id);
    size_t n = v->mv_size < 8 ? v->mv_size : 8;
    if (memcmp(v->mv_data, id, n) != 0)
        return 0;
    if (v->mv_size != 16)
        return -1;
    *seq = store__get_u64((const uint8_t *)v->mv_data + 8);
    return 1;
}

/* ---- CRC-32C (Castagnoli, reflected 0x82F63B78), one table lookup a byte ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t store__crc32c(const uint8_t *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- values ------------------------------------------------------------ */

/*
 * Meta, format 2 (written): [0] 2, [1..9) doc id, [9..17) next seq, [17..25)
 * latest snapshot seq, [25..33) created ms, [33..41) entries, [41..49) update
 * bytes, [49..57) the latest snapshot's state length, [57..65) update bytes of
 * the entries up to that snapshot. Format 1 (read only, written before
 * size-aware snapshots): the first 49 bytes; the last two read as 0.
 */
void store__meta_encode(uint8_t out[STORE__META_LEN], const store__meta_t *m)
{
    out[0] = STORE__VALUE_V2;
    store__put_u64(out + 1, m->doc_id);
    store__put_u64(out + 9, m->next_seq);
    store__put_u64(out + 17, m->snapshot_seq);
    store__put_u64(out + 25, m->created_ms);
    store__put_u64(out + 33, m->entries);
    store__put_u64(out + 41, m->bytes);
    store__put_u64(out + 49, m->snapshot_len);
    store__put_u64(out + 57, m->snapshot_bytes);
}

int store__meta_parse(const MDB_val *v, store__meta_t *m)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 1)
        return STORE_ECORRUPT;
    if (p[0] != STORE__VALUE_V1 && p[0] != STORE__VALUE_V2)
        return STORE_EFORMAT;
    if (v->mv_size != (p[0] == STORE__VALUE_V1 ? STORE__META_LEN_V1 : STORE__META_LEN))
        return STORE_ECORRUPT;
    store__meta_t t;
    t.doc_id = store__get_u64(p + 1);
    t.next_seq = store__get_u64(p + 9);
    t.snapshot_seq = store__get_u64(p + 17);
    t.created_ms = store__get_u64(p + 25);
    t.entries = store__get_u64(p + 33);
    t.bytes = store__get_u64(p + 41);
    t.snapshot_len = p[0] == STORE__VALUE_V2 ? store__get_u64(p + 49) : 0;
    t.snapshot_bytes = p[0] == STORE__VALUE_V2 ? store__get_u64(p + 57) : 0;
    /* Sequences start at 1 and every seq below next_seq is one entry; the
     * bytes up to the snapshot are part of the bytes of the whole log. */
    if (t.doc_id == 0 || t.next_seq == 0 || t.next_seq == UINT64_MAX ||
        t.entries != t.next_seq - 1 || t.snapshot_seq >= t.next_seq || t.snapshot_bytes > t.bytes)
        return STORE_ECORRUPT;
    *m = t;
    return 0;
}

/*
 * Entry, format 2 (written): [0] 2, [1..5) CRC-32C of bytes 5.., [5..13)
 * author, [13..21) time, [21..29) restore_of, [29] author name length, then
 * the name, then the update bytes. Format 1 (read only, written before
 * document history): the same without restore_of, so the name length is at
 * [21] and the name at 22.
 */
void store__entry_encode(uint8_t *out, const store_entry_t *e)
{
    out[0] = STORE__VALUE_V2;
    store__put_u64(out + STORE__ENTRY_AUTHOR, e->author);
    store__put_u64(out + STORE__ENTRY_TIME, e->time_ms);
    store__put_u64(out + STORE__ENTRY_RESTORE, e->restore_of);
    out[STORE__ENTRY_NAME_LEN] = (uint8_t)e->author_name_len;
    if (e->author_name_len)
        memcpy(out + STORE__ENTRY_HDR, e->author_name, e->author_name_len);
    memcpy(out + STORE__ENTRY_HDR + e->author_name_len, e->update, e->update_len);
    size_t total = STORE__ENTRY_HDR + e->author_name_len + e->update_len;
    store__put_u32(out + 1, store__crc32c(out + 5, total - 5));
}

int store__entry_layout(const MDB_val *v, size_t *hdr_out, size_t *name_len_out)
{
    const uint8_t *p = v->mv_data;
    size_t n = v->mv_size, hdr;
    if (n < 1)
        return STORE_ECORRUPT;
    if (p[0] == STORE__VALUE_V2)
        hdr = STORE__ENTRY_HDR;
    else if (p[0] == STORE__VALUE_V1)
        hdr = STORE__ENTRY_HDR_V1;
    else
        return STORE_EFORMAT;
    if (n < hdr)
        return STORE_ECORRUPT;
    size_t name_len = p[hdr - 1];
    if (name_len > STORE_AUTHOR_NAME_MAX || n - hdr < name_len)
        return STORE_ECORRUPT;
    *hdr_out = hdr;
    *name_len_out = name_len;
    return 0;
}

int store__entry_parse(const MDB_val *v, store_entry_t *e)
{
    const uint8_t *p = v->mv_data;
    size_t n = v->mv_size, hdr, name_len;
    int err = store__entry_layout(v, &hdr, &name_len);
    if (err)
        return err;
    if (store__crc32c(p + 5, n - 5) != store__get_u32(p + 1))
        return STORE_ECORRUPT;
    e->author = store__get_u64(p + STORE__ENTRY_AUTHOR);
    e->time_ms = store__get_u64(p + STORE__ENTRY_TIME);
    e->restore_of = hdr == STORE__ENTRY_HDR ? store__get_u64(p + STORE__ENTRY_RESTORE) : 0;
    e->author_name = (const char *)p + hdr;
    e->author_name_len = name_len;
    e->update = p + hdr + name_len;
    e->update_len = n - hdr - name_len;
    return 0;
}

/* Snapshot: [0] format, [1..5) CRC-32C of the state, then the state. */
int store__snap_parse(const MDB_val *v, const uint8_t **state, size_t *len)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 1)
        return STORE_ECORRUPT;
    if (p[0] != STORE__VALUE_V1)
        return STORE_EFORMAT;
    if (v->mv_size < STORE__SNAP_HDR)
        return STORE_ECORRUPT;
    size_t n = v->mv_size - STORE__SNAP_HDR;
    if (store__crc32c(p + STORE__SNAP_HDR, n) != store__get_u32(p + 1))
        return STORE_ECORRUPT;
    *state = p + STORE__SNAP_HDR;
    *len = n;
    return 0;
}

/* Version: [0] format, [1..9) author, [9..17) time, [17] label length, label. */
int store__version_parse(const MDB_val *v, store_version_t *out)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 1)
        return STORE_ECORRUPT;
    if (p[0] != STORE__VALUE_V1)
        return STORE_EFORMAT;
    if (v->mv_size < STORE__VERSION_HDR || p[17] > STORE_LABEL_MAX ||
        v->mv_size != STORE__VERSION_HDR + (size_t)p[17])
        return STORE_ECORRUPT;
    out->author = store__get_u64(p + 1);
    out->time_ms = store__get_u64(p + 9);
    out->label_len = p[17];
    out->label = (const char *)p + STORE__VERSION_HDR;
    return 0;
}

size_t store__replica_encode(uint8_t *out, const char *name, size_t len)
{
    out[0] = STORE__VALUE_V1;
    out[1] = (uint8_t)len;
    if (len)
        memcpy(out + STORE__REPLICA_HDR, name, len);
    return STORE__REPLICA_HDR + len;
}

int store__replica_parse(const MDB_val *v, const char **name, size_t *len)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 1)
        return STORE_ECORRUPT;
    if (p[0] != STORE__VALUE_V1)
        return STORE_EFORMAT;
    if (v->mv_size < STORE__REPLICA_HDR || p[1] > STORE_AUTHOR_NAME_MAX ||
        v->mv_size != STORE__REPLICA_HDR + (size_t)p[1])
        return STORE_ECORRUPT;
    *name = (const char *)p + STORE__REPLICA_HDR;
    *len = p[1];
    return 0;
}

bool store__name_ok(const char *name, size_t len)
{
    if (!name || len < 1 || len > STORE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '~' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int store__from_mdb(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return STORE_ENOTFOUND;
    case MDB_MAP_FULL:
        return STORE_EFULL;
    case MDB_READERS_FULL:
    case MDB_TLS_FULL:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case MDB_DBS_FULL:
        return STORE_EBUSY;
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
        return STORE_EFORMAT;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_BAD_VALSIZE:
    case MDB_KEYEXIST:
        return STORE_ECORRUPT;
    case ENOMEM:
        return STORE_ENOMEM;
    case EACCES:
    case EPERM:
    case EROFS:
        return STORE_EACCES;
    case EINVAL:
    case MDB_BAD_TXN:
    case MDB_BAD_RSLOT:
    case MDB_BAD_DBI:
    case MDB_MAP_RESIZED:
        return STORE_EINTERNAL;
    default:
        return STORE_EIO;
    }
}

uint64_t store__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *store_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define STORE__ERRNO_CASE(name, value, text)                                                       \
    case STORE_##name:                                                                             \
        return text;
        STORE_ERRNO_MAP(STORE__ERRNO_CASE)
#undef STORE__ERRNO_CASE
    default:
        return "unknown error";
    }
}
