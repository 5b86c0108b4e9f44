"""The published numbers of eval/baselines.yaml, and where a run's own number stands beside each."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

BASELINES_FILE = Path(__file__).with_name("baselines.yaml")


class Baseline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    source: str
    seen_in: str
    model: str
    metric: str
    value: float
    dataset: str
    task: str
    split_protocol: str
    verified: bool
    verification_note: str | None = None
    comparable_with: list[str]
    caveat: str


def load_baselines(path: Path = BASELINES_FILE) -> list[Baseline]:
    return [Baseline(**row) for row in yaml.safe_load(path.read_text())["baselines"]]


def run_value(metrics: dict, key: str) -> float | None:
    """Our number for a baseline's metric key (`murmur.uar`, `murmur.recall.Present`, `binary.auroc`)."""
    node: object = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        node = node.get("value")
    return float(node) if isinstance(node, (int, float)) and node == node else None


def beside(metrics: dict, protocol: str, baselines: list[Baseline] | None = None) -> list[dict]:
    """Every baseline with our value for its metric and whether the two may be shown side by side."""
    rows = []
    for b in baselines if baselines is not None else load_baselines():
        comparable = protocol in b.comparable_with
        if comparable:
            why = f"indicative: same task and metric; {b.caveat}"
        elif b.comparable_with:
            why = f"not comparable: the number is for {', '.join(b.comparable_with)}, this run is {protocol}"
        else:
            why = f"not comparable: {b.caveat}"
        rows.append(b.model_dump() | {"ours": run_value(metrics, b.metric) if comparable else None,
                                      "comparable": comparable, "why": why})
    return rows
