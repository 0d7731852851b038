/* SPDX-License-Identifier: MIT */
/*
 * fuzz_rules.h: rules of weftd written out independently of server/, for the
 * fuzz targets to check the server's parsers against. Header-only.
 */
#ifndef WEFT_FUZZ_RULES_H
#define WEFT_FUZZ_RULES_H

#include <stddef.h>
#include <string.h>

#include "srv.h"

/* The document-name rule of srv.h: 1 to SRV_MAX_DOCNAME bytes of
 * A-Z a-z 0-9 . _ ~ -. Returns 1 if p[0..n) follows it. */
static inline int fuzz_docname_rule(const char *p, size_t n)
{
    static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789._~-";
    if (n < 1 || n > SRV_MAX_DOCNAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\0' || strchr(allowed, p[i]) == NULL)
            return 0;
    return 1;
}

#endif
