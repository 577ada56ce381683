// The C API: argument checks, the per-thread message, and the Aligner's flow per chunk of pairs
// (transalign/engine/aligner.py and prepare.py): the character and word bounds (before tokenizing) ->
// tokenize both sides -> the token bound -> every kept sequence through the encoder in the
// least-cost batch plan of transalign/engine/batching.py -> the content rows of each side ->
// extraction per pair. Defaults (budgets, batch overhead, characters per position) come from
// transalign/engine/defaults.py and options.py through the generated ta_defaults.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>

#include "internal.hpp"
#include "ta_defaults.h"

using ta::Error;

namespace {

thread_local std::string last_message;

// aligner.py DEFAULT_CHUNK_PAIRS: pairs tokenized and encoded together (bounds memory; results
// do not depend on it, the engine being batch-invariant)
const size_t kChunkPairs = 4096;

int set_error(int status, const std::string &message) {
    try {
        last_message = message;
    } catch (...) {
    }
    return status;
}

// Run `body` with the library's error discipline: no exception leaves, the message is kept.
template <typename Body> int guarded(Body body) {
    try {
        last_message.clear();
        body();
        return TA_OK;
    } catch (const Error &err) {
        return set_error(err.status, err.what());
    } catch (const std::bad_alloc &) {
        return set_error(TA_ERR_MEMORY, "out of memory");
    } catch (const std::exception &exc) {
        return set_error(TA_ERR_INTERNAL, std::string("internal error: ") + exc.what());
    } catch (...) {
        return set_error(TA_ERR_INTERNAL, "internal error");
    }
}

void require(bool ok, const char *message) {
    if (!ok) throw Error(TA_ERR_ARGUMENT, message);
}

// Python's repr of a float option value, near enough for messages: shortest round-trip form.
std::string show_number(double value) {
    char buffer[64];
    for (int digits = 1; digits <= 17; ++digits) {
        std::snprintf(buffer, sizeof buffer, "%.*g", digits, value);
        if (std::strtod(buffer, nullptr) == value) break;
    }
    return buffer;
}

}  // namespace

struct ta_aligner {
    ta::Manifest manifest;
    std::unique_ptr<ta::NllbTokenizer> tokenizer;
    std::unique_ptr<ta::Session> session;
    std::string provider;
    size_t batch_tokens = 0, batch_overhead = 0, max_chars = 0;
};

struct ta_result {
    std::vector<std::vector<int32_t>> links;
    std::vector<char> skipped;
    std::mutex pharaoh_mutex;  // ta_result_pharaoh builds its cache under it
    std::vector<std::unique_ptr<std::string>> pharaoh;
};

struct ta_tokens {
    ta::Encoded encoded;
};


