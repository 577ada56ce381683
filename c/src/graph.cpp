// What a bundle's ONNX graph says about the ranges of its inputs, read from the graph file's
// protobuf wire format (transalign/engine/graph_facts.py, the same walk): the rows of the token
// table gathered with input_ids, the rows of the position table (the largest other gathered 2-D
// table of the hidden width) and whether positions count from the padding id (a CumSum), and the
// static last dimension of the single output. With external data the graph file holds only the
// structure and small constants, so this takes milliseconds; the file is memory-mapped, so a
// graph with inline weights is not read whole either.
#include <fcntl.h>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.hpp"

namespace ta {

namespace {

struct Span {
    size_t begin, end;
};

struct Buffer {
    const unsigned char *data;
    size_t size;
};

// (field number, wire type, varint value or payload span) of each field of buf[span]
struct FieldValue {
    uint64_t number, wire, value;
    Span span;
};

bool varint(const Buffer &buf, size_t &pos, size_t end, uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= end) return false;
        const unsigned char byte = buf.data[pos++];
        value |= static_cast<uint64_t>(byte & 0x7f) << shift;
        if (byte < 0x80) return true;
    }
    return false;
}

template <typename Fn> void fields(const Buffer &buf, Span span, Fn fn) {
    size_t pos = span.begin;
    while (pos < span.end) {
        FieldValue f{};
        uint64_t key;
        if (!varint(buf, pos, span.end, key)) throw std::runtime_error("truncated or malformed varint");
        f.number = key >> 3;
        f.wire = key & 7;
        if (f.wire == 0) {
            if (!varint(buf, pos, span.end, f.value)) throw std::runtime_error("truncated or malformed varint");
        } else if (f.wire == 2) {
            uint64_t size;
            if (!varint(buf, pos, span.end, size) || size > span.end - pos)
                throw std::runtime_error("a field runs past the end of its message (truncated file)");
            f.span = {pos, pos + static_cast<size_t>(size)};
            pos += static_cast<size_t>(size);
        } else if (f.wire == 1 || f.wire == 5) {
            const size_t size = f.wire == 1 ? 8 : 4;
            if (size > span.end - pos) throw std::runtime_error("a field runs past the end of its message");
            f.span = {pos, pos + size};
            pos += size;
        } else {
            throw std::runtime_error("unsupported protobuf wire type " + std::to_string(f.wire));
        }
        fn(f);
    }
}

std::string text(const Buffer &buf, Span span) {
    return std::string(reinterpret_cast<const char *>(buf.data) + span.begin, span.end - span.begin);
}

std::vector<int64_t> dims(const Buffer &buf, Span tensor) {  // TensorProto.dims (packed or not)
    std::vector<int64_t> out;
    fields(buf, tensor, [&](const FieldValue &f) {
        if (f.number != 1) return;
        if (f.wire == 0) {
            out.push_back(static_cast<int64_t>(f.value));
        } else if (f.wire == 2) {
            size_t pos = f.span.begin;
            uint64_t value;
            while (pos < f.span.end && varint(buf, pos, f.span.end, value)) out.push_back(static_cast<int64_t>(value));
        }
    });
    return out;
}

struct Node {
    std::string op;
    std::vector<std::string> inputs, outputs;
    bool has_const = false;
    std::vector<int64_t> const_dims;
};

Node node(const Buffer &buf, Span span) {
    Node n;
    fields(buf, span, [&](const FieldValue &f) {
        if (f.wire != 2) return;
        if (f.number == 4) n.op = text(buf, f.span);
        else if (f.number == 1) n.inputs.push_back(text(buf, f.span));
        else if (f.number == 2) n.outputs.push_back(text(buf, f.span));
        else if (f.number == 5) {  // AttributeProto: name 1, t 5
            std::string name;
            Span tensor{0, 0};
            bool has = false;
            fields(buf, f.span, [&](const FieldValue &g) {
                if (g.number == 1 && g.wire == 2) name = text(buf, g.span);
                if (g.number == 5 && g.wire == 2) {
                    tensor = g.span;
                    has = true;
                }
            });
            if (name == "value" && has) {
                n.has_const = true;
                n.const_dims = dims(buf, tensor);
            }
        }
    });
    return n;
}

