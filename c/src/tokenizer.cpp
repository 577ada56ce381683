// Sentencepiece-family tokenization of pre-split words, token for token what Hugging Face's fast
// tokenizers do: NLLB (transalign/engine/tokenizers/nllb.py, NllbTokenizerFast) and the XLM-R
// family (multilingual-e5; tokenizers/hf.py with the bundle's tokenizer.json: Precompiled
// normalizer, Metaspace, Unigram). Per word, in order:
//
// 1. raw added tokens (<s> <pad> </s> <unk>, every language code; XLM-R's <mask>) are cut out of
//    the word, leftmost-longest, and become their own id; they keep the word's index (lstrip /
//    rstrip tokens swallow the whitespace beside them);
// 2. every remaining segment goes through the `Precompiled` normalizer of the fast tokenizer:
//    the model's charsmap applied per *grapheme cluster* (ICU's character break iterator): a
//    cluster shorter than 6 bytes that starts with a charsmap key is replaced as a whole by the
//    mapping of its shortest key prefix, other clusters code point by code point; then
//    whitespace "strip" (trailing Unicode White_Space removed, runs of 2+ spaces -> U+2581) or
//    "keep" (runs of 2+ spaces -> one space);
// 3. normalized added tokens (<mask>, with lstrip) are cut out of the normalized text;
// 4. Metaspace: " " -> U+2581, a U+2581 prepended to a segment that does not start with one;
// 5. sentencepiece (NLLB: the bundle's BPE model; XLM-R: the Unigram model export wrote from
//    tokenizer.json, transalign/export/spm_model.py, ids = tokenizer.json ids) with its normalizer
//    replaced by the identity, as the Python engine does, on each segment; ids p -> p +
//    piece_offset, unknown -> unk_id; XLM-R: a run of unknown pieces is one <unk> (tokenizers'
//    fuse_unk);
// 6. NLLB [lang_code] tokens... [</s>]; XLM-R prefix_ids tokens... suffix_ids (<s> ... </s>).
#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <sstream>

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>
#include <unicode/ubrk.h>
#include <unicode/uchar.h>
#include <unicode/utext.h>

#include "internal.hpp"

namespace ta {

namespace {

const char kMeta[] = "\xe2\x96\x81";  // U+2581, sentencepiece's whitespace symbol

// Unicode White_Space (Rust char::is_whitespace; what tokenizers' Strip and lstrip remove).
bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

// Length of the UTF-8 sequence starting with byte `b` (input is validated first).
size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4; }

uint32_t decode_at(const std::string &s, size_t pos) {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(s.data()) + pos;
    switch (utf8_len(p[0])) {
    case 1: return p[0];
    case 2: return (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu);
    case 3: return (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu);
    default: return (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
    }
}

// Start of the last code point of s[0:end) (end > 0).
size_t last_cp_start(const std::string &s, size_t end) {
    size_t pos = end - 1;
    while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xc0) == 0x80) --pos;
    return pos;
}

void rstrip_white_space(std::string &s) {
    while (!s.empty()) {
        size_t start = last_cp_start(s, s.size());
        if (!is_white_space(decode_at(s, start))) break;
        s.resize(start);
    }
}

// ---- the sentencepiece model file (protobuf), read and edited without the protobuf library ----

bool read_varint(const std::string &buf, size_t &pos, uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= buf.size()) return false;
        unsigned char byte = static_cast<unsigned char>(buf[pos++]);
        value |= static_cast<uint64_t>(byte & 0x7f) << shift;
        if (byte < 0x80) return true;
    }
    return false;
}

std::string varint(uint64_t value) {
    std::string out;
    do {
        unsigned char byte = value & 0x7f;
        value >>= 7;
        out += static_cast<char>(byte | (value ? 0x80 : 0));
    } while (value);
    return out;
}

struct Field {
    uint64_t number, wire, value;  // value: varint value, or length for wire 2
    size_t start, data, end;       // field start, payload start (wire 2), end
};

