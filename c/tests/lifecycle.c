/*
 * lifecycle: open / align / tokenize / free cycles and the error paths of libtransalign, for
 * valgrind memcheck (tests/test_c_library.py runs it: zero errors, nothing definitely lost).
 *
 *   lifecycle BUNDLE [CYCLES]   exit status 0 when every call returned what it should
 *   (cycle k opens the bundle in fp32 when k is even, int8 when odd; default 2 cycles)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transalign.h"

static int failures = 0;

static void expect(int got, int want, const char *what) {
    if (got != want) {
        fprintf(stderr, "lifecycle: %s: got %s (%s), want %s\n", what, ta_status_name(got), ta_errmsg(),
                ta_status_name(want));
        ++failures;
    } else if (want != TA_OK && ta_errmsg()[0] == '\0') {
        fprintf(stderr, "lifecycle: %s: no message\n", what);
        ++failures;
    }
}

int main(int argc, char **argv) {
    const char *src_words[] = {"Ne", "b\xc9\x9b", "taa", "sugu", "la", "."};
    const char *tgt_words[] = {"I", "am", "going", "to", "the", "market", "."};
    const char *bad_words[] = {"ok", "\xff"};
    const char *null_words[] = {NULL};
    ta_sentence src[2] = {{src_words, 6}, {NULL, 0}};
    ta_sentence tgt[2] = {{tgt_words, 7}, {tgt_words, 2}};
    ta_sentence bad = {bad_words, 2}, null_word = {null_words, 1};
    ta_open_options open_options;
    ta_align_options align_options;
    ta_aligner *aligner = NULL;
    ta_result *result = NULL;
    ta_tokens *tokens = NULL;
    char path[4096];
    int cycle, cycles;

    if (argc != 2 && argc != 3) return 2;
    cycles = argc == 3 ? atoi(argv[2]) : 2;
    ta_open_options_init(&open_options);
    open_options.threads = 1;
    ta_align_options_init(&align_options);
    for (cycle = 0; cycle < cycles; ++cycle) {
        open_options.precision = cycle % 2 ? "int8" : "fp32";
        expect(ta_open(argv[1], &open_options, &aligner), TA_OK, "ta_open");
        if (!aligner) return 1;
        expect(ta_align(aligner, src, tgt, 2, "bam_Latn", "eng_Latn", &align_options, &result), TA_OK, "ta_align");
        if (result && ta_result_count(result) == 2) {
            const int32_t *links;
            size_t n;
            expect(ta_result_links(result, 0, &links, &n), TA_OK, "ta_result_links");
            if (n == 0 || strlen(ta_result_pharaoh(result, 0)) < 3) ++failures;
            expect(ta_result_links(result, 5, &links, &n), TA_ERR_ARGUMENT, "ta_result_links out of range");
        } else {
            ++failures;
        }
        ta_result_free(result);
        result = NULL;
        expect(ta_tokenize(aligner, &src[0], "bam_Latn", &tokens), TA_OK, "ta_tokenize");
        ta_tokens_free(tokens);
        /* the sized-word forms, a word holding NUL, the status getters, the caller-memory line */
        {
            const char *nul_words[] = {"a\0b", "c"};
            size_t nul_lengths[] = {3, 1};
            ta_sized_sentence sized[2] = {{nul_words, nul_lengths, 2}, {tgt_words, NULL, 7}};
            char line[256];
            size_t needed = 0, value = 0;
            int has = 0, skipped = -1;
            double threshold = -1;
            const char *provider = NULL;
            expect(ta_align_sized(aligner, &sized[0], &sized[1], 1, "bam_Latn", "eng_Latn", NULL, &result), TA_OK,
                   "ta_align_sized");
            expect(ta_result_pharaoh_into(result, 0, line, sizeof line, &needed), TA_OK, "ta_result_pharaoh_into");
            expect(ta_result_pharaoh_into(result, 0, line, 1, &needed), TA_ERR_ARGUMENT, "pharaoh_into too small");
            expect(ta_result_get_skipped(result, 0, &skipped), TA_OK, "ta_result_get_skipped");
            ta_result_free(result);
            result = NULL;
            expect(ta_tokenize_sized(aligner, &sized[0], "bam_Latn", &tokens), TA_OK, "ta_tokenize_sized");
            ta_tokens_free(tokens);
            expect(ta_aligner_get_language(aligner, "xx", &has), TA_OK, "ta_aligner_get_language");
            expect(ta_aligner_get_default_threshold(aligner, &threshold), TA_OK, "get_default_threshold");
            expect(ta_aligner_get_provider(aligner, &provider), TA_OK, "get_provider");
            expect(ta_aligner_get_batch_tokens(aligner, &value), TA_OK, "get_batch_tokens");
            expect(ta_aligner_get_max_sentence_chars(aligner, &value), TA_OK, "get_max_sentence_chars");
            expect(ta_aligner_get_language(NULL, "xx", &has), TA_ERR_ARGUMENT, "get_language NULL");
        }
        /* error paths with an open handle */
        expect(ta_align(aligner, src, tgt, 2, "bam_Latn", "eng_latn", NULL, &result), TA_ERR_LANGUAGE, "language");
        expect(ta_align(aligner, &bad, tgt, 1, "bam_Latn", "eng_Latn", NULL, &result), TA_ERR_UTF8, "utf-8");
        expect(ta_align(aligner, &null_word, tgt, 1, "bam_Latn", "eng_Latn", NULL, &result), TA_ERR_ARGUMENT, "NULL word");
        expect(ta_align(aligner, NULL, NULL, 1, "bam_Latn", "eng_Latn", NULL, &result), TA_ERR_ARGUMENT, "NULL src");
        expect(ta_align(aligner, src, tgt, 0, "bam_Latn", "eng_Latn", NULL, &result), TA_OK, "no pairs");
        ta_result_free(result);
        result = NULL;
        ta_close(aligner);
        aligner = NULL;
    }
    /* error paths without a handle */
    expect(ta_open("/nonexistent/bundle", NULL, &aligner), TA_ERR_BUNDLE, "missing bundle");
    expect(ta_open(NULL, NULL, &aligner), TA_ERR_ARGUMENT, "NULL bundle");
    open_options.precision = "fp16";
    expect(ta_open(argv[1], &open_options, &aligner), TA_ERR_UNSUPPORTED, "fp16 on CPU");
    snprintf(path, sizeof path, "%s/model.onnx", argv[1]);
    expect(ta_open(path, NULL, &aligner), TA_ERR_BUNDLE, "a file, not a bundle");
    expect(ta_align(NULL, src, tgt, 1, "bam_Latn", "eng_Latn", NULL, &result), TA_ERR_ARGUMENT, "NULL aligner");
    ta_close(NULL);
    ta_result_free(NULL);
    ta_tokens_free(NULL);
    if (failures) fprintf(stderr, "lifecycle: %d failures\n", failures);
    else printf("lifecycle: ok\n");
    return failures ? 1 : 0;
}
