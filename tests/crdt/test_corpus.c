/* SPDX-License-Identifier: MIT */
/*
 * test_corpus.c: replays every file of the committed fuzz corpus
 * (WEFT_CORPUS_DIR/apply_update, i.e. tests/fuzz/corpus/apply_update/) through
 * the checks of the crdt_doc_apply_update() fuzz target
 * (tests/fuzz/fuzz_apply_update_check.h), so the corpus, including inputs that
 * once crashed the engine, runs on every build and not only under libFuzzer.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/fuzz_apply_update_check.h"

#ifndef WEFT_CORPUS_DIR
#error "WEFT_CORPUS_DIR must name the directory of the fuzz corpora"
#endif

#define CORPUS WEFT_CORPUS_DIR "/apply_update"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file; returns NULL on error. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        size_t got;
        if (n == cap) {
            uint8_t *p;
            cap = cap ? cap * 2 : 4096;
            p = realloc(buf, cap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void test_apply_update_corpus_keeps_properties(void **state)
{
    DIR *dir = opendir(CORPUS);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, failed = 0;
    (void)state;
    if (dir == NULL)
        fail_msg("cannot open the corpus directory %s", CORPUS);
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(char *));
            assert_non_null(names);
        }
        names[n] = malloc(strlen(e->d_name) + 1);
        assert_non_null(names[n]);
        strcpy(names[n++], e->d_name);
    }
    closedir(dir);
    qsort(names, n, sizeof(char *), by_name);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        size_t len = 0;
        uint8_t *data;
        const char *bad;
        snprintf(path, sizeof path, "%s/%s", CORPUS, names[i]);
        data = read_file(path, &len);
        if (data == NULL)
            fail_msg("cannot read %s", path);
        bad = fuzz_apply_update_check(data, len);
        if (bad != NULL) {
            print_error("%s (%zu bytes): %s\n", names[i], len, bad);
            failed++;
        }
        free(data);
    }
    print_message("%zu corpus files replayed, %zu failed\n", n, failed);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (n < 12)
        fail_msg("only %zu files in %s", n, CORPUS);
    if (failed)
        fail_msg("%zu corpus files break the properties of fuzz_apply_update_check.h", failed);
}

/* The checker itself: the follow-up update applies to the initial document. */
static void test_apply_update_corpus_checker_baseline(void **state)
{
    crdt_doc_t *doc = NULL;
    crdt_buf_t follow_up, text;
    (void)state;
    assert_int_equal(fuzz_initial_doc(&doc, &follow_up), 0);
    assert_int_equal(crdt_doc_pending(doc), 1);
    assert_int_equal(crdt_doc_text(doc, &text), 0);
    assert_string_equal((const char *)text.base,
                        "Hello,[B] w\xc3\xb6! \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87");
    crdt_buf_dispose(&text);
    assert_int_equal(crdt_doc_apply_update(doc, follow_up.base, follow_up.len), 0);
    assert_int_equal(crdt_doc_pending(doc), 0);
    assert_int_equal(crdt_doc_text(doc, &text), 0);
    assert_string_equal((const char *)text.base,
                        "Hello,[B] w\xc3\xb6!?! \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87");
    crdt_buf_dispose(&text);
    crdt_buf_dispose(&follow_up);
    /* The concurrent update the inputs must commute with. */
    assert_int_equal(fuzz_partner_update(&follow_up), 0);
    assert_int_equal(crdt_doc_apply_update(doc, follow_up.base, follow_up.len), 0);
    assert_int_equal(crdt_doc_text(doc, &text), 0);
    assert_string_equal((const char *)text.base,
                        "Hello,[B] w\xc3\xb6!?!~ \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87");
    crdt_buf_dispose(&text);
    crdt_buf_dispose(&follow_up);
    crdt_doc_free(doc);
    /* An empty update and a valid no-op pass the checks. */
    {
        static const uint8_t none[] = {1, 0, 0};
        assert_null(fuzz_apply_update_check(none, sizeof none));
        assert_null(fuzz_apply_update_check(none, 0));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_update_corpus_checker_baseline),
        cmocka_unit_test(test_apply_update_corpus_keeps_properties),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
