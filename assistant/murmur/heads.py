"""The multi-site murmur head (after the M2D-Transformer report) and the murmur-feature heads.

A patient is a sequence of site tokens (AV, PV, TV, MV, and one for Phc or unnamed recordings),
each the mean clip embedding of that site's recordings. Missing sites are zero vectors marked by a
mask embedding. A transformer encoder mixes the sites, attention pooling weighs them, and three
classification heads are averaged; a KL term distils the ensemble back into each head. A separate
linear head on each site token, before any mixing, gives per-recording probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from assistant.data.labels import FEATURES, LOCATIONS

TOKENS = (*LOCATIONS, "Other")
N_CLASSES = 3


@dataclass(frozen=True)
class HeadConfig:
    in_dim: int = field(default=128, metadata={"help": "Embedding width the head reads (the encoder's)."})
    d_model: int = field(default=128, metadata={"help": "Transformer width of the multi-site head."})
    layers: int = field(default=4, metadata={"help": "Transformer layers."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    ff_dim: int = field(default=256, metadata={"help": "Feed-forward width."})
    n_heads_out: int = field(default=3, metadata={"help": "Output classes (Present, Unknown, Absent)."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout of the head."})


class AttentionPool(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        return (weights.unsqueeze(-1) * h).sum(dim=1), weights


@dataclass
class HeadOutput:
    logits: torch.Tensor  # (B, 3) mean of the heads
    head_logits: torch.Tensor  # (K, B, 3)
    site_logits: torch.Tensor  # (B, S, 3) per-site, before the sites are mixed
    site_weights: torch.Tensor  # (B, S) attention pooling weights


class MultiSiteHead(nn.Module):
    """(B, S, in_dim) site tokens + (B, S) bool mask (True = present) -> patient and per-site logits."""

    def __init__(self, config: HeadConfig = HeadConfig()):
        super().__init__()
        self.config = config
        self.norm_in = nn.LayerNorm(config.in_dim)
        self.proj = nn.Linear(config.in_dim, config.d_model)
        self.mask_embed = nn.Embedding(2, config.d_model)
        self.site_embed = nn.Parameter(torch.zeros(1, len(TOKENS), config.d_model))
        layer = nn.TransformerEncoderLayer(config.d_model, config.heads, config.ff_dim, config.dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.pool = AttentionPool(config.d_model)
        self.out = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(config.d_model), nn.Dropout(config.dropout),
                          nn.Linear(config.d_model, N_CLASSES))
            for _ in range(config.n_heads_out)
        )
        self.recording_out = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.d_model, N_CLASSES))
        nn.init.normal_(self.site_embed, std=0.02)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Projected tokens without site or mask embeddings: what the per-recording head sees."""
        return self.proj(self.norm_in(x))

    def recording_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.recording_out(self.embed_tokens(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        x = x * mask.unsqueeze(-1)
        tokens = self.embed_tokens(x)
        h = tokens + self.mask_embed(mask.long()) + self.site_embed[:, : x.shape[1]]
        h = self.encoder(h)
        z, weights = self.pool(h, mask)
        head_logits = torch.stack([head(z) for head in self.out])
        return HeadOutput(head_logits.mean(0), head_logits, self.recording_out(tokens), weights)


class FeatureHeads(nn.Module):
    """Murmur-feature heads over the same site tokens.

    Most audible location is a pointer over the four valve tokens (the loudest site should look
    most murmur-like); every other feature reads a masked mean of the tokens. `diastolic` says
    whether a diastolic murmur is present at all (2 examples in circor-dev: it will rarely fire).
    """

    def __init__(self, in_dim: int, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.shared = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.location = nn.Linear(hidden, 1)
        self.location_bias = nn.Parameter(torch.zeros(len(LOCATIONS)))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(vocab))
                                    for name, vocab in FEATURES.items() if name != "most_audible_location"})
        self.diastolic = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.shared(self.norm(x))
        n_loc = len(LOCATIONS)
        loc = self.location(h[:, :n_loc]).squeeze(-1) + self.location_bias
        out = {"most_audible_location": loc.masked_fill(~mask[:, :n_loc], -1e4)}
        m = mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        out.update({name: head(pooled) for name, head in self.heads.items()})
        out["diastolic"] = self.diastolic(pooled)
        return out
