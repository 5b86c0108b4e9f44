"""Training objectives for the multi-site murmur head: focal loss, head distillation, and SpecAugment
on site tokens. Only training uses them, so they live here and not beside the head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from assistant.murmur.heads import HeadOutput


@dataclass(frozen=True)
class LossConfig:
    gamma: float = field(default=1.5, metadata={"help": "Focal-loss focusing exponent."})
    smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the focal loss."})
    alpha: float = field(default=0.7, metadata={"help": "Weight of the focal loss against the distillation loss."})
    recording_weight: float = field(default=0.5, metadata={"help": "Weight of the per-site (recording) focal loss."})



def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 1.5, smoothing: float = 0.1,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """-sum_c (1 - p_c)^gamma * y_smooth_c * log p_c, optionally weighted per true class; mean over the batch."""
    logp = logits.log_softmax(-1)
    n = logits.shape[-1]
    y = torch.full_like(logp, smoothing / n)
    y.scatter_(-1, target.unsqueeze(-1), 1.0 - smoothing + smoothing / n)
    per = -((1 - logp.exp()).pow(gamma) * y * logp).sum(-1)
    if weight is not None:
        w = weight[target]
        return (per * w).sum() / w.sum()
    return per.mean()


def distill_loss(head_logits: torch.Tensor) -> torch.Tensor:
    """(1/K) sum_k KL(softmax(head_k) || softmax(mean of heads))."""
    ensemble = head_logits.mean(0).log_softmax(-1)
    logp = head_logits.log_softmax(-1)
    return (logp.exp() * (logp - ensemble.unsqueeze(0))).sum(-1).mean()


def head_loss(out: HeadOutput, target: torch.Tensor, site_target: torch.Tensor, mask: torch.Tensor,
              config: LossConfig = LossConfig(), weight: torch.Tensor | None = None,
              site_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """alpha * focal + (1 - alpha) * distill, plus the per-site focal loss on present sites."""
    main = focal_loss(out.logits, target, config.gamma, config.smoothing, weight)
    distill = distill_loss(out.head_logits)
    site = focal_loss(out.site_logits[mask], site_target[mask], config.gamma, config.smoothing, site_weight)
    total = config.alpha * main + (1 - config.alpha) * distill + config.recording_weight * site
    return {"total": total, "main": main, "distill": distill, "site": site}


def spec_augment_tokens(x: torch.Tensor, mask: torch.Tensor, feature_width: float = 0.1, drop_site: float = 0.15,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SpecAugment on tokens: zero one random band of embedding dims per patient ("frequency" mask) and
    drop random sites ("time" mask, along the token axis), never the last present one."""
    b, s, d = x.shape
    x = x.clone()
    width = max(1, int(d * feature_width))
    lengths = torch.randint(0, width + 1, (b,), generator=generator)
    starts = (torch.rand(b, generator=generator) * (d - lengths)).long()
    idx = torch.arange(d)
    band = (idx >= starts[:, None]) & (idx < (starts + lengths)[:, None])
    x = x.masked_fill(band[:, None, :], 0.0)
    drop = (torch.rand(b, s, generator=generator) < drop_site) & mask
    keep_one = (mask & ~drop).sum(1) == 0
    drop[keep_one] = False
    return x, mask & ~drop
