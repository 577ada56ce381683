// The TransAlign extraction of one pair (DESIGN.md "The method, exactly", steps 4-5), as
// transalign/kernels/jit.py computes it:
//
//     S = X Y^T                    float32 scores (accumulated here in double, rounded to float)
//     F = softmax(S, axis=1)       over target subwords, in double: exp(s - max) / sum
//     B = softmax(S, axis=0)       over source subwords, in double
//     (i, j) aligned <=> F[i, j] > t and B[i, j] > t          (strict >)
//     word links = {(src_word[i], tgt_word[j]) : (i, j) aligned}, distinct, sorted
//
// NaN scores compare false, so a row or column holding one yields no links (as in jit.py).
#include <algorithm>
#include <cmath>
#include <limits>

#include "internal.hpp"

namespace ta {

void extract_pair(const float *x, size_t n, const float *y, size_t m, size_t d, const int32_t *src_words,
                  const int32_t *tgt_words, double threshold, std::vector<int32_t> &links) {
    if (n == 0 || m == 0) return;
    std::vector<double> s(n * m);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j) {
            const float *a = x + i * d, *b = y + j * d;
            double acc = 0.0;
            for (size_t k = 0; k < d; ++k) acc += static_cast<double>(a[k]) * static_cast<double>(b[k]);
            s[i * m + j] = static_cast<double>(static_cast<float>(acc));
        }
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> row_max(n, -inf), col_max(m, -inf), row_sum(n, 0.0), col_sum(m, 0.0), row_exp(n * m);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j) {
            const double v = s[i * m + j];
            if (v > row_max[i]) row_max[i] = v;
            if (v > col_max[j]) col_max[j] = v;
        }
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j) {
            const double v = s[i * m + j];
            const double e = std::exp(v - row_max[i]);
            row_exp[i * m + j] = e;
            row_sum[i] += e;
            col_sum[j] += std::exp(v - col_max[j]);
        }
    // word ids are >= 0 and below the sentence's word count: a bit matrix over them, read
    // row-major, gives the distinct links sorted by (source, target)
    int32_t src_top = 0, tgt_top = 0;
    for (size_t i = 0; i < n; ++i) src_top = std::max(src_top, src_words[i]);
    for (size_t j = 0; j < m; ++j) tgt_top = std::max(tgt_top, tgt_words[j]);
    const size_t width = static_cast<size_t>(tgt_top) + 1, cells = (static_cast<size_t>(src_top) + 1) * width;
    auto aligned = [&](size_t i, size_t j) {
        // F first: it fails for almost every cell, which skips the second exp (as jit.py)
        return row_exp[i * m + j] / row_sum[i] > threshold && std::exp(s[i * m + j] - col_max[j]) / col_sum[j] > threshold;
    };
    if (cells <= 4 * n * m + 4096) {
        std::vector<char> linked(cells, 0);
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < m; ++j)
                if (aligned(i, j)) linked[static_cast<size_t>(src_words[i]) * width + static_cast<size_t>(tgt_words[j])] = 1;
        for (size_t a = 0; a < cells; ++a)
            if (linked[a]) {
                links.push_back(static_cast<int32_t>(a / width));
                links.push_back(static_cast<int32_t>(a % width));
            }
        return;
    }
    // sparse word ids (many empty words): sort the linked pairs instead
    std::vector<std::pair<int32_t, int32_t>> pairs;
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j)
            if (aligned(i, j)) pairs.emplace_back(src_words[i], tgt_words[j]);
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    for (auto &p : pairs) {
        links.push_back(p.first);
        links.push_back(p.second);
    }
}

}  // namespace ta