namespace {

// A sentence as the library works on it: words with their byte lengths.
struct Words {
    std::vector<ta::WordRef> words;
    size_t chars = 0;  // code points, summed over the words (Python: sum(map(len, words)))
};

Words check_sentence(const char *const *words, const size_t *lengths, size_t n_words, const char *side, size_t pair) {
    if (n_words && !words)
        throw Error(TA_ERR_ARGUMENT, std::string("the ") + side + " sentence of pair " + std::to_string(pair) +
                                     " has n_words > 0 but words is NULL");
    Words out;
    out.words.reserve(n_words);
    for (size_t w = 0; w < n_words; ++w) {
        const char *word = words[w];
        if (!word)
            throw Error(TA_ERR_ARGUMENT, std::string("word ") + std::to_string(w) + " of the " + side +
                                         " sentence of pair " + std::to_string(pair) + " is NULL");
        const size_t size = lengths ? lengths[w] : std::strlen(word);
        if (!ta::valid_utf8(word, size))
            throw Error(TA_ERR_UTF8, std::string("word ") + std::to_string(w) + " of the " + side +
                                     " sentence of pair " + std::to_string(pair) + " is not valid UTF-8");
        out.words.push_back({word, size});
        out.chars += ta::utf8_chars(word, size);
    }
    return out;
}

struct CallOptions {
    int64_t src_lang = -1, tgt_lang = -1;
    ta::ExtractOptions extraction;
    size_t budget = 0;
    bool skip_long = false;
};

void align_chunk(ta_aligner &al, const std::vector<Words> &src, const std::vector<Words> &tgt, size_t first, size_t n,
                 const CallOptions &call, ta::NllbTokenizer::Scratch &scratch, ta_result &result) {
    // prepare.py: all sources, then all targets; a sentence over the character bound is not
    // tokenized at all (it is certainly too long)
    const size_t limit = static_cast<size_t>(al.manifest.max_positions);
    std::vector<ta::Encoded> enc(2 * n);
    std::vector<char> hopeless(2 * n, 0);  // 1: too many characters, 2: too many words with a letter or digit
    for (size_t s = 0; s < 2 * n; ++s) {
        const bool source = s < n;
        const Words &words = source ? src[first + s] : tgt[first + s - n];
        if (words.chars > al.max_chars) {
            hopeless[s] = 1;
            continue;
        }
        if (words.words.size() >= limit) {  // prepare.py's second bound: each such word is a token
            size_t sure = 0;
            for (const ta::WordRef &word : words.words) sure += ta::has_alnum(word.data, word.size);
            if (sure >= limit) {
                hopeless[s] = 2;
                continue;
            }
        }
        enc[s] = al.tokenizer->encode(words.words.data(), words.words.size(), source ? call.src_lang : call.tgt_lang,
                                      scratch);
    }
    std::vector<char> keep(2 * n, 1);
    for (size_t s = 0; s < 2 * n; ++s) {
        if (!hopeless[s] && enc[s].ids.size() <= limit) continue;
        const bool source = s < n;
        const size_t pair = first + (source ? s : s - n);
        if (!call.skip_long) {
            const std::string side = source ? "source" : "target";
            const std::string hint = "; split it, or skip such pairs (skip_long)";
            if (hopeless[s] == 2)
                throw Error(TA_ERR_TOO_LONG, "pair " + std::to_string(pair) + ": the " + side + " sentence has more than " +
                                             std::to_string(limit) + " tokens (" + std::to_string(limit) +
                                             " or more words), more than the model's maximum of " +
                                             std::to_string(limit) + hint);
            if (hopeless[s])
                throw Error(TA_ERR_TOO_LONG, "pair " + std::to_string(pair) + ": the " + side + " sentence has " +
                                             std::to_string((source ? src[pair] : tgt[pair]).chars) +
                                             " characters, more than this bundle's limit of " +
                                             std::to_string(al.max_chars) + " (" + std::to_string(TA_CHARS_PER_POSITION) +
                                             " per model position)" + hint);
            throw Error(TA_ERR_TOO_LONG, "pair " + std::to_string(pair) + ": the " + side + " sentence has " +
                                         std::to_string(enc[s].ids.size()) +
                                         " tokens (special tokens included), more than the model's maximum of " +
                                         std::to_string(limit) + hint);
        }
        keep[s] = 0;
    }
    for (size_t k = 0; k < n; ++k) {
        const bool both = keep[k] && keep[n + k];
        keep[k] = keep[n + k] = both;
        result.skipped[first + k] = !both;
    }
    // encoder: content rows (tokens with a word id) of every kept sequence
    const size_t d = static_cast<size_t>(al.manifest.hidden_size);
    std::vector<std::vector<float>> rows(2 * n);
    std::vector<size_t> kept, lengths;
    for (size_t s = 0; s < 2 * n; ++s)
        if (keep[s]) {
            kept.push_back(s);
            lengths.push_back(enc[s].ids.size());
        }
    std::vector<int64_t> ids, mask;
    std::vector<float> hidden;
    const ta::BatchPlan plan = ta::plan_batches(lengths, call.budget, al.batch_overhead);
    for (size_t b = 0, begin = 0; b < plan.ends.size(); begin = plan.ends[b++]) {
        const size_t *batch = plan.order.data() + begin, size = plan.ends[b] - begin;
        const size_t width = lengths[batch[0]];  // longest first
        ids.assign(size * width, al.manifest.tokenizer.pad_id);
        mask.assign(size * width, 0);
        for (size_t r = 0; r < size; ++r) {
            const ta::Encoded &e = enc[kept[batch[r]]];
            std::copy(e.ids.begin(), e.ids.end(), ids.begin() + r * width);
            std::fill(mask.begin() + r * width, mask.begin() + r * width + e.ids.size(), 1);
        }
        al.session->run(ids, mask, static_cast<int64_t>(size), static_cast<int64_t>(width), al.manifest.hidden_size,
                        hidden);
        for (size_t r = 0; r < size; ++r) {
            const size_t s = kept[batch[r]];
            const ta::Encoded &e = enc[s];
            std::vector<float> &out = rows[s];
            for (size_t t = 0; t < e.ids.size(); ++t)
                if (e.word_ids[t] >= 0) {
                    const float *row = hidden.data() + (r * width + t) * d;
                    out.insert(out.end(), row, row + d);
                }
        }
    }
    std::vector<int32_t> src_words, tgt_words;
    for (size_t k = 0; k < n; ++k) {
        if (!keep[k]) continue;
        src_words.clear();
        tgt_words.clear();
        for (int32_t w : enc[k].word_ids)
            if (w >= 0) src_words.push_back(w);
        for (int32_t w : enc[n + k].word_ids)
            if (w >= 0) tgt_words.push_back(w);
        ta::extract_pair(rows[k].data(), src_words.size(), rows[n + k].data(), tgt_words.size(), d, src_words.data(),
                         tgt_words.data(), call.extraction, result.links[first + k]);
    }
}

// A language code for the call: the tokenizer's id, or -1 for a bundle without codes (the
// XLM-R family ignores given codes, as resolve_languages does).
int64_t language(const ta_aligner &al, const char *lang, const char *option) {
    return al.tokenizer->has_langs() ? al.tokenizer->lang_id(lang, option) : -1;
}

// Pairs given as C strings or sized words, checked and gathered the same way.
template <typename Sentence>
int align_any(ta_aligner *aligner, const Sentence *src, const Sentence *tgt, size_t n_pairs, const char *src_lang,
              const char *tgt_lang, const ta_align_options *options, ta_result **out);

const size_t *lengths_of(const ta_sentence &) { return nullptr; }
const size_t *lengths_of(const ta_sized_sentence &sentence) { return sentence.lengths; }

std::string pharaoh_line(const std::vector<int32_t> &links) {
    std::string text;
    for (size_t k = 0; k < links.size(); k += 2)
        text += (k ? " " : "") + std::to_string(links[k]) + "-" + std::to_string(links[k + 1]);
    return text;
}

template <typename Sentence>
int align_any(ta_aligner *aligner, const Sentence *src, const Sentence *tgt, size_t n_pairs, const char *src_lang,
              const char *tgt_lang, const ta_align_options *options, ta_result **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        require(out != nullptr, "ta_align: out is NULL");
        require(aligner != nullptr, "ta_align: aligner is NULL");
        require(n_pairs == 0 || (src && tgt), "ta_align: src or tgt is NULL");
        ta_align_options opts;
        ta_align_options_init(&opts);
        if (options) {
            require(options->struct_size == sizeof(ta_align_options),
                    "ta_align: options->struct_size is not sizeof(ta_align_options); call ta_align_options_init first");
            opts = *options;
        }
        // engine.options.resolve_extraction: the bundle's recommended extraction (manifest
        // default_method / default_word_level / default_threshold); a threshold belongs to
        // method softmax only
        const ta::Manifest &manifest = aligner->manifest;
        CallOptions call;
        call.extraction = ta::extraction_of(manifest);
        if (opts.threshold >= 0 && manifest.default_method != "softmax")
            throw Error(TA_ERR_ARGUMENT, "threshold " + show_number(opts.threshold) + ": applies to method softmax only, not "
                                         "to " + manifest.default_method + " (this bundle's default_method); leave it out");
        if (opts.threshold >= 0 || opts.threshold != opts.threshold) {  // NaN: refused below
            if (!(opts.threshold >= 0.0 && opts.threshold < 1.0))
                throw Error(TA_ERR_ARGUMENT, "threshold " + show_number(opts.threshold) +
                                             ": must be a number in [0, 1), e.g. 0.001 (the paper's); a negative value "
                                             "takes the bundle's default");
            call.extraction.threshold = opts.threshold;
        }
        if (opts.batch_tokens > TA_MAX_BATCH_TOKENS)
            throw Error(TA_ERR_ARGUMENT, "batch_tokens " + std::to_string(opts.batch_tokens) + ": must be an integer in 1.." +
                                         std::to_string(TA_MAX_BATCH_TOKENS) + " (0: the provider's default, " +
                                         std::to_string(aligner->batch_tokens) + " here)");
        call.budget = opts.batch_tokens ? opts.batch_tokens : aligner->batch_tokens;
        call.skip_long = opts.skip_long != 0;
        call.src_lang = language(*aligner, src_lang, "src_lang");
        call.tgt_lang = language(*aligner, tgt_lang, "tgt_lang");
        std::vector<Words> src_words(n_pairs), tgt_words(n_pairs);
        for (size_t k = 0; k < n_pairs; ++k) {
            src_words[k] = check_sentence(src[k].words, lengths_of(src[k]), src[k].n_words, "source", k);
            tgt_words[k] = check_sentence(tgt[k].words, lengths_of(tgt[k]), tgt[k].n_words, "target", k);
        }
        std::unique_ptr<ta_result> result(new ta_result);
        result->links.resize(n_pairs);
        result->skipped.assign(n_pairs, 0);
        result->pharaoh.resize(n_pairs);
        auto scratch = aligner->tokenizer->new_scratch();
        for (size_t first = 0; first < n_pairs; first += kChunkPairs)
            align_chunk(*aligner, src_words, tgt_words, first, std::min(kChunkPairs, n_pairs - first), call, *scratch,
                        *result);
        *out = result.release();
    });
}

