"""int8 weights for saved neural models (``foretell models optimize``).

Every weight matrix is rounded to 255 levels per row (symmetric; the step is the row's largest
magnitude / 127) and the network then runs in float32 instead of float64. On disk each matrix is
an int8 tensor and a float32 scale per row, about a quarter of its float32 size.

Why not torch's dynamic quantization: it also rounds the *inputs* of each layer, with one scale
for the whole batch, so a token's score changes with whatever else is in the batch (up to 0.014
nats measured on a small model, enough to flip ranks), and an editor would show different numbers
for the same word scored alone or within its document. Weight rounding is the same for every
row, whatever the batch.
"""

from __future__ import annotations

import torch

SCHEME = "int8-weights"
INT8, SCALE = ".int8", ".scale"


def _rounded(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w.abs().amax(dim=1).clamp_min(1e-30) / 127  # (rows,)
    return torch.round(w / scale[:, None]).to(torch.int8), scale.float()


def _is_matrix(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2


@torch.no_grad()
def quantize(net: torch.nn.Module) -> torch.nn.Module:
    """The network in float32 with every weight matrix rounded to int8 levels (in place)."""
    net = net.float()
    for p in net.parameters():
        if _is_matrix(p):
            q, scale = _rounded(p)
            p.copy_(q.float() * scale[:, None])
    return net


def pack(state: dict) -> dict:
    """A quantized network's state dict with its matrices stored as int8 and row scales."""
    packed = {}
    for key, value in state.items():
        if _is_matrix(value):
            packed[key + INT8], packed[key + SCALE] = _rounded(value)
        else:
            packed[key] = value
    return packed


def unpack(packed: dict) -> dict:
    """The float32 state dict that ``pack`` stored."""
    state = {}
    for key, value in packed.items():
        if key.endswith(INT8):
            base = key[: -len(INT8)]
            state[base] = value.float() * packed[base + SCALE][:, None]
        elif not key.endswith(SCALE):
            state[key] = value
    return state
