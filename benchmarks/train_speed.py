"""Training benchmarks of the autoencoder levels (paper Section 4, Appendix A).

CPU (default): the tiny cards' level 1 trained for a fixed number of steps on the built-in
``shapes`` set and on Fashion-MNIST, then the held-out bits/dim of the AR decoder
(-log p(x | z) per sub-pixel, Polyak weights) and steps/s, side by side in one run::

    python benchmarks/train_speed.py --steps 300 --json

Reference row (``--reference-digits``, on by default in CPU mode): our own gated PixelCNN
(``models.pixelcnn.GatedPixelCNN``, one channel, 17 values, the tiny card's local-model
widths, a zero conditioning bias) trained unconditionally with Adam on scikit-learn's 8x8
digits (values 0..16) for a fixed wall-time budget, on a fixed seeded split of 1,500 train /
297 test images; its test bits/dim (Polyak weights, as the tiny-card rows; the raw weights'
in the JSON row) and wall time are printed beside the tiny-card rows, with the same
``--threads``. The model is that of the first ``--cards`` card. Bits/dim of 17-level digits and of 256-level images are
different units of difficulty: every row also carries the bits/dim of a uniform model
(log2 17 = 4.09 vs log2 256 = 8) and the ratio of the two.

GPU (``--gpu``): training throughput of the paper's 128x128 level-1 autoencoders (64x64
crops, Appendix A) and of the Table-4 prior, bf16 autocast vs fp32, with peak memory. The
inputs are random tensors on the device, so the number is the model's, not the data
pipeline's. Prints ``RESULT <name> <value>`` lines for ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import math
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
from models.pixelcnn import GatedPixelCNN, sum_nll  # noqa: E402
from models.stage_data import FirstItems, open_images  # noqa: E402
from models.train import TrainOptions, evaluate_stage, optimisation_step, train_stage  # noqa: E402

# Fashion-MNIST is 28x28: the tiny cards with 7x7 codes (downsampling x4, as at 32x32).
DATASETS = {
    "shapes": ("shapes", "val", []),
    "fashion_mnist": (
        "fashion_mnist",
        "test",
        ["model.image_size=28", "level.0.codes.resolution=7", "model.dataset=fashion_mnist"],
    ),
}


def cpu_benchmark(
    cards: list[str], datasets: list[str], steps: int, held_out: int, threads: int
) -> list[dict]:
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
            values = card.level_input(0)[1]
            row = {
                "card": card_name,
                "data": data,
                "steps": steps,
                "batch": card.level[0].training.batch_size,
                "train_seconds": round(result.seconds, 1),
                "steps_per_s": round(result.steps_per_second, 3),
                "train_bpd": round(result.metrics["bpd"], 4),
                f"{split}_bpd": round(metrics["bpd"], 4),
                "held_out_bpd": round(metrics["bpd"], 4),
                "held_out_usage": round(metrics["usage"], 3),
                "held_out_perplexity": round(metrics["perplexity"], 2),
                "values": values,
                "uniform_bpd": round(math.log2(values), 4),
                "held_out_bpd_over_uniform": round(metrics["bpd"] / math.log2(values), 4),
            }
            rows.append(row)
            print(f"RESULT cpu_{card_name}_{data}_heldout_bpd {row['held_out_bpd']}", flush=True)
            print(f"RESULT cpu_{card_name}_{data}_steps_per_s {row['steps_per_s']}", flush=True)
    return rows


DIGITS_TRAIN = 1500  # of sklearn's 1,797 digits; the other 297 are the test split
DIGITS_VALUES = 17  # pixel values 0..16


def digits_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` ints in [0, 16]: a fixed seeded train / test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit(
            "--reference-digits needs scikit-learn (pip install scikit-learn); "
            "or pass --no-reference-digits"
        )
    images = torch.from_numpy(load_digits().images).round().long()[:, None]  # bundled with sklearn
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:DIGITS_TRAIN]], images[order[DIGITS_TRAIN:]]


@torch.no_grad()
def _digits_bpd(model: GatedPixelCNN, images: torch.Tensor, batch: int) -> float:
    model.eval()
    nats = 0.0
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        bias = torch.zeros(len(x), model.bias_channels, 1, 1)
        nats += float(sum_nll(model(x, bias), x).sum())
    model.train()
    return nats / (images.numel() * math.log(2))


def digits_reference(
    card_name: str,
    seconds: float,
    max_steps: int | None,
    batch: int,
    threads: int,
    eval_every: float,
    seed: int = 0,
) -> dict:
    """Unconditional gated PixelCNN on the 8x8 digits: test bits/dim after a wall-time budget."""
    torch.set_num_threads(threads)
    card = load_card(card_name)
    local, training = card.level[0].local_model, card.level[0].training
    train, test = digits_split(seed)
    torch.manual_seed(seed)
    model = GatedPixelCNN(
        1, DIGITS_VALUES, local.hidden, local.layers, local.kernel_size, ordinal_input=True
    )  # as the level-1 local models (pixel intensities)
    polyak = Polyak(model, training.polyak_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    bias = torch.zeros(batch, model.bias_channels, 1, 1)  # no conditioning
    generator = torch.Generator().manual_seed(seed)
    dims = train[0].numel()
    step, curve, sums, count = 0, [], 0.0, 0
    started, eval_seconds = time.perf_counter(), 0.0  # the budget counts training time only
    next_eval = eval_every
    done = False
    while not done:
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(train) - batch + 1, batch):
            x = train[order[i : i + batch]]
            loss = sum_nll(model(x, bias), x).mean() / dims  # nats per sub-pixel
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            polyak.update(model, step)
            step += 1
            sums, count = sums + float(loss.detach()), count + 1
            elapsed = time.perf_counter() - started - eval_seconds
            if elapsed >= seconds or (max_steps is not None and step >= max_steps):
                done = True
                break
            if eval_every > 0 and elapsed >= next_eval:
                eval_started = time.perf_counter()
                curve.append(
                    {
                        "seconds": round(elapsed, 1),
                        "step": step,
                        "test_bpd": round(_digits_bpd(model, test, 256), 4),
                        "test_bpd_polyak": round(_digits_bpd(polyak.averaged, test, 256), 4),
                    }
                )
                print(
                    f"digits {elapsed:6.1f}s step {step:6d} train {sums / count / math.log(2):.4f} "
                    f"test {curve[-1]['test_bpd']:.4f} (Polyak {curve[-1]['test_bpd_polyak']:.4f}) bits/dim",
                    flush=True,
                )
                sums, count = 0.0, 0
                next_eval += eval_every
                eval_seconds += time.perf_counter() - eval_started
    train_seconds = time.perf_counter() - started - eval_seconds
    test_bpd = _digits_bpd(model, test, 256)
    polyak_bpd = _digits_bpd(polyak.averaged, test, 256)
    uniform = math.log2(DIGITS_VALUES)
    row = {
        "card": f"pixelcnn({card_name} local)",
        "data": "sklearn_digits",
        "steps": step,
        "batch": batch,
        "train_seconds": round(train_seconds, 1),
        "steps_per_s": round(step / train_seconds, 3),
        "epochs": round(step * batch / len(train), 1),
        "train_images": len(train),
        "test_images": len(test),
        "layers": local.layers,
        "hidden": local.hidden,
        "kernel_size": local.kernel_size,
        "learning_rate": training.learning_rate,
        "test_bpd": round(test_bpd, 4),
        "test_bpd_polyak": round(polyak_bpd, 4),
        "held_out_bpd": round(polyak_bpd, 4),  # Polyak weights, as the tiny-card rows
        "values": DIGITS_VALUES,
        "uniform_bpd": round(uniform, 4),
        "held_out_bpd_over_uniform": round(polyak_bpd / uniform, 4),
        "curve": curve,
    }
    print(f"RESULT cpu_digits_reference_test_bpd {row['test_bpd']}", flush=True)
    print(f"RESULT cpu_digits_reference_test_bpd_polyak {row['test_bpd_polyak']}", flush=True)
    print(f"RESULT cpu_digits_reference_seconds {row['train_seconds']}", flush=True)
    return row


def print_table(rows: list[dict], threads: int) -> None:
    """The CPU rows side by side; bits/dim next to a uniform model's (log2 of the values)."""
    print(
        f"\nCPU rows, {threads} thread(s); held-out bits/dim is per sub-pixel, uniform = log2(values)"
    )
    header = (
        f"{'model':<34} {'data':<15} {'values':>6} {'uniform':>8} {'steps':>7} {'seconds':>8} "
        f"{'steps/s':>8} {'held-out':>9} {'/uniform':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['card']:<34} {r['data']:<15} {r['values']:>6} {r['uniform_bpd']:>8.3f} {r['steps']:>7} "
            f"{r['train_seconds']:>8.1f} {r['steps_per_s']:>8.2f} {r['held_out_bpd']:>9.4f} "
            f"{r['held_out_bpd_over_uniform']:>9.4f}"
        )
    print(
        "(held-out: Polyak weights; digits: the 297 test images, raw weights in the JSON row's test_bpd)",
        flush=True,
    )


