/*
 * transalign-align: align two sentence files with a bundle through libtransalign, writing one
 * Pharaoh line ("i-j i-j ...") per pair, like `transalign align` with its default formats.
 *
 *   transalign-align BUNDLE --src SRC --tgt TGT --src-lang bam_Latn --tgt-lang eng_Latn
 *                    [--precision fp32|int8|fp16] [--provider cpu|cuda|auto] [--threads N]
 *                    [--threshold T] [--batch-tokens N] [--skip-long] [-o OUT]
 *
 * Input: one sentence per line (a "\r" before "\n" is dropped, a UTF-8 BOM at the start of the
 * file too), words split on Unicode whitespace as Python's str.split(). The output file is
 * written to OUT.tmp and renamed when complete. The example C users start from: it shows the
 * whole API (open, align, read links, free, error messages).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transalign.h"

typedef struct {
    char **words;        /* pointers into text */
    size_t n_words;
    char *text;          /* the line, split in place */
} line_t;

typedef struct {
    line_t *lines;
    size_t n, cap;
} file_t;

static int usage(void) {
    fprintf(stderr, "usage: transalign-align BUNDLE --src SRC --tgt TGT --src-lang CODE --tgt-lang CODE "
                    "[--precision fp32|int8|fp16] [--provider cpu|cuda|auto] [--threads N] [--threshold T] "
                    "[--batch-tokens N] [--skip-long] [-o OUT]\n");
    return 2;
}

