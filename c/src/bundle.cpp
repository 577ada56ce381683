// The bundle contract of transalign/engine/bundle.py: manifest.json (nlohmann/json), format
// name and version, the sha256 (libcrypto) of every listed file that the chosen precision
// uses, and paths that stay inside the bundle directory.
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "internal.hpp"

namespace ta {

namespace {

const char *const kFormatName = "transalign-bundle";
const int kFormatVersion = 1;
const char *const kModelFiles[3] = {"model.onnx", "model.int8.onnx", "model.fp16.onnx"};

bool is_dir(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// bundle.py files_of_precision: a precision's graph and its external weights.
bool files_of_precision(const std::string &name, const std::string &precision) {
    const std::string model = model_file(precision);
    return name == model || name.rfind(model + ".", 0) == 0;
}

std::string read_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(TA_ERR_BUNDLE, path + " cannot be read");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

using json = nlohmann::json;

const json &field(const json &object, const char *key, const std::string &where) {
    auto it = object.find(key);
    if (it == object.end())
        throw Error(TA_ERR_BUNDLE, where + ": manifest field '" + key + "' is missing; export the bundle again");
    return *it;
}

int64_t int_field(const json &object, const char *key, const std::string &where) {
    const json &value = field(object, key, where);
    if (!value.is_number_integer())
        throw Error(TA_ERR_BUNDLE, where + ": manifest field '" + key + "' is not an integer");
    return value.get<int64_t>();
}

std::string string_field(const json &object, const char *key, const std::string &where) {
    const json &value = field(object, key, where);
    if (!value.is_string()) throw Error(TA_ERR_BUNDLE, where + ": manifest field '" + key + "' is not a string");
    return value.get<std::string>();
}

std::vector<int64_t> id_list(const json &object, const char *key, const std::string &where) {
    std::vector<int64_t> ids;
    auto it = object.find(key);
    if (it == object.end()) return ids;
    if (!it->is_array()) throw Error(TA_ERR_BUNDLE, where + ": manifest field 'tokenizer." + key + "' is not a list");
    for (const json &value : *it) {
        if (!value.is_number_integer())
            throw Error(TA_ERR_BUNDLE, where + ": manifest field 'tokenizer." + key + "' holds a non-integer id");
        ids.push_back(value.get<int64_t>());
    }
    return ids;
}

// Upper bounds no exported encoder comes near; beyond them a manifest is damaged, not large.
const int64_t kMaxPositions = 1 << 16, kMaxHidden = 1 << 16;

std::map<std::string, int64_t> id_table(const json &object, const char *key, const std::string &where) {
    std::map<std::string, int64_t> table;
    auto it = object.find(key);
    if (it == object.end()) return table;
    if (!it->is_object()) throw Error(TA_ERR_BUNDLE, where + ": manifest field '" + key + "' is not an object");
    for (auto &item : it->items()) {
        if (!item.value().is_number_integer())
            throw Error(TA_ERR_BUNDLE, where + ": '" + key + "' entry '" + item.key() + "' is not an integer id");
        table[item.key()] = item.value().get<int64_t>();
    }
    return table;
}

}  // namespace

const char *const kPrecisions[3] = {"fp32", "int8", "fp16"};

std::string model_file(const std::string &precision) {
    for (int k = 0; k < 3; ++k)
        if (precision == kPrecisions[k]) return kModelFiles[k];
    throw Error(TA_ERR_ARGUMENT, "precision '" + precision + "' is not one of fp32, int8, fp16");
}

std::string bundle_path(const std::string &root, const std::string &name) {
    // Names are plain relative paths: no absolute path, no "..", no empty component; and the
    // resolved file (symbolic links followed) must still be inside the resolved bundle.
    bool bad = name.empty() || name[0] == '/' || name.find('\0') != std::string::npos;
    std::stringstream parts(name);
    std::string part;
    while (!bad && std::getline(parts, part, '/'))
        if (part.empty() || part == "..") bad = true;
    if (bad) throw Error(TA_ERR_BUNDLE, "bundle file name '" + name + "' leaves the bundle directory; refused");
    std::string path = root + "/" + name;
    char real_root[PATH_MAX], real_file[PATH_MAX];
    if (realpath(root.c_str(), real_root) && realpath(path.c_str(), real_file)) {
        std::string base = std::string(real_root) + "/";
        if (std::string(real_file).rfind(base, 0) != 0)
            throw Error(TA_ERR_BUNDLE, "bundle file " + path + " resolves outside the bundle directory; refused");
    }
    return path;
}

std::string sha256_file(const std::string &path) {
    FILE *file = std::fopen(path.c_str(), "rb");
    if (!file) throw Error(TA_ERR_BUNDLE, "bundle file " + path + " cannot be opened");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
    std::vector<unsigned char> block(1 << 20);
    size_t got;
    while (ok && (got = std::fread(block.data(), 1, block.size(), file)) > 0) ok = EVP_DigestUpdate(ctx, block.data(), got) == 1;
    ok = ok && !std::ferror(file);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &size) == 1;
    EVP_MD_CTX_free(ctx);
    std::fclose(file);
    if (!ok) throw Error(TA_ERR_BUNDLE, "bundle file " + path + " could not be read to check its sha256");
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int k = 0; k < size; ++k) {
        out += hex[digest[k] >> 4];
        out += hex[digest[k] & 15];
    }
    return out;
}

