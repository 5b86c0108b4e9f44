"""Memoized outputs of a frozen audio tower: each clip is encoded once per training run, not once per epoch.

On a CPU the Whisper tower costs more than the small language model above it, and with its weights
frozen its output for a clip never changes. While a `TowerCache` is active, the tower's `forward`
looks each clip's padded log-mel up by content hash and runs the real tower only for clips it has not
seen; the parameters and state-dict keys stay exactly as they were, so the export is unaffected.
Outputs are kept in float16 (the dtype the model ships in) to bound memory: 750 x width per clip.
"""

from __future__ import annotations

import hashlib

import torch
from transformers.modeling_outputs import BaseModelOutput


class TowerCache:
    def __init__(self, tower: torch.nn.Module):
        if any(p.requires_grad for p in tower.parameters()):
            raise ValueError("only a frozen tower's outputs can be memoized")
        self.tower = tower
        self.original = tower.forward
        self.store: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    def forward(self, input_features: torch.Tensor, attention_mask=None, **kwargs) -> BaseModelOutput:
        # Qwen2-Audio's tower ignores attention_mask (its output depends on the padded features alone).
        keys = [hashlib.blake2b(x.detach().cpu().numpy().tobytes(), digest_size=16).digest() for x in input_features]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            with torch.no_grad():
                out = self.original(input_features[missing]).last_hidden_state
            for i, h in zip(missing, out):
                self.store[keys[i]] = h.to(torch.float16)
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        return BaseModelOutput(last_hidden_state=torch.stack([self.store[k] for k in keys]).to(input_features.dtype))

    def __enter__(self) -> TowerCache:
        self.tower.forward = self.forward
        return self

    def __exit__(self, *exc) -> None:
        del self.tower.forward  # the class's forward again