# Result keys keep the short names; models speaks torch's dtype names.
DTYPE_NAMES = {"bf16": "bfloat16", "fp32": "float32"}


def _throughput(
    card_name: str, stage: str, batch: int, precision: str, steps: int, warmup: int
) -> dict:
    device = torch.device("cuda")
    card = load_card(card_name)
    torch.manual_seed(0)
    model = build_stage_model(card, stage).to(device).train()
    polyak = Polyak(model, 0.9999)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    if stage == "prior":
        top = card.top_codes
        x = torch.randint(
            0, top.num_codes, (batch, top.channels, top.resolution, top.resolution), device=device
        )
    else:
        level = card.level[int(stage[-1]) - 1]
        ch, values, res = card.level_input(int(stage[-1]) - 1)
        crop = min(level.training.crop, res)
        x = torch.randint(0, values, (batch, ch, crop, crop), device=device)
    y = torch.randint(0, card.model.num_classes, (batch,), device=device)
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        optimisation_step(model, model, polyak, optimizer, x, y, i, device, DTYPE_NAMES[precision])
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        optimisation_step(
            model, model, polyak, optimizer, x, y, warmup + i, device, DTYPE_NAMES[precision]
        )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "card": card_name,
        "stage": stage,
        "batch": batch,
        "precision": precision,
        "images_per_s": round(batch * steps / seconds, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def gpu_benchmark(steps: int, warmup: int, level_batch: int, prior_batch: int) -> list[dict]:
    torch.backends.cudnn.benchmark = True
    rows = []
    plan = [
        ("imagenet128_ff", "level1", level_batch),
        ("imagenet128_msp", "level1", level_batch),
        ("imagenet128_ff", "prior", prior_batch),
    ]
    for card_name, stage, batch in plan:
        results = {}
        for precision in ("bf16", "fp32"):
            try:
                row = _throughput(card_name, stage, batch, precision, steps, warmup)
            except torch.cuda.OutOfMemoryError:
                row = {
                    "card": card_name,
                    "stage": stage,
                    "batch": batch,
                    "precision": precision,
                    "error": "out of memory",
                }
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", action="store_true", help="GPU throughput instead of the CPU runs")
    parser.add_argument("--cards", nargs="+", default=["tiny_ff", "tiny_msp"])
    parser.add_argument(
        "--data", nargs="+", default=["shapes", "fashion_mnist"], choices=sorted(DATASETS)
    )
    parser.add_argument("--steps", type=int, default=300, help="CPU: training steps per run")
    parser.add_argument(
        "--gpu-steps", type=int, default=10, help="GPU: timed steps per configuration"
    )
    parser.add_argument("--held-out", type=int, default=512, help="CPU: held-out images evaluated")
    parser.add_argument("--threads", type=int, default=2, help="CPU: torch intra-op threads")
    parser.add_argument(
        "--reference-digits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="CPU: also train the unconditional gated PixelCNN reference on sklearn's 8x8 digits",
    )
    parser.add_argument(
        "--digits-seconds",
        type=float,
        default=120.0,
        help="CPU: wall-time budget of the digits reference (seconds)",
    )
    parser.add_argument(
        "--digits-steps",
        type=int,
        default=None,
        help="CPU: stop the digits reference after this many steps if earlier than the budget",
    )
    parser.add_argument(
        "--digits-batch", type=int, default=32, help="CPU: batch size of the digits reference"
    )
    parser.add_argument(
        "--digits-eval-every",
        type=float,
        default=15.0,
        help="CPU: seconds between test evaluations printed during the digits run (0: none)",
    )
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
        if args.digits_seconds <= 0:
            sys.exit(f"--digits-seconds must be > 0, got {args.digits_seconds}")
        if not 1 <= args.digits_batch <= DIGITS_TRAIN:
            sys.exit(
                f"--digits-batch must be 1..{DIGITS_TRAIN} (the digits train split), got {args.digits_batch}"
            )
        if args.digits_steps is not None and args.digits_steps < 1:
            sys.exit(f"--digits-steps must be >= 1, got {args.digits_steps}")
        rows = cpu_benchmark(args.cards, args.data, args.steps, args.held_out, args.threads)
        if args.reference_digits:
            rows.append(
                digits_reference(
                    args.cards[0],
                    args.digits_seconds,
                    args.digits_steps,
                    args.digits_batch,
                    args.threads,
                    args.digits_eval_every,
                )
            )
        print_table(rows, args.threads)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
