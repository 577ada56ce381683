/*
 * bench: libtransalign side of c/bench/compare.py. Prints one JSON object:
 *   load_s (ta_open), align_s (all pairs in one ta_align call), pairs, single_p50_ms (each of the
 *   first REPEAT pairs aligned alone, median), peak_rss_mb (getrusage).
 *
 *   bench BUNDLE PRECISION SRC TGT SRC_LANG TGT_LANG [REPEAT]   (files: one sentence per line)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "transalign.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* one sentence per line, words split on ASCII whitespace (enough for the benchmark files) */
static ta_sentence *read_file(const char *path, size_t *count) {
    FILE *in = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0, n = 0, room = 1024;
    ta_sentence *out = malloc(room * sizeof *out);
    if (!in || !out) return NULL;
    while (getline(&line, &cap, in) >= 0) {
        char **words = malloc((strlen(line) / 2 + 2) * sizeof *words), *tok, *save = NULL;
        size_t k = 0;
        for (tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) words[k++] = strdup(tok);
        if (n == room) out = realloc(out, (room *= 2) * sizeof *out);
        out[n].words = (const char *const *)words;
        out[n++].n_words = k;
    }
    free(line);
    fclose(in);
    *count = n;
    return out;
}

int main(int argc, char **argv) {
    ta_open_options options;
    ta_aligner *aligner;
    ta_result *result;
    ta_sentence *src, *tgt;
    size_t n_src, n_tgt, k, repeat = argc > 7 ? (size_t)atoi(argv[7]) : 50;
    double t0, load, align, *single;
    struct rusage usage;
    if (argc < 7) return 2;
    src = read_file(argv[3], &n_src);
    tgt = read_file(argv[4], &n_tgt);
    if (!src || !tgt || n_src != n_tgt) return 1;
    ta_open_options_init(&options);
    options.precision = argv[2];
    t0 = now();
    if (ta_open(argv[1], &options, &aligner) != TA_OK) {
        fprintf(stderr, "%s\n", ta_errmsg());
        return 1;
    }
    load = now() - t0;
    t0 = now();
    if (ta_align(aligner, src, tgt, n_src, argv[5], argv[6], NULL, &result) != TA_OK) {
        fprintf(stderr, "%s\n", ta_errmsg());
        return 1;
    }
    align = now() - t0;
    ta_result_free(result);
    if (repeat > n_src) repeat = n_src;
    single = malloc((repeat + 1) * sizeof *single);
    for (k = 0; k < repeat; ++k) {
        t0 = now();
        if (ta_align(aligner, src + k, tgt + k, 1, argv[5], argv[6], NULL, &result) != TA_OK) return 1;
        single[k] = now() - t0;
        ta_result_free(result);
    }
    qsort(single, repeat, sizeof *single, cmp);
    getrusage(RUSAGE_SELF, &usage);
    printf("{\"load_s\": %.4f, \"align_s\": %.4f, \"pairs\": %zu, \"single_p50_ms\": %.3f, \"peak_rss_mb\": %.1f}\n",
           load, align, n_src, repeat ? single[repeat / 2] * 1e3 : 0.0, usage.ru_maxrss / 1024.0);
    ta_close(aligner);
    return 0;
}
