"""Sampling engines for the autoregressive networks (paper Algorithm 4, Appendix C).

Two engines draw the same samples from a ``GatedPixelCNN`` (decoder local model or prior):

- ``naive``: one full forward pass per sampled sub-pixel (the paper's method for its priors);
  the reference.
- ``cached``: incremental sampling in the style of Ramachandran et al. 2017 (paper [34]); each
  step evaluates only the new position (``models.sampling_cache``), attention reads a key/value
  cache. On CUDA it can replay each step as a CUDA graph and run in bfloat16.

Sub-pixels are generated in raster order, R → G → B inside a pixel. The random numbers are
drawn up front, one uniform per (step, image) in that order, so both engines consume them
identically; a sub-pixel is the inverse CDF of softmax(logits / temperature) at its uniform.
The conditioning (modulator bias maps or class biases) does not depend on the samples and is
computed once for both engines.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm

from models.draws import draw, draw_uniforms
from models.errors import ModelsError
from models.launch import PRECISIONS
from models.pixelcnn import check_values
from models.prior import check_class_ids
from models.sampling_cache import CachedSampler

SAMPLERS = ("cached", "naive")


@dataclass(frozen=True)
class Temperatures:
    """Softmax temperature per stage (``prior``, ``level1`` ..); unnamed stages use ``default``."""

    default: float = 1.0
    per_stage: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of_any(cls, temperature: float | Temperatures) -> Temperatures:
        """A plain number is the temperature of every stage."""
        return temperature if isinstance(temperature, Temperatures) else cls(float(temperature))

    def of(self, stage: str) -> float:
        return dict(self.per_stage).get(stage, self.default)

    def record(self, stages: list[str]) -> float | dict[str, float]:
        """What a manifest stores: one number if all stages share it, else ``{stage: T}``."""
        values = {s: self.of(s) for s in stages}
        return values[stages[0]] if len(set(values.values())) == 1 else values


StepHook = Callable[[int, torch.Tensor], None]  # (step index, logits (B, V)) of each sub-pixel


@contextlib.contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on the CPU for the cached sampler's per-step work.

    A cached step is a few (B, ~100) x (~100, ~100) products: splitting them over threads only
    adds synchronisation, and when the cores are shared with anything else the waiting threads
    make each step 30x slower (5 ms vs 160 ms per step measured on a busy 2-core machine).
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def evaluation(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the duration; restores the mode after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def naive_sample(
    net,
    bias: torch.Tensor,
    height: int,
    width: int,
    uniforms: torch.Tensor,
    temperature: float,
    on_step: StepHook | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Full forward pass of ``net`` for every sub-pixel: ``(B, C, H, W)`` long."""
    batch, channels = bias.shape[0], net.channels
    x = torch.zeros(batch, channels, height, width, dtype=torch.long, device=bias.device)
    step = 0
    for row in tqdm(
        range(height), desc="sampling (naive)", unit="row", disable=not progress, leave=False
    ):
        for col in range(width):
            for ch in range(channels):
                logits = net(x, bias)[:, ch, :, row, col]  # (B, V)
                if on_step is not None:
                    on_step(step, logits)
                x[:, ch, row, col] = draw(logits, uniforms[step], temperature)
                step += 1
    return x


def sample_network(
    net,
    bias: torch.Tensor,
    height: int,
    width: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    sampler: str = "cached",
    *,
    precision: str = "float32",
    cuda_graph: bool = False,
    on_step: StepHook | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` from a ``GatedPixelCNN`` under conditioning ``bias``."""
    if sampler not in SAMPLERS:
        raise ModelsError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if precision not in PRECISIONS:
        raise ModelsError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not temperature > 0:
        raise ModelsError(
            f"temperature must be > 0, got {temperature} (1.0 samples the model as trained)"
        )
    if cuda_graph and (sampler != "cached" or bias.device.type != "cuda"):
        raise ModelsError(
            "CUDA-graph replay needs the cached sampler on a CUDA device; drop cuda_graph"
        )
    uniforms = draw_uniforms(height * width * net.channels, bias.shape[0], generator, bias.device)
    with evaluation(net):
        if precision == "bfloat16":
            net, bias = copy.deepcopy(net).to(torch.bfloat16), bias.to(torch.bfloat16)
        else:
            bias = bias.to(net.embedding.weight.dtype)
        if sampler == "naive":
            return naive_sample(net, bias, height, width, uniforms, temperature, on_step, progress)
        engine = CachedSampler(net, bias, height, width, uniforms, temperature)
        with single_cpu_thread(bias.device):
            return engine.run(cuda_graph=cuda_graph, on_step=on_step, progress=progress)


def sample_decoder(
    decoder,
    codes: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    sampler: str = "cached",
    **options,
) -> torch.Tensor:
    """Sample x ~ p(x | codes) from a ``ConditionalDecoder``: ``(B, C, H, W)`` long.

    ``options``: ``precision`` ("float32" | "bfloat16"), ``cuda_graph``, ``on_step``, ``progress``.
    """
    check_values(codes, decoder.code_channels, decoder.code_values, "codes")
    with evaluation(decoder):
        bias = decoder.condition(codes)  # (B, layers*2h, H, W)
    height, width = bias.shape[-2:]
    return sample_network(
        decoder.local, bias, height, width, temperature, generator, sampler, **options
    )


def sample_prior(
    prior,
    class_ids: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    sampler: str = "cached",
    *,
    size: int | tuple[int, int] | None = None,
    **options,
) -> torch.Tensor:
    """Sample codes z ~ p(z | class) from a ``Prior``: ``(B, C, h, w)`` long.

    ``size``: the code resolution, ``h`` or ``(h, w)`` (the card's ``top_codes.resolution``;
    the prior itself is resolution-free).
    """
    if size is None:
        raise ModelsError("sample_prior needs the code resolution: pass size=(h, w)")
    height, width = (size, size) if isinstance(size, int) else size
    class_ids = class_ids.to(prior.class_bias.weight.device)
    check_class_ids(class_ids, len(class_ids), prior.num_classes)
    with evaluation(prior):
        bias = prior.condition(class_ids)  # (B, layers*2h, 1, 1)
    return sample_network(
        prior.net, bias, height, width, temperature, generator, sampler, **options
    )