Manifest read_manifest(const std::string &root, const std::string &precision, bool verify) {
    if (!is_dir(root))
        throw Error(TA_ERR_BUNDLE, "bundle " + root + " does not exist or is not a directory; "
                                   "create one with `transalign export MODEL -o BUNDLE`");
    const std::string path = root + "/manifest.json";
    if (!is_file(path))
        throw Error(TA_ERR_BUNDLE, path + " is missing: " + root + " is not a transalign bundle "
                                   "(or its export was interrupted); export it again");
    bundle_path(root, "manifest.json");  // a symlink out of the bundle is refused
    json data;
    try {
        data = json::parse(read_text(path));
    } catch (const json::exception &exc) {
        throw Error(TA_ERR_BUNDLE, path + " is not valid JSON (" + exc.what() + "); the bundle is damaged, export it again");
    }
    if (!data.is_object() || !data.contains("format") || data["format"] != kFormatName)
        throw Error(TA_ERR_BUNDLE, path + ": 'format' is not '" + kFormatName + "'");
    if (!data.contains("format_version") || data["format_version"] != kFormatVersion)
        throw Error(TA_ERR_BUNDLE, path + ": bundle format version " +
                                   (data.contains("format_version") ? data["format_version"].dump() : std::string("(none)")) +
                                   " is not supported by this libtransalign (supports 1); re-export the model");
    Manifest manifest;
    manifest.root = root;
    manifest.architecture = string_field(data, "architecture", path);
    manifest.hidden_size = int_field(data, "hidden_size", path);
    manifest.max_positions = int_field(data, "max_positions", path);
    const json &threshold = field(data, "default_threshold", path);
    if (!threshold.is_number() || threshold.is_boolean())
        throw Error(TA_ERR_BUNDLE, path + ": manifest field 'default_threshold' is not a number");
    manifest.default_threshold = threshold.get<double>();
    if (!(manifest.default_threshold >= 0.0 && manifest.default_threshold < 1.0))
        throw Error(TA_ERR_BUNDLE, path + ": manifest field 'default_threshold' is " + threshold.dump() +
                                   ", not in [0, 1); the manifest is damaged or was edited, export the bundle again");
    if (manifest.hidden_size < 1 || manifest.hidden_size > kMaxHidden)
        throw Error(TA_ERR_BUNDLE, path + ": manifest field 'hidden_size' is " + std::to_string(manifest.hidden_size) +
                                   ", not in 1.." + std::to_string(kMaxHidden) + "; export the bundle again");
    if (manifest.max_positions < 2 || manifest.max_positions > kMaxPositions)
        throw Error(TA_ERR_BUNDLE, path + ": manifest field 'max_positions' is " + std::to_string(manifest.max_positions) +
                                   ", not in 2.." + std::to_string(kMaxPositions) + "; export the bundle again");
    for (const char *key : {"default_method", "default_word_level"})
        if (data.contains(key) && !data[key].is_string())
            throw Error(TA_ERR_BUNDLE, path + ": manifest field '" + key + "' is not a string");
    manifest.default_method = data.value("default_method", std::string("softmax"));
    manifest.default_word_level = data.value("default_word_level", std::string("any"));
    extraction_of(manifest);  // names a bad default_method / default_word_level now
    if (data.contains("vocab_size") && !data["vocab_size"].is_null()) {
        manifest.vocab_size = int_field(data, "vocab_size", path);
        if (manifest.vocab_size < 1)
            throw Error(TA_ERR_BUNDLE, path + ": manifest field 'vocab_size' is " + std::to_string(manifest.vocab_size) +
                                       ", not positive; export the bundle again");
    }

    const json &tok = field(data, "tokenizer", path);
    if (!tok.is_object()) throw Error(TA_ERR_BUNDLE, path + ": 'tokenizer' is not an object");
    TokenizerSpec &spec = manifest.tokenizer;
    spec.kind = string_field(tok, "kind", path);
    spec.file = string_field(tok, "file", path);
    spec.unk_id = int_field(tok, "unk_id", path);
    spec.eos_id = int_field(tok, "eos_id", path);
    spec.pad_id = int_field(tok, "pad_id", path);
    spec.piece_offset = tok.contains("piece_offset") ? int_field(tok, "piece_offset", path) : 0;
    spec.whitespace = tok.contains("whitespace") ? string_field(tok, "whitespace", path) : "strip";
    spec.lowercase = tok.contains("lowercase") && tok["lowercase"].is_boolean() && tok["lowercase"].get<bool>();
    spec.lang_code_ids = id_table(tok, "lang_code_ids", path);
    spec.added_tokens = id_table(tok, "added_tokens", path);
    spec.prefix_ids = id_list(tok, "prefix_ids", path);
    spec.suffix_ids = id_list(tok, "suffix_ids", path);
    if (tok.contains("sentencepiece_file") && !tok["sentencepiece_file"].is_null())
        spec.sentencepiece_file = string_field(tok, "sentencepiece_file", path);

    const json &precisions = field(data, "precisions", path);
    const json &files = field(data, "files", path);
    if (!precisions.is_object() || !files.is_object())
        throw Error(TA_ERR_BUNDLE, path + ": 'precisions' and 'files' must be objects");
    for (auto &item : precisions.items()) manifest.precisions.push_back(item.key());
    if (!precisions.contains(precision)) {
        std::string has;
        for (const std::string &p : manifest.precisions) has += (has.empty() ? "" : ", ") + p;
        throw Error(TA_ERR_ARGUMENT, "bundle " + root + " has no " + precision + " model (it has " + has +
                                     "); re-export with --precision including " + precision);
    }

    for (auto &item : files.items()) {
        const std::string &name = item.key();
        bool other = false;
        for (const char *p : kPrecisions)
            if (precision != p && files_of_precision(name, p)) other = true;
        if (other) continue;
        if (!item.value().is_string()) throw Error(TA_ERR_BUNDLE, path + ": the sha256 of '" + name + "' is not a string");
        const std::string file = bundle_path(root, name);
        if (!is_file(file))
            throw Error(TA_ERR_BUNDLE, "bundle file " + file + " listed in the manifest is missing; export the bundle again");
        if (verify) {
            const std::string expected = item.value().get<std::string>();
            const std::string actual = sha256_file(file);
            if (actual != expected)
                throw Error(TA_ERR_HASH, "bundle file " + file + " fails its sha256 check (manifest " + expected.substr(0, 12) +
                                         "..., file " + actual.substr(0, 12) +
                                         "...): it was modified or damaged; export the bundle again");
        }
    }
    // The files we open must be hashed ones: a graph or tokenizer missing from 'files' is refused.
    std::vector<std::string> needed = {model_file(precision), spec.file};
    if (!spec.sentencepiece_file.empty()) needed.push_back(spec.sentencepiece_file);
    for (const std::string &name : needed)
        if (!files.contains(name))
            throw Error(TA_ERR_BUNDLE, path + ": '" + name + "' is not listed (with its sha256) in 'files'; export the bundle again");
    return manifest;
}