std::vector<Field> fields(const std::string &buf) {
    std::vector<Field> out;
    size_t pos = 0;
    while (pos < buf.size()) {
        Field f{};
        f.start = pos;
        uint64_t key;
        if (!read_varint(buf, pos, key)) throw std::runtime_error("truncated protobuf");
        f.number = key >> 3;
        f.wire = key & 7;
        if (f.wire == 0) {
            if (!read_varint(buf, pos, f.value)) throw std::runtime_error("truncated protobuf");
        } else if (f.wire == 2) {
            if (!read_varint(buf, pos, f.value) || f.value > buf.size() - pos) throw std::runtime_error("truncated protobuf");
            f.data = pos;
            pos += f.value;
        } else if (f.wire == 1 || f.wire == 5) {
            pos += f.wire == 1 ? 8 : 4;
            if (pos > buf.size()) throw std::runtime_error("truncated protobuf");
        } else {
            throw std::runtime_error("unsupported protobuf wire type");
        }
        f.end = pos;
        out.push_back(f);
    }
    return out;
}

// (the model's precompiled charsmap, the model with the identity normalizer); as
// tokenization_nllb._identity_model: normalizer_spec (field 3) replaced by name "identity",
// add_dummy_prefix false, remove_extra_whitespaces false, escape_whitespaces true.
std::pair<std::string, std::string> identity_model(const std::string &data) {
    for (const Field &f : fields(data)) {
        if (f.number != 3 || f.wire != 2) continue;
        const std::string spec = data.substr(f.data, f.value);
        std::string charsmap;
        for (const Field &g : fields(spec)) {
            if (g.number == 2 && g.wire == 2) charsmap = spec.substr(g.data, g.value);
            if (g.number == 3 && g.wire == 0 && g.value != 1)
                throw std::runtime_error("its normalizer has add_dummy_prefix=false, which NLLB models never have");
        }
        static const char identity[] = "\x0a\x08identity\x18\x00\x20\x00\x28\x01";
        const std::string replacement(identity, sizeof(identity) - 1);
        std::string model = data.substr(0, f.start);
        model += static_cast<char>(3 << 3 | 2);
        model += varint(replacement.size());
        model += replacement;
        model += data.substr(f.end);
        return {charsmap, model};
    }
    throw std::runtime_error("no normalizer_spec in the model");
}

// ---- the precompiled charsmap: a darts-clone double-array trie + NUL-terminated mappings ----

class Charsmap {
public:
    explicit Charsmap(const std::string &blob) {
        if (blob.empty()) return;
        if (blob.size() < 4) throw std::runtime_error("precompiled charsmap is truncated");
        uint32_t trie_size = 0;
        for (int k = 3; k >= 0; --k) trie_size = trie_size << 8 | static_cast<unsigned char>(blob[k]);
        if (trie_size % 4 || trie_size > blob.size() - 4) throw std::runtime_error("precompiled charsmap is damaged");
        units_.resize(trie_size / 4);
        std::memcpy(units_.data(), blob.data() + 4, trie_size);  // little-endian host, as the format
        normalized_ = blob.substr(4 + trie_size);
    }

    bool empty() const { return units_.empty(); }

    // The mapping of the shortest charsmap key that is a prefix of s[0:n), if any
    // (spm_precompiled's transform: the first result of a common-prefix search).
    bool transform(const char *s, size_t n, std::string &out) const {
        if (units_.empty()) return false;
        size_t node = offset(units_[0]);
        for (size_t i = 0; i < n; ++i) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            node ^= c;
            if (node >= units_.size()) return false;
            const uint32_t unit = units_[node];
            if ((unit & ((1u << 31) | 0xffu)) != c) return false;  // label
            node ^= offset(unit);
            if (node >= units_.size()) return false;
            if ((unit >> 8) & 1) {  // has a leaf: the key s[0:i+1] ends here
                const size_t at = units_[node] & ((1u << 31) - 1);
                if (at >= normalized_.size()) return false;
                const size_t stop = normalized_.find('\0', at);
                out.append(normalized_, at, (stop == std::string::npos ? normalized_.size() : stop) - at);
                return true;
            }
        }
        return false;
    }

private:
    static size_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }
    std::vector<uint32_t> units_;
    std::string normalized_;
};

struct Unit {
    std::string text;
    int64_t fixed = -1;  // >= 0: an added token's model id (text unused)
};

struct AddedToken {
    std::string content;
    int64_t id;
    bool normalized, lstrip, rstrip;
};

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(TA_ERR_BUNDLE, "tokenizer file " + path + " is missing; export the bundle again");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

std::string base64_decode(const std::string &text) {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        if (c == '=') break;
        const size_t v = alphabet.find(c);
        if (v == std::string::npos) throw std::runtime_error("precompiled_charsmap is not base64");
        bits = bits << 6 | static_cast<uint32_t>(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out += static_cast<char>((bits >> count) & 0xff);
        }
    }
    return out;
}

}  // namespace

