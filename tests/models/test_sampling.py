"""Sampling engines: the cached sampler reproduces the naive one step for step (Appendix C)."""

import dataclasses

import pytest
import torch

from models.config import LocalModelConfig, ResNetConfig, load_card
from models.errors import ModelsError
from models.pixelcnn import ConditionalDecoder
from models.prior import Prior
from models.sampling import draw, sample_decoder, sample_prior
from models.sampling_cache import CachedSampler


def tiny_decoder(channels=3, values=5, layers=3, hidden=9, seed=0):
    torch.manual_seed(seed)
    level = load_card("tiny_ff").level[0]
    level = dataclasses.replace(
        level, local_model=LocalModelConfig(layers, hidden, 3), modulator=ResNetConfig(1, 8, 4)
    )
    return ConditionalDecoder(level, channels, values, 1, 4, factor=2)


def tiny_prior(timing="add", channels=1, seed=0, kernel_size=3):
    torch.manual_seed(seed)
    config = dataclasses.replace(
        load_card("tiny_ff").prior,
        layers=3,
        hidden=8,
        residual_hidden=12,
        attention_layers=2,
        attention_heads=3,
        timing=timing,
        dropout=0.25,
        kernel_size=kernel_size,
    )
    return Prior(config, channels, 6, num_classes=3)


def run(fn, sampler, seed=1, **kwargs):
    """Samples and the per-step logits of one engine."""
    logits = []
    g = torch.Generator().manual_seed(seed)
    x = fn(generator=g, sampler=sampler, on_step=lambda i, l: logits.append(l.clone()), **kwargs)
    return x, torch.stack(logits)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_cached_decoder_matches_naive_step_for_step(dtype, tol):
    dec = tiny_decoder().to(dtype)
    codes = torch.randint(0, 4, (3, 1, 3, 2))  # -> 6x4 RGB images
    sample = lambda **kw: sample_decoder(dec, codes, temperature=0.9, **kw)
    x_naive, l_naive = run(sample, "naive")
    x_cached, l_cached = run(sample, "cached")
    assert l_naive.shape == (6 * 4 * 3, 3, 5)  # one step per sub-pixel, (B, V) logits each
    torch.testing.assert_close(l_cached, l_naive, atol=tol, rtol=tol)
    assert torch.equal(x_cached, x_naive)
    assert x_naive.shape == (3, 3, 6, 4) and x_naive.dtype == torch.long


@pytest.mark.parametrize("timing,channels,kernel", [("add", 1, 3), ("concat", 2, 5)])
def test_cached_prior_with_attention_matches_naive(timing, channels, kernel):
    prior = tiny_prior(timing, channels, kernel_size=kernel).double()
    prior.train()  # sampling must switch dropout off by itself, and restore the mode after
    labels = torch.tensor([0, 2, 1, 1])
    sample = lambda **kw: sample_prior(prior, labels, size=(4, 5), **kw)
    x_naive, l_naive = run(sample, "naive")
    x_cached, l_cached = run(sample, "cached")
    torch.testing.assert_close(l_cached, l_naive, atol=1e-12, rtol=1e-12)
    assert torch.equal(x_cached, x_naive)
    assert prior.training
    assert x_naive.shape == (4, channels, 4, 5)
    assert x_naive.min() >= 0 and x_naive.max() < 6


def test_seeds_make_samples_reproducible_and_distinct():
    dec = tiny_decoder()
    codes = torch.randint(0, 4, (2, 1, 2, 2))
    a = sample_decoder(dec, codes, generator=torch.Generator().manual_seed(5))
    b = sample_decoder(dec, codes, generator=torch.Generator().manual_seed(5))
    c = sample_decoder(dec, codes, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draw_is_the_inverse_cdf_of_the_tempered_softmax():
    # logits log([1, 2, 1]) at temperature 1: probabilities [.25, .5, .25], CDF [.25, .75, 1].
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0]])).expand(4, 3)
    u = torch.tensor([0.1, 0.3, 0.74, 0.9])
    assert draw(logits, u, 1.0).tolist() == [0, 1, 1, 2]
    # Temperature 0.5 squares the probabilities: [1, 4, 1] / 6, CDF [1/6, 5/6, 1].
    assert draw(logits, torch.tensor([0.15, 0.2, 0.8, 0.86]), 0.5).tolist() == [0, 1, 1, 2]


