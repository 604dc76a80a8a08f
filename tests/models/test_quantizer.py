"""VQ bottleneck: nearest-code assignment, straight-through gradients, EMA k-means, dead codes."""

from __future__ import annotations

import torch

from models.nn.quantizer import VectorQuantizer


def _hand_codebook(vq: VectorQuantizer, vectors: list[list[float]]) -> None:
    """Install a codebook (one channel) and mark it initialised (no data seeding)."""
    e = torch.tensor(vectors).unsqueeze(0)  # (1, K, d)
    vq.embedding.copy_(e)
    vq.embed_sum.copy_(e)
    vq.cluster_size.fill_(1.0)
    vq.initialised.fill_(True)


def _as_map(rows: list[list[float]]) -> torch.Tensor:
    """N vectors of d features -> (1, d, 1, N) encoder output (one channel, one image row)."""
    return torch.tensor(rows).t().reshape(1, len(rows[0]), 1, len(rows))


def test_nearest_code_assignment_per_channel():
    torch.manual_seed(0)
    vq = VectorQuantizer(channels=2, num_codes=16, dim=3).eval()
    z = torch.randn(2, 6, 4, 5)  # (B, C*d, h, w)
    out = vq(z)
    assert out.codes.shape == (2, 2, 4, 5)
    for c in range(2):
        vectors = z[:, 3 * c : 3 * c + 3].permute(0, 2, 3, 1).reshape(-1, 3)  # (N, d)
        brute = torch.cdist(vectors, vq.embedding[c]).argmin(-1)
        assert torch.equal(out.codes[:, c].reshape(-1), brute)
    # The quantised output is exactly the chosen codebook vector.
    assert torch.allclose(out.quantized, vq.lookup(out.codes))


def test_straight_through_gradient_is_identity():
    torch.manual_seed(1)
    vq = VectorQuantizer(channels=1, num_codes=8, dim=4, commitment=0.0).eval()
    z = torch.randn(3, 4, 2, 2, requires_grad=True)
    weights = torch.randn(3, 4, 2, 2)
    (vq(z).quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)


def test_commitment_loss_gradient_pulls_towards_code():
    vq = VectorQuantizer(channels=1, num_codes=2, dim=1, commitment=0.5).eval()
    _hand_codebook(vq, [[0.0], [10.0]])
    z = _as_map([[1.0]]).requires_grad_(True)
    out = vq(z)
    # beta * mean (z - e)^2 = 0.5 * (1 - 0)^2 = 0.5; d/dz = 2 * 0.5 * (1 - 0) = 1.0
    assert out.commitment_loss.item() == 0.5
    out.commitment_loss.backward()
    assert z.grad.item() == 1.0


def test_ema_update_matches_formula_on_hand_example():
    # Two 1-d codes at 0 and 10, unit cluster sizes; decay 0.5, eps 0 (no Laplace smoothing).
    vq = VectorQuantizer(channels=1, num_codes=2, dim=1, decay=0.5, eps=0.0, dead_threshold=0.0)
    _hand_codebook(vq, [[0.0], [10.0]])
    vq.train()
    out = vq(_as_map([[1.0], [3.0], [9.0]]))
    assert out.codes.flatten().tolist() == [0, 0, 1]
    # counts n = (2, 1); sums = (1 + 3, 9) = (4, 9)
    # N = 0.5 * 1 + 0.5 * n = (1.5, 1.0);  m = 0.5 * (0, 10) + 0.5 * (4, 9) = (2.0, 9.5)
    # e = m / N = (2 / 1.5, 9.5 / 1.0)
    assert torch.allclose(vq.cluster_size, torch.tensor([[1.5, 1.0]]))
    assert torch.allclose(vq.embed_sum, torch.tensor([[[2.0], [9.5]]]))
    assert torch.allclose(vq.embedding, torch.tensor([[[2.0 / 1.5], [9.5]]]))
    # Output of this step uses the codebook it assigned against, before the update.
    assert out.quantized.flatten().tolist() == [0.0, 0.0, 10.0]
    # usage = 2 of 2 codes; perplexity = exp(H(2/3, 1/3))
    p = torch.tensor([2 / 3, 1 / 3])
    assert out.usage.item() == 1.0
    assert torch.isclose(out.perplexity, torch.exp(-(p * p.log()).sum()))


def test_laplace_smoothing_keeps_unused_codes_finite():
    vq = VectorQuantizer(channels=1, num_codes=3, dim=1, decay=0.0, eps=1e-5, dead_threshold=0.0)
    _hand_codebook(vq, [[0.0], [5.0], [100.0]])
    vq.train()
    vq(_as_map([[1.0], [2.0]]))  # only code 0 used; decay 0 -> N = (2, 0, 0)
    assert torch.isfinite(vq.embedding).all()
    # N~_0 = (2 + 1e-5) / (2 + 3e-5) * 2, e_0 = 3 / N~_0
    expected = 3.0 / ((2 + 1e-5) / (2 + 3e-5) * 2)
    assert abs(vq.embedding[0, 0, 0].item() - expected) < 1e-6


def test_dead_codes_are_reseeded_from_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(channels=1, num_codes=4, dim=2, decay=0.5, eps=0.0, dead_threshold=0.3)
    _hand_codebook(vq, [[0.0, 0.0], [1.0, 0.0], [50.0, 50.0], [-50.0, 50.0]])
    vq.train()
    batch = _as_map([[0.1, 0.0], [0.9, 0.1], [0.2, 0.1], [1.1, -0.1]])
    vq(batch)  # codes 2, 3 unused: N = 0.5 -> not yet below 0.3
    assert int(vq.reseeded) == 0
    vq(batch)  # N = 0.25 < 0.3 -> codes 2 and 3 move onto encoder outputs
    assert int(vq.reseeded) == 2
    rows = batch.reshape(2, 4).t()
    for k in (2, 3):
        assert any(torch.equal(vq.embedding[0, k], r) for r in rows), vq.embedding[0, k]
        assert vq.cluster_size[0, k].item() == 1.0
    # Live codes were left alone by the re-seeding.
    assert (
        vq.embedding[0, 0].norm() < 1.0
        and (vq.embedding[0, 1] - torch.tensor([1.0, 0.0])).norm() < 0.2
    )


def test_first_training_batch_seeds_codebook_from_data():
    torch.manual_seed(0)
    vq = VectorQuantizer(channels=1, num_codes=8, dim=2, decay=0.99).train()
    z = torch.randn(1, 2, 4, 4) * 0.01 + 100.0  # far from the N(0, 1) initial codebook
    vq(z)
    assert bool(vq.initialised)
    assert (vq.embedding - 100.0).abs().max() < 1.0
    # In eval mode nothing changes.
    before = vq.embedding.clone()
    vq.eval()(torch.randn(1, 2, 4, 4))
    assert torch.equal(before, vq.embedding)