/* Length of the Unicode whitespace character (Python str.isspace) at p, or 0. */
static size_t space_len(const unsigned char *p) {
    if ((*p >= 0x09 && *p <= 0x0d) || (*p >= 0x1c && *p <= 0x20)) return 1;
    if (p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;                  /* U+1680 */
    if (p[0] == 0xe2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3;                                                                /* U+2000-200A, 2028, 2029, 202F */
    if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;                  /* U+205F */
    if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;                  /* U+3000 */
    return 0;
}

static int split_line(line_t *line) {
    size_t cap = 8;
    unsigned char *p = (unsigned char *)line->text;
    line->words = malloc(cap * sizeof *line->words);
    line->n_words = 0;
    if (!line->words) return -1;
    while (*p) {
        size_t k;
        while ((k = space_len(p)) != 0) p += k;
        if (!*p) break;
        if (line->n_words == cap) {
            char **grown = realloc(line->words, 2 * cap * sizeof *grown);
            if (!grown) return -1;
            line->words = grown;
            cap *= 2;
        }
        line->words[line->n_words++] = (char *)p;
        while (*p && !space_len(p)) ++p;
        if (*p) {
            k = space_len(p);
            memset(p, 0, k);
            p += k;
        }
    }
    return 0;
}

static int read_lines(const char *path, file_t *file) {
    FILE *in = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    long got;
    memset(file, 0, sizeof *file);
    if (!in) {
        fprintf(stderr, "transalign-align: %s: cannot open\n", path);
        return -1;
    }
    while ((got = (long)getline(&buf, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        line_t *line;
        if (len && buf[len - 1] == '\n') buf[--len] = 0;
        if (len && buf[len - 1] == '\r') buf[--len] = 0;
        if (file->n == 0 && len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) memmove(buf, buf + 3, (len -= 3) + 1);
        if (file->n == file->cap) {
            size_t grown_cap = file->cap ? 2 * file->cap : 1024;
            line_t *grown = realloc(file->lines, grown_cap * sizeof *grown);
            if (!grown) break;
            file->lines = grown;
            file->cap = grown_cap;
        }
        line = &file->lines[file->n++];
        line->text = malloc(len + 4);  /* room for the 3-byte look-ahead of space_len */
        if (!line->text) break;
        memcpy(line->text, buf, len);
        memset(line->text + len, 0, 4);
        if (strlen(line->text) != len) {
            fprintf(stderr, "transalign-align: %s, line %zu: contains a NUL byte\n", path, file->n);
            free(buf);
            fclose(in);
            return -1;
        }
        if (split_line(line) != 0) break;
    }
    free(buf);
    fclose(in);
    return 0;
}

static void free_lines(file_t *file) {
    size_t k;
    for (k = 0; k < file->n; ++k) {
        free(file->lines[k].words);
        free(file->lines[k].text);
    }
    free(file->lines);
}

int main(int argc, char **argv) {
    const char *bundle = NULL, *src_path = NULL, *tgt_path = NULL, *src_lang = NULL, *tgt_lang = NULL, *out_path = NULL;
    ta_open_options open_options;
    ta_align_options align_options;
    ta_aligner *aligner = NULL;
    ta_result *result = NULL;
    ta_sentence *src = NULL, *tgt = NULL;
    file_t src_file, tgt_file;
    FILE *out = stdout;
    char *tmp_path = NULL;
    size_t k, skipped = 0;
    int status, rc = 1, i;

    ta_open_options_init(&open_options);
    ta_align_options_init(&align_options);
    for (i = 1; i < argc; ++i) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(arg, "--skip-long") == 0) { align_options.skip_long = 1; takes = 0; }
        else if (arg[0] != '-' && !bundle) { bundle = arg; takes = 0; }
        else if (!value) return usage();
        else if (strcmp(arg, "--src") == 0) src_path = value;
        else if (strcmp(arg, "--tgt") == 0) tgt_path = value;
        else if (strcmp(arg, "--src-lang") == 0) src_lang = value;
        else if (strcmp(arg, "--tgt-lang") == 0) tgt_lang = value;
        else if (strcmp(arg, "--precision") == 0) open_options.precision = value;
        else if (strcmp(arg, "--provider") == 0) open_options.provider = value;
        else if (strcmp(arg, "--threads") == 0) open_options.threads = atoi(value);
        else if (strcmp(arg, "--threshold") == 0) align_options.threshold = strtod(value, NULL);
        else if (strcmp(arg, "--batch-tokens") == 0) align_options.batch_tokens = (size_t)strtoul(value, NULL, 10);
        else if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) out_path = value;
        else return usage();
        i += takes;
    }
    if (!bundle || !src_path || !tgt_path) return usage();
    if (read_lines(src_path, &src_file) != 0) return 1;
    if (read_lines(tgt_path, &tgt_file) != 0) {
        free_lines(&src_file);
        return 1;
    }
    if (src_file.n != tgt_file.n) {
        fprintf(stderr, "transalign-align: %s has %zu lines but %s has %zu; every source sentence needs exactly one "
                        "target sentence (nothing was written)\n", src_path, src_file.n, tgt_path, tgt_file.n);
        goto done;
    }
    src = calloc(src_file.n + 1, sizeof *src);
    tgt = calloc(tgt_file.n + 1, sizeof *tgt);
    if (!src || !tgt) goto done;
    for (k = 0; k < src_file.n; ++k) {
        src[k].words = (const char *const *)src_file.lines[k].words;
        src[k].n_words = src_file.lines[k].n_words;
        tgt[k].words = (const char *const *)tgt_file.lines[k].words;
        tgt[k].n_words = tgt_file.lines[k].n_words;
    }

    status = ta_open(bundle, &open_options, &aligner);
    if (status != TA_OK) {
        fprintf(stderr, "transalign-align: %s: %s\n", ta_status_name(status), ta_errmsg());
        goto done;
    }
    status = ta_align(aligner, src, tgt, src_file.n, src_lang, tgt_lang, &align_options, &result);
    if (status != TA_OK) {
        fprintf(stderr, "transalign-align: %s: %s\n", ta_status_name(status), ta_errmsg());
        goto done;
    }
    if (out_path) {
        tmp_path = malloc(strlen(out_path) + 5);
        if (!tmp_path) goto done;
        sprintf(tmp_path, "%s.tmp", out_path);
        out = fopen(tmp_path, "wb");
        if (!out) {
            fprintf(stderr, "transalign-align: cannot write %s\n", tmp_path);
            out = stdout;
            goto done;
        }
    }
    for (k = 0; k < ta_result_count(result); ++k) {
        fputs(ta_result_pharaoh(result, k), out);
        fputc('\n', out);
        skipped += ta_result_skipped(result, k) == 1;
    }
    if (out != stdout) {
        if (fclose(out) != 0 || rename(tmp_path, out_path) != 0) {
            fprintf(stderr, "transalign-align: cannot write %s\n", out_path);
            out = stdout;
            goto done;
        }
        out = stdout;
    }
    if (skipped)
        fprintf(stderr, "transalign-align: %zu of %zu pairs were longer than the model's %d tokens and got an empty line\n",
                skipped, src_file.n, ta_aligner_max_positions(aligner));
    rc = 0;
done:
    if (out != stdout) {
        fclose(out);
        remove(tmp_path);
    }
    free(tmp_path);
    ta_result_free(result);
    ta_close(aligner);
    free(src);
    free(tgt);
    free_lines(&src_file);
    free_lines(&tgt_file);
    return rc;
}