bool has_alnum(const char *s, size_t n) {
    const std::string text(s, n);
    for (size_t pos = 0; pos < text.size(); pos += utf8_len(static_cast<unsigned char>(text[pos]))) {
        const UChar32 cp = static_cast<UChar32>(decode_at(text, pos));
        if (u_isalpha(cp) || u_getIntPropertyValue(cp, UCHAR_NUMERIC_TYPE) != U_NT_NONE) return true;
    }
    return false;
}

size_t utf8_chars(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; ++i) count += (static_cast<unsigned char>(s[i]) & 0xc0) != 0x80;
    return count;
}

bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(s);
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        if (b < 0x80) { ++i; continue; }
        size_t len;
        uint32_t cp, min;
        if (b >= 0xc2 && b <= 0xdf) { len = 2; cp = b & 0x1f; min = 0x80; }
        else if (b >= 0xe0 && b <= 0xef) { len = 3; cp = b & 0x0f; min = 0x800; }
        else if (b >= 0xf0 && b <= 0xf4) { len = 4; cp = b & 0x07; min = 0x10000; }
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

struct NllbTokenizer::Scratch {
    UBreakIterator *graphemes = nullptr;
    ~Scratch() {
        if (graphemes) ubrk_close(graphemes);
    }
};

struct NllbTokenizer::Impl {
    sentencepiece::SentencePieceProcessor sp;
    std::unique_ptr<Charsmap> charsmap;
    std::map<std::string, int64_t> lang_ids;
    std::vector<AddedToken> raw_tokens;   // longest first
    std::vector<AddedToken> norm_tokens;  // (NLLB's <mask>), longest first
    std::vector<int64_t> table;           // sentencepiece id -> model id
    // raw_tokens by first byte, longest first; and a byte every raw token contains (its first
    // non-alphanumeric one), a cheap test that a word holds no added token at all
    std::vector<const AddedToken *> by_first[256];
    bool trigger[256] = {};
    std::vector<int64_t> prefix, suffix;  // without a language code
    int64_t eos = 0, vocab = 0, unk = 0;
    bool strip = true, unigram = false;
    // Unigram: tokenizers' own Viterbi (scores in double, ties to the earliest start), which
    // sentencepiece's (float sums) does not always reproduce
    std::vector<std::string> piece_text;
    std::unordered_map<std::string_view, int> piece_ids;  // views into piece_text
    std::vector<double> scores;
    size_t longest_piece = 0;
    double unk_score = 0;
    void unigram_encode(const std::string &text, std::vector<int> &ids) const;

    void load_nllb(const std::string &root, const TokenizerSpec &spec);
    void load_unigram(const std::string &root, const TokenizerSpec &spec);
    void load_model(const std::string &path, const std::string &expected_charsmap, bool check_charsmap);
    void index_added(std::vector<AddedToken> added);
    std::mutex pool_mutex;
    std::vector<std::unique_ptr<Scratch>> pool;

    std::string precompiled(const std::string &text, Scratch &scratch) const;
    void whitespace(std::string &text) const;
    void split_normalized(const std::string &text, std::vector<Unit> &out) const;
};

NllbTokenizer::NllbTokenizer(const std::string &root, const TokenizerSpec &spec) : impl_(new Impl) {
    if (spec.whitespace != "strip" && spec.whitespace != "keep")
        throw Error(TA_ERR_BUNDLE, "tokenizer whitespace '" + spec.whitespace + "' is not 'strip' or 'keep'");
    if (spec.lowercase)
        throw Error(TA_ERR_UNSUPPORTED, "this bundle's tokenizer lowercases its input (lowercase: true), which the C "
                                        "library does not implement; use the Python engine");
    impl_->unk = spec.unk_id;
    if (spec.kind == "sentencepiece-nllb") impl_->load_nllb(root, spec);
    else impl_->load_unigram(root, spec);
}

