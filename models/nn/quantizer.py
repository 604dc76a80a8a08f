"""Vector-quantisation bottleneck with an EMA (exponentially smoothed k-means) codebook.

Paper Section 2.2; the codebook rule is the one of the VQ-VAE appendix (van den Oord et al.
2017), which replaces the codebook loss. Codes have several channels (``CodesConfig.channels``);
each channel has **its own codebook** of ``2**bits`` vectors of ``dim`` features, so a code
map (B, C, h, w) with C channels is produced from an encoder output of C * dim features.

Per channel c, with encoder outputs z (N vectors of ``dim``), one-hot assignments a (N, K)::

    n_k  = sum_i a_ik                       (batch counts)
    N_k <- decay * N_k + (1 - decay) * n_k  (smoothed cluster sizes)
    m_k <- decay * m_k + (1 - decay) * sum_i a_ik z_i
    e_k  = m_k / N~_k,   N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j  (Laplace)

The encoder gets straight-through gradients (the forward pass outputs e, the backward pass
is the identity from e to z) and the commitment loss beta * ||z - sg[e]||^2.

The first training batch seeds every code with a random encoder output (data-dependent
initialisation, so no code starts far from the data). Dead codes: a code whose smoothed cluster size N_k falls below ``dead_threshold`` is re-seeded
with a random encoder output of the current batch (N_k and m_k reset to that single vector),
so no code stays unused for long. The default threshold of 1 (one vector's worth of smoothed
mass, as in Jukebox's random restarts) re-seeds a code in the first step it goes unused;
with 0.1 a code seeded with mass 1 stayed dead for ln(10) / (1 - decay) ~ 230 steps at decay
0.99, and small runs spent those steps on a fraction of their codebook (measured on
``shapes``: 29% of the codes used at step 250 against 69% with the threshold at 1). Under ``torch.distributed`` the counts and sums are
all-reduced and re-seeding is decided on rank 0 and broadcast, so every process holds the
same codebook. The codebook lives in buffers, not parameters: it is itself an average, so
Polyak averaging (``models.ema``) copies it instead of averaging it again.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CODE_DIM = 64  # features per code channel (not given in the paper)


@dataclass(frozen=True)
class QuantizerOutput:
    quantized: torch.Tensor  # (B, C * dim, h, w) straight-through codebook vectors
    codes: torch.Tensor  # (B, C, h, w) long, in [0, 2**bits)
    commitment_loss: torch.Tensor  # scalar: beta * mean ||z - sg[e]||^2
    usage: (
        torch.Tensor
    )  # scalar: fraction of codebook entries used in this batch (mean over channels)
    perplexity: (
        torch.Tensor
    )  # scalar: exp(entropy) of this batch's code histogram (mean over channels)


def _full_precision(device: torch.device):
    """Disable autocast for the distances and k-means statistics (no-op on e.g. the meta device)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """``channels`` independent codebooks of ``num_codes`` vectors of ``dim`` features."""

    def __init__(
        self,
        channels: int,
        num_codes: int,
        dim: int = CODE_DIM,
        commitment: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_threshold: float = 1.0,
    ):
        super().__init__()
        self.channels, self.num_codes, self.dim = channels, num_codes, dim
        self.commitment, self.decay, self.eps = commitment, decay, eps
        self.dead_threshold = dead_threshold
        embedding = torch.randn(channels, num_codes, dim)  # (C, K, d)
        self.register_buffer("embedding", embedding)
        # Start every code with unit mass so that e_k = m_k / N_k is the initial vector.
        self.register_buffer("cluster_size", torch.ones(channels, num_codes))  # (C, K)
        self.register_buffer("embed_sum", embedding.clone())  # (C, K, d)
        self.register_buffer("reseeded", torch.zeros((), dtype=torch.long))  # total re-seeds
        # False until the first training batch, which seeds every code from encoder outputs.
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    # ----------------------------------------------------------------------------------
    def split(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C*d, h, w) -> (C, B*h*w, d): one row per vector, grouped by channel."""
        b, _, h, w = z.shape
        return (
            z.reshape(b, self.channels, self.dim, h, w)
            .permute(1, 0, 3, 4, 2)
            .reshape(self.channels, b * h * w, self.dim)
        )

    def assign(self, flat: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry (squared Euclidean) per vector: (C, N, d) -> (C, N)."""
        distances = (
            flat.pow(2).sum(-1, keepdim=True)  # (C, N, 1)
            - 2 * flat @ self.embedding.transpose(1, 2)  # (C, N, K)
            + self.embedding.pow(2).sum(-1).unsqueeze(1)  # (C, 1, K)
        )
        return distances.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of a code map: (B, C, h, w) -> (B, C*d, h, w)."""
        b, c, h, w = codes.shape
        vectors = torch.stack(
            [F.embedding(codes[:, i], self.embedding[i]) for i in range(c)], dim=1
        )  # (B, C, h, w, d)
        return vectors.permute(0, 1, 4, 2, 3).reshape(b, c * self.dim, h, w)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes only (no update): (B, C*d, h, w) -> (B, C, h, w)."""
        b, _, h, w = z.shape
        with _full_precision(z.device):
            idx = self.assign(self.split(z.float()))  # (C, N)
        return idx.reshape(self.channels, b, h, w).permute(1, 0, 2, 3)

    # ----------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, _, h, w = z.shape
        # Distances and the k-means statistics need full precision even under bf16 autocast.
        with _full_precision(z.device):
            z = z.float()
            flat = self.split(z)  # (C, N, d)
            if self.training and not bool(self.initialised):
                self._reseed(flat.detach(), torch.ones_like(self.cluster_size, dtype=torch.bool))
                self.initialised.fill_(True)
            idx = self.assign(flat.detach())  # (C, N)
            onehot = F.one_hot(idx, self.num_codes).to(flat.dtype)  # (C, N, K)
            counts = onehot.sum(1)  # (C, K)
            codes = idx.reshape(self.channels, b, h, w).permute(1, 0, 2, 3)  # (B, C, h, w)
            e = self.lookup(codes)  # (B, C*d, h, w), the codebook the codes were assigned against
            if self.training:
                self._ema_update(flat.detach(), onehot, counts)
            commitment_loss = self.commitment * F.mse_loss(z, e.detach())
            quantized = z + (e - z).detach()  # straight-through: value e, gradient identity
            probs = counts / counts.sum(-1, keepdim=True)
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)  # (C,)
            perplexity = entropy.exp().mean()
            usage = (counts > 0).float().mean()
        return QuantizerOutput(quantized, codes, commitment_loss, usage, perplexity)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor) -> None:
        sums = onehot.transpose(1, 2) @ flat  # (C, K, d)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        total = self.cluster_size.sum(-1, keepdim=True)  # (C, 1)
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.embedding.copy_(self.embed_sum / smoothed.unsqueeze(-1))
        self._reseed_dead(flat)

    @torch.no_grad()
    def _reseed_dead(self, flat: torch.Tensor) -> None:
        """Move codes whose smoothed count fell below the threshold onto random encoder outputs."""
        dead = self.cluster_size < self.dead_threshold  # (C, K)
        if _distributed():  # rank 0 decides, so every process re-seeds the same codes
            dead = dead.to(torch.uint8)
            dist.broadcast(dead, src=0)
            dead = dead.bool()
        if bool(dead.any()):
            self._reseed(flat, dead)
            self.reseeded.add_(int(dead.sum()))

    @torch.no_grad()
    def _reseed(self, flat: torch.Tensor, dead: torch.Tensor) -> None:
        """Set the codes marked in ``dead`` (C, K) to random rows of ``flat`` (C, N, d)."""
        n = flat.shape[1]
        picks = torch.randint(0, n, (self.channels, self.num_codes), device=flat.device)
        candidates = torch.gather(
            flat, 1, picks.unsqueeze(-1).expand(-1, -1, self.dim)
        )  # (C, K, d)
        if _distributed():
            dist.broadcast(candidates, src=0)
        mask = dead.unsqueeze(-1)
        self.embedding.copy_(torch.where(mask, candidates, self.embedding))
        self.embed_sum.copy_(torch.where(mask, candidates, self.embed_sum))
        self.cluster_size.copy_(
            torch.where(dead, torch.ones_like(self.cluster_size), self.cluster_size)
        )

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_codes={self.num_codes}, dim={self.dim}, "
            f"commitment={self.commitment}, decay={self.decay}, bits={int(math.log2(self.num_codes))}"
        )
