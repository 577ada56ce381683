// Internal declarations shared by the library's translation units. Nothing here is public.
//
// Errors travel inside the library as ta::Error exceptions (status + message); every public
// function catches them (and std::bad_alloc, and anything else) at the boundary, stores the
// message for the calling thread and returns the status. No exception crosses the C ABI.
#ifndef TA_INTERNAL_HPP
#define TA_INTERNAL_HPP

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "transalign.h"

namespace ta {

struct Error : std::runtime_error {
    int status;
    Error(int code, const std::string &message) : std::runtime_error(message), status(code) {}
};

// ---- bundle.cpp: manifest.json and the files it lists (transalign/engine/bundle.py) ----

struct TokenizerSpec {
    std::string kind, file, whitespace;
    std::string sentencepiece_file;  // hf-tokenizers Unigram: the sentencepiece model export wrote
    std::vector<int64_t> prefix_ids, suffix_ids;
    int64_t unk_id = 0, eos_id = 0, pad_id = 0, piece_offset = 0;
    bool lowercase = false;
    std::map<std::string, int64_t> lang_code_ids;
    std::map<std::string, int64_t> added_tokens;
};

struct Manifest {
    std::string root;  // the bundle directory as given
    std::string architecture;
    int64_t hidden_size = 0, max_positions = 0;
    int64_t vocab_size = 0;  // rows of the graph's token embedding as export recorded them; 0: not recorded
    double default_threshold = 0.0;
    std::string default_method = "softmax", default_word_level = "any";
    TokenizerSpec tokenizer;
    std::vector<std::string> precisions;
};

extern const char *const kPrecisions[3];    // fp32, int8, fp16
std::string model_file(const std::string &precision);  // model.onnx, model.int8.onnx, ...

// Read and check `root`/manifest.json; with verify, hash the files of `precision` and the
// shared ones (bundle.py read_manifest(..., precision=...)). Throws Error.
Manifest read_manifest(const std::string &root, const std::string &precision, bool verify);
// `name` inside `root`, refused if it would leave the directory. Throws Error.
std::string bundle_path(const std::string &root, const std::string &name);
std::string sha256_file(const std::string &path);  // hex; throws Error
// The bundle's default extraction (default_method / default_word_level / default_threshold),
// checked. Throws Error(TA_ERR_BUNDLE) naming the field.
struct ExtractOptions;
ExtractOptions extraction_of(const Manifest &manifest);
// Every token id of the manifest (special tokens, language codes, added tokens, prefix/suffix)
// in [0, vocab): the tokenizer's vocabulary, which must fit the model's token table
// (model_vocab: the graph's rows, else the manifest's vocab_size, else 0 = unknown).
// Throws Error(TA_ERR_BUNDLE) naming the field.
void check_token_ids(const Manifest &manifest, int64_t vocab, int64_t model_vocab);

// ---- graph.cpp: the graph's own bounds (transalign/engine/graph_facts.py) ----

struct GraphFacts {
    int64_t vocab_size = -1;     // rows of the token table gathered with input_ids; -1: none found
    int64_t position_rows = -1;  // rows of the position table; -1: none found
    bool positions_after_padding = false;  // positions count from pad_id + 1 (M2M100, XLM-R)
    int64_t hidden_size = -1;    // static last dimension of the output; -1: symbolic
};
GraphFacts graph_facts(const std::string &path);  // throws Error(TA_ERR_BUNDLE)
// hidden_size and vocab_size of the manifest against the graph `name`; returns the model's
// vocabulary (graph, else manifest vocab_size, else 0). Throws Error naming the field.
int64_t check_against_graph(const Manifest &manifest, const GraphFacts &facts, const std::string &name);
// max_positions within the graph's position table (after the token ids, as bundle.py orders it).
void check_positions(const Manifest &manifest, const GraphFacts &facts, const std::string &name);

// ---- tokenizer.cpp: NLLB tokenization (transalign/engine/tokenizers/nllb.py) ----

// A word: bytes and their count (a word may hold U+0000, as a Python string can).
struct WordRef {
    const char *data;
    size_t size;
};

struct Encoded {
    std::vector<int64_t> ids;       // [lang_code] pieces... [</s>]
    std::vector<int32_t> word_ids;  // -1 for the two special tokens
};

class NllbTokenizer {
public:
    // The bundle's tokenizer: NLLB (spec.file, a sentencepiece BPE model) or the XLM-R family
    // (spec.file a tokenizer.json, spec.sentencepiece_file its Unigram model).
    NllbTokenizer(const std::string &bundle_dir, const TokenizerSpec &spec);
    ~NllbTokenizer();
    NllbTokenizer(const NllbTokenizer &) = delete;
    NllbTokenizer &operator=(const NllbTokenizer &) = delete;