// The sentencepiece model with the identity normalizer, its charsmap (checked against the
// tokenizer.json's for XLM-R), the id table.
void NllbTokenizer::Impl::load_model(const std::string &path, const std::string &expected_charsmap, bool check_charsmap) {
    std::pair<std::string, std::string> models;
    try {
        models = identity_model(read_file(path));
        charsmap.reset(new Charsmap(models.first));
    } catch (const std::runtime_error &exc) {
        throw Error(TA_ERR_BUNDLE, path + " is not a readable sentencepiece model (" + exc.what() + "); export the bundle again");
    }
    if (check_charsmap && models.first != expected_charsmap)
        throw Error(TA_ERR_BUNDLE, path + ": its precompiled charsmap differs from the tokenizer.json normalizer's; "
                                   "export the bundle again");
    const auto status = sp.LoadFromSerializedProto(models.second);
    if (!status.ok())
        throw Error(TA_ERR_BUNDLE, path + " is not a readable sentencepiece model (" + status.ToString() +
                                   "); export the bundle again");
}

void NllbTokenizer::Impl::index_added(std::vector<AddedToken> added) {
    for (auto &token : added) {
        if (token.content.empty()) continue;
        (token.normalized ? norm_tokens : raw_tokens).push_back(token);
    }
    auto longest_first = [](const AddedToken &a, const AddedToken &b) { return a.content.size() > b.content.size(); };
    std::stable_sort(raw_tokens.begin(), raw_tokens.end(), longest_first);
    std::stable_sort(norm_tokens.begin(), norm_tokens.end(), longest_first);
    for (auto &token : raw_tokens) {
        by_first[static_cast<unsigned char>(token.content[0])].push_back(&token);
        size_t pick = 0;
        while (pick < token.content.size() && std::isalnum(static_cast<unsigned char>(token.content[pick]))) ++pick;
        trigger[static_cast<unsigned char>(token.content[pick < token.content.size() ? pick : 0])] = true;
    }
}

void NllbTokenizer::Impl::load_nllb(const std::string &root, const TokenizerSpec &spec) {
    if (spec.lang_code_ids.empty())
        throw Error(TA_ERR_BUNDLE, "the NLLB tokenizer spec has no language codes (lang_code_ids is empty)");
    load_model(bundle_path(root, spec.file), "", false);
    lang_ids = spec.lang_code_ids;
    eos = spec.eos_id;
    suffix = {spec.eos_id};
    strip = spec.whitespace == "strip";
    // bundles always list their added tokens; the fallback serves hand-written specs
    std::map<std::string, int64_t> table_of_added = spec.added_tokens;
    if (table_of_added.empty())
        table_of_added = {{"</s>", spec.eos_id}, {"<pad>", spec.pad_id}, {"<unk>", spec.unk_id}};
    for (auto &lang : spec.lang_code_ids) table_of_added.insert(lang);
    std::vector<AddedToken> added;
    for (auto &token : table_of_added) {
        const bool mask = token.first == "<mask>";  // NllbTokenizer: normalized + lstrip
        added.push_back({token.first, token.second, mask, mask, false});
    }
    index_added(added);
    const int size = sp.GetPieceSize();
    table.resize(size);
    for (int p = 0; p < size; ++p) table[p] = p + spec.piece_offset;
    if (sp.unk_id() >= 0 && sp.unk_id() < size) table[sp.unk_id()] = spec.unk_id;
    vocab = size + spec.piece_offset;
    for (auto &token : added)
        if (token.id >= size + spec.piece_offset) ++vocab;  // added after the pieces, as Hugging Face numbers them
}

