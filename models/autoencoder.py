"""One level of the hierarchy: encoder, VQ bottleneck, auxiliary decoder, autoregressive decoder.

Paper Sections 3-4, Appendix A, Algorithms 2 and 3. All four parts train simultaneously, but
the autoregressive decoder only ever sees the *integer* codes, so its loss cannot reach the
encoder (the dashed arrows of Figure 4)::

    x_l ──> encoder ──> VQ ──> z_l ───────────────(integer codes, no gradient)──> AR decoder: -log p(x_l | z_l)
     │        (ResNet + strided convs)  └──> auxiliary decoder (sub-pixel upsampling + ResNet)
     │                                        feed-forward: MSE to pixels (level 1) / NLL of codes (Alg. 2)
     │                                        MSP: KL(teacher || student) at the masks' middles (Alg. 3)
     └── masked one-hot ──> MSP teacher (ResNet): -log p_T(x at middles | x outside masks)

Input representations: level-1 pixels reach the feed-forward encoder as intensities scaled
to [-1, 1]; codes of a lower level, and anything the MSP teacher or MSP encoder reads, are
one-hot (Appendix A), so a masked position ``[0, ..., 0]`` differs from a black pixel
``[1, 0, ..., 0]``. The one-hot vectors are fed through a linear map computed as an embedding
sum (identical to a 1x1 conv on the one-hot tensor, without materialising it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ModelCard
from models.nn.ordinal import ordinal_init_
from models.nn.quantizer import CODE_DIM, VectorQuantizer
from models.nn.resnet import Downsample, ResNet, Upsample
from models.pixelcnn import ConditionalDecoder


class OneHotLinear(nn.Module):
    """Linear map of one-hot inputs: ``(B, C, H, W)`` long values in [0, V) -> ``(B, out, H, W)``.

    ``visible`` (B, 1, H, W) bool: where False the one-hot vector is all zeros, so the output
    there is exactly zero whatever the value underneath.
    """

    def __init__(self, channels: int, values: int, out_channels: int, ordinal: bool = False):
        super().__init__()
        self.channels, self.values = channels, values
        self.weight = nn.Parameter(
            torch.randn(channels * values, out_channels) / math.sqrt(channels)
        )
        if ordinal:  # pixel intensities (models.nn.ordinal)
            ordinal_init_(self.weight, channels, values, scale=1 / math.sqrt(channels))

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        offsets = torch.arange(self.channels, device=x.device).view(1, -1, 1, 1) * self.values
        rows = F.embedding(x.long() + offsets, self.weight)  # (B, C, H, W, out)
        out = rows.sum(1).permute(0, 3, 1, 2)  # (B, out, H, W)
        if visible is not None:
            out = out * visible.to(out.dtype)
        return out.contiguous()


def pixels_to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 intensities (B, 3, H, W) -> float in [-1, 1]."""
    return x.float() / 127.5 - 1.0


