"""`murmurscope eval fuzz`: mutated audio files through the upload decoder; anything but a Recording or a
MurmurScopeError is a failure (and is listed with its mutation, so it can be replayed from the seed)."""

from __future__ import annotations

import resource
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from assistant.data.uploads import decode_upload
from assistant.errors import MurmurScopeError
from eval.hostile import fuzz_cases


@dataclass
class FuzzResult:
    n: int
    seed: int
    seconds: float
    outcomes: dict[str, int]
    failures: list[dict] = field(default_factory=list)
    peak_rss_mb: float = 0.0


def run(n: int, seed: int = 0, upload_dir: Path | None = None) -> FuzzResult:
    outcomes: Counter = Counter()
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=upload_dir) as tmp:
        for case in fuzz_cases(n, seed):
            try:
                decode_upload(case.data, case.suffix, upload_dir=Path(tmp))
                outcomes["decoded"] += 1
            except MurmurScopeError as e:
                outcomes[type(e).__name__] += 1
            except Exception as e:  # noqa: BLE001 - counting them is the point
                outcomes["UNEXPECTED"] += 1
                failures.append({"index": case.index, "format": case.seed_format, "mutation": case.mutation,
                                 "error": f"{type(e).__name__}: {e}"})
    return FuzzResult(n, seed, time.perf_counter() - start, dict(outcomes), failures,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