template <typename Sentence>
int tokenize_any(ta_aligner *aligner, const Sentence *sentence, const char *lang, ta_tokens **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        require(out != nullptr && aligner != nullptr && sentence != nullptr, "ta_tokenize: aligner, sentence or out is NULL");
        const int64_t lang_id = language(*aligner, lang, "lang");
        const Words words = check_sentence(sentence->words, lengths_of(*sentence), sentence->n_words, "given", 0);
        auto scratch = aligner->tokenizer->new_scratch();
        std::unique_ptr<ta_tokens> tokens(new ta_tokens);
        tokens->encoded = aligner->tokenizer->encode(words.words.data(), words.words.size(), lang_id, *scratch);
        *out = tokens.release();
    });
}

}  // namespace

extern "C" {

const char *ta_version(void) { return TRANSALIGN_VERSION; }
int ta_version_number(void) { return TRANSALIGN_VERSION_NUMBER; }
const char *ta_errmsg(void) { return last_message.c_str(); }

const char *ta_status_name(int status) {
    static const char *const names[] = {"TA_OK", "TA_ERR_ARGUMENT", "TA_ERR_BUNDLE", "TA_ERR_HASH", "TA_ERR_UNSUPPORTED",
                                        "TA_ERR_LANGUAGE", "TA_ERR_TOO_LONG", "TA_ERR_UTF8", "TA_ERR_RUNTIME",
                                        "TA_ERR_MEMORY", "TA_ERR_INTERNAL"};
    return status >= 0 && status <= TA_ERR_INTERNAL ? names[status] : "TA_ERR_UNKNOWN";
}

void ta_open_options_init(ta_open_options *options) {
    if (!options) return;
    std::memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->provider = "auto";  // LoadOptions.provider
    options->precision = "fp32";
    options->verify_hashes = 1;
}

void ta_align_options_init(ta_align_options *options) {
    if (!options) return;
    std::memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->threshold = -1.0;
}

int ta_open(const char *bundle_dir, const ta_open_options *options, ta_aligner **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        require(out != nullptr, "ta_open: out is NULL");
        require(bundle_dir != nullptr, "ta_open: bundle_dir is NULL");
        ta_open_options defaults;
        ta_open_options_init(&defaults);
        if (options) {
            require(options->struct_size == sizeof(ta_open_options),
                    "ta_open: options->struct_size is not sizeof(ta_open_options); call ta_open_options_init first");
            defaults = *options;
        }
        const std::string provider = defaults.provider ? defaults.provider : "auto";
        const std::string precision = defaults.precision ? defaults.precision : "fp32";
        if (provider != "cpu" && provider != "cuda" && provider != "auto")
            throw Error(TA_ERR_ARGUMENT, "provider '" + provider + "' is not one of auto, cpu, cuda");
        ta::model_file(precision);  // checks the name
        require(defaults.threads >= 0, "ta_open: threads must be >= 0 (0: ONNX Runtime's default)");
        std::unique_ptr<ta_aligner> al(new ta_aligner);
        al->manifest = ta::read_manifest(bundle_dir, precision, defaults.verify_hashes != 0);
        const ta::TokenizerSpec &spec = al->manifest.tokenizer;
        const bool nllb = spec.kind == "sentencepiece-nllb" && al->manifest.architecture == "m2m100";
        const bool unigram = spec.kind == "hf-tokenizers" && !spec.sentencepiece_file.empty();
        if (!nllb && !unigram)
            throw Error(TA_ERR_UNSUPPORTED,
                        "bundle " + std::string(bundle_dir) + " is a " + al->manifest.architecture + " bundle with a '" +
                            spec.kind + "' tokenizer" +
                            (spec.kind == "hf-tokenizers"
                                 ? " and no sentencepiece model: not supported by the C library, which supports NLLB "
                                   "/ M2M100 bundles and XLM-R-family ones (a Unigram tokenizer.json); one exported before the model "
                                   "was written gets it with `python -m transalign.export.spm_model BUNDLE` "
                                   "(WordPiece bundles, mBERT and LaBSE, need the Python engine)"
                                 : ": not supported by the C library (it supports NLLB / M2M100 and XLM-R-family "
                                   "bundles); use the Python engine"));
        // (provider auto: CUDA when this onnxruntime has it, as the Python engine's LoadOptions)
        const bool cuda = provider == "cuda" || (provider == "auto" && ta::cuda_available(defaults.ort_library));
        if (provider == "cuda" && !ta::cuda_available(defaults.ort_library))
            throw Error(TA_ERR_UNSUPPORTED, "execution provider CUDAExecutionProvider is not available in this "
                                            "onnxruntime (install onnxruntime-gpu and a matching CUDA)");
        if (precision == "fp16" && !cuda)
            throw Error(TA_ERR_UNSUPPORTED, "fp16 models are for the CUDA provider; on CPU use precision 'fp32' or 'int8'");
        al->provider = cuda ? "cuda" : "cpu";
        al->batch_tokens = cuda ? TA_DEFAULT_BATCH_TOKENS_CUDA : TA_DEFAULT_BATCH_TOKENS_CPU;
        al->batch_overhead = cuda ? TA_BATCH_OVERHEAD_TOKENS_CUDA : TA_BATCH_OVERHEAD_TOKENS_CPU;
        al->max_chars = static_cast<size_t>(TA_CHARS_PER_POSITION) * static_cast<size_t>(al->manifest.max_positions);
        al->tokenizer.reset(new ta::NllbTokenizer(bundle_dir, spec));
        const std::string graph = ta::bundle_path(bundle_dir, ta::model_file(precision));
        const ta::GraphFacts facts = ta::graph_facts(graph);  // the checks of bundle.py check_manifest_ranges
        const int64_t model_vocab = ta::check_against_graph(al->manifest, facts, ta::model_file(precision));
        ta::check_token_ids(al->manifest, al->tokenizer->vocab_size(), model_vocab);
        ta::check_positions(al->manifest, facts, ta::model_file(precision));
        al->session.reset(new ta::Session(graph, al->provider, defaults.threads, defaults.ort_library));
        *out = al.release();
    });
}

