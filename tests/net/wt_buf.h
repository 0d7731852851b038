/* SPDX-License-Identifier: MIT */
/*
 * wt_buf.h: a growable byte buffer for weft's network test helpers (tests/net).
 * Every other wt_ file builds its frames, requests and input queues on it.
 * Allocation failure aborts: these helpers serve tests and benchmarks only.
 * No global state; a buffer is used by one thread at a time.
 */
#ifndef WEFT_WT_BUF_H
#define WEFT_WT_BUF_H

#include <stddef.h>
#include <stdint.h>

/* `data` holds `len` bytes (and capacity `cap`); a zeroed struct is an empty buffer. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} wt_buf_t;

/* Makes room for `extra` more bytes and returns a pointer to the end of the data. */
uint8_t *wt_buf_reserve(wt_buf_t *b, size_t extra);

/* Appends `len` bytes (`len` may be 0). */
void wt_buf_append(wt_buf_t *b, const void *data, size_t len);

/* Appends printf-formatted text (no NUL counted; the data stays NUL-terminated). */
void wt_buf_printf(wt_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the first `n` bytes (n <= len), moving the rest to the front. */
void wt_buf_consume(wt_buf_t *b, size_t n);

/* Frees the memory and zeroes the buffer. Safe on a zeroed buffer. */
void wt_buf_dispose(wt_buf_t *b);

#endif /* WEFT_WT_BUF_H */
