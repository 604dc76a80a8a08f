"""Training benchmarks of the autoencoder levels (paper Section 4, Appendix A).

CPU (default): the tiny cards' level 1 trained for a fixed number of steps on the built-in
``shapes`` set and on Fashion-MNIST, then the held-out bits/dim of the AR decoder
(-log p(x | z) per sub-pixel, Polyak weights) and steps/s, side by side in one run::

    python benchmarks/train_speed.py --steps 300 --json

GPU (``--gpu``): training throughput of the paper's 128x128 level-1 autoencoders (64x64
crops, Appendix A) and of the Table-4 prior, bf16 autocast vs fp32, with peak memory. The
inputs are random tensors on the device, so the number is the model's, not the data
pipeline's. Prints ``RESULT <name> <value>`` lines for ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoint import load_run  # noqa: E402
from models.config import load_card  # noqa: E402
from models.ema import Polyak  # noqa: E402
from models.hierarchy import build_stage_model  # noqa: E402
from models.stage_data import FirstItems, open_images  # noqa: E402
from models.train import TrainOptions, evaluate_stage, optimisation_step, train_stage  # noqa: E402

# Fashion-MNIST is 28x28: the tiny cards with 7x7 codes (downsampling x4, as at 32x32).
DATASETS = {
    "shapes": ("shapes", "val", []),
    "fashion_mnist": ("fashion_mnist", "test", ["model.image_size=28", "level.0.codes.resolution=7",
                                                "model.dataset=fashion_mnist"]),
}


def cpu_benchmark(cards: list[str], datasets: list[str], steps: int, held_out: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for data in datasets:
        name, split, overrides = DATASETS[data]
        for card_name in cards:
            card = load_card(card_name, overrides)
            with tempfile.TemporaryDirectory() as run_dir:
                options = TrainOptions(steps=steps, num_workers=1, progress=True, log_every=50)
                result = train_stage(card, run_dir, "level1", data=name, options=options)
                model = load_run(run_dir).levels[0]
                dataset = FirstItems(open_images(card, name, split, train=False), held_out)
                metrics = evaluate_stage(model, dataset, 64, torch.device("cpu"))
            row = {"card": card_name, "data": data, "steps": steps, "batch": card.level[0].training.batch_size,
                   "steps_per_s": round(result.steps_per_second, 3),
                   "train_bpd": round(result.metrics["bpd"], 4),
                   f"{split}_bpd": round(metrics["bpd"], 4), "held_out_bpd": round(metrics["bpd"], 4),
                   "held_out_usage": round(metrics["usage"], 3),
                   "held_out_perplexity": round(metrics["perplexity"], 2)}
            rows.append(row)
            print(f"RESULT cpu_{card_name}_{data}_heldout_bpd {row['held_out_bpd']}", flush=True)
            print(f"RESULT cpu_{card_name}_{data}_steps_per_s {row['steps_per_s']}", flush=True)
    return rows


def _throughput(card_name: str, stage: str, batch: int, precision: str, steps: int, warmup: int) -> dict:
    device = torch.device("cuda")
    card = load_card(card_name)
    torch.manual_seed(0)
    model = build_stage_model(card, stage).to(device).train()
    polyak = Polyak(model, 0.9999)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    if stage == "prior":
        top = card.top_codes
        x = torch.randint(0, top.num_codes, (batch, top.channels, top.resolution, top.resolution), device=device)
    else:
        level = card.level[int(stage[-1]) - 1]
        ch, values, res = card.level_input(int(stage[-1]) - 1)
        crop = min(level.training.crop, res)
        x = torch.randint(0, values, (batch, ch, crop, crop), device=device)
    y = torch.randint(0, card.model.num_classes, (batch,), device=device)
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        optimisation_step(model, model, polyak, optimizer, x, y, i, device, precision)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        optimisation_step(model, model, polyak, optimizer, x, y, warmup + i, device, precision)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"card": card_name, "stage": stage, "batch": batch, "precision": precision,
            "images_per_s": round(batch * steps / seconds, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def gpu_benchmark(steps: int, warmup: int, level_batch: int, prior_batch: int) -> list[dict]:
    torch.backends.cudnn.benchmark = True
    rows = []
    plan = [("imagenet128_ff", "level1", level_batch), ("imagenet128_msp", "level1", level_batch),
            ("imagenet128_ff", "prior", prior_batch)]
    for card_name, stage, batch in plan:
        results = {}
        for precision in ("bf16", "fp32"):
            try:
                row = _throughput(card_name, stage, batch, precision, steps, warmup)
            except torch.cuda.OutOfMemoryError:
                row = {"card": card_name, "stage": stage, "batch": batch, "precision": precision, "error": "out of memory"}
            torch.cuda.empty_cache()
            rows.append(row)
            results[precision] = row
            key = f"gpu_{card_name}_{stage}_b{batch}_{precision}"
            if "error" in row:
                print(f"RESULT {key} out-of-memory", flush=True)
            else:
                print(f"RESULT {key}_images_per_s {row['images_per_s']}", flush=True)
                print(f"RESULT {key}_peak_gib {row['peak_memory_gib']}", flush=True)
        if all("images_per_s" in r for r in results.values()):
            ratio = results["bf16"]["images_per_s"] / results["fp32"]["images_per_s"]
            print(f"RESULT gpu_{card_name}_{stage}_bf16_over_fp32 {ratio:.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="GPU throughput instead of the CPU runs")
    parser.add_argument("--cards", nargs="+", default=["tiny_ff", "tiny_msp"])
    parser.add_argument("--data", nargs="+", default=["shapes", "fashion_mnist"], choices=sorted(DATASETS))
    parser.add_argument("--steps", type=int, default=300, help="CPU: training steps per run")
    parser.add_argument("--gpu-steps", type=int, default=10, help="GPU: timed steps per configuration")
    parser.add_argument("--held-out", type=int, default=512, help="CPU: held-out images evaluated")
    parser.add_argument("--threads", type=int, default=2, help="CPU: torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--level-batch", type=int, default=32)
    parser.add_argument("--prior-batch", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print all rows as JSON at the end")
    args = parser.parse_args()
    if args.gpu:
        if not torch.cuda.is_available():
            sys.exit("--gpu needs a CUDA device")
        rows = gpu_benchmark(args.gpu_steps, args.warmup, args.level_batch, args.prior_batch)
    else:
        rows = cpu_benchmark(args.cards, args.data, args.steps, args.held_out, args.threads)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
