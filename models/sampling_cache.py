"""Incremental ("cached") sampling of a gated PixelCNN with attention (Ramachandran et al. 2017).

Per step only the new position is computed. Buffers (sizes fixed by the model and the image
width, never by the number of steps taken), for layer l with kernel k, p = k // 2::

    vertical   vin[l]   (B, in_l, p+1, W+2p)  the layer input's last p+1 rows (a ring of rows)
               v2h[l]   (B, 2h, W)            what row r-1's vertical stack gives row r
    horizontal hin[l]   (B, in_l, p+W)        the current row of the layer input, p zeros left
    attention  K, V     (B, heads, 1+H*W, d)  keys/values of finished positions (+ null slot)

Row r, column c, channel ch: the horizontal step reads hin[l][.., c : c+p+1] (cols c-p..c),
adds row r's bias, and writes its output into hin[l+1][.., c+p]; the head gives channel ch's
logits, the sub-pixel is drawn and its embedding written into hin[0]. Channel groups make a
recomputation per channel exact: features of group g never see channels ≥ g. When a pixel is
finished its keys/values enter the cache; when a row is finished every layer's vertical stack
advances by one row (one small convolution per layer).

All per-step indexing uses a position counter on the device, so a step is a fixed sequence of
kernels that can be captured once per channel as a CUDA graph and replayed.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from models.draws import draw
from models.nn.attention import CONCAT_TIMING_WIDTH, step_allowed, timing_signal


class CachedSampler:
    """Samples ``(B, C, H, W)`` from ``net`` (a ``GatedPixelCNN`` in eval mode) under ``bias``."""

    def __init__(
        self,
        net,
        bias: torch.Tensor,
        height: int,
        width: int,
        uniforms: torch.Tensor,
        temperature: float,
    ):
        self.net, self.bias, self.uniforms, self.temperature = net, bias, uniforms, temperature
        self.height, self.width = height, width
        self.p = p = net.kernel_size // 2
        batch, dev, dt = bias.shape[0], bias.device, bias.dtype
        self.batch, self.channels, self.values, h = batch, net.channels, net.values, net.hidden
        n = height * width
        in_widths = [net.channels * net.embed_width] + [h] * (len(net.layers) - 1)

        def zeros(*shape, dtype=dt):
            return torch.zeros(*shape, dtype=dtype, device=dev)

        self.position = zeros(
            (), dtype=torch.long
        )  # t = row * W + col, advanced by the last channel
        self.x = zeros(batch, net.channels, n, dtype=torch.long)
        self.hin = [zeros(batch, w, p + width) for w in in_widths]
        self.vin = [zeros(batch, w, p + 1, width + 2 * p) for w in in_widths]
        self.v2h = [zeros(batch, 2 * h, width) for _ in net.layers]
        self.row_bias = [zeros(batch, 2 * h, width) for _ in net.layers]
        self.taps = torch.arange(p + 1, device=dev)
        self.layer_weights = [layer.step_weights() for layer in net.layers]
        self.head_weights = net.head_weights()
        self.attention = {int(k): m for k, m in net.attention.items()}
        self.cache = {
            i: (zeros(batch, m.heads, 1 + n, m.head_dim), zeros(batch, m.heads, 1 + n, m.head_dim))
            for i, m in self.attention.items()
        }
        self.pre_attention = {i: zeros(batch, h) for i in self.attention}
        widths = {CONCAT_TIMING_WIDTH}
        for m in self.attention.values():
            widths |= {m.query_width, m.kv_width}
        self.timing = {
            w: timing_signal(w, height, width, dev, dt).flatten(1).t().contiguous() for w in widths
        }
        self.buffers = [
            self.position,
            self.x,
            *self.hin,
            *self.vin,
            *self.v2h,
            *self.row_bias,
            *self.pre_attention.values(),
            *(t for kv in self.cache.values() for t in kv),
        ]

    def reset(self) -> None:
        for buf in self.buffers:
            buf.zero_()

    def layer_bias(self, layer: int, row: int) -> torch.Tensor:
        """Conditioning of ``layer`` at image row ``row``: ``(B, 2h, 1, W or 1)``."""
        b = self.net.layer_bias(self.bias, layer)
        return b[:, :, row : row + 1] if b.shape[2] > 1 else b

    # ---- one step: the horizontal stack, attention and head at the current position --------

    def signal(self, t: torch.Tensor):
        return lambda w: self.timing[w].index_select(0, t.view(1))[None]  # (1, 1, w)

    def step(self, ch: int) -> torch.Tensor:
        """Compute the logits of channel ``ch`` at the current position, draw it, store it."""
        net, p, t = self.net, self.p, self.position
        col = t % self.width
        window_cols, write_col = col + self.taps, (col + p).view(1)
        out = None
        for i, layer in enumerate(net.layers):
            window = self.hin[i].index_select(2, window_cols)  # (B, in, p+1): cols c-p..c
            row_bias = self.row_bias[i].index_select(2, col.view(1))[:, :, 0]  # (B, 2h)
            out = layer.horizontal_step(window, row_bias, self.layer_weights[i])  # (B, h)
            if i in self.attention:
                self.pre_attention[i].copy_(out)
                attn = self.attention[i]
                k, v = self.cache[i]
                q = attn.queries(out[:, None], self.signal(t))  # (B, heads, 1, d)
                out = out + attn.attend(q, k, v, step_allowed(t, k.shape[2] - 1))[:, 0]
            if i + 1 < len(net.layers):
                self.hin[i + 1].index_copy_(2, write_col, out[:, :, None])
        logits = net.head_step(out, self.head_weights)[:, ch]  # (B, V)
        uniform = self.uniforms.index_select(0, (t * self.channels + ch).view(1))[0]
        value = draw(logits, uniform, self.temperature)  # (B,)
        self.x[:, ch].index_copy_(1, t.view(1), value[:, None])
        embedded = net.embedding(value + ch * self.values)  # (B, E)
        hin0 = self.hin[0].view(self.batch, self.channels, net.embed_width, -1)
        hin0[:, ch].index_copy_(2, write_col, embedded[:, :, None])
        if ch == self.channels - 1:
            self.commit(t, write_col)
            t.add_(1)
        return logits

    def commit(self, t: torch.Tensor, write_col: torch.Tensor) -> None:
        """Keys/values of the finished position t enter every attention layer's cache."""
        if not self.attention:
            return
        emb = self.hin[0].index_select(2, write_col)[:, :, 0]  # (B, C*E)
        slot = (t + 1).view(1)
        for i, attn in self.attention.items():
            k, v = attn.keys_values(self.pre_attention[i][:, None], emb[:, None], self.signal(t))
            self.cache[i][0].index_copy_(2, slot, k)
            self.cache[i][1].index_copy_(2, slot, v)

    # ---- once per row: advance the vertical stacks -------------------------------------------

    def start_row(self, row: int) -> None:
        for buf in self.hin:
            buf.zero_()
        for i, layer in enumerate(self.net.layers):
            conv_bias = layer.hconv.bias[None, :, None]  # folded in here so a step adds it for free
            self.row_bias[i].copy_(self.v2h[i] + self.layer_bias(i, row)[:, :, 0] + conv_bias)

    def finish_row(self, row: int) -> None:
        p, width = self.p, self.width
        new = self.hin[0][:, :, p:]  # (B, C*E, W): row r's embeddings
        for i, layer in enumerate(self.net.layers):
            rows = self.vin[i]
            rows[:, :, :-1] = rows[:, :, 1:].clone()  # drop row r-p-1
            rows[:, :, -1, p : p + width] = new
            v_out, v2h = layer.vertical_row(rows, self.layer_bias(i, row))
            self.v2h[i].copy_(v2h[:, :, 0])
            new = v_out[:, :, 0]

    # ---- driver ------------------------------------------------------------------------------

    def capture(self) -> list:
        """One CUDA graph per channel step (buffers are static; the counter lives on the GPU)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside capture (allocator, kernel selection)
                for ch in range(self.channels):
                    self.step(ch)
        torch.cuda.current_stream().wait_stream(side)
        graphs = []
        for ch in range(self.channels):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self.step(ch)
            graphs.append((graph, logits))
        self.reset()  # capture does not run kernels, but the warm-up did
        return graphs

    def run(self, cuda_graph: bool = False, on_step=None, progress: bool = False) -> torch.Tensor:
        graphs = self.capture() if cuda_graph else None
        step = 0
        for row in tqdm(
            range(self.height),
            desc="sampling (cached)",
            unit="row",
            disable=not progress,
            leave=False,
        ):
            self.start_row(row)
            for _ in range(self.width):
                for ch in range(self.channels):
                    if graphs is None:
                        logits = self.step(ch)
                    else:
                        graphs[ch][0].replay()
                        logits = graphs[ch][1]
                    if on_step is not None:
                        on_step(step, logits)
                    step += 1
            self.finish_row(row)
        return self.x.view(self.batch, self.channels, self.height, self.width).clone()