ExtractOptions extraction_of(const Manifest &manifest) {
    ExtractOptions options;
    const std::string where = manifest.root + "/manifest.json";
    if (manifest.default_method == "softmax") options.method = Method::softmax;
    else if (manifest.default_method == "argmax") options.method = Method::argmax;
    else if (manifest.default_method == "itermax") options.method = Method::itermax;
    else
        throw Error(TA_ERR_BUNDLE, where + ": manifest field 'default_method' is '" + manifest.default_method +
                                   "', not one of softmax, argmax, itermax; export the bundle again");
    if (manifest.default_word_level == "mean") options.mean_words = true;
    else if (manifest.default_word_level != "any")
        throw Error(TA_ERR_BUNDLE, where + ": manifest field 'default_word_level' is '" + manifest.default_word_level +
                                   "', not one of any, mean; export the bundle again");
    options.threshold = manifest.default_threshold;
    return options;
}

int64_t check_against_graph(const Manifest &manifest, const GraphFacts &facts, const std::string &name) {
    const std::string where = manifest.root + "/manifest.json";
    auto bad = [&](const std::string &field, int64_t value, const std::string &reason) {
        return Error(TA_ERR_BUNDLE, where + ": manifest field '" + field + "' is " + std::to_string(value) + ": " + reason +
                                    "; the manifest is damaged or was edited, export the bundle again");
    };
    if (facts.hidden_size >= 0 && manifest.hidden_size != facts.hidden_size)
        throw bad("hidden_size", manifest.hidden_size, name + " outputs " + std::to_string(facts.hidden_size) +
                                                           " values per token");
    if (facts.vocab_size >= 0 && manifest.vocab_size && manifest.vocab_size != facts.vocab_size)
        throw bad("vocab_size", manifest.vocab_size, name + "'s token table has " + std::to_string(facts.vocab_size) + " rows");
    return facts.vocab_size >= 0 ? facts.vocab_size : manifest.vocab_size;
}

