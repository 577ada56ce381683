/*
 * transalign-align: align two sentence files with a bundle through libtransalign, writing one
 * Pharaoh line ("i-j i-j ...") per pair, like `transalign align` with its default formats.
 *
 *   transalign-align BUNDLE --src SRC --tgt TGT [--src-lang bam_Latn --tgt-lang eng_Latn]
 *                    [--precision fp32|int8|fp16] [--provider auto|cpu|cuda] [--threads N]
 *                    [--threshold T] [--batch-tokens N] [--skip-long] [-o OUT]
 *
 * Input: one sentence per line ("-": standard input, for one side; a "\r" before "\n" is
 * dropped, a UTF-8 BOM at the start of the file too), words split on Unicode whitespace as Python's str.split() (so U+0000 is part of a
 * word, as in Python, and reaches the library through ta_align_sized).
 *
 * Output (-o), the policy of transalign/outputs.py, checked before any work:
 *   - a directory, or a file that is one of the inputs (the same file by device and inode, so
 *     also through a symlink, a hard link or another path), is refused;
 *   - a FIFO, character device or socket is written directly;
 *   - a regular file, a new path or a symlink to either: written to a temporary file beside the
 *     real target (.NAME.PID.XXXXXX.tmp) and renamed over it when complete, so it appears whole
 *     or not at all; a symlink stays a symlink (its target is replaced); an existing file keeps
 *     its permission bits, a new one gets 0666 & ~umask; a file with several hard links is
 *     rewritten in place at the end (a rename would cut the other links).
 * The example C users start from: it shows the whole API (open, align, read links, free, errors).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transalign.h"

typedef struct {
    const char **words;  /* pointers into text */
    size_t *lengths;     /* bytes of each word (a word may hold NUL) */
    size_t n_words;
    char *text;          /* the line */
} line_t;

typedef struct {
    line_t *lines;
    size_t n, cap;
} file_t;

static int usage(void) {
    fprintf(stderr, "usage: transalign-align BUNDLE --src SRC --tgt TGT [--src-lang CODE --tgt-lang CODE] "
                    "[--precision fp32|int8|fp16] [--provider auto|cpu|cuda] [--threads N] [--threshold T] "
                    "[--batch-tokens N] [--skip-long] [-o OUT]\n");
    return 2;
}

/* Length of the Unicode whitespace character (Python str.isspace) at p (end: one past the
 * line's last byte), or 0. */
