/* SPDX-License-Identifier: MIT */
/*
 * fuzz_srv_config.c: libFuzzer target for the input checks of weftd that run
 * without its event loop (server/srv.h): srv_docname_valid() and
 * srv_config_parse(). (Tokens, request paths, query strings and the JSON
 * bodies of the history routes have fuzz_token.c and fuzz_http.c.)
 *
 * The input is split at NUL bytes into command-line arguments that follow
 * "weftd" (an empty input is no argument); each argument is a heap block of its
 * own, so the sanitizers see any read past one. Properties:
 *
 *   - srv_docname_valid() agrees with the rule srv.h states (1..SRV_MAX_DOCNAME
 *     bytes of [A-Za-z0-9._~-]) on the whole input and on every argument;
 *   - srv_config_parse() returns 0, 1 or SRV_EUSAGE, whatever the size of the
 *     error buffer (1..64 bytes, allocated exactly); on SRV_EUSAGE the config is
 *     untouched and the reason is a non-empty NUL-terminated string; 1 only when
 *     an argument asks for help; on 0 every field is inside the range --help
 *     states, the host is a non-empty string, the directories, TLS files and
 *     allowed origins are non-empty and borrowed from argv or the defaults, TLS
 *     has both files or neither, a token secret has a length in its range;
 *   - an accepted config, written back as a command line (every flag, --flag
 *     VALUE), parses to the same config.
 *
 * A flag added to weftd belongs in same_config(), check_ranges() and
 * check_restated() below (and a seed in make_corpus.c); until then the round
 * trip simply ignores it. A violated property aborts with its description. Seed corpus in
 * tests/fuzz/corpus/srv_config/ (NUL-separated arguments, document names).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"
#include "fuzz_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_srv_config: %s\n", what);
        abort();
    }
}

/* True if `s` points into one of the arguments argv[1 .. argc). */
static int borrowed_from(const char *s, int argc, char **argv)
{
    uintptr_t p = (uintptr_t)s;
    for (int i = 1; i < argc; i++) {
        uintptr_t a = (uintptr_t)argv[i];
        if (p >= a && p <= a + strlen(argv[i]))
            return 1;
    }
    return 0;
}

static int is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strncmp(a, "--help=", 7) == 0;
}

