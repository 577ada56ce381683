"""The training objectives on one pair's similarity matrix.

With X [n, d] and Y [m, d] the alignment layer's subword vectors (specials dropped),
``S = X Yᵀ``, ``F = softmax(S, axis=1)`` (forward, rows sum to 1), ``B = softmax(S, axis=0)``
(backward, columns sum to 1) and G [n, m] the 0/1 gold subword matrix:

symmetric (default)::

    L = -½ Σᵢⱼ Gᵢⱼ (Fᵢⱼ / n + Bᵢⱼ / m)

  both directions, each normalized by its length: the objective the authors' script means to
  compute (and awesome-align's, on gold instead of self-training links).

authors (their ``fine-tune-lora.py`` as written)::

    L = -Σ_idx G_idx · ½ · sum_k(F_idx / n + B_k / m)  =  -½ Σᵢⱼ Gᵢⱼ (m Fᵢⱼ + 1)

  the backward term is the whole flattened matrix (not indexed per cell), and Σₖ Bₖ = m, so it
  adds the constant ½ Σ G; the forward term is broadcast over the n·m cells, which multiplies it
  by m. Only the forward softmax is trained, with pairs weighted by their target length.

A batch's loss is the sum over its pairs, as in the authors' script. Which default, and why:
README "Fine-tuning" (measured dev AER).
"""

from __future__ import annotations

OBJECTIVES = ("symmetric", "authors")
DEFAULT_OBJECTIVE = "symmetric"


def pair_loss(x, y, gold, objective: str):
    """The loss of one pair from its subword vectors x [n, d], y [m, d] and gold [n, m]."""
    import torch

    sim = x @ y.T
    n, m = sim.shape
    forward = torch.softmax(sim, dim=1)
    if objective == "authors":
        return -0.5 * (gold * (m * forward + 1.0)).sum()
    if objective == "symmetric":
        backward = torch.softmax(sim, dim=0)
        return -0.5 * (gold * (forward / n + backward / m)).sum()
    raise ValueError(f"objective {objective!r} is not supported; choose from {', '.join(OBJECTIVES)}")
