"""The MSP teacher is trained by its own NLL only: the distillation term has a stop-gradient.

Algorithm 3 (paper Section 4.2): L_dist = KL(sg[p_T] || p_A). Without the stop-gradient the
teacher is pulled towards the student (whose input is the lossy code) and stops being a
teacher. Both tests look at gradients, so they fail when the ``detach`` is removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_autoencoder import small_level

from models.autoencoder import msp_losses_at, sample_msp_masks


def test_distillation_loss_gives_the_teacher_logits_no_gradient():
    torch.manual_seed(0)
    teacher = torch.randn(6, 3, 8, requires_grad=True)  # (M, C, V) logits at M middles
    student = torch.randn(6, 3, 8, requires_grad=True)
    x = torch.randint(0, 8, (6, 3))
    _, distill = msp_losses_at(teacher, student, x)
    teacher_grad, student_grad = torch.autograd.grad(distill, [teacher, student], allow_unused=True)
    assert teacher_grad is None or torch.count_nonzero(teacher_grad) == 0
    assert student_grad is not None and student_grad.abs().sum() > 0  # the student does learn


def test_teacher_parameters_get_exactly_the_gradient_of_the_teacher_nll():
    model = small_level("msp")
    x = torch.randint(0, 256, (2, 3, 16, 16))
    out = model(x, generator=torch.Generator().manual_seed(3))
    params = [p for p in model.teacher.parameters() if p.requires_grad]
    from_aux = torch.autograd.grad(out.losses["aux"], params, allow_unused=True)

    # The teacher's NLL alone, on the same masks (the generator drives only the masks).
    aux = model.config.aux_decoder
    visible, middles = sample_msp_masks(
        2, 16, 16, aux.mask_size, aux.masks_per_image, x.device, torch.Generator().manual_seed(3)
    )
    logits = model.teacher_logits(x.long(), visible)  # (B, C, V, H, W)
    at = middles[:, 0]  # (B, H, W)
    rows = logits.permute(0, 3, 4, 1, 2)[at]  # (M, C, V)
    nll = F.cross_entropy(
        rows.reshape(-1, rows.shape[-1]), x.long().permute(0, 2, 3, 1)[at].reshape(-1)
    )
    assert torch.isclose(nll, out.metrics["teacher_nll"], rtol=1e-5)
    from_nll = torch.autograd.grad(nll, params, allow_unused=True)

    assert any(g is not None and g.abs().sum() > 0 for g in from_nll)
    for got, want in zip(from_aux, from_nll):
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
