"""Speed of the evaluation suite, measured side by side (paper Section 6; docs/BENCHMARKS.md).

CPU (default): hvqeval's IS+FID against calling ``torch_fidelity.calculate_metrics`` directly
on the same images (a sample set of N PNGs and a reference folder of N PNGs), neither using
a cache, alternating the order over ``--rounds`` rounds. Target: hvqeval within 5%.

    python benchmarks/metrics_speed.py --n 100 --rounds 2

GPU (``--gpu``): IS+FID of 50,000 128x128 samples against cached reference statistics in
strict fp32 (target <= 30 s on one H200), and exact 10-NN of 4,096 queries against 1.28M
4096-d features already on the GPU (target <= 1 s).

Weights: ``--inception-weights PATH``, else a seeded file of the real architecture is
written (numbers are then meaningless as scores but the work and the timing are the same).
Prints one ``RESULT <name> <value>`` line per number (read by benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def result(name: str, value) -> None:
    print(f"RESULT {name} {value}", flush=True)


def write_shapes_sample_set(path: Path, n: int, size: int, seed: int) -> Path:
    from hvqeval.sample_set import SampleSetWriter
    from models.data import open_dataset

    data = open_dataset("shapes", "test", image_size=size, length=n, seed=seed)
    with SampleSetWriter(path, model="bench", image_size=size, seed=seed) as writer:
        for i in range(n):
            image, class_id = data[i]
            writer.add(image.permute(1, 2, 0).numpy(), class_id, data.class_names[class_id])
    return path


def write_shapes_folder(path: Path, n: int, size: int, seed: int) -> Path:
    from PIL import Image

    from models.data import open_dataset

    data = open_dataset("shapes", "val", image_size=size, length=n, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(data[i][0].permute(1, 2, 0).numpy()).save(path / f"{i:06d}.png")
    return path


def inception_weights(args, tmp: Path) -> str:
    if args.inception_weights:
        return args.inception_weights
    # The seeded-weights writer is a test tool (tests/hvqeval/seeded_weights.py), not product code.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hvqeval"))
    from seeded_weights import write_seeded_inception

    return str(write_seeded_inception(tmp / "inception-seeded.pth", seed=0))


def cpu_benchmark(args) -> None:
    import torch
    import torch_fidelity

    from hvqeval.inputs import open_images
    from hvqeval.metrics.evaluation import EvalSettings, evaluate

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = inception_weights(args, tmp)
        samples = write_shapes_sample_set(tmp / "samples", args.n, args.size, seed=1)
        reference = write_shapes_folder(tmp / "reference", args.n, args.size, seed=2)
        settings = EvalSettings(
            metrics=("isc", "fid"),
            weights=weights,
            use_cache=False,
            device="cpu",
            batch_size=args.batch_size,
            cache_dir=str(tmp / "cache"),
            progress=False,
        )

        def run_hvqeval():
            rows = evaluate(str(samples), str(reference), settings).rows
            return {r.metric: r.value for r in rows}

        def run_torch_fidelity():
            out = torch_fidelity.calculate_metrics(
                input1=open_images(str(samples)),
                input2=open_images(str(reference)),
                isc=True,
                fid=True,
                cuda=False,
                batch_size=args.batch_size,
                feature_extractor_weights_path=weights,
                rng_seed=0,
                cache=False,
                verbose=False,
                save_cpu_ram=True,
            )
            return {"isc": out["inception_score_mean"], "fid": out["frechet_inception_distance"]}

        times = {"hvqeval": [], "torch_fidelity": []}
        values = {}
        for round_index in range(args.rounds):
            order = [("hvqeval", run_hvqeval), ("torch_fidelity", run_torch_fidelity)]
            if round_index % 2:
                order.reverse()
            for name, fn in order:
                start = time.perf_counter()
                values[name] = fn()
                times[name].append(time.perf_counter() - start)
                print(
                    f"round {round_index + 1}: {name} {times[name][-1]:.2f} s {values[name]}",
                    file=sys.stderr,
                )
        ours, theirs = sum(times["hvqeval"]), sum(times["torch_fidelity"])
        result("cpu_images_per_side", args.n)
        result("cpu_hvqeval_is_fid_s", f"{ours / args.rounds:.2f}")
        result("cpu_torch_fidelity_is_fid_s", f"{theirs / args.rounds:.2f}")
        result("cpu_time_ratio_hvqeval_over_torch_fidelity", f"{ours / theirs:.3f}")
        result(
            "cpu_isc_equal", abs(values["hvqeval"]["isc"] - values["torch_fidelity"]["isc"]) < 1e-9
        )


def _write_png_batch(job):
    from PIL import Image

    folder, start, stop, size, seed = job
    rng = np.random.default_rng([seed, start])
    entries = []
    for i in range(start, stop):
        # Smooth random images (upsampled 8x8 noise) compress and decode like natural-ish samples.
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        name = f"{i:06d}.png"
        image.save(Path(folder) / name)
        entries.append({"file": name, "class_id": int(i % 1000), "class_name": f"class {i % 1000}"})
    return entries


def write_png_sample_set_parallel(path: Path, n: int, size: int, workers: int) -> Path:
    """A format-1 sample set written by many processes (hashes omitted: they are optional)."""
    path.mkdir(parents=True, exist_ok=True)
    step = 1000
    jobs = [(str(path), s, min(s + step, n), size, 0) for s in range(0, n, step)]
    with ProcessPoolExecutor(workers) as pool:
        files = [e for batch in pool.map(_write_png_batch, jobs) for e in batch]
    manifest = {
        "format_version": 1,
        "model": "bench",
        "image_size": size,
        "seed": 0,
        "files": files,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def gpu_benchmark(args) -> None:
    import torch

    from hvqeval.metrics.evaluation import EvalSettings, evaluate
    from hvqeval.metrics.neighbours import exact_knn

    assert torch.cuda.is_available(), "--gpu needs a CUDA device"
    print(torch.cuda.get_device_name(0), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = inception_weights(args, tmp)
        start = time.perf_counter()
        samples = write_png_sample_set_parallel(
            tmp / "samples", args.gpu_n, 128, os.cpu_count() or 4
        )
        reference_images = np.random.default_rng(1).integers(
            0, 256, size=(args.gpu_reference, 128, 128, 3), dtype=np.uint8
        )
        np.save(tmp / "reference.npy", reference_images)
        print(f"inputs written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        settings = EvalSettings(
            metrics=("isc", "fid"),
            weights=weights,
            device="cuda",
            batch_size=args.gpu_batch,
            num_workers=args.workers,
            cache_dir=str(tmp / "cache"),
            tf32=False,
            progress=False,
        )
        from dataclasses import replace

        warm = evaluate(
            str(tmp / "reference.npy"),
            str(tmp / "reference.npy"),
            replace(settings, metrics=("fid",)),
        )  # fills the reference cache (not timed)
        assert warm.reference_cache == "miss"
        torch.cuda.synchronize()
        start = time.perf_counter()
        outcome = evaluate(str(samples), str(tmp / "reference.npy"), settings)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        assert outcome.reference_cache == "hit" and not outcome.rows[0].tf32
        result("gpu_is_fid_50k_128px_cached_reference_s", f"{elapsed:.2f}")
        result("gpu_is_fid_images_per_s", f"{args.gpu_n / elapsed:.0f}")

        generator = torch.Generator(device="cuda").manual_seed(0)
        database = torch.randn(
            args.knn_database, 4096, device="cuda", generator=generator
        )  # (1.28M, 4096)
        queries = torch.randn(4096, 4096, device="cuda", generator=generator)
        torch.backends.cuda.matmul.allow_tf32 = False
        exact_knn(
            queries[:64], database[:100000], 10, device="cuda"
        )  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        start = time.perf_counter()
        indices, _ = exact_knn(queries, database, 10, chunk=args.knn_chunk, device="cuda")
        torch.cuda.synchronize()
        result("gpu_knn_10nn_4096_vs_1.28M_4096d_s", f"{time.perf_counter() - start:.3f}")
        # Spot check against a float64 brute force for a few queries.
        check = (
            torch.cdist(queries[:4].double(), database.double())
            .topk(10, largest=False)
            .indices.cpu()
            .numpy()
        )
        result("gpu_knn_equals_float64_brute_force", bool(np.array_equal(check, indices[:4])))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--n", type=int, default=100, help="CPU: images per side")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inception-weights", default=os.environ.get("HVQEVAL_INCEPTION_WEIGHTS"))
    parser.add_argument("--gpu-n", type=int, default=50000)
    parser.add_argument("--gpu-reference", type=int, default=5000)
    parser.add_argument("--gpu-batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--knn-database", type=int, default=1_280_000)
    parser.add_argument("--knn-chunk", type=int, default=131072)
    args = parser.parse_args()
    if args.gpu:
        gpu_benchmark(args)
    else:
        cpu_benchmark(args)


if __name__ == "__main__":
    main()
