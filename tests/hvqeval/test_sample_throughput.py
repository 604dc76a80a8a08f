"""``hvqeval sample`` at scale: per-image seeds, any batch size, a real SIGKILL, torchrun shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hvqeval.batch_fit import CPU_BATCH, CPU_MAX_BATCH, largest_batch
from hvqeval.cli import cli
from hvqeval.sample_set import SampleSet
from hvqeval.sampling import SamplerOptions
from hvqeval.sharding import Shard, batch_indices
from models import Temperatures, load_run

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import build_tiny_run, one_thread  # noqa: E402,F401

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
    ),
}


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.getbasetemp())


def _files(path) -> list[tuple[str, str]]:
    return [(f.file, (Path(path) / f.file).read_bytes().hex()) for f in SampleSet.load(path).files]


def _cli(*args) -> dict:
    result = CliRunner().invoke(cli, ["sample", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_images_do_not_depend_on_the_batch_size(run, tmp_path):
    base = ("--run", run, "--classes", "0,4,7", "--per-class", 3, "--seed", 11)
    one = _cli(*base, "--out", tmp_path / "b1", "--batch-size", 1)
    four = _cli(*base, "--out", tmp_path / "b4", "--batch-size", 4)
    auto = _cli(*base, "--out", tmp_path / "auto")
    assert (one["batch_size"], four["batch_size"], auto["batch_size"]) == (
        1,
        4,
        9,
    )  # auto: all 9 at once
    assert _files(tmp_path / "b1") == _files(tmp_path / "b4") == _files(tmp_path / "auto")
    manifest = SampleSet.load(tmp_path / "b4").manifest
    assert (
        manifest["batch_size"] == 4
        and manifest["processes"] == 1
        and "per image" in manifest["seeding"]
    )
    # A set started at batch size 4 may be finished at another size (only the speed changes).
    part = tmp_path / "mixed"
    _cli(*base, "--out", part, "--batch-size", 4, "--max-batches", 1)
    assert len(SampleSet.load(part)) == 4
    _cli(*base, "--out", part, "--batch-size", 3)
    assert _files(part) == _files(tmp_path / "b4")


def test_bad_batch_size_is_one_line(run, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "sample",
            "--run",
            str(run),
            "--per-class",
            "1",
            "--out",
            str(tmp_path / "x"),
            "--batch-size",
            "lots",
        ],
    )
    assert (
        result.exit_code == 2
        and "--batch-size" in result.output
        and "neither a positive whole number" in result.output
    )
    assert not (tmp_path / "x").exists()


def test_largest_batch_on_the_cpu_follows_the_available_memory(run):
    import os

    hierarchy = load_run(run)
    fit = largest_batch(hierarchy, Temperatures(), SamplerOptions(), torch.device("cpu"))
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # The 8x8 test decoder: 2 layers x 2 x hidden x 8 x 8 floats per image, far below 1 MiB.
    assert available < 2**30 or fit == CPU_MAX_BATCH
    assert 1 <= fit <= CPU_MAX_BATCH and CPU_BATCH < CPU_MAX_BATCH


def test_shards_take_every_batch_once_in_single_process_order():
    two = [Shard(rank, 2) for rank in range(2)]
    assert [s.batches(0, 7) for s in two] == [[0, 2, 4, 6], [1, 3, 5]]
    assert list(two[0].rounds(1, 6)) == [[1, 2], [3, 4], [5]]
    parts = [batch_indices(11, 3, s) for s in two]
    assert parts == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10]]
    assert sorted(parts[0] + parts[1]) == list(range(11))


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_bytes(run, tmp_path):
    """A real SIGKILL of a sampling process: the set it leaves is valid, and a rerun finishes it."""
    args = [
        "--run",
        str(run),
        "--classes",
        "all",
        "--per-class",
        "8",
        "--batch-size",
        "2",
        "--seed",
        "3",
    ]
    whole = _cli(*args, "--out", tmp_path / "whole")
    assert whole["complete"] and whole["total"] == 80
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hvqeval", "sample", *args, "--out", str(out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            manifest = out / "manifest.json"
            if manifest.is_file() and len(json.loads(manifest.read_text())["files"]) >= 6:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    left = SampleSet.load(out)  # valid: every listed file is there and complete
    assert 6 <= len(left) < 80
    left.verify()
    again = _cli(*args, "--out", out)
    assert again["already_there"] == len(left) and again["complete"]
    assert _files(out) == _files(tmp_path / "whole")
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [
        f for f, _ in _files(out)
    ]


@pytest.mark.slow
def test_torchrun_two_processes_write_the_single_process_set(run, tmp_path):
    args = [
        "--run",
        str(run),
        "--classes",
        "1,2,3",
        "--per-class",
        "5",
        "--batch-size",
        "2",
        "--seed",
        "9",
        "--device",
        "cpu",
        "--save-codes",
    ]
    single = _cli(*args, "--out", tmp_path / "one")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hvqeval",
        "--",
        "sample",
        *args,
        "--out",
        str(tmp_path / "two"),
        "--json",
    ]  # "--": torchrun would read --run
    # Two rounds first (4 batches of 2: the ranks merge after the first round and at the stop),
    # then the rest: the ranks' images since their last meeting must reach the manifest.
    done = subprocess.run(
        [*cmd, "--max-batches", "2"], env=ENV, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    part = json.loads(done.stdout)
    assert (part["made_now"], part["complete"]) == (8, False)
    assert _files(tmp_path / "two") == _files(tmp_path / "one")[:8]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one summary: rank 0 reports
    assert (summary["processes"], summary["images"], summary["complete"]) == (2, 15, True)
    assert (summary["made_now"], summary["already_there"]) == (7, 8)
    assert single["processes"] == 1
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    one, two = (SampleSet.load(tmp_path / n).manifest for n in ("one", "two"))
    assert two["files"] == one["files"]
    from hvqeval.sampling import load_sampled_codes

    codes_one, codes_two = (
        load_sampled_codes(tmp_path / "one"),
        load_sampled_codes(tmp_path / "two"),
    )
    assert all((codes_one[k] == codes_two[k]).all() for k in codes_one)


@pytest.mark.gpu
def test_largest_batch_on_cuda_is_measured_and_gives_the_same_images(run, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    hierarchy = load_run(run, "cuda")
    fit = largest_batch(hierarchy, Temperatures(), SamplerOptions(), torch.device("cuda"))
    assert fit > CPU_BATCH  # 8x8 images on a GPU: far more than the CPU's fixed batch
    base = ("--run", run, "--classes", "0,1", "--per-class", 5, "--seed", 4, "--device", "cuda")
    auto = _cli(*base, "--out", tmp_path / "auto")
    fixed = _cli(*base, "--out", tmp_path / "fixed", "--batch-size", 3)
    assert auto["batch_size"] == 10  # all ten images fit at once
    assert fixed["batch_size"] == 3
    assert _files(tmp_path / "auto") == _files(tmp_path / "fixed")
