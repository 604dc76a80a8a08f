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

Throughput (``--processes N``, CPU): ``hvqeval sample`` of the ``tiny_ff`` card at its real
size (a run folder trained for one step per stage: random-like weights, real code path), once
in one process and once under ``torchrun`` with N gloo processes, same arguments; reports
both throughputs, their ratio and whether the two sample sets are byte-identical. Images/s
counts drawing and writing (the command's own ``seconds``); the wall time of each command
(Python and torch start-up, rendezvous) is shown beside it.

Throughput (``--gpu-throughput``, CUDA): a random-weight hierarchy of ``imagenet128_ff`` at
real size through the same code path as ``hvqeval sample`` (``Hierarchy.sample``, one
generator per image, bfloat16, CUDA graphs) at the largest batch that fits
(``hvqeval.batch_fit``, or ``--batch``). The prior runs in full; the decoder runs its first
``--decoder-rows`` rows and its per-step time is extrapolated to all 49,152 steps (cached
steps cost the same at every position of a decoder without attention). Peak memory is the
CUDA allocator's. Then ``--card imagenet256_ff`` (two levels + prior), 9 samples, end to end,
in full.

Prints a table, ``RESULT <name> <value>`` lines (collected by ``benchmarks/gpu_check.sh``) and,
with ``--json``, one JSON object.

    python benchmarks/sampler_speed.py                 # CPU, tiny_ff
    python benchmarks/sampler_speed.py --processes 2   # CPU, tiny_ff, torchrun 2 vs 1 process
    python benchmarks/sampler_speed.py --gpu           # CUDA, imagenet128_ff, 25 samples
    python benchmarks/sampler_speed.py --gpu-throughput  # CUDA, best batch + 9 samples at 256x256
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


# --------------------------------------------------------------------------------------
# Throughput of `hvqeval sample`: N torchrun processes vs 1 (CPU)

ROOT = Path(__file__).resolve().parents[1]


def tiny_run(folder: Path, card_name: str) -> Path:
    """A run folder of ``card_name`` trained one step per stage (the sampler's cost does not
    depend on the weights)."""
    from models import TrainOptions, load_card, train_stage

    if not (folder / "prior.pt").is_file():
        card = load_card(card_name)
        options = TrainOptions(steps=1, num_workers=0, progress=False, limit=32, log_every=1)
        for stage in [f"level{i + 1}" for i in range(len(card.level))] + ["prior"]:
            train_stage(card, folder, stage, options=options)
    return folder


def sample_command(run: Path, out: Path, args, processes: int, threads: int | None = None) -> dict:
    """One ``hvqeval sample`` (under torchrun when ``processes`` > 1): its JSON and wall time.
    ``threads``: OMP_NUM_THREADS for the process (torchrun sets 1 per process itself)."""
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    sample = [
        "sample",
        "--run",
        str(run),
        "--classes",
        "all",
        "--per-class",
        str(args.per_class),
        "--batch-size",
        str(args.batch),
        "--seed",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
    ]
    if processes == 1:
        cmd = [sys.executable, "-m", "hvqeval", *sample]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "hvqeval",
            "--",
            *sample,
        ]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return dict(
        wall_s=wall,
        seconds=summary["seconds"],
        images=summary["made_now"],
        images_per_s=summary["made_now"] / summary["seconds"],
        wall_images_per_s=summary["made_now"] / wall,
    )


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def run_processes(args) -> dict:
    """``hvqeval sample`` with 1 process and with N under torchrun, ``--repeat`` rounds in
    alternating order (the machine's load drifts): throughputs, ratios and bytes."""
    from hvqeval.sample_set import SampleSet

    rounds = []
    with tempfile.TemporaryDirectory(prefix="sampler_speed_") as tmp:
        root = Path(tmp)
        run = tiny_run(root / "run", args.card)
        for r in range(args.repeat):
            result = {"load_before": load_average()}
            # "one": one process as a user starts it (torch's default intra-op threads, one per
            # core); "one_1t": the same with one thread, as torchrun starts each of its processes.
            order = [("one", 1, None), ("many", args.processes, None), ("one_1t", 1, 1)]
            for key, n, threads in order if r % 2 == 0 else order[::-1]:
                result[key] = sample_command(run, root / f"{key}{r}", args, n, threads)
            result["load_after"] = load_average()
            sets = [SampleSet.load(root / f"{name}{r}") for name in ("one", "many")]
            result["identical"] = all(
                a.file == b.file
                and (root / f"one{r}" / a.file).read_bytes()
                == (root / f"many{r}" / b.file).read_bytes()
                for a, b in zip(sets[0].files, sets[1].files, strict=True)
            )
            result["speedup"] = result["many"]["images_per_s"] / result["one"]["images_per_s"]
            result["speedup_1t"] = result["many"]["images_per_s"] / result["one_1t"]["images_per_s"]
            result["wall_speedup"] = result["one"]["wall_s"] / result["many"]["wall_s"]
            rounds.append(result)
    speedups = sorted(r["speedup"] for r in rounds)
    speedups_1t = sorted(r["speedup_1t"] for r in rounds)
    return {
        "rounds": rounds,
        "median_speedup": speedups[len(speedups) // 2],
        "median_speedup_1t": speedups_1t[len(speedups_1t) // 2],
        "identical": all(r["identical"] for r in rounds),
    }


def print_processes(results: dict, args) -> None:
    print(
        f"{'round':6} {'processes':10} {'images':>7} {'seconds':>8} {'images/s':>9} {'wall s':>8} "
        f"{'wall images/s':>14}  load average before / after"
    )
    for i, result in enumerate(results["rounds"]):
        for key, n in (("one", "1"), ("one_1t", "1 (1 thr)"), ("many", str(args.processes))):
            r = result[key]
            print(
                f"{i:<6d} {n:<10s} {r['images']:7d} {r['seconds']:8.1f} {r['images_per_s']:9.2f} "
                f"{r['wall_s']:8.1f} {r['wall_images_per_s']:14.2f}  {result['load_before']} / "
                f"{result['load_after']}"
            )
        print(
            f"       ratio {result['speedup']:.2f}x (wall {result['wall_speedup']:.2f}x; "
            f"{result['speedup_1t']:.2f}x against 1 process with 1 thread), "
            f"identical {result['identical']}"
        )
    print(f"RESULT sample_{args.processes}proc_speedup {results['median_speedup']:.2f}x (median)")
    print(
        f"RESULT sample_{args.processes}proc_speedup_vs_1thread "
        f"{results['median_speedup_1t']:.2f}x (median)"
    )
    print(f"RESULT sample_{args.processes}proc_identical {results['identical']}")


# --------------------------------------------------------------------------------------
# Throughput at the best batch on one GPU (imagenet128_ff), 9 samples at 256x256


def random_hierarchy(card_name: str, device: str):
    """Every stage of ``card_name`` at real size with seeded random weights, in eval mode."""
    from models import Hierarchy, load_card
    from models.hierarchy import build_stage_model

    card = load_card(card_name)
    torch.manual_seed(0)
    with torch.device(device):
        levels = [build_stage_model(card, f"level{i + 1}") for i in range(len(card.level))]
        prior = build_stage_model(card, "prior")
    return Hierarchy(card, levels, prior).eval()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device) -> float:
    return (
        torch.cuda.max_memory_allocated() / 2**30
        if torch.device(device).type == "cuda"
        else float("nan")
    )


def timed_sample(hierarchy, batch: int, options, device, decoder_rows: int | None = None) -> dict:
    """``Hierarchy.sample`` of one batch as ``hvqeval sample`` draws it; with ``decoder_rows`` the
    pixel decoder stops after that many rows and its time is extrapolated per step."""
    from hvqeval.sampling import batch_generator

    card = hierarchy.card
    class_ids = torch.arange(batch, device=device) % card.model.num_classes
    generators = [batch_generator(0, i) for i in range(batch)]  # one per image, as hvqeval sample
    engine = options.engine_options()
    _sync(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    top = hierarchy.sample_top(class_ids, 1.0, generators, "cached", **engine)
    _sync(device)
    prior_s = time.perf_counter() - start
    if decoder_rows is None:
        hierarchy.decode(top, 1.0, generators, "cached", **engine)
        _sync(device)
        total = time.perf_counter() - start
        return dict(
            batch=batch,
            seconds=total,
            prior_s=prior_s,
            extrapolated=False,
            samples_per_s=batch / total,
            peak_gib=_peak_gib(device),
        )
    # Only the pixel decoder (level 1) is cut short; levels above it run in full.
    size = card.model.image_size
    row, steps, limit, marks = 3 * size, [0], decoder_rows * 3 * size, []

    class Stop(Exception):
        pass

    def count(step, logits):
        steps[0] = step + 1
        if steps[0] == row:  # after the first row (graph capture, conditioning): start the clock
            _sync(device)
            marks.append(time.perf_counter())
        if steps[0] >= limit:
            _sync(device)
            marks.append(time.perf_counter())
            raise Stop

    codes = top
    for index in reversed(range(1, len(hierarchy.levels))):  # the levels above the pixels, in full
        codes = sample_decoder(
            hierarchy.levels[index].decoder, codes, 1.0, generators, "cached", **engine
        )
    decode_start = time.perf_counter()
    try:
        hierarchy.decode(codes, 1.0, generators, "cached", from_level=1, on_step=count, **engine)
    except Stop:
        pass
    per_step = (marks[1] - marks[0]) / (limit - row)
    above_s = decode_start - start - prior_s
    decoder_s = (marks[0] - decode_start) + per_step * (size * size * 3 - row)
    total = prior_s + above_s + decoder_s
    return dict(
        batch=batch,
        seconds=total,
        prior_s=prior_s,
        decoder_per_step_ms=1000 * per_step,
        extrapolated=True,
        samples_per_s=batch / total,
        peak_gib=_peak_gib(device),
    )


def run_gpu_throughput(args) -> dict:
    from hvqeval.batch_fit import largest_batch
    from hvqeval.sampling import SamplerOptions
    from models import Temperatures

    device = torch.device(args.device)
    cuda = device.type == "cuda"  # --device cpu: a dry run of this path on small cards
    options = SamplerOptions("cached", "bfloat16" if cuda else "float32", cuda)
    results = {}
    hierarchy = random_hierarchy(args.card128, device)
    fit = largest_batch(hierarchy, Temperatures(), options, device)
    batch = args.batch or fit
    results["best_batch"] = dict(
        card=args.card128,
        fit=fit,
        **timed_sample(hierarchy, batch, options, device, args.decoder_rows),
    )
    del hierarchy
    if cuda:
        torch.cuda.empty_cache()
    hierarchy = random_hierarchy(args.card256, device)
    results["nine"] = dict(card=args.card256, **timed_sample(hierarchy, 9, options, device))
    return results


def print_gpu_throughput(results: dict, args) -> None:
    a, b = results["best_batch"], results["nine"]
    size = 3 * load_card(a["card"]).model.image_size ** 2
    print(
        f"{a['card']}: batch {a['batch']} (largest that fits: {a['fit']}), prior {a['prior_s']:.1f} s, "
        f"pixel decoder {a['decoder_per_step_ms']:.2f} ms/step x {size:,} steps (timed over "
        f"{args.decoder_rows} rows, extrapolated), {a['samples_per_s']:.2f} samples/s, "
        f"peak {a['peak_gib']:.1f} GiB"
    )
    print(
        f"{b['card']}: 9 samples end to end in {b['seconds']:.1f} s (prior {b['prior_s']:.1f} s), "
        f"peak {b['peak_gib']:.1f} GiB"
    )
    print(f"RESULT sample_best_batch {a['batch']}")
    print(
        f"RESULT sample_best_batch_samples_per_s {a['samples_per_s']:.1f} (target >= 55, {a['card']}; extrapolated)"
    )
    print(f"RESULT sample_best_batch_peak_gib {a['peak_gib']:.1f}")
    print(f"RESULT sample_9_samples_s {b['seconds']:.1f} (target <= 60, {b['card']})")


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
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="CPU: hvqeval sample under torchrun with this many processes vs one",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=48,
        help="--processes: images per class (10 classes); 48 makes runs of 25-50 s, long "
        "enough that the first batches' warm-up and the ranks' meetings are not the measure",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="--processes: rounds, in alternating order"
    )
    parser.add_argument(
        "--gpu-throughput",
        action="store_true",
        help="CUDA: imagenet128_ff at the best batch, then 9 samples of --card256",
    )
    parser.add_argument(
        "--decoder-rows", type=int, default=4, help="--gpu-throughput: decoder rows timed"
    )
    parser.add_argument(
        "--card128", default="imagenet128_ff", help="--gpu-throughput: the best-batch card"
    )
    parser.add_argument(
        "--card256", default="imagenet256_ff", help="--gpu-throughput: the 9-sample card"
    )
    args = parser.parse_args()
    if args.processes:
        args.card, args.batch = args.card or "tiny_ff", args.batch or 8
        results = run_processes(args)
        print_processes(results, args)
        if args.json:
            print(json.dumps(results))
        return
    if args.gpu_throughput:
        results = run_gpu_throughput(args)
        results["setup"] = dict(
            device=torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
            torch=torch.__version__,
        )
        print_gpu_throughput(results, args)
        if args.json:
            print(json.dumps(results))
        return
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