void ta_close(ta_aligner *aligner) {
    try {
        delete aligner;
    } catch (...) {
    }
}

int ta_aligner_get_default_threshold(const ta_aligner *aligner, double *threshold) {
    return guarded([&] {
        require(aligner && threshold, "ta_aligner_get_default_threshold: aligner or threshold is NULL");
        *threshold = aligner->manifest.default_threshold;
    });
}

int ta_aligner_get_max_positions(const ta_aligner *aligner, int *max_positions) {
    return guarded([&] {
        require(aligner && max_positions, "ta_aligner_get_max_positions: aligner or max_positions is NULL");
        *max_positions = static_cast<int>(aligner->manifest.max_positions);
    });
}

int ta_aligner_get_max_sentence_chars(const ta_aligner *aligner, size_t *max_chars) {
    return guarded([&] {
        require(aligner && max_chars, "ta_aligner_get_max_sentence_chars: aligner or max_chars is NULL");
        *max_chars = aligner->max_chars;
    });
}

int ta_aligner_get_provider(const ta_aligner *aligner, const char **provider) {
    return guarded([&] {
        require(aligner && provider, "ta_aligner_get_provider: aligner or provider is NULL");
        *provider = aligner->provider.c_str();
    });
}

int ta_aligner_get_batch_tokens(const ta_aligner *aligner, size_t *batch_tokens) {
    return guarded([&] {
        require(aligner && batch_tokens, "ta_aligner_get_batch_tokens: aligner or batch_tokens is NULL");
        *batch_tokens = aligner->batch_tokens;
    });
}

