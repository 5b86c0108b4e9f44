"""Which weights produced an analysis: a sha256 fingerprint of each model folder, computed once per process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from assistant.consult.analyzer import AnalysisConfig
from assistant.murmur.model import WEIGHTS_DIR as MURMUR_WEIGHTS
from assistant.segment.segmenter import WEIGHTS_DIR as SEGMENTER_WEIGHTS
from knowledge.retriever import PREBUILT_DIR


@dataclass(frozen=True)
class ModelVersion:
    name: str
    # "shipped" or "custom": never the folder's path, which can name a person (the fingerprint identifies it).
    location: str
    sha256: str


@lru_cache(maxsize=16)
def folder_fingerprint(folder: Path) -> str:
    """sha256 over the folder's files in name order (each file's name, then its bytes): one value that
    changes when any weight, manifest or index file changes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_versions(config: AnalysisConfig | None = AnalysisConfig()) -> list[ModelVersion]:
    """The segmenter (always the shipped one), the murmur model and the guidance index of `config`;
    None (an Analyzer built by hand, not by load()) says so rather than guess."""
    if config is None:
        return [ModelVersion(name, "not recorded", "not recorded")
                for name in ("segmenter", "murmur model", "guidance index")]
    folders = [("segmenter", None, SEGMENTER_WEIGHTS), ("murmur model", config.murmur_model, MURMUR_WEIGHTS),
               ("guidance index", config.index_dir, PREBUILT_DIR)]
    return [ModelVersion(name, "shipped" if given is None else "custom",
                         folder_fingerprint(Path(given or default).resolve()))
            for name, given, default in folders]
