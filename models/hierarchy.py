"""The hierarchical model: autoencoder levels bottom-up plus the prior on the top codes.

Paper Algorithm 1 (training order) and Algorithm 4 (ancestral sampling); the per-level
log-likelihoods give the bound of Section 6 / Appendix D::

    x_1 (pixels) ──E_1──> x_2 ──E_2──> ... ──E_{L-1}──> x_L          encode: [x_2, ..., x_L]
    -log p(x_1..x_L) = -log P(x_L | class) + sum_l -log D_l(x_l | x_{l+1})   nll_terms
    x~_L ~ P(. | class);  x~_l ~ D_l(. | x~_{l+1}) for l = L-1 .. 1        decode / sample

``PriorModel`` wraps the prior network with the same training interface as
``models.autoencoder.LevelModel`` (``forward(x, class_ids) -> LevelOutput``), so one training
loop serves every stage.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.autoencoder import LevelModel, LevelOutput
from models.config import ModelCard
from models.errors import CheckpointError
from models.prior import Prior
from models.sampling import Temperatures, sample_decoder, sample_prior
from models.stage import Stage


class PriorModel(nn.Module):
    """Training wrapper of ``models.prior.Prior``: the card's prior on its top-level codes, or
    a given ``prior`` on any codes (code predictability trains a small one this way)."""

    def __init__(self, card: ModelCard | None = None, prior: Prior | None = None):
        super().__init__()
        if prior is None:
            top = card.top_codes
            prior = Prior(card.prior, top.channels, top.num_codes, card.model.num_classes)
        self.card = card
        self.prior = prior

    def forward(
        self,
        z: torch.Tensor,
        class_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LevelOutput:
        """Loss on top codes ``z`` (B, C, h, w) given ``class_ids`` (B,): nats per code."""
        if class_ids is None:
            raise ValueError("the prior is class-conditional: pass class_ids")
        z = z.long()
        per_code = self.prior.nll(z, class_ids.long()).mean() / (
            z.shape[1] * z.shape[2] * z.shape[3]
        )
        metrics = {"ar_nats": per_code.detach(), "bpd": per_code.detach() / math.log(2)}
        return LevelOutput(per_code, {"ar": per_code}, metrics, z)


def build_stage_model(card: ModelCard, stage: str) -> nn.Module:
    """The network trained in ``stage`` (``level1``.. or ``prior``)."""
    stage = Stage(stage)
    return PriorModel(card) if stage.is_prior else LevelModel(card, stage.index)


class Hierarchy(nn.Module):
    """Levels (bottom first) and the prior of one card, usually with Polyak-averaged weights."""

    def __init__(self, card: ModelCard, levels: list[LevelModel], prior: PriorModel | None):
        super().__init__()
        self.card = card
        self.levels = nn.ModuleList(levels)
        self.prior_model = prior

    @property
    def prior(self):
        return None if self.prior_model is None else self.prior_model.prior

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Codes of every level for pixels ``x`` (B, 3, H, W): ``[x_2, ..., x_L]``."""
        codes = []
        current = x
        for level in self.levels:
            current = level.encode(current)
            codes.append(current)
        return codes

    @torch.no_grad()
    def nll_terms(self, x: torch.Tensor, class_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image NLL in nats of every term: ``{"level1": (B,), ..., "prior": (B,)}``.

        ``level{l}`` is -log D_l(x_l | x_{l+1}) summed over x_l's sub-pixels; ``prior`` is
        -log P(x_L | class). Their sum is the joint NLL of the bound (Appendix D).
        """
        terms: dict[str, torch.Tensor] = {}
        inputs = [x.long()] + self.encode(x)
        for i, level in enumerate(self.levels):
            terms[Stage.of_level(i + 1)] = level.decoder.nll(inputs[i], inputs[i + 1])
        if self.prior is not None:
            terms["prior"] = self.prior.nll(inputs[-1], class_ids.long())
        return terms

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        temperature: float | Temperatures = 1.0,
        generator: torch.Generator | None = None,
        sampler: str = "cached",
        from_level: int | None = None,
        keep: dict[int, torch.Tensor] | None = None,
        **options,
    ) -> torch.Tensor:
        """Sample the levels below codes ``x_{l+1}`` of level ``from_level`` (1-based; default: top).

        Algorithm 4 without the prior step: ``x~_l ~ D_l(. | x~_{l+1})`` down to pixels, level
        ``l`` at temperature ``Temperatures.of(f"level{l}")``. ``keep`` (optional) receives the
        sampled intermediate codes ``{l: x_{l+1}}`` for ``l < from_level``.
        ``options`` go to ``models.sampling.sample_decoder`` (precision, cuda_graph, progress).
        """
        temperatures = Temperatures.of_any(temperature)
        start = len(self.levels) if from_level is None else from_level
        current = codes
        for index in reversed(range(start)):  # 0-based: the decoder of level index + 1
            current = sample_decoder(
                self.levels[index].decoder,
                current,
                temperature=temperatures.of(Stage.of_level(index + 1)),
                generator=generator,
                sampler=sampler,
                **options,
            )
            if keep is not None and index > 0:
                keep[index] = current
        return current

    @torch.no_grad()
    def reconstruct(
        self,
        x: torch.Tensor,
        from_level: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        sampler: str = "cached",
        **options,
    ) -> torch.Tensor:
        """Encode pixels up to level ``from_level`` (default: top) and sample back down (Figure 3)."""
        start = len(self.levels) if from_level is None else from_level
        if not 1 <= start <= len(self.levels):
            raise CheckpointError(
                f"reconstruction level must be 1..{len(self.levels)} (trained levels), got {start}"
            )
        codes = self.encode(x)[start - 1]
        return self.decode(codes, temperature, generator, sampler, from_level=start, **options)

    @torch.no_grad()
    def sample_top(
        self,
        class_ids: torch.Tensor,
        temperature: float | Temperatures = 1.0,
        generator: torch.Generator | None = None,
        sampler: str = "cached",
        **options,
    ) -> torch.Tensor:
        """Top codes from the class-conditional prior: (B,) -> long (B, C, h, w)."""
        if self.prior is None:
            raise CheckpointError("this run has no trained prior yet; train the prior stage first")
        top = self.card.top_codes
        return sample_prior(
            self.prior,
            class_ids,
            temperature=Temperatures.of_any(temperature).of("prior"),
            generator=generator,
            sampler=sampler,
            size=(top.resolution, top.resolution),
            **options,
        )

    @torch.no_grad()
    def sample(
        self,
        class_ids: torch.Tensor,
        temperature: float | Temperatures = 1.0,
        generator: torch.Generator | None = None,
        sampler: str = "cached",
        keep: dict[int, torch.Tensor] | None = None,
        **options,
    ) -> torch.Tensor:
        """Ancestral sampling (Algorithm 4) of one batch: class ids (B,) -> pixels (B, 3, H, W).

        The one sampling driver: the prior at ``Temperatures.of("prior")``, then every level
        down at its own temperature, all from ``generator`` (seed one per batch for batches
        that do not depend on each other). Pixels are long in [0, 255]. ``keep`` (optional)
        receives the codes of every level ``{l: x_{l+1}}``, the top codes included.
        """
        top = self.sample_top(class_ids, temperature, generator, sampler, **options)  # (B, C, h, w)
        if keep is not None:
            keep[len(self.levels)] = top
        return self.decode(top, temperature, generator, sampler, keep=keep, **options)
