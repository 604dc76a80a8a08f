"""Random draws of the samplers: uniforms in sampling order and the inverse-CDF draw.

Both sampling engines (``models.sampling`` naive, ``models.sampling_cache`` cached) consume the
same uniforms in the same order, one per (step, image); a sub-pixel is the inverse CDF of
softmax(logits / temperature) at its uniform.
"""

from __future__ import annotations

import torch

from models.errors import ModelsError


def draw(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sample per row: logits ``(B, V)``, uniform ``(B,)`` in [0, 1) → ``(B,)`` long."""
    cdf = torch.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1)
    index = (cdf < (uniform * cdf[:, -1])[:, None]).sum(dim=-1)
    return index.clamp(max=logits.shape[-1] - 1)


def draw_uniforms(steps: int, batch: int, generator, device) -> torch.Tensor:
    """``(steps, B)`` uniforms in sampling order, from ``generator`` (or torch's global RNG).

    ``generator`` may also be a sequence of G generators, one per group of ``B / G``
    consecutive rows: each group then gets exactly the draws it would get alone, so
    independent jobs (e.g. reconstructions of different images) can share one batch.
    """
    if isinstance(generator, (list, tuple)):
        if not generator or batch % len(generator):
            raise ModelsError(
                f"{len(generator)} generators cannot split a batch of {batch} rows evenly"
            )
        rows = batch // len(generator)
        return torch.cat([draw_uniforms(steps, rows, g, device) for g in generator], dim=1)
    where = generator.device if generator is not None else "cpu"
    return torch.rand(steps, batch, generator=generator, device=where).to(device)
