"""`murmurscope eval familiarity`: what the familiarity gate does to the murmur call, away and at home.

Away: every PhysioNet 2016 record (another stethoscope and population) through the consultation's
Analyzer; the shares of Present / Unknown / Absent among normal and among abnormal records, before the
gate (the non-heart gate only) and after it. At home: the project split's CirCor validation patients,
whom neither the murmur model nor the familiarity threshold saw; murmur W.acc and UAR with and without
the gate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from assistant.consult.findings import Findings
from assistant.data.labels import MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from eval.metrics import uar, weighted_accuracy


@dataclass(frozen=True)
class FamiliarityBenchConfig:
    physionet_root: Path = field(metadata={"help": "A PhysioNet 2016 folder (REFERENCE.csv)."})
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder; its project validation split is scored."})
    familiarity: Path | None = field(default=None, metadata={
        "help": "Folder with familiarity.json/.safetensors fitted on the shipped murmur weights (default: shipped)."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})


@dataclass
class GateCounts:
    before: Counter = field(default_factory=Counter)
    after: Counter = field(default_factory=Counter)

    def shares(self, which: str) -> dict[str, float]:
        c = getattr(self, which)
        n = sum(c.values())
        return {k: c[k] / n if n else float("nan") for k in MURMUR_CLASSES}


def before_gate(f: Findings) -> str:
    """The call with the non-heart gate alone: what a consultation said before the familiarity gate."""
    if f.no_heart:
        return "Unknown"
    return f.ungated_murmur if f.unfamiliar else f.murmur


def run(config: FamiliarityBenchConfig, progress: bool = True) -> dict:
    import torch

    from assistant.abnormal.model import AbnormalModel, murmur_fingerprint
    from assistant.consult.analyzer import Analyzer
    from assistant.data.circor import read_folder
    from assistant.data.split import split_patients
    from assistant.murmur.familiarity import Familiarity
    from assistant.murmur.model import WEIGHTS_DIR, MurmurModel
    from assistant.segment.segmenter import default_segmenter
    from eval.datasets import read_physionet2016

    torch.set_num_threads(config.threads)
    folder = config.familiarity or WEIGHTS_DIR
    familiarity = Familiarity.load(folder)
    if familiarity is None:
        raise MurmurScopeError(f"{folder}: no familiarity model to benchmark")
    if familiarity.config.murmur_weights_sha256 != murmur_fingerprint(WEIGHTS_DIR):
        raise MurmurScopeError(f"{folder}: fitted on other murmur weights than the shipped ones")
    analyzer = Analyzer(MurmurModel.load(), None, segmenter=default_segmenter(), familiarity=familiarity,
                        abnormal=AbnormalModel.load())
    away = {"normal": GateCounts(), "abnormal": GateCounts()}
    patients, truth = read_physionet2016(config.physionet_root)
    for p in tqdm(patients, desc="PhysioNet 2016", disable=not progress):
        try:
            f = analyzer.analyze([r.load() for r in p.recordings], guidance=False)
        except MurmurScopeError:
            continue
        away[truth[p.patient_id]].before[before_gate(f)] += 1
        away[truth[p.patient_id]].after[f.murmur] += 1
    labelled = [p for p in read_folder(config.circor_root) if p.labels is not None]
    val = set(split_patients(labelled).val)
    y, before, after = [], [], []
    for p in tqdm([p for p in labelled if p.patient_id in val], desc="CirCor validation", disable=not progress):
        recs = []
        for r in p.recordings:
            try:
                recs.append(r.load())
            except MurmurScopeError:
                continue
        if not recs:
            continue
        f = analyzer.analyze(recs, guidance=False)
        y.append(p.labels.murmur)
        before.append(before_gate(f))
        after.append(f.murmur)
    home = {"patients": len(y), "threshold": familiarity.config.threshold,
            "without_gate": {"weighted_accuracy": weighted_accuracy(y, before), "uar": uar(y, before)},
            "with_gate": {"weighted_accuracy": weighted_accuracy(y, after), "uar": uar(y, after)},
            "calls_changed": sum(a != b for a, b in zip(before, after))}
    return {"physionet2016": {k: {"n": sum(v.after.values()), "before": v.shares("before"), "after": v.shares("after")}
                              for k, v in away.items()}, "circor_val": home}


def markdown(result: dict) -> str:
    lines = ["| PhysioNet 2016 | n | gate | Present | Unknown | Absent |", "|---|---|---|---|---|---|"]
    for label, r in result["physionet2016"].items():
        for which in ("before", "after"):
            s = r[which]
            lines.append(f"| {label} | {r['n']} | {which} | {100 * s['Present']:.1f}% | {100 * s['Unknown']:.1f}% | "
                         f"{100 * s['Absent']:.1f}% |")
    h = result["circor_val"]
    lines += ["", f"CirCor validation split ({h['patients']} patients, unseen by the murmur model and the threshold "
                  f"{h['threshold']:.2f}); calls changed by the gate: {h['calls_changed']}", "",
              "| gate | W.acc | UAR |", "|---|---|---|"]
    for name in ("without_gate", "with_gate"):
        lines.append(f"| {name.replace('_', ' ')} | {h[name]['weighted_accuracy']:.3f} | {h[name]['uar']:.3f} |")
    d = h["with_gate"]["weighted_accuracy"] - h["without_gate"]["weighted_accuracy"]
    u = h["with_gate"]["uar"] - h["without_gate"]["uar"]
    lines.append(f"| difference | {d:+.3f} | {u:+.3f} |")
    return "\n".join(lines)