// tokenizer.json of the XLM-R family: the pipeline checked step by step; anything else is refused
// rather than tokenized differently from the Python engine.
void NllbTokenizer::Impl::load_unigram(const std::string &root, const TokenizerSpec &spec) {
    using json = nlohmann::json;
    const std::string path = bundle_path(root, spec.file);
    json config;
    try {
        config = json::parse(read_file(path));
    } catch (const json::exception &exc) {
        throw Error(TA_ERR_BUNDLE, path + " is not valid JSON (" + exc.what() + "); export the bundle again");
    }
    auto unsupported = [&](const std::string &what) {
        return Error(TA_ERR_UNSUPPORTED, path + ": " + what + ", which the C library does not implement (it reproduces "
                                         "XLM-R-style tokenizers: Precompiled normalizer, Metaspace, Unigram); use the "
                                         "Python engine");
    };
    try {
        const json &model = config.at("model");
        if (model.value("type", "") != "Unigram") throw unsupported("the model is not Unigram");
        if (model.value("byte_fallback", false)) throw unsupported("the Unigram model uses byte fallback");
        const json &norm = config.at("normalizer");
        std::vector<json> steps;
        if (norm.is_object() && norm.value("type", "") == "Sequence") steps = norm.at("normalizers").get<std::vector<json>>();
        else if (!norm.is_null()) steps = {norm};
        if (steps.empty() || steps[0].value("type", "") != "Precompiled")
            throw unsupported("the normalizer does not start with Precompiled");
        const std::string charsmap = base64_decode(steps[0].value("precompiled_charsmap", ""));
        steps.erase(steps.begin());
        const json collapse_meta = {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", "\u2581"}};
        const json collapse_space = {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}};
        const json strip_right = {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}};
        if (steps == std::vector<json>{strip_right, collapse_meta}) strip = true;
        else if (steps == std::vector<json>{collapse_space}) strip = false;
        else throw unsupported("the normalizer steps after Precompiled are " + json(steps).dump().substr(0, 200));
        const json &pre = config.at("pre_tokenizer");
        const std::string scheme = pre.contains("prepend_scheme") ? pre.value("prepend_scheme", "")
                                   : pre.value("add_prefix_space", false) ? "always" : "never";
        if (pre.value("type", "") != "Metaspace" || pre.value("replacement", "") != "\u2581" || scheme != "always" ||
            !pre.value("split", true))
            throw unsupported("the pre-tokenizer is " + pre.dump().substr(0, 200));
        std::vector<AddedToken> added;
        for (const json &token : config.at("added_tokens")) {
            if (token.value("single_word", false)) throw unsupported("an added token is single_word");
            added.push_back({token.at("content").get<std::string>(), token.at("id").get<int64_t>(),
                             token.value("normalized", false), token.value("lstrip", false), token.value("rstrip", false)});
        }
        const size_t pieces = model.at("vocab").size();
        if (spec.sentencepiece_file.empty()) throw unsupported("the bundle has no sentencepiece model");
        const std::string sp_path = bundle_path(root, spec.sentencepiece_file);
        load_model(sp_path, charsmap, true);
        if (static_cast<size_t>(sp.GetPieceSize()) != pieces)
            throw Error(TA_ERR_BUNDLE, sp_path + " has " + std::to_string(sp.GetPieceSize()) + " pieces but " + path +
                                       " has " + std::to_string(pieces) + "; export the bundle again");
        if (model.value("unk_id", -1) != spec.unk_id || sp.unk_id() != spec.unk_id)
            throw Error(TA_ERR_BUNDLE, path + ": the Unigram unk_id, the sentencepiece model's and the manifest's "
                                       "tokenizer.unk_id differ; export the bundle again");
        index_added(added);
        table.resize(pieces);
        for (size_t p = 0; p < pieces; ++p) table[p] = static_cast<int64_t>(p);
        // the Viterbi's vocabulary: every piece of tokenizer.json (special ones too, as tokenizers'
        // trie holds them) with its score as a double, exactly as tokenizers reads it; the
        // sentencepiece model must list the same pieces
        double min_score = 0;
        const json &entries = model.at("vocab");
        piece_text.reserve(pieces);
        scores.resize(pieces);
        for (size_t p = 0; p < pieces; ++p) {
            piece_text.push_back(entries[p].at(0).get<std::string>());
            scores[p] = entries[p].at(1).get<double>();
            if (piece_text[p] != sp.IdToPiece(static_cast<int>(p)))
                throw Error(TA_ERR_BUNDLE, sp_path + ": piece " + std::to_string(p) + " differs from " + path +
                                           "'s; export the bundle again");
            longest_piece = std::max(longest_piece, piece_text[p].size());
            min_score = p == 0 ? scores[p] : std::min(min_score, scores[p]);
        }
        piece_ids.reserve(pieces);
        for (size_t p = 0; p < pieces; ++p) piece_ids.emplace(std::string_view(piece_text[p]), static_cast<int>(p));
        unk_score = min_score - 10.0;  // tokenizers' K_UNK_PENALTY
        vocab = static_cast<int64_t>(pieces);
        for (auto &token : added)
            if (token.id >= static_cast<int64_t>(pieces)) ++vocab;
    } catch (const json::exception &exc) {
        throw Error(TA_ERR_BUNDLE, path + " is not a tokenizer.json this library understands (" + exc.what() +
                                   "); export the bundle again");
    }
    eos = spec.eos_id;
    prefix = spec.prefix_ids;
    suffix = spec.suffix_ids;
    unigram = true;
}

NllbTokenizer::~NllbTokenizer() = default;