int64_t last_output_dim(const Buffer &buf, Span value_info) {  // ValueInfoProto.type.tensor_type.shape
    std::vector<int64_t> out;
    fields(buf, value_info, [&](const FieldValue &f) {
        if (f.number != 2 || f.wire != 2) return;
        fields(buf, f.span, [&](const FieldValue &t) {
            if (t.number != 1 || t.wire != 2) return;
            fields(buf, t.span, [&](const FieldValue &shape) {
                if (shape.number != 2 || shape.wire != 2) return;
                fields(buf, shape.span, [&](const FieldValue &dim) {
                    if (dim.number != 1 || dim.wire != 2) return;
                    int64_t value = -1;
                    fields(buf, dim.span, [&](const FieldValue &d) {
                        if (d.number == 1 && d.wire == 0) value = static_cast<int64_t>(d.value);
                    });
                    out.push_back(value);
                });
            });
        });
    });
    return out.empty() ? -1 : out.back();
}

GraphFacts facts_of(const Buffer &buf) {
    Span graph{0, 0};
    bool found = false;
    fields(buf, {0, buf.size}, [&](const FieldValue &f) {
        if (f.number == 7 && f.wire == 2) {
            graph = f.span;
            found = true;
        }
    });
    if (!found) throw std::runtime_error("no graph in the model file");
    std::map<std::string, std::vector<int64_t>> tables;
    std::vector<Node> nodes;
    std::vector<std::string> inputs;
    std::vector<Span> outputs;
    fields(buf, graph, [&](const FieldValue &f) {
        if (f.wire != 2) return;
        if (f.number == 5) {  // initializer: name 8
            std::string name;
            fields(buf, f.span, [&](const FieldValue &g) {
                if (g.number == 8 && g.wire == 2) name = text(buf, g.span);
            });
            tables[name] = dims(buf, f.span);
        } else if (f.number == 1) {
            nodes.push_back(node(buf, f.span));
        } else if (f.number == 11) {
            std::string name;
            fields(buf, f.span, [&](const FieldValue &g) {
                if (g.number == 1 && g.wire == 2 && name.empty()) name = text(buf, g.span);
            });
            inputs.push_back(name);
        } else if (f.number == 12) {
            outputs.push_back(f.span);
        }
    });
    for (const Node &n : nodes)
        if (n.op == "Constant" && n.has_const && !n.outputs.empty()) tables[n.outputs[0]] = n.const_dims;
    GraphFacts facts;
    facts.hidden_size = outputs.size() == 1 ? last_output_dim(buf, outputs[0]) : -1;
    std::set<std::string> token_ids;
    for (const std::string &name : inputs)
        if (name == "input_ids") token_ids.insert(name);
    static const std::set<std::string> passthrough = {"Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"};
    for (const Node &n : nodes)
        if (passthrough.count(n.op) && !n.inputs.empty() && token_ids.count(n.inputs[0]))
            token_ids.insert(n.outputs.begin(), n.outputs.end());
    std::vector<std::pair<std::string, std::string>> gathered;  // (table, index)
    for (const Node &n : nodes) {
        if (n.op != "Gather" || n.inputs.size() != 2) continue;
        auto it = tables.find(n.inputs[0]);
        if (it != tables.end() && it->second.size() == 2) gathered.emplace_back(n.inputs[0], n.inputs[1]);
    }
    std::string word;
    for (auto &g : gathered)
        if (token_ids.count(g.second)) {
            word = g.first;
            facts.vocab_size = tables[g.first][0];
            break;
        }
    const int64_t width = facts.hidden_size >= 0 ? facts.hidden_size : (word.empty() ? -1 : tables[word][1]);
    for (auto &g : gathered)
        if (g.first != word && tables[g.first][1] == width)
            facts.position_rows = std::max(facts.position_rows, tables[g.first][0]);
    for (const Node &n : nodes)
        if (n.op == "CumSum") facts.positions_after_padding = true;
    return facts;
}

}  // namespace

GraphFacts graph_facts(const std::string &path) {
    const int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(TA_ERR_BUNDLE, "bundle file " + path + " cannot be opened");
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        throw Error(TA_ERR_BUNDLE, "bundle file " + path + " is not a readable ONNX graph (empty); export the bundle again");
    }
    void *map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) throw Error(TA_ERR_BUNDLE, "bundle file " + path + " cannot be mapped");
    struct Unmap {
        void *map;
        size_t size;
        ~Unmap() { munmap(map, size); }
    } unmap{map, static_cast<size_t>(st.st_size)};
    try {
        return facts_of({static_cast<const unsigned char *>(map), static_cast<size_t>(st.st_size)});
    } catch (const Error &) {
        throw;
    } catch (const std::runtime_error &exc) {
        throw Error(TA_ERR_BUNDLE, "bundle file " + path + " is not a readable ONNX graph (" + exc.what() +
                                   "); export the bundle again");
    }
}

}  // namespace ta