static size_t space_len(const unsigned char *p, const unsigned char *end) {
    size_t left = (size_t)(end - p);
    if ((*p >= 0x09 && *p <= 0x0d) || (*p >= 0x1c && *p <= 0x20)) return 1;
    if (left >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (left < 3) return 0;
    if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;                  /* U+1680 */
    if (p[0] == 0xe2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3;                                                                /* U+2000-200A, 2028, 2029, 202F */
    if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;                  /* U+205F */
    if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;                  /* U+3000 */
    return 0;
}

static int split_line(line_t *line, size_t len) {
    size_t cap = 8;
    const unsigned char *p = (const unsigned char *)line->text, *end = p + len;
    line->words = malloc(cap * sizeof *line->words);
    line->lengths = malloc(cap * sizeof *line->lengths);
    line->n_words = 0;
    if (!line->words || !line->lengths) return -1;
    while (p < end) {
        const unsigned char *start;
        size_t k;
        while (p < end && (k = space_len(p, end)) != 0) p += k;
        if (p == end) break;
        if (line->n_words == cap) {
            const char **grown = realloc(line->words, 2 * cap * sizeof *grown);
            size_t *grown_lengths;
            if (!grown) return -1;
            line->words = grown;
            grown_lengths = realloc(line->lengths, 2 * cap * sizeof *grown_lengths);
            if (!grown_lengths) return -1;
            line->lengths = grown_lengths;
            cap *= 2;
        }
        start = p;
        while (p < end && !space_len(p, end)) ++p;
        line->words[line->n_words] = (const char *)start;
        line->lengths[line->n_words++] = (size_t)(p - start);
    }
    return 0;
}

/* Offset of the first byte that makes s[0:n) invalid UTF-8 as Python decodes it (no surrogates,
 * no overlongs, <= U+10FFFF), or -1 when it is valid. */
static long bad_utf8_at(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        size_t len, k;
        unsigned long cp, min;
        if (b < 0x80) { ++i; continue; }
        if (b >= 0xc2 && b <= 0xdf) { len = 2; cp = b & 0x1f; min = 0x80; }
        else if (b >= 0xe0 && b <= 0xef) { len = 3; cp = b & 0x0f; min = 0x800; }
        else if (b >= 0xf0 && b <= 0xf4) { len = 4; cp = b & 0x07; min = 0x10000; }
        else return (long)i;
        if (i + len > n) return (long)i;
        for (k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return (long)i;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return (long)i;
        i += len;
    }
    return -1;
}

/* Python's transalign.formats.text messages: "PATH: file not found", "PATH: is a directory",
 * "PATH, line N: not valid UTF-8 (bad byte at X...)". */
static int read_lines(const char *path, file_t *file) {
    FILE *in;
    struct stat st;
    char *buf = NULL;
    size_t cap = 0;
    long got, bad;
    memset(file, 0, sizeof *file);
    if (strcmp(path, "-") != 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "transalign-align: %s: is a directory, expected a text file\n", path);
        return -1;
    }
    in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!in) {
        fprintf(stderr, "transalign-align: %s: %s\n", path, errno == ENOENT ? "file not found" : strerror(errno));
        return -1;
    }
    while ((got = (long)getline(&buf, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        line_t *line;
        if (len && buf[len - 1] == '\n') buf[--len] = 0;
        if (len && buf[len - 1] == '\r') buf[--len] = 0;
        bad = bad_utf8_at((const unsigned char *)buf, len);
        if (bad >= 0) {
            fprintf(stderr, "transalign-align: %s, line %zu: not valid UTF-8 (bad byte at %ld); convert the file to "
                            "UTF-8\n", path, file->n + 1, bad);
            free(buf);
            if (in != stdin) fclose(in);
            return -1;
        }
        if (file->n == 0 && len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) memmove(buf, buf + 3, (len -= 3) + 1);
        if (file->n == file->cap) {
            size_t grown_cap = file->cap ? 2 * file->cap : 1024;
            line_t *grown = realloc(file->lines, grown_cap * sizeof *grown);
            if (!grown) goto fail;
            file->lines = grown;
            file->cap = grown_cap;
        }
        line = &file->lines[file->n++];
        memset(line, 0, sizeof *line);
        line->text = malloc(len + 1);
        if (!line->text) goto fail;
        memcpy(line->text, buf, len);
        line->text[len] = 0;
        if (split_line(line, len) != 0) goto fail;
    }
    if (ferror(in)) {
        fprintf(stderr, "transalign-align: %s: read error: %s\n", path, strerror(errno));
        free(buf);
        if (in != stdin) fclose(in);
        return -1;
    }
    free(buf);
    if (in != stdin) fclose(in);
    return 0;
fail:
    fprintf(stderr, "transalign-align: %s: out of memory\n", path);
    free(buf);
    if (in != stdin) fclose(in);
    return -1;
}

static void free_lines(file_t *file) {
    size_t k;
    for (k = 0; k < file->n; ++k) {
        free(file->lines[k].words);
        free(file->lines[k].lengths);
        free(file->lines[k].text);
    }
    free(file->lines);
}

/* ---- the output (policy in the header comment) ---------------------------------------------- */

typedef struct {
    const char *path;  /* as given; NULL: standard output */
    char real[PATH_MAX];  /* the file written: symlinks followed */
    int stream;           /* a FIFO, character device or socket: written directly */
    int exists;
    struct stat old;
} output_t;

/* `path` with its symlinks followed (the target need not exist yet), into `out`. */
static int follow_links(const char *path, char *out, size_t size) {
    char link[PATH_MAX], next[PATH_MAX];
    struct stat st;
    int hops;
    if (strlen(path) >= size) return -1;
    strcpy(out, path);
    for (hops = 0; hops < 40; ++hops) {
        ssize_t got;
        const char *slash;
        if (lstat(out, &st) != 0 || !S_ISLNK(st.st_mode)) return 0;
        got = readlink(out, link, sizeof link - 1);
        if (got < 0) return -1;
        link[got] = 0;
        slash = strrchr(out, '/');
        if (link[0] == '/' || !slash) {
            if (strlen(link) >= size) return -1;
            strcpy(next, link);
        } else if (snprintf(next, sizeof next, "%.*s/%s", (int)(slash - out), out, link) >= (int)sizeof next) {
            return -1;
        }
        strcpy(out, next);
    }
    return -1;
}

static void directory_of(const char *path, char *dir, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, size, ".");
    else if (slash == path) snprintf(dir, size, "/");
    else snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/* Refuse, before any work, an output that is a directory, one of the inputs or unwritable. */
static int check_output(output_t *out, const char *path, const char *const *inputs, int n_inputs) {
    struct stat st, in;
    char dir[PATH_MAX];
    int k;
    memset(out, 0, sizeof *out);
    out->path = path;
    if (!path || strcmp(path, "-") == 0) {
        out->path = NULL;
        return 0;
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fprintf(stderr, "transalign-align: -o %s is a directory; give a file name, e.g. %s/out.txt\n", path, path);
            return -1;
        }
        if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISSOCK(st.st_mode)) {
            out->stream = 1;
            return 0;
        }
        for (k = 0; k < n_inputs; ++k)
            if (stat(inputs[k], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
                fprintf(stderr, "transalign-align: -o %s is also an input (%s); writing it would destroy the input: "
                                "choose another output file\n", path, inputs[k]);
                return -1;
            }
        out->exists = 1;
        out->old = st;
    }
    if (follow_links(path, out->real, sizeof out->real) != 0) {
        fprintf(stderr, "transalign-align: cannot write -o %s: its symbolic links cannot be followed\n", path);
        return -1;
    }
    directory_of(out->real, dir, sizeof dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "transalign-align: cannot write -o %s: directory %s does not exist\n", path, dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "transalign-align: cannot write -o %s: directory %s is not writable\n", path, dir);
        return -1;
    }
    return 0;
}