bool NllbTokenizer::has_lang(const char *lang) const { return lang && impl_->lang_ids.count(lang); }
bool NllbTokenizer::has_langs() const { return !impl_->lang_ids.empty(); }
int64_t NllbTokenizer::vocab_size() const { return impl_->vocab; }

int64_t NllbTokenizer::lang_id(const char *lang, const char *option) const {
    const std::string side = std::string(option) == "tgt_lang" ? "target" : "source";
    if (!lang)
        throw Error(TA_ERR_ARGUMENT, std::string(option) + " is required: this bundle starts every " + side +
                                     " sentence with its language code, e.g. eng_Latn (got NULL)");
    auto it = impl_->lang_ids.find(lang);
    if (it != impl_->lang_ids.end()) return it->second;
    std::string wanted(lang), close;
    auto lower = [](std::string s) {
        for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    auto letters = [&](size_t n) {
        return wanted.size() == n && std::all_of(wanted.begin(), wanted.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        });
    };
    // engine.options.canonical_language: a bare ISO 639-3 code with one script is that code
    if (letters(3)) {
        const std::string prefix = lower(wanted) + "_";
        int64_t found = -1;
        int count = 0;
        for (auto &code : impl_->lang_ids)
            if (code.first.rfind(prefix, 0) == 0) {
                found = code.second;
                ++count;
            }
        if (count == 1) return found;
    }
    // close codes: same letters ignoring case, else the same first three letters
    int shown = 0;
    for (int pass = 0; pass < 2 && close.empty(); ++pass)
        for (auto &code : impl_->lang_ids) {
            bool match = pass == 0 ? lower(code.first) == lower(wanted)
                                   : wanted.size() >= 3 && lower(code.first).rfind(lower(wanted.substr(0, 3)), 0) == 0;
            if (match && shown < 5) {
                close += (close.empty() ? "" : ", ") + code.first;
                ++shown;
            }
        }
    std::string examples;
    int k = 0;
    for (auto &code : impl_->lang_ids) {
        if (k++ == 3) break;
        examples += (examples.empty() ? "" : ", ") + code.first;
    }
    const std::string iso1 = letters(2) ? "; two-letter ISO 639-1 codes are not used: write the ISO 639-3 code and "
                                          "script, e.g. ces_Latn for cs (Czech), eng_Latn for en"
                                        : "";
    throw Error(TA_ERR_LANGUAGE, std::string(option) + " '" + wanted + "': unknown language code" +
                                 (close.empty() ? "" : "; closest: " + close) + iso1 + " (" +
                                 std::to_string(impl_->lang_ids.size()) + " codes known, e.g. " + examples + ")");
}

// Opening an ICU break iterator costs far more than tokenizing a sentence: iterators are kept
// in a small pool and reused (one per concurrent caller).
void NllbTokenizer::ScratchDeleter::operator()(Scratch *scratch) const {
    try {
        std::lock_guard<std::mutex> lock(owner->impl_->pool_mutex);
        if (owner->impl_->pool.size() < 64) {
            owner->impl_->pool.emplace_back(scratch);
            return;
        }
    } catch (...) {
    }
    delete scratch;
}

std::unique_ptr<NllbTokenizer::Scratch, NllbTokenizer::ScratchDeleter> NllbTokenizer::new_scratch() const {
    {
        std::lock_guard<std::mutex> lock(impl_->pool_mutex);
        if (!impl_->pool.empty()) {
            Scratch *scratch = impl_->pool.back().release();
            impl_->pool.pop_back();
            return std::unique_ptr<Scratch, ScratchDeleter>(scratch, ScratchDeleter{this});
        }
    }
    std::unique_ptr<Scratch, ScratchDeleter> scratch(new Scratch, ScratchDeleter{this});
    UErrorCode err = U_ZERO_ERROR;
    scratch->graphemes = ubrk_open(UBRK_CHARACTER, "", nullptr, 0, &err);
    if (U_FAILURE(err) || !scratch->graphemes)
        throw Error(TA_ERR_INTERNAL, std::string("ICU character break iterator: ") + u_errorName(err));
    return scratch;
}