def sample_msp_masks(
    batch: int,
    height: int,
    width: int,
    mask_size: int,
    count: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MSP masks (Section 4.2, Eq. 1): ``count`` distinct middle pixels per image.

    Returns ``(visible, middles)``, both bool (B, 1, H, W): ``middles`` marks the predicted
    pixels (the output mask m_o), ``visible`` is False inside every ``mask_size`` square around
    a middle (the input mask m_i; squares are clipped at the border).
    """
    count = min(count, height * width)
    scores = torch.rand(batch, height * width, generator=generator, device="cpu")
    chosen = scores.argsort(dim=1)[:, :count]  # distinct positions per image
    middles = torch.zeros(batch, height * width, dtype=torch.bool)
    middles.scatter_(1, chosen, True)
    middles = middles.view(batch, 1, height, width).to(device)
    s = mask_size // 2
    covered = F.max_pool2d(middles.float(), kernel_size=mask_size, stride=1, padding=s) > 0
    return ~covered, middles


@dataclass(frozen=True)
class LevelOutput:
    loss: torch.Tensor  # scalar: everything that is minimised (sum of ``losses``)
    losses: dict[str, torch.Tensor]  # the terms with their graphs: aux, commitment, ar
    metrics: dict[str, torch.Tensor]  # scalars for logs: aux, commitment, ar_nats, bpd, usage, ...
    codes: torch.Tensor  # (B, Cc, h, w)


class LevelModel(nn.Module):
    """Autoencoder level ``level_index`` (0-based) of a card, with its AR decoder."""

    def __init__(self, card: ModelCard, level_index: int):
        super().__init__()
        self.card, self.level_index = card, level_index
        cfg = card.level[level_index]
        self.config = cfg
        in_ch, in_values, in_res = card.level_input(level_index)
        self.input_channels, self.input_values, self.input_resolution = in_ch, in_values, in_res
        codes = cfg.codes
        self.factor = in_res // codes.resolution
        self.is_pixels = level_index == 0
        self.is_msp = cfg.aux_decoder.kind == "msp"
        self.one_hot_input = self.is_msp or not self.is_pixels
        enc = cfg.encoder
        aux = cfg.aux_decoder
        latent = codes.channels * CODE_DIM

        # Encoder: input features -> ResNet -> strided convs -> projection to C * d.
        if self.one_hot_input:
            self.encoder_input = OneHotLinear(in_ch, in_values, enc.hidden, ordinal=self.is_pixels)
            stem_channels = enc.hidden
        else:
            self.encoder_input = None
            stem_channels = in_ch
        self.encoder = nn.Sequential(
            ResNet(stem_channels, enc.hidden, enc.bottleneck, enc.layers, enc.hidden),
            Downsample(enc.hidden, self.factor),
            nn.Conv2d(enc.hidden, latent, kernel_size=1),
        )
        self.quantizer = VectorQuantizer(
            codes.channels, codes.num_codes, CODE_DIM, codes.commitment, codes.ema_decay
        )
        # Auxiliary decoder: pixels (MSE) for feed-forward level 1, else logits over the input values.
        self.predicts_logits = self.is_msp or not self.is_pixels
        aux_out = in_ch * in_values if self.predicts_logits else in_ch
        self.aux_decoder = nn.Sequential(
            Upsample(latent, aux.hidden, self.factor),
            ResNet(aux.hidden, aux.hidden, aux.bottleneck, aux.layers, aux_out),
        )
        if self.is_msp:
            t = aux.teacher
            self.teacher_input = OneHotLinear(in_ch, in_values, t.hidden, ordinal=self.is_pixels)
            self.teacher = ResNet(t.hidden, t.hidden, t.bottleneck, t.layers, in_ch * in_values)
        else:
            self.teacher_input = None
            self.teacher = None
        self.decoder = ConditionalDecoder(
            cfg,
            in_ch,
            in_values,
            codes.channels,
            codes.num_codes,
            factor=self.factor,
            ordinal_input=self.is_pixels,
        )

    # ----------------------------------------------------------------------------------
    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output before quantisation: (B, C_in, H, W) -> (B, C_code * d, h, w)."""
        feats = self.encoder_input(x) if self.one_hot_input else pixels_to_unit(x)
        return self.encoder(feats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of an input, no codebook update: (B, C_in, H, W) -> long (B, C_code, h, w)."""
        return self.quantizer.encode(self.encoder_features(x))

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, C_in * V, H, W) -> (B, C_in, V, H, W) float32."""
        b, _, h, w = flat.shape
        return flat.float().view(b, self.input_channels, self.input_values, h, w)

    def teacher_logits(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """MSP teacher on masked one-hot input: -> (B, C_in, V, H, W)."""
        return self._logits(self.teacher(self.teacher_input(x, visible)))

    def forward(
        self,
        x: torch.Tensor,
        class_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LevelOutput:
        """Losses of one batch ``x`` (uint8 pixels or long codes, (B, C_in, H, W)).

        ``class_ids`` is accepted for a uniform stage interface and ignored: autoencoders are
        unconditional (Appendix A). ``generator`` drives the MSP masks.
        """
        x = x.long()
        q = self.quantizer(self.encoder_features(x))
        metrics: dict[str, torch.Tensor] = {}
        if self.is_msp:
            b, _, h, w = x.shape
            aux = self.config.aux_decoder
            visible, middles = sample_msp_masks(
                b, h, w, aux.mask_size, aux.masks_per_image, x.device, generator
            )
            # Only the middles enter Algorithm 3's losses, so the C*V-way output convs of the
            # teacher and the student run at those M positions only (M = B * masks per image).
            at = middles[:, 0]  # (B, H, W) bool
            teacher_rows = self.teacher.features(self.teacher_input(x, visible)).permute(
                0, 2, 3, 1
            )[at]
            student_rows = (
                self.aux_decoder[1]
                .features(self.aux_decoder[0](q.quantized))
                .permute(0, 2, 3, 1)[at]
            )
            teacher = (
                self.teacher.head_at(teacher_rows)
                .float()
                .view(-1, self.input_channels, self.input_values)
            )
            student = (
                self.aux_decoder[1]
                .head_at(student_rows)
                .float()
                .view(-1, self.input_channels, self.input_values)
            )
            teacher_nll, distill = msp_losses_at(teacher, student, x.permute(0, 2, 3, 1)[at])
            aux_loss = teacher_nll + distill
            metrics["teacher_nll"] = teacher_nll.detach()
            metrics["distill_kl"] = distill.detach()
        elif self.predicts_logits:
            aux_loss = F.cross_entropy(
                self._logits(self.aux_decoder(q.quantized)).transpose(1, 2), x
            )
            metrics["aux_nll"] = aux_loss.detach()
        else:
            aux_loss = F.mse_loss(self.aux_decoder(q.quantized).float(), pixels_to_unit(x))
            metrics["aux_mse"] = aux_loss.detach()
        codes = q.codes.detach()  # integer codes: the AR loss has no path back to the encoder
        subpixels = x.shape[1] * x.shape[2] * x.shape[3]
        ar_nats = self.decoder.nll(x, codes).mean() / subpixels  # nats per sub-pixel
        losses = {"aux": aux_loss, "commitment": q.commitment_loss, "ar": ar_nats}
        loss = aux_loss + q.commitment_loss + ar_nats
        metrics.update(
            ar_nats=ar_nats.detach(),
            bpd=ar_nats.detach() / math.log(2),
            commitment=q.commitment_loss.detach(),
            usage=q.usage,
            perplexity=q.perplexity,
        )
        return LevelOutput(loss, losses, metrics, codes)


def msp_losses(
    teacher: torch.Tensor, student: torch.Tensor, x: torch.Tensor, middles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 3 at the middle positions only (mean over middles and channels, in nats).

    ``teacher``/``student``: logits (B, C, V, H, W); ``x``: (B, C, H, W); ``middles``: bool (B, 1, H, W).
    Returns ``(L_MSP, L_dist)``: the teacher's NLL, and KL(sg[p_T] || p_A) for the student.
    """
    at = middles[:, 0]  # (B, H, W)
    return msp_losses_at(
        teacher.permute(0, 3, 4, 1, 2)[at],
        student.permute(0, 3, 4, 1, 2)[at],
        x.permute(0, 2, 3, 1)[at],
    )


def msp_losses_at(
    teacher: torch.Tensor, student: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``msp_losses`` on logits already taken at the M middles: ``(M, C, V)``, ``(M, C, V)``, ``x (M, C)``."""
    v = teacher.shape[-1]
    t, s, target = teacher.reshape(-1, v), student.reshape(-1, v), x.reshape(-1)  # (M*C, V), (M*C,)
    teacher_nll = F.cross_entropy(t, target)
    log_t = F.log_softmax(t.detach(), dim=-1)
    log_s = F.log_softmax(s, dim=-1)
    distill = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return teacher_nll, distill