static int write_lines(FILE *out, ta_result *result, char **buffer, size_t *size) {
    size_t k, needed;
    for (k = 0; k < ta_result_count(result); ++k) {
        if (ta_result_pharaoh_into(result, k, *buffer, *size, &needed) != TA_OK) {
            char *grown = realloc(*buffer, needed);
            if (!grown) return -1;
            *buffer = grown;
            *size = needed;
            if (ta_result_pharaoh_into(result, k, *buffer, *size, &needed) != TA_OK) return -1;
        }
        if (fputs(*buffer, out) == EOF || fputc('\n', out) == EOF) return -1;
    }
    return 0;
}

static int copy_into(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char block[65536];
    size_t got;
    int ok = in && out;
    while (ok && (got = fread(block, 1, sizeof block, in)) > 0) ok = fwrite(block, 1, got, out) == got;
    ok = ok && !ferror(in);
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok ? 0 : -1;
}

/* Write every line of `result` to the output, atomically where it is a file. */
static int write_output(const output_t *out, ta_result *result) {
    char *buffer = NULL, tmp[2 * PATH_MAX + 64], dir[PATH_MAX];
    const char *name;
    size_t size = 0;
    FILE *file;
    int fd, rc = -1;
    mode_t mask;
    if (!out->path || out->stream) {
        file = out->path ? fopen(out->path, "wb") : stdout;
        if (!file || write_lines(file, result, &buffer, &size) != 0 || fflush(file) != 0) {
            fprintf(stderr, "transalign-align: cannot write %s: %s\n", out->path ? out->path : "standard output",
                    strerror(errno));
            if (file && file != stdout) fclose(file);
            free(buffer);
            return -1;
        }
        free(buffer);
        return file == stdout ? 0 : (fclose(file) == 0 ? 0 : -1);
    }
    directory_of(out->real, dir, sizeof dir);
    name = strrchr(out->real, '/') ? strrchr(out->real, '/') + 1 : out->real;
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.XXXXXX.tmp", dir, name, (long)getpid());
    fd = mkstemps(tmp, 4);
    if (fd < 0 || !(file = fdopen(fd, "wb"))) {
        fprintf(stderr, "transalign-align: cannot write %s: %s (in %s)\n", out->real, strerror(errno), dir);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return -1;
    }
    if (write_lines(file, result, &buffer, &size) != 0 || fflush(file) != 0 || fsync(fileno(file)) != 0) {
        fprintf(stderr, "transalign-align: cannot write %s: %s\n", out->real, strerror(errno));
        fclose(file);
        goto done;
    }
    if (fclose(file) != 0) goto failed;
    if (out->exists && out->old.st_nlink > 1) {  /* keep every hard link: rewrite in place */
        if (copy_into(tmp, out->real) != 0) goto failed;
        unlink(tmp);
        rc = 0;
        goto done;
    }
    mask = umask(0);
    umask(mask);
    if (chmod(tmp, out->exists ? (out->old.st_mode & 07777) : (0666 & ~mask)) != 0 || rename(tmp, out->real) != 0)
        goto failed;
    rc = 0;
    goto done;
failed:
    fprintf(stderr, "transalign-align: cannot write %s: %s\n", out->real, strerror(errno));
done:
    if (rc != 0) unlink(tmp);
    free(buffer);
    return rc;
}

/* A number option, refused unless the whole value parses. */
static int parse_double(const char *flag, const char *value, double *out) {
    char *end;
    errno = 0;
    *out = strtod(value, &end);
    if (errno || end == value || *end) {
        fprintf(stderr, "transalign-align: %s '%s': not a number\n", flag, value);
        return -1;
    }
    return 0;
}

static int parse_count(const char *flag, const char *value, unsigned long *out) {
    char *end;
    errno = 0;
    *out = strtoul(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-') {
        fprintf(stderr, "transalign-align: %s '%s': not a non-negative integer\n", flag, value);
        return -1;
    }
    return 0;
}