int ta_aligner_get_batch_overhead(const ta_aligner *aligner, size_t *overhead_tokens) {
    return guarded([&] {
        require(aligner && overhead_tokens, "ta_aligner_get_batch_overhead: aligner or overhead_tokens is NULL");
        *overhead_tokens = aligner->batch_overhead;
    });
}

int ta_aligner_get_language(const ta_aligner *aligner, const char *lang, int *has) {
    if (has) *has = 0;
    return guarded([&] {
        require(aligner && lang && has, "ta_aligner_get_language: aligner, lang or has is NULL");
        *has = aligner->tokenizer->has_lang(lang) ? 1 : 0;
    });
}

double ta_aligner_default_threshold(const ta_aligner *aligner) { return aligner ? aligner->manifest.default_threshold : NAN; }
int ta_aligner_max_positions(const ta_aligner *aligner) {
    return aligner ? static_cast<int>(aligner->manifest.max_positions) : -1;
}
const char *ta_aligner_provider(const ta_aligner *aligner) { return aligner ? aligner->provider.c_str() : ""; }

int ta_aligner_has_language(const ta_aligner *aligner, const char *lang) {
    int found = 0;
    guarded([&] {
        require(aligner != nullptr, "ta_aligner_has_language: aligner is NULL");
        if (!aligner->tokenizer->has_langs())
            throw Error(TA_ERR_LANGUAGE, "this bundle has no language codes (its tokenizer needs none): ta_align ignores "
                                         "given codes");
        aligner->tokenizer->lang_id(lang);
        found = 1;
    });
    return found;
}