void check_positions(const Manifest &manifest, const GraphFacts &facts, const std::string &name) {
    if (facts.position_rows < 0) return;
    const int64_t offset = facts.positions_after_padding ? manifest.tokenizer.pad_id + 1 : 0;
    const int64_t limit = facts.position_rows - offset;
    if (manifest.max_positions > limit)
        throw Error(TA_ERR_BUNDLE, manifest.root + "/manifest.json: manifest field 'max_positions' is " +
                                   std::to_string(manifest.max_positions) + ": " + name + "'s position table holds " +
                                   std::to_string(limit) + " positions; the manifest is damaged or was edited, export "
                                   "the bundle again");
}

void check_token_ids(const Manifest &manifest, int64_t vocab, int64_t model_vocab) {
    const std::string where = manifest.root + "/manifest.json";
    auto check = [&](const std::string &name, int64_t id) {
        if (id < 0 || id >= vocab)
            throw Error(TA_ERR_BUNDLE, where + ": manifest field '" + name + "' is " + std::to_string(id) +
                                       ", outside the tokenizer's vocabulary [0, " + std::to_string(vocab) +
                                       "); the manifest is damaged or was edited, export the bundle again");
    };
    const TokenizerSpec &spec = manifest.tokenizer;
    check("tokenizer.unk_id", spec.unk_id);
    check("tokenizer.eos_id", spec.eos_id);
    check("tokenizer.pad_id", spec.pad_id);
    for (auto &item : spec.lang_code_ids) check("tokenizer.lang_code_ids." + item.first, item.second);
    for (auto &item : spec.added_tokens) check("tokenizer.added_tokens." + item.first, item.second);
    for (size_t k = 0; k < spec.prefix_ids.size(); ++k) check("tokenizer.prefix_ids[" + std::to_string(k) + "]", spec.prefix_ids[k]);
    for (size_t k = 0; k < spec.suffix_ids.size(); ++k) check("tokenizer.suffix_ids[" + std::to_string(k) + "]", spec.suffix_ids[k]);
    if (model_vocab > 0 && vocab > model_vocab)  // the model could not embed every token id
        throw Error(TA_ERR_BUNDLE, where + ": the tokenizer's vocabulary of " + std::to_string(vocab) +
                                   " ids exceeds the model's token table of " + std::to_string(model_vocab) +
                                   " rows (manifest field 'vocab_size' " + std::to_string(manifest.vocab_size) +
                                   "); the manifest is damaged or was edited, export the bundle again");
}

}  // namespace ta
