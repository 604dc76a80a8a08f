"""The largest sampling batch that fits the device (``hvqeval sample --batch-size auto``).

Images never depend on the batch size (every image has its own generator), so the batch only
sets the speed. On CUDA a bigger batch fills the GPU better, up to what its memory holds;
the need is measured, not guessed from the card::

    peak(b) = CUDA allocator peak while every stage (prior, each level's decoder) runs its
              first steps at batch b: conditioning, key/value caches, step buffers, uniforms
    per image = (peak(4) - peak(1)) / 3          fixed = peak(1) - per image
    batch     = (free memory x HEADROOM - fixed) / per image

On the CPU a cached step is mostly per-operation overhead, so bigger batches are faster too
(``tiny_ff``, 80 images on a busy 2-core machine: 1.5 images/s at batch 8, 3.7 at 32, 5.7 at
64). Without allocator statistics the need is estimated from the largest decoder
conditioning, the biggest per-image tensor of sampling, with a safety factor::

    per image = CPU_SAFETY x max_l (layers_l x 2 hidden_l x H_l x W_l x 4 bytes)
    batch     = min(CPU_MAX_BATCH, available memory / 2 / per image)

(``CPU_BATCH`` where the available memory cannot be read.)
"""

from __future__ import annotations

import os

import torch

CPU_BATCH = 32  # when the available memory is unknown
CPU_MAX_BATCH = 256  # past this a CPU step is compute bound for every card
CPU_SAFETY = 4  # the modulator's activations and the sampler's own copies of the conditioning
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
        return _cpu_batch(hierarchy)
    small, large = (_probe_peak(hierarchy, b, temperatures, options, device) for b in PROBE)
    per_image = max((large - small) / (PROBE[1] - PROBE[0]), 1.0)
    fixed = max(small - per_image, 0.0)
    torch.cuda.empty_cache()  # blocks the probes left in torch's cache count as free
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int((free * HEADROOM - fixed) // per_image))


def _cpu_batch(hierarchy) -> int:
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every system reports it
        return CPU_BATCH
    per_image = 1
    for index, level in enumerate(hierarchy.levels):
        net, res = level.decoder.local, hierarchy.card.level_input(index)[2]
        per_image = max(per_image, CPU_SAFETY * len(net.layers) * 2 * net.hidden * res * res * 4)
    return max(1, min(CPU_MAX_BATCH, int(available // 2 // per_image)))