int ta_align(ta_aligner *aligner, const ta_sentence *src, const ta_sentence *tgt, size_t n_pairs, const char *src_lang,
             const char *tgt_lang, const ta_align_options *options, ta_result **out) {
    return align_any(aligner, src, tgt, n_pairs, src_lang, tgt_lang, options, out);
}

int ta_align_sized(ta_aligner *aligner, const ta_sized_sentence *src, const ta_sized_sentence *tgt, size_t n_pairs,
                   const char *src_lang, const char *tgt_lang, const ta_align_options *options, ta_result **out) {
    return align_any(aligner, src, tgt, n_pairs, src_lang, tgt_lang, options, out);
}

size_t ta_result_count(const ta_result *result) { return result ? result->links.size() : 0; }

int ta_result_links(const ta_result *result, size_t pair, const int32_t **links, size_t *n_links) {
    if (links) *links = nullptr;
    if (n_links) *n_links = 0;
    return guarded([&] {
        require(result && links && n_links, "ta_result_links: result, links or n_links is NULL");
        if (pair >= result->links.size())
            throw Error(TA_ERR_ARGUMENT, "ta_result_links: pair " + std::to_string(pair) + " is out of range (" +
                                         std::to_string(result->links.size()) + " pairs)");
        *links = result->links[pair].data();
        *n_links = result->links[pair].size() / 2;
    });
}

