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

Self-training (``finetune --parallel``, awesome-align's "SO" objective, Dou & Neubig 2021): a
pair from parallel text has no gold, so its target is the current model's own alignment of it by
the paper's rule, taken from the same forward pass at the training threshold t::

    Âᵢⱼ = [Fᵢⱼ > t] · [Bᵢⱼ > t]      (F, B of the same S; no gradient flows through Â)

and Â takes G's place in the objective above (symmetric: ``L = -½ Σᵢⱼ Âᵢⱼ (Fᵢⱼ / n + Bᵢⱼ / m)``).
The loss then pulls each softmax's mass onto the cells the model already links in both
directions, sharpening them; cells it links in one direction only get no target mass. Â is
computed from ``S.detach()``, so only F and B in the loss carry gradient.

A batch's loss is the sum over its pairs, as in the authors' script. Which default, and why:
README "Fine-tuning" (measured dev AER).
"""

from __future__ import annotations

OBJECTIVES = ("symmetric", "authors")
DEFAULT_OBJECTIVE = "symmetric"


def pair_loss(x, y, gold, objective: str):
    """The loss of one pair from its subword vectors x [n, d], y [m, d] and gold [n, m]."""
    return similarity_loss(x @ y.T, gold, objective)


def self_training_target(sim, threshold: float):
    """Â = [softmax(S, 1) > t] · [softmax(S, 0) > t] as a float matrix, without gradient."""
    import torch

    with torch.no_grad():
        detached = sim.detach()
        keep = (torch.softmax(detached, dim=1) > threshold) & (torch.softmax(detached, dim=0) > threshold)
        return keep.to(sim.dtype)


def self_training_loss(x, y, threshold: float, objective: str):
    """The loss of one parallel-text pair: the objective with the model's own alignment as target."""
    sim = x @ y.T
    return similarity_loss(sim, self_training_target(sim, threshold), objective)


def similarity_loss(sim, gold, objective: str):
    """The objective on one pair's similarity matrix S [n, m] against a 0/1 target [n, m]."""
    import torch

    n, m = sim.shape
    forward = torch.softmax(sim, dim=1)
    if objective == "authors":
        return -0.5 * (gold * (m * forward + 1.0)).sum()
    if objective == "symmetric":
        backward = torch.softmax(sim, dim=0)
        return -0.5 * (gold * (forward / n + backward / m)).sum()
    raise ValueError(f"objective {objective!r} is not supported; choose from {', '.join(OBJECTIVES)}")
