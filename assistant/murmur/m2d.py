"""The official M2D ViT (`m2d_vit_base-80x608p16x16`) and its checkpoint format, loaded from a user path.

Architecture and key layout follow nttcslab/m2d's portable runtime: a timm-style ViT-Base (12 blocks,
768 dims, 12 heads, qkv bias, LayerNorm eps 1e-6) over 1 x 80 x 608 log-mel "images" cut into
16 x 16 patches (5 frequency x 38 time patches), a cls token, and a learned-shape positional
embedding that is shortened for short inputs. Frame embeddings stack the 5 frequency patches of
each time step (5 x 768 = 3840 dims, one per 160 ms); longer audio is encoded 608 frames at a time.

Checkpoints are `torch.save`d dicts: pre-training ones hold {"model": state_dict, "epoch", "args", ...}
with the online encoder under bare keys (`pos_embed`, `blocks.0.attn.qkv.weight`, ...) next to the
target encoder and decoder (dropped here); EVAR fine-tuned ones prefix the encoder with
`module.ar.runtime.backbone.`; `norm_stats` (mean, std of the log-mel) default to (-7.1, 4.2). The
weights are not redistributable, so nothing ships: pass the path of a checkpoint you downloaded.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from assistant.errors import MurmurScopeError
from assistant.murmur.encoders import Encoder
from assistant.murmur.melspec import M2D_MEL, LogMel

_NAME = re.compile(r"^(?P<model>[a-z0-9_]+)-(?P<f>\d+)x(?P<t>\d+)p(?P<pf>\d+)x(?P<pt>\d+)(?:p(?P<sr>\d+k))?")
_PREFIXES = ("module.ar.runtime.backbone.", "module.backbone.", "backbone.", "module.")
_NON_ENCODER = ("target_", "decoder_", "mask_token", "head.", "head_norm.", "module.head")


class M2DCheckpointError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class M2DConfig:
    name: str = "m2d_vit_base-80x608p16x16"
    n_mels: int = 80
    unit_frames: int = 608
    patch: tuple[int, int] = (16, 16)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_mean: float = -7.1
    norm_std: float = 4.2

    @property
    def grid(self) -> tuple[int, int]:
        return self.n_mels // self.patch[0], self.unit_frames // self.patch[1]

    @property
    def frame_dim(self) -> int:
        return self.embed_dim * self.grid[0]


def parse_m2d_name(name: str) -> M2DConfig:
    """`m2d_vit_base-80x608p16x16-221006-mr7` -> input 80 x 608, patches 16 x 16 (the runtime's rule)."""
    m = _NAME.match(name)
    if not m:
        raise M2DCheckpointError(f"{name!r} is not an M2D model name like 'm2d_vit_base-80x608p16x16-221006-mr7'")
    if m["sr"] not in (None, "16k"):
        raise M2DCheckpointError(f"{name}: only the 16 kHz M2D front-end is supported, not {m['sr']}")
    return M2DConfig(name=name, n_mels=int(m["f"]), unit_frames=int(m["t"]), patch=(int(m["pf"]), int(m["pt"])))


class PatchEmbed(nn.Module):
    def __init__(self, patch: tuple[int, int], embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class M2DViT(nn.Module):
    """The encoder, with parameter names identical to the official (timm VisionTransformer) layout."""

    def __init__(self, config: M2DConfig = M2DConfig()):
        super().__init__()
        self.config = config
        f, t = config.grid
        self.patch_embed = PatchEmbed(config.patch, config.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + f * t, config.embed_dim))
        self.blocks = nn.ModuleList(Block(config.embed_dim, config.num_heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=1e-6)

    def forward_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, <= unit_frames) normalised log-mel -> (B, 1 + patches, D), frequency-major patches."""
        x = self.patch_embed(x)
        pos = self.pos_embed[:, 1:, :]
        fbins = self.config.grid[0]
        if x.shape[1] < pos.shape[1]:
            frames = x.shape[1] // fbins
            pos = pos.reshape(1, fbins, -1, pos.shape[-1])[:, :, :frames, :].reshape(1, fbins * frames, -1)
        x = x + pos
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class M2DEncoder(Encoder):
    """Waveforms at 16 kHz -> (B, frames, 3840) M2D frame embeddings, one per 16 log-mel frames."""

    def __init__(self, config: M2DConfig = M2DConfig()):
        super().__init__()
        self.config = config
        self.rate = M2D_MEL.rate
        self.dim = config.frame_dim
        self.to_mel = LogMel(M2D_MEL)
        self.backbone = M2DViT(config)

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = ((self.to_mel(waveforms) - c.norm_mean) / c.norm_std).unsqueeze(1)
        patch_t = c.patch[1]
        x = nn.functional.pad(x, (0, (patch_t - x.shape[-1] % patch_t) % patch_t))
        out = []
        for start in range(0, x.shape[-1], c.unit_frames):
            emb = self.backbone.forward_encoder(x[..., start : start + c.unit_frames])[:, 1:, :]
            b, n, d = emb.shape
            fbins = c.grid[0]
            # (b, f*t, d) frequency-major -> (b, t, f*d): stack the frequency patches of each time step.
            out.append(emb.reshape(b, fbins, n // fbins, d).permute(0, 2, 1, 3).reshape(b, n // fbins, fbins * d))
        return torch.cat(out, dim=1)


def _encoder_state(raw: dict) -> tuple[dict[str, torch.Tensor], tuple[float, float] | None]:
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise M2DCheckpointError("the checkpoint holds no state dict (expected a dict, optionally under 'model')")
    stats = raw.get("norm_stats", state.get("norm_stats"))
    cleaned = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith(_NON_ENCODER):
            continue
        cleaned[key] = value
    norm = (float(stats[0]), float(stats[1])) if stats is not None else None
    return cleaned, norm


def _read_checkpoint(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        # Pre-training checkpoints pickle their argparse Namespace next to the weights; allow only that.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad user file
        raise M2DCheckpointError(f"{path}: not a readable M2D checkpoint ({type(e).__name__}: {e})") from None


def load_m2d(path: str | Path, name: str | None = None) -> M2DEncoder:
    """Build the M2D encoder named by `name` (default: the checkpoint's folder name) and load its weights."""
    path = Path(path)
    if not path.is_file():
        raise M2DCheckpointError(f"{path}: no such M2D checkpoint file")
    config = parse_m2d_name(name or path.parent.name)
    state, norm = _encoder_state(_read_checkpoint(path))
    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise M2DCheckpointError(f"{path}: no M2D encoder weights (pos_embed, patch_embed.proj.weight) inside")
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    embed_dim = state["pos_embed"].shape[-1]
    config = replace(config, depth=depth, embed_dim=embed_dim, num_heads=max(1, embed_dim // 64))
    if norm is not None:
        config = replace(config, norm_mean=norm[0], norm_std=norm[1])
    encoder = M2DEncoder(config)
    expected = encoder.backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise M2DCheckpointError(f"{path}: does not match {config.name} (missing {missing[:3]}, unexpected "
                                 f"{unexpected[:3]}, wrong shape {wrong[:3]})")
    encoder.backbone.load_state_dict(state, strict=True)
    return encoder.eval()