int ta_result_get_skipped(const ta_result *result, size_t pair, int *skipped) {
    if (skipped) *skipped = 0;
    return guarded([&] {
        require(result && skipped, "ta_result_get_skipped: result or skipped is NULL");
        if (pair >= result->skipped.size())
            throw Error(TA_ERR_ARGUMENT, "ta_result_get_skipped: pair " + std::to_string(pair) + " is out of range (" +
                                         std::to_string(result->skipped.size()) + " pairs)");
        *skipped = result->skipped[pair] ? 1 : 0;
    });
}

int ta_result_skipped(const ta_result *result, size_t pair) {
    int skipped = 0;
    return ta_result_get_skipped(result, pair, &skipped) == TA_OK ? skipped : -1;
}

int ta_result_pharaoh_into(const ta_result *result, size_t pair, char *buffer, size_t size, size_t *needed) {
    if (needed) *needed = 0;
    return guarded([&] {
        require(result != nullptr, "ta_result_pharaoh_into: result is NULL");
        if (pair >= result->links.size())
            throw Error(TA_ERR_ARGUMENT, "ta_result_pharaoh_into: pair " + std::to_string(pair) + " is out of range (" +
                                         std::to_string(result->links.size()) + " pairs)");
        const std::string line = pharaoh_line(result->links[pair]);
        if (needed) *needed = line.size() + 1;
        if (!buffer || size < line.size() + 1)
            throw Error(TA_ERR_ARGUMENT, "ta_result_pharaoh_into: the line needs " + std::to_string(line.size() + 1) +
                                         " bytes, the buffer has " + std::to_string(buffer ? size : 0));
        std::memcpy(buffer, line.c_str(), line.size() + 1);
    });
}

const char *ta_result_pharaoh(ta_result *result, size_t pair) {
    const char *line = nullptr;
    guarded([&] {
        require(result != nullptr && pair < result->links.size(), "ta_result_pharaoh: result is NULL or pair is out of range");
        std::lock_guard<std::mutex> lock(result->pharaoh_mutex);
        std::unique_ptr<std::string> &text = result->pharaoh[pair];
        if (!text) text.reset(new std::string(pharaoh_line(result->links[pair])));
        line = text->c_str();  // a built line is never changed again: the pointer stays valid
    });
    return line;
}

void ta_result_free(ta_result *result) { delete result; }

int ta_tokenize(ta_aligner *aligner, const ta_sentence *sentence, const char *lang, ta_tokens **out) {
    return tokenize_any(aligner, sentence, lang, out);
}

int ta_tokenize_sized(ta_aligner *aligner, const ta_sized_sentence *sentence, const char *lang, ta_tokens **out) {
    return tokenize_any(aligner, sentence, lang, out);
}

size_t ta_tokens_count(const ta_tokens *tokens) { return tokens ? tokens->encoded.ids.size() : 0; }
const int64_t *ta_tokens_ids(const ta_tokens *tokens) { return tokens ? tokens->encoded.ids.data() : nullptr; }
const int32_t *ta_tokens_word_ids(const ta_tokens *tokens) { return tokens ? tokens->encoded.word_ids.data() : nullptr; }
void ta_tokens_free(ta_tokens *tokens) { delete tokens; }

int ta_plan_batches(const size_t *lengths, size_t n, size_t batch_tokens, size_t overhead_tokens, size_t *order,
                    size_t *ends, size_t *n_batches) {
    if (n_batches) *n_batches = 0;
    return guarded([&] {
        require(n_batches && (n == 0 || (lengths && order && ends)), "ta_plan_batches: a pointer argument is NULL");
        require(batch_tokens >= 1, "ta_plan_batches: batch_tokens must be >= 1");
        const ta::BatchPlan plan = ta::plan_batches(std::vector<size_t>(lengths, lengths + n), batch_tokens, overhead_tokens);
        std::copy(plan.order.begin(), plan.order.end(), order);
        std::copy(plan.ends.begin(), plan.ends.end(), ends);
        *n_batches = plan.ends.size();
    });
}

}  // extern "C"
