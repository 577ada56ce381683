/*
 * transalign.h -- libtransalign, the C interface of transalign.
 *
 * Aligns the words of sentence pairs with a transalign bundle (a directory written by
 * `transalign export`: manifest.json, ONNX encoder graphs, the tokenizer files) and gives the
 * same word links as the Python engine (`transalign align`): the bundle's tokenization of
 * pre-split words (NLLB's sentencepiece BPE with language codes, or an XLM-R-family
 * tokenizer.json with its Unigram model, e.g. multilingual-e5), the encoder through ONNX
 * Runtime, S = X Y^T, then the bundle's extraction: the paper's (row and column softmax, a
 * subword pair is linked when both exceed the threshold, a word pair when any of its subword
 * pairs is) or the one the bundle recommends (argmax / itermax, word level mean). Defaults
 * (extraction, threshold, batch budget, provider, length limits) are the Python engine's: the
 * bundle's manifest and transalign/engine/defaults.py.
 *
 * Conventions (as in sqlite3.h / zstd.h):
 *   - every function that can fail returns a ta_status (TA_OK == 0); on failure a message
 *     saying what was wrong and what to do is kept for the calling thread: ta_errmsg();
 *   - objects are opaque; everything the library allocates has its own free function, and
 *     every free function accepts NULL;
 *   - no function prints, aborts or exits; no global state besides the loaded ONNX Runtime
 *     library (loaded once, on the first ta_open, kept until the process ends);
 *   - text is UTF-8; invalid UTF-8 is refused with TA_ERR_UTF8.
 *
 * Thread safety: an opened ta_aligner may be used from several threads at once
 * (ta_align, ta_tokenize and the ta_aligner_* getters); ONNX Runtime's session Run is
 * thread-safe and every call keeps its own working state. ta_close must not race with any
 * other call on the same handle. A ta_result / ta_tokens belongs to the caller: reading one
 * from several threads is fine (except ta_result_pharaoh), freeing it while others read is not. ta_errmsg() is per
 * thread. ta_open may be called from several threads at once.
 *
 * ONNX Runtime is loaded at run time with dlopen: the path in ta_open_options.ort_library,
 * else the environment variable TRANSALIGN_ORT_LIB, else the path recorded at build time (the
 * onnxruntime Python wheel's libonnxruntime.so, or ONNXRUNTIME_ROOT/lib).
 */
#ifndef TRANSALIGN_H
#define TRANSALIGN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TRANSALIGN_VERSION_MAJOR 0
#define TRANSALIGN_VERSION_MINOR 1
#define TRANSALIGN_VERSION_PATCH 0
#define TRANSALIGN_VERSION "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH; compare with ta_version_number() at run time */
#define TRANSALIGN_VERSION_NUMBER 100

#if defined(__GNUC__)
#define TA_API __attribute__((visibility("default")))
#else
#define TA_API
#endif

typedef enum ta_status {
    TA_OK = 0,
    TA_ERR_ARGUMENT = 1,     /* a NULL pointer, a bad option value, an index out of range */
    TA_ERR_BUNDLE = 2,       /* missing or unreadable bundle, bad manifest, wrong format version */
    TA_ERR_HASH = 3,         /* a bundle file fails its sha256 check */
    TA_ERR_UNSUPPORTED = 4,  /* e.g. a BERT-family bundle, fp16 on CPU, CUDA not available */
    TA_ERR_LANGUAGE = 5,     /* unknown language code */
    TA_ERR_TOO_LONG = 6,     /* a sentence has more tokens than the model's positions, or more
                                characters than 32 per position (checked before tokenizing) */
    TA_ERR_UTF8 = 7,         /* a word is not valid UTF-8 */
    TA_ERR_RUNTIME = 8,      /* ONNX Runtime could not be loaded or failed */
    TA_ERR_MEMORY = 9,       /* out of memory */
    TA_ERR_INTERNAL = 10     /* a bug: please report it with the message */
} ta_status;

/* "0.1.0" and 100 for this header's library; compare with TRANSALIGN_VERSION(_NUMBER). */
TA_API const char *ta_version(void);
TA_API int ta_version_number(void);

/* A short constant name of a status ("TA_ERR_HASH", ...); never NULL. */
TA_API const char *ta_status_name(int status);

/* The message of the last failed call made by this thread ("" after a successful call).
 * Valid until this thread's next call into the library. Never NULL. */
TA_API const char *ta_errmsg(void);

/* ---- opening a bundle ------------------------------------------------------------------- */

typedef struct ta_aligner ta_aligner;