    // throws Error(TA_ERR_LANGUAGE) naming `option` ("src_lang", "tgt_lang") and close codes
    int64_t lang_id(const char *lang, const char *option = "lang") const;
    bool has_lang(const char *lang) const;
    bool has_langs() const;    // false: an XLM-R-family tokenizer, which takes no language code
    int64_t vocab_size() const;  // ids the tokenizer can produce are in [0, vocab_size)
    // Thread-safe; `scratch` holds a per-caller grapheme iterator (see tokenizer.cpp), taken
    // from a pool of the tokenizer's and given back when the returned pointer is destroyed.
    struct Scratch;
    struct ScratchDeleter {
        const NllbTokenizer *owner;
        void operator()(Scratch *scratch) const;
    };
    std::unique_ptr<Scratch, ScratchDeleter> new_scratch() const;
    // lang_id < 0: no language code (the spec's prefix_ids instead)
    Encoded encode(const WordRef *words, size_t n_words, int64_t lang_id, Scratch &scratch) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// UTF-8 as Python accepts it (no surrogates, no overlongs, <= U+10FFFF)?
bool valid_utf8(const char *s, size_t n);
// Does valid UTF-8 hold a letter or a number (Python str.isalnum() of some character: alphabetic
// or with a Unicode numeric type)? Such a word is at least one token.
bool has_alnum(const char *s, size_t n);
// Code points of valid UTF-8 (Python len()).
size_t utf8_chars(const char *s, size_t n);

// ---- batching.cpp: the batch plan (transalign/engine/batching.py) ----

struct BatchPlan {
    std::vector<size_t> order;  // sequence indices, longest first (stable)
    std::vector<size_t> ends;   // one past the last position in `order` of each batch
};
BatchPlan plan_batches(const std::vector<size_t> &lengths, size_t budget, size_t overhead);

// ---- ort.cpp: ONNX Runtime through its C API ----

class Session {
public:
    // provider "cpu" or "cuda"; threads 0 = ONNX Runtime's default.
    Session(const std::string &model_path, const std::string &provider, int threads, const char *library);
    ~Session();
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;
    // hidden [batch, width, d] (float32) of input_ids / attention_mask [batch, width]; thread-safe.
    void run(const std::vector<int64_t> &ids, const std::vector<int64_t> &mask, int64_t batch, int64_t width,
             int64_t hidden_size, std::vector<float> &out) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

bool cuda_available(const char *library);  // CUDAExecutionProvider in this onnxruntime?

// ---- extract.cpp: the extraction methods (transalign/kernels/jit.py, methods.py) ----

enum class Method { softmax, argmax, itermax };  // transalign/kernels/names.py METHODS
struct ExtractOptions {
    Method method = Method::softmax;
    bool mean_words = false;  // word level "mean" (else "any")
    double threshold = 0.001;  // softmax only
};

// Word links of one pair: x [n, d], y [m, d] rows, their word ids; appends (src, tgt) pairs,
// distinct, sorted by (src, tgt), to `links` (flat, 2 per link).
void extract_pair(const float *x, size_t n, const float *y, size_t m, size_t d, const int32_t *src_words,
                  const int32_t *tgt_words, const ExtractOptions &options, std::vector<int32_t> &links);

}  // namespace ta

#endif