/* The library's message names an option as the engine does ("src_lang 'xyz': unknown language
 * code ..."); the tool says it under its own flag, as the Python CLI does (cli/options.py). */
static void report_error(ta_status status) {
    static const char *const names[][2] = {
        {"src_lang", "--src-lang"}, {"tgt_lang", "--tgt-lang"}, {"threshold", "--threshold"},
        {"batch_tokens", "--batch-tokens"}, {"threads", "--threads"}, {"precision", "--precision"},
        {"provider", "--provider"},
    };
    const char *message = ta_errmsg();
    for (size_t k = 0; k < sizeof names / sizeof names[0]; ++k) {
        size_t n = strlen(names[k][0]);
        if (strncmp(message, names[k][0], n) == 0 && (message[n] == ' ' || message[n] == ':')) {
            fprintf(stderr, "transalign-align: %s: %s%s\n", ta_status_name(status), names[k][1], message + n);
            return;
        }
    }
    fprintf(stderr, "transalign-align: %s: %s\n", ta_status_name(status), message);
}

int main(int argc, char **argv) {
    const char *bundle = NULL, *src_path = NULL, *tgt_path = NULL, *src_lang = NULL, *tgt_lang = NULL, *out_path = NULL;
    const char *inputs[2];
    ta_open_options open_options;
    ta_align_options align_options;
    ta_aligner *aligner = NULL;
    ta_result *result = NULL;
    ta_sized_sentence *src = NULL, *tgt = NULL;
    file_t src_file, tgt_file;
    output_t output;
    size_t k, skipped = 0, max_chars = 0;
    unsigned long count;
    int status, rc = 1, i, max_positions = 0;

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
        else if (strcmp(arg, "--threads") == 0) {
            if (parse_count(arg, value, &count) != 0 || count > INT_MAX) return 2;
            open_options.threads = (int)count;
        } else if (strcmp(arg, "--threshold") == 0) {
            if (parse_double(arg, value, &align_options.threshold) != 0) return 2;
            if (align_options.threshold < 0) {  /* negative means "the default" to the library */
                fprintf(stderr, "transalign-align: --threshold %s: must be a number in [0, 1), e.g. 0.001 (the paper's)\n",
                        value);
                return 2;
            }
        } else if (strcmp(arg, "--batch-tokens") == 0) {
            if (parse_count(arg, value, &count) != 0) return 2;
            if (count == 0) {
                fprintf(stderr, "transalign-align: --batch-tokens 0: must be an integer in 1..65536\n");
                return 2;
            }
            align_options.batch_tokens = (size_t)count;
        } else if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) out_path = value;
        else return usage();
        i += takes;
    }
    if (!bundle || !src_path || !tgt_path) return usage();
    if (strcmp(src_path, "-") == 0 && strcmp(tgt_path, "-") == 0) {
        fprintf(stderr, "transalign-align: --src and --tgt both name standard input; at most one side can be read "
                        "from it\n");
        return 2;
    }
    inputs[0] = src_path;
    inputs[1] = tgt_path;
    if (check_output(&output, out_path, inputs, 2) != 0) return 1;  /* before any work */
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
        src[k].words = src_file.lines[k].words;
        src[k].lengths = src_file.lines[k].lengths;
        src[k].n_words = src_file.lines[k].n_words;
        tgt[k].words = tgt_file.lines[k].words;
        tgt[k].lengths = tgt_file.lines[k].lengths;
        tgt[k].n_words = tgt_file.lines[k].n_words;
    }

    status = ta_open(bundle, &open_options, &aligner);
    if (status != TA_OK) {
        report_error(status);
        goto done;
    }
    status = ta_align_sized(aligner, src, tgt, src_file.n, src_lang, tgt_lang, &align_options, &result);
    if (status != TA_OK) {
        report_error(status);
        goto done;
    }
    if (write_output(&output, result) != 0) goto done;
    for (k = 0; k < ta_result_count(result); ++k) {
        int was_skipped = 0;
        ta_result_get_skipped(result, k, &was_skipped);
        skipped += (size_t)was_skipped;
    }
    if (skipped) {
        ta_aligner_get_max_positions(aligner, &max_positions);
        ta_aligner_get_max_sentence_chars(aligner, &max_chars);
        fprintf(stderr, "transalign-align: %zu of %zu pairs were longer than the model's %d tokens (or %zu characters) "
                        "and got an empty line\n", skipped, src_file.n, max_positions, max_chars);
    }
    rc = 0;
done:
    ta_result_free(result);
    ta_close(aligner);
    free(src);
    free(tgt);
    free_lines(&src_file);
    free_lines(&tgt_file);
    return rc;
}
