"""Cached vs naive sampling, side by side on the same model and batch (paper Appendix C).

CPU (default): the ``tiny_ff`` card at its real size, random weights: the 32x32 RGB decoder
given 8x8 codes, and the 8x8 prior with attention. Each sampler runs in its own fresh
process so its peak resident memory can be measured; the samples of both must be identical.

GPU (``--gpu``): the paper's 128x128 feed-forward set-up (``imagenet128_ff``) at its real
size, random weights, 25 samples. First end to end through the public API: the Table-4 prior
on 32x32 codes, then the 128x128x3 pixel decoder on those codes, cached, bfloat16, CUDA-graph
replay. Then each engine on the same bfloat16 network, batch and conditioning (computed once,
outside the timing): the naive prior in full; the naive decoder (49152 forward passes) for its
first ``--naive-rows`` rows, compared per step. Every timed run follows an untimed warm-up of a
few steps (library initialisation). Peak memory: CUDA allocator peak above the network and its
conditioning, i.e. what the engine itself needs.

Prints a table, ``RESULT <name> <value>`` lines (collected by ``benchmarks/gpu_check.sh``) and,
with ``--json``, one JSON object.

    python benchmarks/sampler_speed.py                 # CPU, tiny_ff
    python benchmarks/sampler_speed.py --gpu           # CUDA, imagenet128_ff, 25 samples
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import time

import torch

from models.config import downsampling_factor, load_card
from models.pixelcnn import ConditionalDecoder
from models.prior import Prior
from models.sampling import sample_decoder, sample_network, sample_prior


def build(card_name: str, which: str, device: str, seed: int = 0):
    card = load_card(card_name)
    torch.manual_seed(seed)
    with torch.device(device):  # initialise in place: the Table-4 prior has 0.3 G weights
        model = _build(card, which)
    return card, model.eval()


def _build(card, which: str):
    if which == "prior":
        codes = card.top_codes
        return Prior(card.prior, codes.channels, codes.num_codes, card.model.num_classes)
    channels, values, _ = card.level_input(0)
    codes = card.level[0].codes
    return ConditionalDecoder(
        card.level[0],
        channels,
        values,
        codes.channels,
        codes.num_codes,
        factor=downsampling_factor(card, 0),
    )


def inputs(card, which: str, batch: int, device: str):
    g = torch.Generator().manual_seed(1)
    if which == "prior":
        return torch.randint(0, card.model.num_classes, (batch,), generator=g).to(device)
    codes = card.level[0].codes
    shape = (batch, codes.channels, codes.resolution, codes.resolution)
    return torch.randint(0, codes.num_codes, shape, generator=g).to(device)


def sample(model, which, card, cond, sampler, stop_after=None, **options):
    """Run one sampler; ``stop_after`` steps cuts a naive run short (for extrapolation)."""
    steps = [0]

    class Stop(Exception):
        pass

    def count(step, logits):
        steps[0] = step + 1
        if stop_after is not None and steps[0] >= stop_after:
            raise Stop

    kwargs = dict(
        generator=torch.Generator().manual_seed(2), sampler=sampler, on_step=count, **options
    )
    try:
        if which == "prior":
            res = card.top_codes.resolution
            return sample_prior(model, cond, size=(res, res), **kwargs), steps[0]
        return sample_decoder(model, cond, **kwargs), steps[0]
    except Stop:
        return None, steps[0]


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def cpu_worker(card_name, which, batch, sampler, threads, queue):
    torch.set_num_threads(threads)
    card, model = build(card_name, which, "cpu")
    cond = inputs(card, which, batch, "cpu")
    base = peak_rss_kib()
    start = time.perf_counter()
    x, steps = sample(model, which, card, cond, sampler)
    seconds = time.perf_counter() - start
    queue.put(
        dict(
            seconds=seconds, steps=steps, peak_mib=(peak_rss_kib() - base) / 1024, samples=x.numpy()
        )
    )


def run_cpu(args) -> dict:
    ctx = mp.get_context("spawn")
    results = {}
    for which in ("decoder", "prior"):
        row = {}
        for sampler in ("naive", "cached"):
            queue = ctx.Queue()
            proc = ctx.Process(
                target=cpu_worker, args=(args.card, which, args.batch, sampler, args.threads, queue)
            )
            proc.start()
            row[sampler] = queue.get()
            proc.join()
        row["identical"] = bool((row["naive"].pop("samples") == row["cached"].pop("samples")).all())
        row["speedup"] = row["naive"]["seconds"] / row["cached"]["seconds"]
        results[which] = row
    total = {
        s: results["prior"][s]["seconds"] + results["decoder"][s]["seconds"]
        for s in ("naive", "cached")
    }
    results["end_to_end_speedup"] = total["naive"] / total["cached"]
    return results


def engine_run(net, bias, height, width, sampler, stop_after=None, **options) -> dict:
    """Time one engine on a prepared network and conditioning (CUDA peak memory above the start)."""
    steps = [0]

    class Stop(Exception):
        pass

    def count(step, logits):
        steps[0] = step + 1
        if stop_after is not None and steps[0] >= stop_after:
            raise Stop

    cuda = bias.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    start = time.perf_counter()
    try:
        sample_network(
            net,
            bias,
            height,
            width,
            generator=torch.Generator().manual_seed(2),
            sampler=sampler,
            on_step=count,
            **options,
        )
    except Stop:
        pass
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
    return dict(
        seconds=seconds, steps=steps[0], per_step_ms=1000 * seconds / steps[0], peak_mib=peak
    )


def run_gpu(args) -> dict:
    """End to end through the public API, then each engine on the same bf16 network and batch."""
    dev = args.device
    cuda = dev == "cuda"
    fast = dict(precision="bfloat16", cuda_graph=cuda)  # --device cpu: a dry run of this path
    card, prior = build(args.card, "prior", dev)
    _, decoder = build(args.card, "decoder", dev)
    labels = inputs(card, "prior", args.batch, dev)
    res = card.top_codes.resolution
    # Warm-up (library initialisation, kernel selection), untimed: a few steps of each.
    sample(prior, "prior", card, labels, "cached", stop_after=3, **fast)
    sample(
        decoder,
        "decoder",
        card,
        inputs(card, "decoder", args.batch, dev),
        "cached",
        stop_after=3,
        **fast,
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    codes = sample_prior(
        prior, labels, size=(res, res), generator=torch.Generator().manual_seed(2), **fast
    )
    images = sample_decoder(decoder, codes, generator=torch.Generator().manual_seed(3), **fast)
    sync()
    results = {"end_to_end_s": time.perf_counter() - start}
    assert images.shape == (args.batch, 3, card.model.image_size, card.model.image_size)
    for which, model, cond in (("prior", prior, labels), ("decoder", decoder, codes)):
        with torch.no_grad():
            bias = model.condition(cond)
        net = copy.deepcopy(model.net if which == "prior" else model.local)
        dtype = torch.bfloat16 if cuda else torch.float32
        net, bias = net.to(dtype), bias.to(dtype)
        height, width = bias.shape[-2:] if which == "decoder" else (res, res)
        stop = args.naive_rows * width * net.channels if which == "decoder" else None
        row = {}
        for sampler in ("naive", "cached"):
            engine_run(
                net,
                bias,
                height,
                width,
                sampler,
                stop_after=3,
                cuda_graph=cuda and sampler == "cached",
            )
            row[sampler] = engine_run(
                net,
                bias,
                height,
                width,
                sampler,
                stop_after=stop if sampler == "naive" else None,
                cuda_graph=cuda and sampler == "cached",
            )
        row["speedup"] = row["naive"]["per_step_ms"] / row["cached"]["per_step_ms"]
        row["extrapolated"] = row["naive"]["steps"] < row["cached"]["steps"]
        results[which] = row
        del net, bias
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="CUDA, imagenet128_ff, batch 25")
    parser.add_argument(
        "--card", default=None, help="model card (default: tiny_ff on CPU, imagenet128_ff on GPU)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="samples per batch (default 4 on CPU, 25 on GPU)"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per sampler process")
    parser.add_argument(
        "--naive-rows", type=int, default=1, help="GPU: rows the naive decoder samples"
    )
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: dry run of --gpu
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    args.card = args.card or ("imagenet128_ff" if args.gpu else "tiny_ff")
    args.batch = args.batch or (25 if args.gpu else 4)
    results = run_gpu(args) if args.gpu else run_cpu(args)
    results["setup"] = dict(
        card=args.card,
        batch=args.batch,
        device=torch.cuda.get_device_name(0)
        if args.gpu and args.device == "cuda"
        else f"cpu x{args.threads} thread(s)",
        torch=torch.__version__,
    )
    print(f"{'network':8} {'sampler':7} {'steps':>6} {'seconds':>9} {'ms/step':>8} {'peak MiB':>9}")
    for which in ("prior", "decoder"):
        for sampler in ("naive", "cached"):
            r = results[which][sampler]
            print(
                f"{which:8} {sampler:7} {r['steps']:6d} {r['seconds']:9.2f} "
                f"{1000 * r['seconds'] / r['steps']:8.3f} {r['peak_mib']:9.1f}"
            )
        note = " (naive extrapolated per step)" if results[which].get("extrapolated") else ""
        print(f"RESULT sampler_{which}_speedup {results[which]['speedup']:.1f}x{note}")
        for sampler in ("naive", "cached"):
            print(
                f"RESULT sampler_{which}_{sampler}_peak_mib {results[which][sampler]['peak_mib']:.0f}"
            )
        if "identical" in results[which]:
            print(f"RESULT sampler_{which}_identical {results[which]['identical']}")
    if "end_to_end_speedup" in results:
        print(f"RESULT sampler_end_to_end_speedup {results['end_to_end_speedup']:.1f}x")
    if "end_to_end_s" in results:
        print(f"RESULT sampler_end_to_end_{args.batch}_samples_s {results['end_to_end_s']:.1f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
