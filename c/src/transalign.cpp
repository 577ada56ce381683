// The C API: argument checks, the per-thread message, and the Aligner's flow per chunk of pairs
// (transalign/engine/aligner.py): tokenize both sides -> length policy -> every kept sequence
// through the encoder, length-sorted and packed by a padded-token budget
// (transalign/engine/batching.py) -> the content rows of each side -> extraction per pair.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <numeric>

#include "internal.hpp"

using ta::Error;

namespace {

thread_local std::string last_message;

const size_t kChunkPairs = 4096;  // aligner.py DEFAULT_CHUNK_PAIRS: int8 batches depend on it

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

}  // namespace

struct ta_aligner {
    ta::Manifest manifest;
    std::unique_ptr<ta::NllbTokenizer> tokenizer;
    std::unique_ptr<ta::Session> session;
    std::string provider;
};

struct ta_result {
    std::vector<std::vector<int32_t>> links;
    std::vector<char> skipped;
    std::vector<std::string> pharaoh;
};

struct ta_tokens {
    ta::Encoded encoded;
};

namespace {

void check_sentence(const ta_sentence &sentence, const char *side, size_t pair) {
    if (sentence.n_words && !sentence.words)
        throw Error(TA_ERR_ARGUMENT, std::string("the ") + side + " sentence of pair " + std::to_string(pair) +
                                     " has n_words > 0 but words is NULL");
    for (size_t w = 0; w < sentence.n_words; ++w) {
        const char *word = sentence.words[w];
        if (!word)
            throw Error(TA_ERR_ARGUMENT, std::string("word ") + std::to_string(w) + " of the " + side +
                                         " sentence of pair " + std::to_string(pair) + " is NULL");
        if (!ta::valid_utf8(word, std::strlen(word)))
            throw Error(TA_ERR_UTF8, std::string("word ") + std::to_string(w) + " of the " + side +
                                     " sentence of pair " + std::to_string(pair) + " is not valid UTF-8");
    }
}

// batching.py plan_batches: stable sort by length, longest first; greedy batches of
// max(1, budget // longest) sequences.
std::vector<std::vector<size_t>> plan_batches(const std::vector<size_t> &lengths, size_t budget) {
    std::vector<size_t> order(lengths.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
    std::vector<std::vector<size_t>> batches;
    for (size_t start = 0; start < order.size();) {
        const size_t longest = std::max<size_t>(lengths[order[start]], 1);
        const size_t size = std::max<size_t>(1, budget / longest);
        const size_t stop = std::min(order.size(), start + size);
        batches.emplace_back(order.begin() + start, order.begin() + stop);
        start = stop;
    }
    return batches;
}

void align_chunk(ta_aligner &al, const ta_sentence *src, const ta_sentence *tgt, size_t first, size_t n,
                 int64_t src_lang, int64_t tgt_lang, double threshold, size_t budget, bool skip_long,
                 ta::NllbTokenizer::Scratch &scratch, ta_result &result) {
    std::vector<ta::Encoded> enc(2 * n);  // all sources, then all targets, as aligner.py
    for (size_t k = 0; k < n; ++k) enc[k] = al.tokenizer->encode(src[first + k].words, src[first + k].n_words, src_lang, scratch);
    for (size_t k = 0; k < n; ++k)
        enc[n + k] = al.tokenizer->encode(tgt[first + k].words, tgt[first + k].n_words, tgt_lang, scratch);
    const size_t limit = static_cast<size_t>(al.manifest.max_positions);
    std::vector<char> keep(2 * n, 1);
    for (size_t s = 0; s < 2 * n; ++s) {
        if (enc[s].ids.size() <= limit) continue;
        const bool source = s < n;
        const size_t pair = first + (source ? s : s - n);
        if (!skip_long)
            throw Error(TA_ERR_TOO_LONG, "pair " + std::to_string(pair) + ": the " + (source ? "source" : "target") +
                                         " sentence has " + std::to_string(enc[s].ids.size()) +
                                         " tokens (special tokens included), more than the model's maximum of " +
                                         std::to_string(limit) + "; split it, or skip such pairs (skip_long)");
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
    for (const auto &batch : plan_batches(lengths, budget)) {
        size_t width = 0;
        for (size_t b : batch) width = std::max(width, lengths[b]);
        ids.assign(batch.size() * width, al.manifest.tokenizer.pad_id);
        mask.assign(batch.size() * width, 0);
        for (size_t r = 0; r < batch.size(); ++r) {
            const ta::Encoded &e = enc[kept[batch[r]]];
            std::copy(e.ids.begin(), e.ids.end(), ids.begin() + r * width);
            std::fill(mask.begin() + r * width, mask.begin() + r * width + e.ids.size(), 1);
        }
        al.session->run(ids, mask, static_cast<int64_t>(batch.size()), static_cast<int64_t>(width),
                        al.manifest.hidden_size, hidden);
        for (size_t r = 0; r < batch.size(); ++r) {
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
                         tgt_words.data(), threshold, result.links[first + k]);
    }
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
    options->provider = "cpu";
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
        const std::string provider = defaults.provider ? defaults.provider : "cpu";
        const std::string precision = defaults.precision ? defaults.precision : "fp32";
        if (provider != "cpu" && provider != "cuda" && provider != "auto")
            throw Error(TA_ERR_ARGUMENT, "provider '" + provider + "' is not one of auto, cpu, cuda");
        ta::model_file(precision);  // checks the name
        require(defaults.threads >= 0, "ta_open: threads must be >= 0 (0: ONNX Runtime's default)");
        std::unique_ptr<ta_aligner> al(new ta_aligner);
        al->manifest = ta::read_manifest(bundle_dir, precision, defaults.verify_hashes != 0);
        const ta::TokenizerSpec &spec = al->manifest.tokenizer;
        if (spec.kind != "sentencepiece-nllb" || al->manifest.architecture != "m2m100")
            throw Error(TA_ERR_UNSUPPORTED, "bundle " + std::string(bundle_dir) + " is a " + al->manifest.architecture +
                                            " bundle with a '" + spec.kind + "' tokenizer: not supported by the C library "
                                            "(it supports NLLB / M2M100 bundles); use the Python engine");
        const bool cuda = provider == "cuda" || (provider == "auto" && ta::cuda_available(defaults.ort_library));
        if (provider == "cuda" && !ta::cuda_available(defaults.ort_library))
            throw Error(TA_ERR_UNSUPPORTED, "execution provider CUDAExecutionProvider is not available in this "
                                            "onnxruntime (install onnxruntime-gpu and a matching CUDA)");
        if (precision == "fp16" && !cuda)
            throw Error(TA_ERR_UNSUPPORTED, "fp16 models are for the CUDA provider; on CPU use precision 'fp32' or 'int8'");
        al->provider = cuda ? "cuda" : "cpu";
        al->tokenizer.reset(new ta::NllbTokenizer(ta::bundle_path(bundle_dir, spec.file), spec));
        al->session.reset(new ta::Session(ta::bundle_path(bundle_dir, ta::model_file(precision)), al->provider,
                                          defaults.threads, defaults.ort_library));
        *out = al.release();
    });
}

void ta_close(ta_aligner *aligner) {
    try {
        delete aligner;
    } catch (...) {
    }
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
        aligner->tokenizer->lang_id(lang);
        found = 1;
    });
    return found;
}

