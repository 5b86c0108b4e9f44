"""Seed paper 002's adaptation study on CirCor under the 5-fold CV: fine-tuning (FT) and continued pretraining
(CP) of the Whisper encoder (finetune/whisper_adapt.py), each read out by the LP pipeline of eval/cv_probe.py.

Every adapted encoder is made inside its fold from that fold's training side only, as the seed's in-corpus CP
uses the downstream data's train and validation sets and never its test set:
- `cp-in`: CP on the training patients' recordings, labels unused; `cp-all`: the same plus every recording
  of physionet2016-dev (other stethoscopes, other countries: the seed's all-corpora CP).
- `cp-…-lp`: the CP encoder, frozen, through the LP probe fitted on all the training patients.
- `ft`, `cp-…-ft`: FT on half of the training patients (stratified as the project split), then the LP probe
  (recording model, patient stacker, feature probes) fitted on the other half only. The stacker must learn how
  the fine-tuned encoder behaves on patients it did not train on: split-sample stacking, as the CNN recipe's
  `head_fraction` does. `ft-whole`, `cp-…-ft-whole`: FT and the probe both on all the training patients, to
  measure what the split costs (the stacker then learns from patients the encoder was fitted on).
Each variant is read at both depths of the LP grid with its stronger L2 (C = 0.01: the frozen encoder's better
AUROC in three of its four comparisons, 10 s and 6 s crops, and within 0.003 in the fourth); the other C would
double the probes' cost on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assistant.data.circor import Patient, RecordingRef
from assistant.data.split import Split, SplitConfig, split_patients
from assistant.errors import MurmurScopeError
from eval.cross_validation import CVConfig, fold_indices
from eval.cv_probe import ProbeConfig, candidate_probes, gather, probe_fold
from eval.cv_whisper import whisper_embeddings
from finetune.whisper_adapt import CPConfig, FTConfig, adapt, continue_pretraining, fine_tune_patients, load_waveforms

VARIANTS = ("ft", "ft-whole", "cp-in-lp", "cp-all-lp", "cp-in-ft", "cp-all-ft", "cp-in-ft-whole", "cp-all-ft-whole")


@dataclass(frozen=True)
class AdaptStudyConfig:
    whisper: Path  # the pretrained folder every variant starts from (finetune convert-whisper)
    physionet_root: Path | None = None  # needed by the cp-all variants
    seconds: float = 6.0  # the centre of each recording the probes read
    probe_fraction: float = 0.5  # FT variants: share of the training patients kept for the probe
    cp: CPConfig = field(default_factory=CPConfig)
    ft: FTConfig = field(default_factory=FTConfig)
    progress: bool = True

    def cp_name(self, corpus: str) -> str:
        return f"cp-{corpus}" + _tag(self.cp, CPConfig(), {"steps": "s", "lr": "lr"})

    def ft_name(self) -> str:
        return "ft" + _tag(self.ft, FTConfig(), {"epochs": "e", "lr": "lr"})

    def label(self, variant: str) -> str:
        """The variant with the CP and FT settings that differ from their defaults, so that another setting never
        reuses (or overwrites) this one's encoders and folds."""
        parts = variant.split("-")
        if parts[0] == "cp":
            parts[:2] = [self.cp_name(parts[1])]
        return "-".join(self.ft_name() if p == "ft" else p for p in parts)


def _tag(config, default, short: dict[str, str]) -> str:
    return "".join(f"-{s}{getattr(config, f):g}" for f, s in short.items() if getattr(config, f) != getattr(default, f))


def probes() -> list[ProbeConfig]:
    return [p for p in candidate_probes() if p.c == 0.01]


def recipe_names(study: AdaptStudyConfig, variant: str) -> list[str]:
    return [f"whisper-tiny.en-{study.seconds:g}s-{study.label(variant)}-{p.name}" for p in probes()]


def _physionet_refs(root: Path | None) -> list[RecordingRef]:
    from eval.datasets import read_physionet2016

    if root is None:
        raise MurmurScopeError("the cp-all variants continue pretraining on PhysioNet 2016 too: give --physionet-root")
    patients, _ = read_physionet2016(root)
    return [r for p in patients for r in p.recordings]


def cp_encoder(config: CVConfig, study: AdaptStudyConfig, k: int, corpus: str, train: list[Patient]) -> Path:
    refs = [r for p in train for r in p.recordings]
    if corpus == "all":
        refs += _physionet_refs(study.physionet_root)

    def run(encoder):
        waves, _ = load_waveforms(refs, encoder.rate, study.progress, desc=f"fold {k} CP audio")
        return {**continue_pretraining(encoder, waves, study.cp, study.progress), "corpus": corpus,
                "patients": len(train), "fold": k}

    return adapt(study.whisper, config.out / "encoders" / study.cp_name(corpus) / f"fold{k}", run, study.cp)


def ft_encoder(config: CVConfig, study: AdaptStudyConfig, k: int, base: Path, base_name: str,
               train: list[Patient]) -> Path:
    return fine_tune_patients(base, config.out / "encoders" / f"{base_name}-{study.ft_name()}" / f"fold{k}", train,
                              study.ft, study.progress, desc=f"fold {k} FT audio", fold=k)


def run_variant(config: CVConfig, study: AdaptStudyConfig, variant: str, patients: list[Patient],
                splits: list[Split]) -> list[str]:
    """Every requested fold of one variant at every LP grid point; returns the recipes' folder names."""
    if variant not in VARIANTS:
        raise MurmurScopeError(f"unknown adaptation variant {variant!r} (one of {', '.join(VARIANTS)})")
    names = recipe_names(study, variant)
    for k in fold_indices(config):
        if all((config.out / n / f"fold{k}.json").exists() for n in names):
            continue
        held = set(splits[k].val)
        train = [p for p in patients if p.patient_id not in held]
        base, base_name = study.whisper, "pretrained"
        if variant.startswith("cp-"):
            corpus = variant.split("-")[1]
            base, base_name = cp_encoder(config, study, k, corpus, train), study.cp_name(corpus)
        probe_ids = {p.patient_id for p in train}
        if variant.endswith("ft-whole"):
            base = ft_encoder(config, study, k, base, f"{base_name}-whole", train)
        elif variant.endswith("ft"):
            halves = split_patients(train, SplitConfig(val_fraction=study.probe_fraction, seed=config.seed + k))
            base = ft_encoder(config, study, k, base, base_name, [p for p in train if p.patient_id in halves.train])
            probe_ids = set(halves.val)
        wanted = probe_ids | held
        refs = [r for p in patients if p.patient_id in wanted for r in p.recordings]
        embeddings = whisper_embeddings(refs, base, config.out / "embeddings", max_seconds=study.seconds,
                                        progress=study.progress)
        info = {"encoder": str(base), "variant": study.label(variant), "seconds": study.seconds,
                "probe_patients": len(probe_ids)}
        for probe, name in zip(probes(), names):
            probe_fold(config, name, probe, gather(patients, embeddings, probe), patients, splits, k, info)
    return names
