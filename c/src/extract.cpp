// The TransAlign extraction of one pair (DESIGN.md "The method, exactly", steps 4-5), as
// transalign/kernels/jit.py computes it, and the other methods of kernels/methods.py:
//
//     S = X Y^T                    float32 scores (accumulated here in double, rounded to float)
//     softmax: F = softmax(S, axis=1), B = softmax(S, axis=0) in double: exp(s - max) / sum;
//              (i, j) aligned <=> F[i, j] > t and B[i, j] > t          (strict >)
//     argmax:  j is the first maximum of row i and i the first maximum of column j
//     itermax: SimAlign's IterMax (max_count 2, alpha 0.9, no distortion), see methods.py
//     word level any:  word links = {(src_word[i], tgt_word[j]) : (i, j) aligned}
//     word level mean: each word's vector is the mean of its subword rows (double sum in row
//                      order / count, rounded to float32); the method runs on the word matrix
//
// NaN scores compare false, so a row or column holding one yields no links (as in jit.py).
#include <algorithm>
#include <cmath>
#include <limits>

#include "internal.hpp"

namespace ta {

namespace {

const double kItermaxAlpha = 0.9;  // jit.py ITERMAX_ALPHA, SimAlign's alpha_ratio

// s [n x m] = x y^T, each dot product accumulated in double and rounded to float32.
std::vector<double> scores(const float *x, size_t n, const float *y, size_t m, size_t d) {
    std::vector<double> s(n * m);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j) {
            const float *a = x + i * d, *b = y + j * d;
            double acc = 0.0;
            for (size_t k = 0; k < d; ++k) acc += static_cast<double>(a[k]) * static_cast<double>(b[k]);
            s[i * m + j] = static_cast<double>(static_cast<float>(acc));
        }
    return s;
}

void mark_softmax(const std::vector<double> &s, size_t n, size_t m, double threshold, std::vector<char> &aligned) {
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
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j)  // F first: it fails for almost every cell (as jit.py)
            aligned[i * m + j] = row_exp[i * m + j] / row_sum[i] > threshold &&
                                 std::exp(s[i * m + j] - col_max[j]) / col_sum[j] > threshold;
}

// jit.py _argmax_rows_cols + _mark_argmax: first maxima; a row / column with a NaN has none.
void mark_argmax(const std::vector<double> &s, size_t n, size_t m, std::vector<char> &aligned) {
    std::vector<long> row_arg(n, -1), col_arg(m, -1);
    std::vector<char> row_nan(n, 0), col_nan(m, 0);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j) {
            const double v = s[i * m + j];
            if (v != v) {
                row_nan[i] = col_nan[j] = 1;
                continue;
            }
            if (row_arg[i] < 0 || v > s[i * m + static_cast<size_t>(row_arg[i])]) row_arg[i] = static_cast<long>(j);
            if (col_arg[j] < 0 || v > s[static_cast<size_t>(col_arg[j]) * m + j]) col_arg[j] = static_cast<long>(i);
        }
    std::fill(aligned.begin(), aligned.end(), 0);
    for (size_t i = 0; i < n; ++i) {
        const long j = row_nan[i] ? -1 : row_arg[i];
        if (j >= 0 && !col_nan[static_cast<size_t>(j)] && col_arg[static_cast<size_t>(j)] == static_cast<long>(i))
            aligned[i * m + static_cast<size_t>(j)] = 1;
    }
}

// jit.py _mark_itermax.
void mark_itermax(const std::vector<double> &s, size_t n, size_t m, std::vector<char> &aligned) {
    mark_argmax(s, n, m, aligned);
    if (std::min(n, m) <= 2) return;
    std::vector<double> row_free(n, 1.0), col_free(m, 1.0);
    size_t free_rows = n, free_cols = m;
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j)
            if (aligned[i * m + j]) {
                if (row_free[i] == 1.0) --free_rows;
                if (col_free[j] == 1.0) --free_cols;
                row_free[i] = col_free[j] = 0.0;
            }
    if (free_rows == 0 || free_cols == 0) return;
    std::vector<double> masked(n * m);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j)
            masked[i * m + j] = s[i * m + j] * std::min(1.0, kItermaxAlpha * row_free[i] + kItermaxAlpha * col_free[j]);
    std::vector<char> second(n * m);
    mark_argmax(masked, n, m, second);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < m; ++j)
            if (second[i * m + j] && (row_free[i] == 1.0 || col_free[j] == 1.0)) aligned[i * m + j] = 1;
}

