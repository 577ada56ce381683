// The encoder's batch plan: transalign/engine/batching.py's exact least-cost plan, so C and
// Python cut the same batches (tests/test_c_policy.py compares them on random length lists).
#include <algorithm>
#include <numeric>

#include "internal.hpp"

namespace ta {

// batching.py plan_batches + _least_cost_cuts: a stable sort longest first, then the cut of
// least total cost by dynamic programming from the end: cost[i] = overhead + min over allowed
// batch sizes s of (s * length_i + cost[i + s]), ties to the larger batch. Integer arithmetic
// (Python's float64 holds these sums exactly).
BatchPlan plan_batches(const std::vector<size_t> &lengths, size_t budget, size_t overhead) {
    if (budget < 1) throw Error(TA_ERR_ARGUMENT, "batch_tokens must be >= 1");
    const size_t n = lengths.size();
    BatchPlan plan;
    plan.order.resize(n);
    std::iota(plan.order.begin(), plan.order.end(), 0);
    std::stable_sort(plan.order.begin(), plan.order.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
    std::vector<unsigned long long> cost(n + 1, 0);
    std::vector<size_t> next(n, 0);
    for (size_t i = n; i-- > 0;) {
        const size_t longest = lengths[plan.order[i]];
        const size_t stop = std::min(n, i + std::max<size_t>(1, budget / std::max<size_t>(longest, 1)));
        unsigned long long best = 0;
        size_t best_stop = i + 1;
        for (size_t j = i + 1; j <= stop; ++j) {
            const unsigned long long total = cost[j] + static_cast<unsigned long long>(j - i) * longest;
            if (j == i + 1 || total <= best) {  // <=: the last minimum, the largest batch
                best = total;
                best_stop = j;
            }
        }
        cost[i] = best + overhead;
        next[i] = best_stop;
    }
    for (size_t i = 0; i < n; i = next[i]) plan.ends.push_back(next[i]);
    return plan;
}

}  // namespace ta
