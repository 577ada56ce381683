"""Engine defaults, in a module with no imports so the CLI can show them in its help cheaply."""

# Padded tokens per encoder batch. On CPU smaller batches keep the FFN activations in cache and
# waste less padding: full-size NLLB on bam-en, 2-core EPYC, int8 encoder 60 s at 4096 vs 52-54 s
# at 1536-2048 (waste 5.0% -> 2.7%), fp32 226 s at 4096 vs 216 s at 2048 and 233 s at 1024.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}
# The fixed cost of one encoder run, in padded tokens, for choosing where to cut batches
# (engine.batching). CPU: full-size NLLB int8, 2-core EPYC, one run of B x T padded tokens took
# about 12 ms + 0.57 ms per token for 40 to 640 tokens (1 x 16: 20.7 ms, 1 x 40: 35 ms,
# 8 x 40: 182 ms, 16 x 40: 370 ms), so a run costs about 20 tokens. CUDA: not measured (no GPU
# here); kernel launches dominate small batches there, so a larger estimate keeps batches big.
DEFAULT_BATCH_OVERHEAD_TOKENS = {"cpu": 20, "cuda": 1024}
# Largest accepted budget: one batch's activations grow with it (full-size NLLB: about 64 KB per
# padded token in the FFN alone, plus attention), and larger batches gain nothing measurable.
MAX_BATCH_TOKENS = 65536