// jit.py _mean_pool: word vectors (ranked by distinct id, ascending) as float32 means.
std::vector<float> mean_pool(const float *x, size_t n, size_t d, const int32_t *words, std::vector<int32_t> &distinct) {
    distinct.assign(words, words + n);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    std::vector<double> sums(distinct.size() * d, 0.0), counts(distinct.size(), 0.0);
    for (size_t a = 0; a < n; ++a) {
        const size_t r = static_cast<size_t>(std::lower_bound(distinct.begin(), distinct.end(), words[a]) - distinct.begin());
        counts[r] += 1.0;
        for (size_t k = 0; k < d; ++k) sums[r * d + k] += static_cast<double>(x[a * d + k]);
    }
    std::vector<float> out(sums.size());
    for (size_t r = 0; r < distinct.size(); ++r)
        for (size_t k = 0; k < d; ++k) out[r * d + k] = static_cast<float>(sums[r * d + k] / counts[r]);
    return out;
}

// The distinct (row word, column word) pairs of the aligned cells, sorted, appended to links.
void emit(const std::vector<char> &aligned, size_t n, size_t m, const int32_t *row_words, const int32_t *col_words,
          std::vector<int32_t> &links) {
    // word ids are >= 0 and below the sentence's word count: a bit matrix over them, read
    // row-major, gives the distinct links sorted by (source, target)
    int32_t src_top = 0, tgt_top = 0;
    for (size_t i = 0; i < n; ++i) src_top = std::max(src_top, row_words[i]);
    for (size_t j = 0; j < m; ++j) tgt_top = std::max(tgt_top, col_words[j]);
    const size_t width = static_cast<size_t>(tgt_top) + 1, cells = (static_cast<size_t>(src_top) + 1) * width;
    if (cells <= 4 * n * m + 4096) {
        std::vector<char> linked(cells, 0);
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < m; ++j)
                if (aligned[i * m + j]) linked[static_cast<size_t>(row_words[i]) * width + static_cast<size_t>(col_words[j])] = 1;
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
            if (aligned[i * m + j]) pairs.emplace_back(row_words[i], col_words[j]);
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    for (auto &p : pairs) {
        links.push_back(p.first);
        links.push_back(p.second);
    }
}

}  // namespace

void extract_pair(const float *x, size_t n, const float *y, size_t m, size_t d, const int32_t *src_words,
                  const int32_t *tgt_words, const ExtractOptions &options, std::vector<int32_t> &links) {
    if (n == 0 || m == 0) return;
    std::vector<int32_t> src_distinct, tgt_distinct;
    std::vector<float> xp, yp;
    const int32_t *row_words = src_words, *col_words = tgt_words;
    if (options.mean_words) {
        xp = mean_pool(x, n, d, src_words, src_distinct);
        yp = mean_pool(y, m, d, tgt_words, tgt_distinct);
        x = xp.data();
        y = yp.data();
        n = src_distinct.size();
        m = tgt_distinct.size();
        row_words = src_distinct.data();
        col_words = tgt_distinct.data();
    }
    const std::vector<double> s = scores(x, n, y, m, d);
    std::vector<char> aligned(n * m, 0);
    if (options.method == Method::softmax) mark_softmax(s, n, m, options.threshold, aligned);
    else if (options.method == Method::argmax) mark_argmax(s, n, m, aligned);
    else mark_itermax(s, n, m, aligned);
    emit(aligned, n, m, row_words, col_words, links);
}

}  // namespace ta