std::string NllbTokenizer::Impl::precompiled(const std::string &text, Scratch &scratch) const {
    if (charsmap->empty() || text.empty()) return text;
    UErrorCode err = U_ZERO_ERROR;
    UText *ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &err);
    ubrk_setUText(scratch.graphemes, ut, &err);
    if (U_FAILURE(err)) {
        utext_close(ut);
        throw Error(TA_ERR_INTERNAL, std::string("ICU grapheme segmentation: ") + u_errorName(err));
    }
    std::string out;
    out.reserve(text.size());
    int32_t start = ubrk_first(scratch.graphemes);
    for (int32_t end = ubrk_next(scratch.graphemes); end != UBRK_DONE; start = end, end = ubrk_next(scratch.graphemes)) {
        const char *cluster = text.data() + start;
        const size_t size = static_cast<size_t>(end - start);
        if (size < 6 && charsmap->transform(cluster, size, out)) continue;
        for (size_t pos = 0; pos < size;) {
            const size_t len = utf8_len(static_cast<unsigned char>(cluster[pos]));
            if (!charsmap->transform(cluster + pos, len, out)) out.append(cluster + pos, len);
            pos += len;
        }
    }
    utext_close(ut);
    return out;
}

void NllbTokenizer::Impl::whitespace(std::string &text) const {
    if (strip) rstrip_white_space(text);
    if (text.find("  ") == std::string::npos) return;
    std::string out;
    for (size_t i = 0; i < text.size();) {
        if (text[i] == ' ') {
            size_t j = i;
            while (j < text.size() && text[j] == ' ') ++j;
            if (j - i >= 2) out += strip ? kMeta : " ";
            else out += ' ';
            i = j;
        } else {
            out += text[i++];
        }
    }
    text.swap(out);
}

// Cut added tokens out of `text`, leftmost-longest (tokenizers' AddedVocabulary): `tokens`
// longest first; an lstrip token takes the whitespace before it, an rstrip one the whitespace
// after it. Text parts go to `part(text)`, tokens to `token(id)`.
template <typename Part, typename Token>
void split_added(const std::string &text, const std::vector<AddedToken> &tokens,
                 const std::vector<const AddedToken *> *by_first, Part part, Token token) {
    size_t pos = 0, scan = 0;
    while (scan < text.size()) {
        const AddedToken *hit = nullptr;
        if (by_first) {
            for (const AddedToken *t : by_first[static_cast<unsigned char>(text[scan])])
                if (text.compare(scan, t->content.size(), t->content) == 0) {
                    hit = t;
                    break;
                }
        } else {
            for (const AddedToken &t : tokens)
                if (text.compare(scan, t.content.size(), t.content) == 0) {
                    hit = &t;
                    break;
                }
        }
        if (!hit) {
            ++scan;
            continue;
        }
        std::string left = text.substr(pos, scan - pos);
        if (hit->lstrip) rstrip_white_space(left);
        if (!left.empty()) part(left);
        token(hit->id);
        scan += hit->content.size();
        if (hit->rstrip)
            while (scan < text.size() && is_white_space(decode_at(text, scan)))
                scan += utf8_len(static_cast<unsigned char>(text[scan]));
        pos = scan;
    }
    if (pos < text.size()) part(text.substr(pos));
}

// Steps 3-4: cut normalized added tokens (NLLB's <mask>) out of a normalized segment, Metaspace
// on the text parts.
void NllbTokenizer::Impl::split_normalized(const std::string &text, std::vector<Unit> &out) const {
    auto metaspace = [](const std::string &part) {
        std::string s;
        for (char c : part) {
            if (c == ' ') s += kMeta;
            else s += c;
        }
        if (!s.empty() && s.compare(0, 3, kMeta) != 0) s.insert(0, kMeta);
        return s;
    };
    const size_t before = out.size();
    if (norm_tokens.empty()) {
        if (!text.empty()) out.push_back({metaspace(text), -1});
    } else {
        split_added(text, norm_tokens, nullptr, [&](const std::string &part) { out.push_back({metaspace(part), -1}); },
                    [&](int64_t id) { out.push_back({std::string(), id}); });
    }
    if (out.size() == before && text.empty()) out.push_back({std::string(), -1});  // an empty segment: one empty unit
}