/* Both NULL, or equal strings. */
static int same_str(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int same_origins(const srv_config_t *a, const srv_config_t *b)
{
    if (a->n_allow_origin != b->n_allow_origin)
        return 0;
    for (size_t i = 0; i < a->n_allow_origin; i++)
        if (strcmp(a->allow_origin[i], b->allow_origin[i]) != 0)
            return 0;
    return 1;
}

static int same_config(const srv_config_t *a, const srv_config_t *b)
{
    return strcmp(a->listen_host, b->listen_host) == 0 && a->listen_port == b->listen_port &&
           strcmp(a->data_dir, b->data_dir) == 0 && strcmp(a->web_root, b->web_root) == 0 &&
           a->max_message == b->max_message && a->max_queued == b->max_queued &&
           a->ping_interval == b->ping_interval && a->ping_timeout == b->ping_timeout &&
           a->unload_after == b->unload_after && a->snapshot_every == b->snapshot_every &&
           a->map_size_mb == b->map_size_mb && a->history_burst_gap_ms == b->history_burst_gap_ms &&
           a->history_burst_max_ms == b->history_burst_max_ms &&
           a->max_conns_per_ip == b->max_conns_per_ip &&
           a->max_msgs_per_sec == b->max_msgs_per_sec && a->max_doc_bytes == b->max_doc_bytes &&
           a->max_documents == b->max_documents && a->max_pending == b->max_pending &&
           a->token_secret_len == b->token_secret_len &&
           memcmp(a->token_secret, b->token_secret, a->token_secret_len) == 0 &&
           same_str(a->tls_cert, b->tls_cert) && same_str(a->tls_key, b->tls_key) &&
           same_origins(a, b);
}

/* The ranges of srv_config_usage(). */
static void check_ranges(const srv_config_t *c, const srv_config_t *defaults, int argc, char **argv)
{
    size_t hl = strnlen(c->listen_host, sizeof(c->listen_host));
    must(hl > 0 && hl < sizeof(c->listen_host), "listen host empty or not terminated");
    must(c->max_message >= 64 && c->max_message <= 64u << 20, "--max-message out of range");
    must(c->max_queued >= 1024 && c->max_queued <= 1ull << 34, "--max-queued out of range");
    must(c->ping_interval >= 1 && c->ping_interval <= 86400, "--ping-interval out of range");
    must(c->ping_timeout >= 1 && c->ping_timeout <= 86400, "--ping-timeout out of range");
    must(c->unload_after <= 86400, "--unload-after out of range");
    must(c->snapshot_every >= 1 && c->snapshot_every <= 1u << 30, "--snapshot-every out of range");
    must(c->map_size_mb >= 1 && c->map_size_mb <= 1u << 20, "--map-size out of range");
    must(c->history_burst_gap_ms <= 1ull << 40, "--history-burst-gap out of range");
    must(c->history_burst_max_ms <= 1ull << 40, "--history-burst-max out of range");
    must(c->max_conns_per_ip <= 1u << 20, "--max-connections-per-ip out of range");
    must(c->max_msgs_per_sec >= 1 && c->max_msgs_per_sec <= 1000000,
         "--max-messages-per-second out of range");
    must(c->max_doc_bytes >= 1 && c->max_doc_bytes <= 1ull << 40,
         "--max-document-bytes out of range");
    must(c->max_documents >= 1 && c->max_documents <= 1u << 24, "--max-documents out of range");
    must(c->max_pending >= 1 && c->max_pending <= 1u << 24, "--max-pending out of range");
    must(c->token_secret_len == 0 || (c->token_secret_len >= SRV_MIN_TOKEN_SECRET &&
                                      c->token_secret_len <= SRV_MAX_TOKEN_SECRET),
         "token secret of a length outside its range");
    must(c->n_allow_origin <= SRV_MAX_ORIGINS, "too many --allow-origin");
    for (size_t i = 0; i < c->n_allow_origin; i++)
        must(*c->allow_origin[i] != '\0' && borrowed_from(c->allow_origin[i], argc, argv),
             "an allowed origin empty or not from argv");
    must((c->tls_cert == NULL) == (c->tls_key == NULL), "only one of --tls-cert, --tls-key");
    must(c->tls_cert == NULL || (*c->tls_cert != '\0' && borrowed_from(c->tls_cert, argc, argv) &&
                                 *c->tls_key != '\0' && borrowed_from(c->tls_key, argc, argv)),
         "a TLS file name empty or not from argv");
    must(c->data_dir != NULL && *c->data_dir != '\0', "empty data directory");
    must(c->web_root != NULL && *c->web_root != '\0', "empty web root");
    must(c->data_dir == defaults->data_dir || borrowed_from(c->data_dir, argc, argv),
         "data directory neither the default nor from argv");
    must(c->web_root == defaults->web_root || borrowed_from(c->web_root, argc, argv),
         "web root neither the default nor from argv");
}

/* Writes an accepted config back as a command line and parses it again. */
static void check_restated(const srv_config_t *c)
{
    char listen[80], nums[14][24], secret[SRV_MAX_TOKEN_SECRET + 1];
    char *argv[80];
    int argc = 0, n = 0;
    srv_config_t again;
    char err[256];
    const struct {
        const char *flag;
        unsigned long long v;
    } flags[14] = {
        {"--max-message", c->max_message},
        {"--max-queued", c->max_queued},
        {"--ping-interval", c->ping_interval},
        {"--ping-timeout", c->ping_timeout},
        {"--unload-after", c->unload_after},
        {"--snapshot-every", c->snapshot_every},
        {"--map-size", c->map_size_mb},
        {"--history-burst-gap", c->history_burst_gap_ms},
        {"--history-burst-max", c->history_burst_max_ms},
        {"--max-connections-per-ip", c->max_conns_per_ip},
        {"--max-messages-per-second", c->max_msgs_per_sec},
        {"--max-document-bytes", c->max_doc_bytes},
        {"--max-documents", c->max_documents},
        {"--max-pending", c->max_pending},
    };

    /* A secret read from a file may hold a NUL byte: no command line says that. */
    if (memchr(c->token_secret, '\0', c->token_secret_len) != NULL)
        return;

    /* Brackets always: the parser takes them off, and the host may hold ':'. */
    snprintf(listen, sizeof listen, "[%s]:%u", c->listen_host, (unsigned)c->listen_port);
    argv[argc++] = (char *)"weftd";
    argv[argc++] = (char *)"--listen";
    argv[argc++] = listen;
    argv[argc++] = (char *)"--data";
    argv[argc++] = (char *)c->data_dir;
    argv[argc++] = (char *)"--web-root";
    argv[argc++] = (char *)c->web_root;
    for (n = 0; n < 14; n++) {
        snprintf(nums[n], sizeof nums[n], "%llu", flags[n].v);
        argv[argc++] = (char *)flags[n].flag;
        argv[argc++] = nums[n];
    }
    if (c->token_secret_len > 0) {
        memcpy(secret, c->token_secret, c->token_secret_len);
        secret[c->token_secret_len] = '\0';
        argv[argc++] = (char *)"--token-secret";
        argv[argc++] = secret;
    }
    for (size_t i = 0; i < c->n_allow_origin; i++) {
        argv[argc++] = (char *)"--allow-origin";
        argv[argc++] = (char *)c->allow_origin[i];
    }
    if (c->tls_cert != NULL) {
        argv[argc++] = (char *)"--tls-cert";
        argv[argc++] = (char *)c->tls_cert;
        argv[argc++] = (char *)"--tls-key";
        argv[argc++] = (char *)c->tls_key;
    }
    argv[argc] = NULL;
    srv_config_init(&again);
    must(srv_config_parse(&again, argc, argv, err, sizeof err) == 0,
         "an accepted config, written back as a command line, is refused");
    must(same_config(c, &again), "an accepted config, written back, parses to another config");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_config_t defaults, cfg, before;
    char **argv;
    char *err;
    size_t errlen;
    int argc = 1, r, help = 0;

    /* the document-name rule, on the whole input */
    {
        char *name = malloc(size ? size : 1);
        must(name != NULL, "out of memory");
        memcpy(name, data, size);
        must(srv_docname_valid(name, size) == fuzz_docname_rule((const char *)data, size),
             "srv_docname_valid disagrees with the rule of srv.h (whole input)");
        free(name);
    }

    /* split into arguments */
    for (size_t i = 0; i < size; i++)
        argc += data[i] == '\0';
    if (size > 0)
        argc++;
    argv = calloc((size_t)argc + 1, sizeof *argv);
    must(argv != NULL, "out of memory");
    argv[0] = (char *)"weftd";
    for (size_t i = 0, start = 0, k = 1; size > 0 && i <= size; i++) {
        if (i == size || data[i] == '\0') {
            size_t n = i - start;
            argv[k] = malloc(n + 1);
            must(argv[k] != NULL, "out of memory");
            memcpy(argv[k], data + start, n);
            argv[k][n] = '\0';
            must(srv_docname_valid(argv[k], n) == fuzz_docname_rule((const char *)data + start, n),
                 "srv_docname_valid disagrees with the rule of srv.h (an argument)");
            help |= is_help(argv[k]);
            k++;
            start = i + 1;
        }
    }

    /* the command line: a small error buffer of an input-dependent size, then
     * a large one; both must give the same result */
    errlen = 1 + size % 64;
    err = malloc(errlen);
    must(err != NULL, "out of memory");
    srv_config_init(&defaults);
    cfg = defaults;
    before = cfg;
    r = srv_config_parse(&cfg, argc, argv, err, errlen);
    must(r == 0 || r == 1 || r == SRV_EUSAGE, "srv_config_parse returned an unexpected value");
    if (r == SRV_EUSAGE) {
        must(memcmp(&cfg, &before, sizeof cfg) == 0, "a refused command line changed the config");
        must(memchr(err, '\0', errlen) != NULL, "error reason not terminated");
        must(errlen == 1 || err[0] != '\0', "empty error reason");
    } else if (r == 1) {
        must(help, "help reported without -h or --help");
    } else {
        check_ranges(&cfg, &defaults, argc, argv);
        check_restated(&cfg);
    }
    {
        srv_config_t cfg2 = defaults;
        char err2[256];
        int r2 = srv_config_parse(&cfg2, argc, argv, err2, sizeof err2);
        must(r2 == r, "the result depends on the size of the error buffer");
        must(r != 0 || same_config(&cfg, &cfg2), "two parses of one command line differ");
        must(r != SRV_EUSAGE || strlen(err2) > 0, "empty error reason");
        must(r != SRV_EUSAGE || strncmp(err, err2, errlen - 1) == 0,
             "a truncated error reason is not a prefix of the whole");
    }

    free(err);
    for (int i = 1; i < argc; i++)
        free(argv[i]);
    free(argv);
    return 0;
}
