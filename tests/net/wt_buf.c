/* SPDX-License-Identifier: MIT */
/*
 * wt_buf.c: the growable byte buffer of tests/net (see wt_buf.h). It doubles its
 * capacity when full and keeps one spare byte so text stays NUL-terminated.
 */
#include "wt_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *wt_buf_reserve(wt_buf_t *b, size_t extra)
{
    if (b->cap - b->len < extra + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < extra + 1)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (p == NULL) {
            fprintf(stderr, "wt_buf: out of memory (%zu bytes)\n", cap);
            abort();
        }
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void wt_buf_append(wt_buf_t *b, const void *data, size_t len)
{
    uint8_t *p = wt_buf_reserve(b, len);
    if (len)
        memcpy(p, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

void wt_buf_printf(wt_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    uint8_t *p = wt_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf((char *)p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void wt_buf_consume(wt_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = 0;
}

void wt_buf_dispose(wt_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