def test_draw_frequencies_follow_the_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.1, 0.6, 0.3])
    n = 20000
    values = draw(probs.log().expand(n, 3), torch.rand(n, generator=g), 1.0)
    freq = torch.bincount(values, minlength=3) / n
    assert (freq - probs).abs().max() < 0.015  # ~4 standard errors (sqrt(.25/20000) = .0035)


def test_cached_buffers_are_sized_by_the_model_not_by_the_steps():
    prior = tiny_prior().eval()
    bias = prior.condition(torch.tensor([0, 1]))

    def engine(height):
        return CachedSampler(prior.net, bias, height, 5, torch.rand(height * 5, 2), 1.0)

    short, tall = engine(3), engine(12)
    # Convolution buffers keep p + 1 rows whatever the height; only the attention cache holds
    # one key/value per position.
    for a, b in zip(short.vin + short.hin + short.v2h, tall.vin + tall.hin + tall.v2h):
        assert a.shape == b.shape
    assert short.vin[0].shape[2] == prior.net.kernel_size // 2 + 1
    before = [t.data_ptr() for t in tall.buffers]
    tall.run()
    assert [t.data_ptr() for t in tall.buffers] == before  # filled in place, never grown


def test_bad_sampling_requests_fail_clearly():
    dec = tiny_decoder()
    codes = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    with pytest.raises(ModelsError, match="unknown sampler"):
        sample_decoder(dec, codes, sampler="fast")
    with pytest.raises(ModelsError, match="temperature"):
        sample_decoder(dec, codes, temperature=0.0)
    with pytest.raises(ModelsError, match="CUDA"):
        sample_decoder(dec, codes, cuda_graph=True)
    with pytest.raises(ModelsError, match="codes"):
        sample_decoder(dec, torch.full((1, 1, 2, 2), 4))
    with pytest.raises(ModelsError, match="size"):
        sample_prior(tiny_prior(), torch.tensor([0]))


@pytest.fixture
def no_tf32():
    """cuDNN convolutions default to TF32 (10-bit mantissa); the comparison needs full fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.parametrize("which", ["decoder", "prior"])
def test_cuda_graph_replay_matches_naive_on_gpu(which, no_tf32):
    if which == "decoder":
        model = tiny_decoder().cuda()
        codes = torch.randint(0, 4, (4, 1, 4, 4), device="cuda")
        sample = lambda **kw: sample_decoder(model, codes, **kw)
    else:
        model = tiny_prior().cuda()
        labels = torch.tensor([0, 1, 2, 0], device="cuda")
        sample = lambda **kw: sample_prior(model, labels, size=(6, 6), **kw)
    x_naive, l_naive = run(sample, "naive")
    x_graph, l_graph = run(sample, "cached", cuda_graph=True)
    torch.testing.assert_close(l_graph, l_naive, atol=1e-3, rtol=1e-3)
    assert torch.equal(x_graph, x_naive)


@pytest.mark.gpu
def test_bfloat16_cached_sampling_on_gpu():
    model = tiny_prior().cuda()
    labels = torch.tensor([0, 1, 2, 0], device="cuda")
    sample = lambda **kw: sample_prior(model, labels, size=(6, 6), **kw)
    x_bf16, l_bf16 = run(sample, "cached", precision="bfloat16", cuda_graph=True)
    _, l_naive = run(sample, "naive", precision="bfloat16")
    # bf16 keeps ~3 significant digits; the first step sees the same (empty) context in both.
    torch.testing.assert_close(l_bf16[0].float(), l_naive[0].float(), atol=0.05, rtol=0.05)
    assert x_bf16.shape == (4, 1, 6, 6) and 0 <= int(x_bf16.min()) and int(x_bf16.max()) < 6
