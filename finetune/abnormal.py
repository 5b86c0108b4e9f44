"""Train the normal/abnormal model (assistant/abnormal) on PhysioNet/CinC 2016 recordings.

Per recording, `assistant.abnormal.features.recording_vector` is computed once and cached (the murmur
CNN and the segmenter are the costly part; the head fits in seconds), keyed by the audio files and
the weights that made the vectors. The head is a logistic regression on standardised vectors with
balanced class weights; its one hyperparameter, the inverse regularisation C, is chosen by an inner
stratified cross-validation on the training recordings alone (AUROC), from a grid fixed here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from assistant.abnormal.features import FeatureConfig, recording_vector
from assistant.abnormal.model import AbnormalConfig, AbnormalModel, murmur_fingerprint
from assistant.errors import MurmurScopeError

C_GRID = tuple(float(c) for c in np.logspace(-4, 1, 11))


@dataclass(frozen=True)
class AbnormalTrainConfig:
    data_root: Path = field(metadata={"help": "A PhysioNet 2016 folder (REFERENCE.csv), e.g. "
                                              "../shared/physionet2016-dev."})
    out: Path = field(metadata={"help": "New folder for abnormal.json and abnormal.safetensors."})
    cache_dir: Path = field(default=Path("build/abnormal"), metadata={
        "help": "Where the per-recording feature vectors are cached."})
    inner_folds: int = field(default=5, metadata={"help": "Folds of the inner CV that chooses C."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads for the feature pass."})

    def __post_init__(self):
        if self.inner_folds < 2:
            raise MurmurScopeError("--inner-folds must be at least 2")


@dataclass(frozen=True)
class LabelledVectors:
    names: tuple[str, ...]
    vectors: np.ndarray  # (N, dim)
    abnormal: np.ndarray  # (N,) 1 abnormal, 0 normal
    subsets: tuple[str, ...]  # the Challenge subset of each record: the first letter of its name ('b0001')


def physionet_vectors(root: Path, cache_dir: Path, features: FeatureConfig = FeatureConfig(),
                      progress: bool = True) -> LabelledVectors:
    """Every record of a PhysioNet 2016 folder as a vector, computed once per (files, weights, features)."""
    from assistant.murmur.model import WEIGHTS_DIR, MurmurModel
    from assistant.segment.segmenter import WEIGHTS_DIR as SEGMENTER_WEIGHTS
    from assistant.segment.segmenter import default_segmenter
    from eval.datasets import read_physionet2016

    patients, truth = read_physionet2016(Path(root))
    refs = [p.recordings[0] for p in patients]
    weights = [murmur_fingerprint(WEIGHTS_DIR)] + [hashlib.sha256(f.read_bytes()).hexdigest()
                                                   for f in sorted(SEGMENTER_WEIGHTS.iterdir()) if f.is_file()]
    files = [[str(r.audio_path.resolve()), r.audio_path.stat().st_size] for r in refs]
    key = hashlib.sha1(json.dumps([weights, files, repr(features)]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"physionet2016-{key}.npz"
    if not path.exists():
        murmur, segmenter = MurmurModel.load(), default_segmenter()
        found = {}
        for ref in tqdm(refs, desc="normal/abnormal features", disable=not progress):
            try:
                rec = ref.load()
            except MurmurScopeError:
                continue  # a record the project cannot read is left out, as eval run leaves it out
            found[ref.name] = recording_vector(murmur, murmur.frame_statistics(rec), segmenter.segment(rec), rec,
                                               features)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **found)
    with np.load(path) as z:
        names = tuple(n for n in (r.name for r in refs) if n in z.files)
        vectors = np.stack([z[n] for n in names])
    return LabelledVectors(names, vectors, np.array([truth[n] == "abnormal" for n in names], dtype=int),
                           tuple(n[0] for n in names))


def fit_head(vectors: np.ndarray, abnormal: np.ndarray, inner_folds: int = 5, seed: int = 0,
             config: AbnormalConfig = AbnormalConfig()) -> tuple[AbnormalModel, float]:
    """Standardise, choose C by inner stratified CV (AUROC), refit on everything: the model and its C."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    if len(set(abnormal.tolist())) < 2:
        raise MurmurScopeError("the training recordings hold only one class; a normal/abnormal head needs both")
    mean = vectors.mean(0)
    scale = vectors.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # a constant feature stays 0 after standardising
    x = (vectors - mean) / scale
    folds = min(inner_folds, int(np.bincount(abnormal).min()))
    lr = LogisticRegressionCV(Cs=list(C_GRID), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                              scoring="roc_auc", class_weight="balanced", max_iter=5000, l1_ratios=(0.0,),
                              use_legacy_attributes=False)
    lr.fit(x, abnormal)
    return AbnormalModel(config, mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0])), float(np.ravel(lr.C_)[0])


def train(config: AbnormalTrainConfig, progress: bool = True) -> tuple[AbnormalModel, Path]:
    import torch

    from assistant.murmur.model import WEIGHTS_DIR

    torch.set_num_threads(config.threads)
    data = physionet_vectors(config.data_root, config.cache_dir, progress=progress)
    counts = {s: {"abnormal": int(data.abnormal[np.array(data.subsets) == s].sum()),
                  "normal": int((1 - data.abnormal[np.array(data.subsets) == s]).sum())}
              for s in sorted(set(data.subsets))}
    base = AbnormalConfig(murmur_weights_sha256=murmur_fingerprint(WEIGHTS_DIR))
    model, c = fit_head(data.vectors, data.abnormal, config.inner_folds, config=base)
    model.config = AbnormalConfig(base.features, base.threshold, base.murmur_weights_sha256,
                                  {"data": Path(config.data_root).name, "recordings": len(data.names),
                                   "by_subset": counts, "C": c, "C_grid": list(C_GRID),
                                   "inner_folds": config.inner_folds, "class_weight": "balanced"})
    model.save(config.out)
    return model, config.out