typedef struct ta_open_options {
    size_t struct_size;       /* sizeof(ta_open_options): set by ta_open_options_init */
    const char *provider;     /* "auto" (default: CUDA when this onnxruntime has it, else CPU, as the
                                 Python engine), "cpu" or "cuda" */
    const char *precision;    /* "fp32" (default), "int8" (CPU) or "fp16" (CUDA) */
    int threads;              /* ONNX Runtime intra-op threads; 0 = ONNX Runtime's default (all cores) */
    int verify_hashes;        /* 1 (default): check the sha256 of every file used */
    const char *ort_library;  /* path of libonnxruntime.so; NULL = TRANSALIGN_ORT_LIB or the build's */
} ta_open_options;

/* Fill `options` with the defaults. */
TA_API void ta_open_options_init(ta_open_options *options);

/* Open the bundle directory `bundle_dir`: read and check manifest.json (format and version),
 * the sha256 of the files of the chosen precision and the tokenizer, load the tokenizer and
 * start an ONNX Runtime session. `options` may be NULL (defaults). On success *out is a new
 * handle (free it with ta_close); on failure *out is NULL. */
TA_API int ta_open(const char *bundle_dir, const ta_open_options *options, ta_aligner **out);

/* Free a handle (NULL is fine). Not concurrently with other calls on the same handle. */
TA_API void ta_close(ta_aligner *aligner);

/* Facts of an opened bundle, sqlite style: a status, the value through the pointer. */
TA_API int ta_aligner_get_default_threshold(const ta_aligner *aligner, double *threshold);
TA_API int ta_aligner_get_max_positions(const ta_aligner *aligner, int *max_positions);
/* The longest sentence in characters (Unicode code points of its words): 32 * max_positions. */
TA_API int ta_aligner_get_max_sentence_chars(const ta_aligner *aligner, size_t *max_chars);
TA_API int ta_aligner_get_provider(const ta_aligner *aligner, const char **provider);  /* "cpu"/"cuda" */
/* The padded-token budget per encoder batch when ta_align_options.batch_tokens is 0: the Python
 * engine's default for the provider in use (transalign/engine/defaults.py). */
TA_API int ta_aligner_get_batch_tokens(const ta_aligner *aligner, size_t *batch_tokens);
/* *has = 1 if `lang` is a language code of the bundle's tokenizer, else 0 (TA_OK either way;
 * a bundle without language codes, the XLM-R family, has none: every code is ignored by
 * ta_align, as in the Python engine). A status other than TA_OK means a bad argument. */
TA_API int ta_aligner_get_language(const ta_aligner *aligner, const char *lang, int *has);

/* Older forms: NaN, -1 or "" on a bad argument; ta_aligner_has_language returns 0 both for
 * "not a code" and for an error: prefer the ta_aligner_get_* forms above. */
TA_API double ta_aligner_default_threshold(const ta_aligner *aligner);
TA_API int ta_aligner_max_positions(const ta_aligner *aligner);
TA_API const char *ta_aligner_provider(const ta_aligner *aligner);
TA_API int ta_aligner_has_language(const ta_aligner *aligner, const char *lang);

/* ---- aligning --------------------------------------------------------------------------- */

/* One sentence: `n_words` pre-split words (UTF-8, NUL-terminated). words may be NULL when
 * n_words is 0. An empty word is allowed (it gets no tokens, hence no links). */
typedef struct ta_sentence {
    const char *const *words;
    size_t n_words;
} ta_sentence;

/* A sentence whose words carry their length in bytes: a word may then hold U+0000, as a
 * Python string can (ta_align_sized, ta_tokenize_sized). lengths may be NULL: strlen. */
typedef struct ta_sized_sentence {
    const char *const *words;
    const size_t *lengths;
    size_t n_words;
} ta_sized_sentence;

typedef struct ta_align_options {
    size_t struct_size;   /* sizeof(ta_align_options): set by ta_align_options_init */
    double threshold;     /* < 0 (default -1): the bundle's default threshold; else in [0, 1), and
                             only for a bundle whose default method is softmax */
    size_t batch_tokens;  /* padded tokens per encoder batch, 1..65536; 0 (default): the Python
                             engine's default for the provider (ta_aligner_get_batch_tokens) */
    int skip_long;        /* 0 (default): a too-long sentence fails the call with TA_ERR_TOO_LONG;
                             1: its pair gets no links and ta_result_skipped() says so */
} ta_align_options;

TA_API void ta_align_options_init(ta_align_options *options);

typedef struct ta_result ta_result;