int ta_align(ta_aligner *aligner, const ta_sentence *src, const ta_sentence *tgt, size_t n_pairs, const char *src_lang,
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
        double threshold = opts.threshold;
        if (threshold < 0) threshold = aligner->manifest.default_threshold;
        if (!(threshold >= 0.0 && threshold < 1.0))
            throw Error(TA_ERR_ARGUMENT, "threshold " + std::to_string(opts.threshold) + " must be in [0, 1)");
        const size_t budget = opts.batch_tokens ? opts.batch_tokens : aligner->provider == "cuda" ? 32768 : 2048;
        const int64_t src_id = aligner->tokenizer->lang_id(src_lang);
        const int64_t tgt_id = aligner->tokenizer->lang_id(tgt_lang);
        for (size_t k = 0; k < n_pairs; ++k) {
            check_sentence(src[k], "source", k);
            check_sentence(tgt[k], "target", k);
        }
        std::unique_ptr<ta_result> result(new ta_result);
        result->links.resize(n_pairs);
        result->skipped.assign(n_pairs, 0);
        auto scratch = aligner->tokenizer->new_scratch();
        for (size_t first = 0; first < n_pairs; first += kChunkPairs)
            align_chunk(*aligner, src, tgt, first, std::min(kChunkPairs, n_pairs - first), src_id, tgt_id, threshold,
                        budget, opts.skip_long != 0, *scratch, *result);
        *out = result.release();
    });
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

int ta_result_skipped(const ta_result *result, size_t pair) {
    if (!result || pair >= result->skipped.size()) {
        set_error(TA_ERR_ARGUMENT, "ta_result_skipped: result is NULL or pair is out of range");
        return -1;
    }
    return result->skipped[pair] ? 1 : 0;
}

const char *ta_result_pharaoh(ta_result *result, size_t pair) {
    const char *line = nullptr;
    guarded([&] {
        require(result != nullptr && pair < result->links.size(), "ta_result_pharaoh: result is NULL or pair is out of range");
        if (result->pharaoh.size() != result->links.size()) result->pharaoh.resize(result->links.size());
        std::string &text = result->pharaoh[pair];
        if (text.empty()) {
            const std::vector<int32_t> &l = result->links[pair];
            for (size_t k = 0; k < l.size(); k += 2)
                text += (k ? " " : "") + std::to_string(l[k]) + "-" + std::to_string(l[k + 1]);
        }
        line = text.c_str();
    });
    return line;
}

void ta_result_free(ta_result *result) { delete result; }

int ta_tokenize(ta_aligner *aligner, const ta_sentence *sentence, const char *lang, ta_tokens **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        require(out != nullptr && aligner != nullptr && sentence != nullptr, "ta_tokenize: aligner, sentence or out is NULL");
        const int64_t lang_id = aligner->tokenizer->lang_id(lang);
        check_sentence(*sentence, "given", 0);
        auto scratch = aligner->tokenizer->new_scratch();
        std::unique_ptr<ta_tokens> tokens(new ta_tokens);
        tokens->encoded = aligner->tokenizer->encode(sentence->words, sentence->n_words, lang_id, *scratch);
        *out = tokens.release();
    });
}

size_t ta_tokens_count(const ta_tokens *tokens) { return tokens ? tokens->encoded.ids.size() : 0; }
const int64_t *ta_tokens_ids(const ta_tokens *tokens) { return tokens ? tokens->encoded.ids.data() : nullptr; }
const int32_t *ta_tokens_word_ids(const ta_tokens *tokens) { return tokens ? tokens->encoded.word_ids.data() : nullptr; }
void ta_tokens_free(ta_tokens *tokens) { delete tokens; }

}  // extern "C"
