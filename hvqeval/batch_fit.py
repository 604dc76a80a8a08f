"""The largest sampling batch that fits the device (``hvqeval sample --batch-size auto``).

Images never depend on the batch size (every image has its own generator), so the batch only
sets the speed. On CUDA a bigger batch fills the GPU better, up to what its memory holds;
the need is measured, not guessed from the card::

    peak(b) = CUDA allocator peak while every stage (prior, each level's decoder) runs its
              first steps at batch b: conditioning, key/value caches, step buffers, uniforms
    per image = (peak(4) - peak(1)) / 3          fixed = peak(1) - per image
    batch     = (free memory x HEADROOM - fixed) / per image

On the CPU the cached sampler runs one thread per process (``models.sampling``), and past a
few dozen images a step is compute bound, so a fixed ``CPU_BATCH`` is used.
"""

from __future__ import annotations

import torch

CPU_BATCH = 32
HEADROOM = 0.85  # of the free memory: the allocator's fragmentation and the PNG copies need some
PROBE = (1, 4)
PROBE_STEPS = 3


class _Stop(Exception):
    """Ends a probe after its first steps (raised from the sampler's step hook)."""


def _stop_after(steps: int):
    def hook(step: int, logits: torch.Tensor) -> None:
        if step + 1 >= steps:
            raise _Stop

    return hook


def _probe_peak(hierarchy, batch: int, temperatures, options, device: torch.device) -> int:
    """Allocator peak (bytes above the start) of the first steps of every stage at ``batch``."""
    card = hierarchy.card
    engine = {**options.engine_options(), "on_step": _stop_after(PROBE_STEPS)}
    generator = torch.Generator().manual_seed(0)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    runs = [
        lambda: hierarchy.sample_top(
            torch.zeros(batch, dtype=torch.long, device=device),
            temperatures,
            generator,
            options.sampler,
            **engine,
        )
    ]
    for level in range(1, len(hierarchy.levels) + 1):
        codes = card.level[level - 1].codes  # what decoder ``level`` conditions on: x_{level+1}
        shape = (batch, codes.channels, codes.resolution, codes.resolution)
        runs.append(
            lambda shape=shape, level=level: hierarchy.decode(
                torch.zeros(shape, dtype=torch.long, device=device),
                temperatures,
                generator,
                options.sampler,
                from_level=level,
                **engine,
            )
        )
    for run in runs:
        try:
            run()
        except _Stop:
            pass
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def largest_batch(hierarchy, temperatures, options, device: torch.device) -> int:
    """The largest batch this device can sample at once (see the module docstring)."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH
    small, large = (_probe_peak(hierarchy, b, temperatures, options, device) for b in PROBE)
    per_image = max((large - small) / (PROBE[1] - PROBE[0]), 1.0)
    fixed = max(small - per_image, 0.0)
    torch.cuda.empty_cache()  # blocks the probes left in torch's cache count as free
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int((free * HEADROOM - fixed) // per_image))