// tokenizers' Unigram::encode_optimized on one pre-token: for every start (a character
// boundary) every piece beginning there extends the best path ending at its end when its score
// is strictly higher (so ties keep the earliest start); a character no piece covers is an unknown
// piece of score min - 10; backtracking joins runs of unknowns into one <unk> (fuse_unk).
void NllbTokenizer::Impl::unigram_encode(const std::string &text, std::vector<int> &ids) const {
    struct Node {
        int id = -1;
        double score = 0;
        long start = -1;
    };
    const size_t size = text.size();
    std::vector<Node> best(size + 1);
    const int unk_id = sp.unk_id();
    for (size_t start = 0; start < size;) {
        const double here = best[start].score;
        const size_t mblen = utf8_len(static_cast<unsigned char>(text[start]));
        bool single = false;
        for (size_t length = 1; length <= longest_piece && start + length <= size; ++length) {
            auto it = piece_ids.find(std::string_view(text.data() + start, length));
            if (it == piece_ids.end()) continue;
            Node &target = best[start + length];
            const double candidate = scores[it->second] + here;
            if (target.start < 0 || candidate > target.score) target = {it->second, candidate, static_cast<long>(start)};
            if (length == mblen) single = true;
        }
        if (!single) {
            Node &target = best[start + mblen];
            const double candidate = unk_score + here;
            if (target.start < 0 || candidate > target.score) target = {unk_id, candidate, static_cast<long>(start)};
        }
        start += mblen;
    }
    const size_t first = ids.size();
    for (size_t end = size; end > 0;) {
        const Node &node = best[end];
        if (!(node.id == unk_id && !ids.empty() && ids.size() > first && ids.back() == unk_id)) ids.push_back(node.id);
        end = static_cast<size_t>(node.start);
    }
    std::reverse(ids.begin() + first, ids.end());
}

Encoded NllbTokenizer::encode(const WordRef *words, size_t n_words, int64_t lang_id, Scratch &scratch) const {
    const Impl &im = *impl_;
    Encoded enc;
    if (lang_id >= 0) {
        enc.ids.push_back(lang_id);
    } else {
        enc.ids.assign(im.prefix.begin(), im.prefix.end());
    }
    enc.word_ids.assign(enc.ids.size(), -1);
    std::vector<int> pieces;
    std::vector<Unit> raw, units;
    for (size_t w = 0; w < n_words; ++w) {
        const std::string word(words[w].data, words[w].size);
        // step 1: raw added tokens, leftmost-longest
        raw.clear();
        bool any = false;
        for (unsigned char c : word) any = any || im.trigger[c];
        if (any)
            split_added(word, im.raw_tokens, im.by_first, [&](const std::string &part) { raw.push_back({part, -1}); },
                        [&](int64_t id) { raw.push_back({std::string(), id}); });
        if (!any || raw.empty()) raw.push_back({word, -1});
        // steps 2-4 on each text unit
        units.clear();
        for (Unit &unit : raw) {
            if (unit.fixed >= 0) {
                units.push_back(unit);
                continue;
            }
            std::string text = im.precompiled(unit.text, scratch);
            im.whitespace(text);
            im.split_normalized(text, units);
        }
        // step 5: sentencepiece
        for (const Unit &unit : units) {
            if (unit.fixed >= 0) {
                enc.ids.push_back(unit.fixed);
                enc.word_ids.push_back(static_cast<int32_t>(w));
                continue;
            }
            if (unit.text.empty()) continue;
            // Unigram: Metaspace's split (a piece starts at every U+2581) is the caller's job, as
            // sentencepiece's Unigram encodes the whole text; BPE splits there itself
            for (size_t start = 0, stop; start < unit.text.size(); start = stop) {
                stop = im.unigram ? unit.text.find(kMeta, start + 1) : std::string::npos;
                if (stop == std::string::npos) stop = unit.text.size();
                pieces.clear();
                if (im.unigram) {
                    im.unigram_encode(unit.text.substr(start, stop - start), pieces);
                } else {
                    const auto status = im.sp.Encode(absl::string_view(unit.text.data() + start, stop - start), &pieces);
                    if (!status.ok()) throw Error(TA_ERR_INTERNAL, "sentencepiece: " + status.ToString());
                }
                bool last_unk = false;
                for (int p : pieces) {
                    if (p < 0 || static_cast<size_t>(p) >= im.table.size())
                        throw Error(TA_ERR_INTERNAL, "sentencepiece returned the id " + std::to_string(p) +
                                                     " outside its vocabulary");
                    const bool unk = p == im.sp.unk_id();
                    if (im.unigram && unk && last_unk) continue;  // (unigram_encode fuses already)
                    last_unk = unk;
                    enc.ids.push_back(im.table[p]);
                    enc.word_ids.push_back(static_cast<int32_t>(w));
                }
            }
        }
    }
    for (int64_t id : im.suffix) {
        enc.ids.push_back(id);
        enc.word_ids.push_back(-1);
    }
    return enc;
}

}  // namespace ta