/* Align the pairs (src[k], tgt[k]), k < n_pairs, whose languages are `src_lang` and `tgt_lang`
 * (NLLB codes such as "eng_Latn"; a bundle without language codes, the XLM-R family, ignores
 * them and they may be NULL). `options` may be NULL. A sentence longer than the model's positions
 * (tokens) or than 32 characters per position (checked before tokenizing) fails the call with
 * TA_ERR_TOO_LONG naming the pair and side, or is skipped (skip_long). On success *out holds one entry per
 * pair, in input order (free it with ta_result_free); on failure *out is NULL. n_pairs may be
 * 0 (src and tgt may then be NULL). Thread-safe on one handle. */
TA_API int ta_align(ta_aligner *aligner, const ta_sentence *src, const ta_sentence *tgt, size_t n_pairs,
                    const char *src_lang, const char *tgt_lang, const ta_align_options *options,
                    ta_result **out);

/* ta_align over sized sentences (words may hold U+0000); otherwise the same. */
TA_API int ta_align_sized(ta_aligner *aligner, const ta_sized_sentence *src, const ta_sized_sentence *tgt,
                          size_t n_pairs, const char *src_lang, const char *tgt_lang,
                          const ta_align_options *options, ta_result **out);

TA_API size_t ta_result_count(const ta_result *result);

/* The links of pair `pair`: *links points to 2 * *n_links int32 values, (source word, target
 * word) pairs, 0-based, distinct, sorted; owned by `result`. */
TA_API int ta_result_links(const ta_result *result, size_t pair, const int32_t **links, size_t *n_links);

/* *skipped = 1 if the pair was skipped because a side was too long (skip_long), else 0. */
TA_API int ta_result_get_skipped(const ta_result *result, size_t pair, int *skipped);
/* Older form: 1, 0, or -1 on a bad argument. */
TA_API int ta_result_skipped(const ta_result *result, size_t pair);

/* The Pharaoh line of pair `pair` ("i-j i-j ...", no newline) written into the caller's `buffer`
 * of `size` bytes, NUL-terminated; *needed (may be NULL) gets the bytes the line needs, its NUL
 * included. A buffer too small (or NULL with size 0) gives TA_ERR_ARGUMENT with *needed set. */
TA_API int ta_result_pharaoh_into(const ta_result *result, size_t pair, char *buffer, size_t size, size_t *needed);
/* The same line, owned by `result`; NULL on a bad argument. Built on first use and cached in
 * `result` under a lock: safe from several threads. */
TA_API const char *ta_result_pharaoh(ta_result *result, size_t pair);

TA_API void ta_result_free(ta_result *result);

/* ---- tokenizing (what ta_align feeds the encoder) ---------------------------------------- */

typedef struct ta_tokens ta_tokens;

/* Token ids of one sentence as the model sees it, [lang_code] pieces... [</s>], and the word
 * index of every token (-1 for the two special tokens). Free *out with ta_tokens_free. */
TA_API int ta_tokenize(ta_aligner *aligner, const ta_sentence *sentence, const char *lang, ta_tokens **out);
TA_API int ta_tokenize_sized(ta_aligner *aligner, const ta_sized_sentence *sentence, const char *lang, ta_tokens **out);
TA_API size_t ta_tokens_count(const ta_tokens *tokens);
TA_API const int64_t *ta_tokens_ids(const ta_tokens *tokens);
TA_API const int32_t *ta_tokens_word_ids(const ta_tokens *tokens);
TA_API void ta_tokens_free(ta_tokens *tokens);

/* ---- the batch plan (exposed so tests compare it with the Python engine's) ----------------- */

/* The encoder's batch plan for sequences of `lengths` (n of them), as transalign/engine/
 * batching.py plan_batches(lengths, batch_tokens, overhead_tokens): sorted longest first
 * (stable), cut into consecutive batches of least total cost sum(count * longest + overhead)
 * with count * longest <= batch_tokens (a longer sequence alone). order[k] (n entries) is the
 * k-th sequence in plan order; ends[b] (at most n entries) is one past the last position of batch
 * b in `order`; *n_batches the number of batches. ta_align uses it with the provider's overhead
 * (ta_aligner_get_batch_overhead). */
TA_API int ta_plan_batches(const size_t *lengths, size_t n, size_t batch_tokens, size_t overhead_tokens,
                           size_t *order, size_t *ends, size_t *n_batches);
TA_API int ta_aligner_get_batch_overhead(const ta_aligner *aligner, size_t *overhead_tokens);

#ifdef __cplusplus
}
#endif

#endif /* TRANSALIGN_H */
