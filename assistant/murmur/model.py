"""Murmur prediction for a patient: Present / Unknown / Absent, per-recording probabilities, and the
11 CirCor murmur features. `MurmurModel.load()` with no path loads the weights shipped in
assistant/murmur/weights: an ensemble of `members` (encoder, multi-site head, feature heads) triples trained
here on CirCor from different seeds, whose probabilities are averaged. Where the weights folder holds a
Whisper feature reader (assistant/murmur/whisper_features.py), the features it reads come from it instead
of the heads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from assistant.data.audio import Recording, check_samples
from assistant.data.circor import Patient
from assistant.data.labels import FEATURES, LOCATIONS, MURMUR_CLASSES, PREDICTION_COLUMNS
from assistant.errors import MurmurScopeError
from assistant.murmur.calibration import Recalibration
from assistant.murmur.cycle_features import CycleConfig, cycle_vector
from assistant.murmur.encoders import CNNConfig, CNNEncoder, Encoder
from assistant.murmur.heads import TOKENS, FeatureHeads, HeadConfig, MultiSiteHead
from assistant.murmur.melspec import LogMel
from assistant.murmur.whisper_features import READER_DIR, READER_SOURCE, WhisperFeatureReader

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_NAME = "murmur.safetensors"
CONFIG_NAME = "murmur.json"
# head: the multi-site head's call; any_recording: `any_recording_rule` over the recordings' calls.
Decision = Literal["head", "any_recording"]
DECISIONS: tuple[str, ...] = get_args(Decision)
# Earlier names of a decision, still read from a saved murmur.json.
RENAMED_DECISIONS = {"niizumi": "any_recording"}
# What the feature heads read per site: the encoder's clip embedding, the cycle-synchronous log-mel
# (assistant.murmur.cycle_features, needs the segmenter), or both side by side.
FEATURE_INPUTS = ("embedding", "cycle", "both")


class ModelFileError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class FeaturePrediction:
    name: str
    label: str | None
    probabilities: dict[str, float]
    n_train: int
    low_confidence: bool
    source: str = "heads"  # which model read it: the murmur model's own heads, or READER_SOURCE


@dataclass(frozen=True)
class RecordingPrediction:
    name: str
    site: str | None
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PatientPrediction:
    patient_id: str
    murmur: str
    probabilities: dict[str, float]
    recordings: list[RecordingPrediction]
    features: dict[str, FeaturePrediction]
    warnings: list[str]

    def csv_row(self) -> dict[str, str]:
        row = {
            "patient_id": self.patient_id,
            "murmur": self.murmur,
            "p_present": f"{self.probabilities['Present']:.4f}",
            "p_unknown": f"{self.probabilities['Unknown']:.4f}",
            "p_absent": f"{self.probabilities['Absent']:.4f}",
        }
        for name in FEATURES:
            f = self.features.get(name)
            row[name] = f.label if f is not None and f.label is not None else ""
        return {k: row[k] for k in PREDICTION_COLUMNS}


@dataclass(frozen=True)
class FrameStatistics:
    """One recording through the CNN ensemble: per member the mean and the std of its frame embeddings
    (E, D) each, and the (n_mels, T) natural-log mel at the segmenter's 50 frames per second."""

    mean: torch.Tensor
    std: torch.Tensor
    log_mel: np.ndarray


@dataclass(frozen=True)
class MurmurConfig:
    """Everything `load` needs besides the tensors; written as murmur.json next to them."""

    encoder: str = "cnn"
    cnn: CNNConfig = field(default_factory=CNNConfig)
    m2d_checkpoint: str | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    feature_hidden: int = 64
    temperature: float = 1.0
    recording_temperature: float = 1.0
    decision: str = "head"
    n_train: dict[str, int] = field(default_factory=dict)
    # A feature head trained on fewer Present patients than this is flagged low-confidence.
    min_train: int = 20
    diastolic_threshold: float = 0.5
    feature_input: str = "embedding"
    cycle: CycleConfig = field(default_factory=CycleConfig)
    # Independently seeded members; with M2D they share the one frozen encoder.
    members: int = 1
    # Fitted afterwards on a cross-validation's out-of-fold probabilities (`finetune calibrate`).
    recalibration: Recalibration = field(default_factory=Recalibration)

    @property
    def uses_cycles(self) -> bool:
        return self.feature_input != "embedding"

    @property
    def feature_dim(self) -> int:
        return {"embedding": self.head.in_dim, "cycle": self.cycle.dim,
                "both": self.head.in_dim + self.cycle.dim}[self.feature_input]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MurmurConfig:
        d = dict(d)
        d["cnn"] = CNNConfig.from_dict(d["cnn"])
        d["head"] = HeadConfig(**d["head"])
        if "cycle" in d:
            d["cycle"] = CycleConfig(**d["cycle"])
        if "recalibration" in d:
            d["recalibration"] = Recalibration.from_dict(d["recalibration"])
        if d.get("decision") in RENAMED_DECISIONS:
            d["decision"] = RENAMED_DECISIONS[d["decision"]]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _probs(logits: torch.Tensor) -> dict[str, float]:
    p = logits.softmax(-1).tolist()
    return {c: float(v) for c, v in zip(MURMUR_CLASSES, p)}


def ensemble_logits(member_logits: torch.Tensor) -> torch.Tensor:
    """(K, ..., C) member logits -> (..., C) log of the members' mean probabilities (a deep ensemble)."""
    return member_logits.log_softmax(-1).logsumexp(0) - np.log(member_logits.shape[0])


def token_index(site: str | None) -> int:
    return LOCATIONS.index(site) if site in LOCATIONS else len(LOCATIONS)


def site_tokens(embeddings: list[torch.Tensor], sites: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding per token (AV, PV, TV, MV, Other): (..., D) each -> (S, ..., D) tokens, (S,) mask."""
    tokens = torch.zeros(len(TOKENS), *embeddings[0].shape)
    counts = torch.zeros(len(TOKENS))
    for e, s in zip(embeddings, sites):
        i = token_index(s)
        tokens[i] += e
        counts[i] += 1
    mask = counts > 0
    tokens[mask] /= counts[mask].view(-1, *[1] * embeddings[0].dim())
    return tokens, mask


def standardise_cycles(vectors: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """z-score the cycle image, keep the 'cycles found' flag; a recording without cycles stays all zeros."""
    found = vectors[..., -1:]
    return torch.cat([(vectors[..., :-1] - mean) / std * found, found], -1)


def any_recording_rule(recording_probs: list[dict[str, float]]) -> tuple[str, dict[str, float]]:
    """Present if any recording is, else Unknown if any is, else Absent (as in Niizumi et al., EMBC 2024).

    The patient's probabilities are those of the recording that decided: the one with the highest
    probability of the winning class.
    """
    calls = [max(p, key=p.get) for p in recording_probs]
    for c in ("Present", "Unknown", "Absent"):
        if c in calls:
            return c, max(recording_probs, key=lambda p: p[c])
    raise ValueError("no recordings")


class MurmurModel(torch.nn.Module):
    def __init__(self, config: MurmurConfig, encoders: list[Encoder] | None = None):
        super().__init__()
        if config.decision not in DECISIONS:
            raise ModelFileError(f"decision must be one of {DECISIONS}, not {config.decision!r}")
        if config.feature_input not in FEATURE_INPUTS:
            raise ModelFileError(f"feature_input must be one of {FEATURE_INPUTS}, not {config.feature_input!r}")
        if config.members < 1:
            raise ModelFileError(f"members must be at least 1, not {config.members}")
        self.config = config
        if encoders is None:
            if config.encoder == "cnn":
                encoders = [CNNEncoder(config.cnn) for _ in range(config.members)]
            elif config.encoder == "m2d":
                if not config.m2d_checkpoint:
                    raise ModelFileError("this model uses the M2D encoder but names no M2D checkpoint")
                from assistant.murmur.m2d import load_m2d

                encoders = [load_m2d(config.m2d_checkpoint)]
            else:
                raise ModelFileError(f"unknown encoder {config.encoder!r} (cnn or m2d)")
        if len(encoders) not in (1, config.members):
            raise ModelFileError(f"{len(encoders)} encoders for {config.members} members")
        self.encoders = torch.nn.ModuleList(encoders)
        self.rate = encoders[0].rate
        self.heads = torch.nn.ModuleList(MultiSiteHead(config.head) for _ in range(config.members))
        self.features = torch.nn.ModuleList(FeatureHeads(config.feature_dim, config.feature_hidden)
                                            for _ in range(config.members))
        self.feature_reader: WhisperFeatureReader | None = None
        if config.uses_cycles:
            # Standardisation of the cycle vectors (all but the final 'cycles found' flag), from training data.
            self.register_buffer("cycle_mean", torch.zeros(config.cycle.dim - 1))
            self.register_buffer("cycle_std", torch.ones(config.cycle.dim - 1))
            self.cycle_mel = LogMel(config.cnn.mel)
        self.eval()

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        # float16 halves the file (an ensemble must stay a few MB); `load` computes in float32.
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        if self.config.encoder == "m2d":  # the M2D weights are not ours to redistribute
            state = {k: v for k, v in state.items() if not k.startswith("encoders.")}
        save_file(state, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | None = None) -> MurmurModel:
        """`path`: a folder holding murmur.json + murmur.safetensors (default: the shipped weights)."""
        from safetensors.torch import load_file

        folder = Path(path) if path is not None else WEIGHTS_DIR
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise ModelFileError(f"{folder}: no murmur model here (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            config = MurmurConfig.from_dict(json.loads(cfg_path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"{cfg_path}: not a murmur model config ({e})") from None
        model = cls(config)
        state = load_file(str(w_path))
        strict = config.encoder != "m2d"
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if strict or not k.startswith("encoders.")]
        if missing or unexpected:
            raise ModelFileError(f"{w_path}: does not match {cfg_path.name} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        model.feature_reader = WhisperFeatureReader.load(folder / READER_DIR)
        return model.eval()

    # ---- inference ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, recording: Recording) -> torch.Tensor:
        """(E, D) clip embeddings, one per encoder."""
        if self.config.encoder == "cnn":
            return self.frame_statistics(recording).mean
        x = torch.from_numpy(np.ascontiguousarray(recording.resampled(self.rate).samples))[None]
        return torch.cat([e.clip(x) for e in self.encoders])

    @torch.inference_mode()
    def frame_statistics(self, recording: Recording) -> FrameStatistics:
        """The CNN members' frames summarised (their mean is `embed`) with the log-mel they read: what the
        normal/abnormal model and the familiarity score take from the murmur model."""
        if self.config.encoder != "cnn":
            raise ModelFileError(f"frame statistics need the CNN encoder, not {self.config.encoder!r}")
        x = torch.from_numpy(np.ascontiguousarray(recording.resampled(self.rate).samples))[None]
        mel = self.encoders[0].to_mel(x)  # the members share one front-end
        frames = [e.frames_from_mel(mel)[0] for e in self.encoders]
        return FrameStatistics(torch.stack([f.mean(0) for f in frames]),
                               torch.stack([f.std(0, correction=0) for f in frames]), mel[0].numpy())

    @torch.inference_mode()
    def cycle_features(self, recording: Recording) -> torch.Tensor | None:
        """The recording's standardised cycle-synchronous vector; None when the feature heads do not use it."""
        if not self.config.uses_cycles:
            return None
        from assistant.segment.segmenter import segment_recording

        rec = recording.resampled(self.config.cnn.mel.rate)
        mel = self.cycle_mel(torch.from_numpy(np.ascontiguousarray(rec.samples))[None])[0].numpy()
        return standardise_cycles(torch.from_numpy(cycle_vector(mel, segment_recording(rec).states, self.config.cycle)),
                                  self.cycle_mean, self.cycle_std)

    @torch.inference_mode()
    def predict_from_embeddings(self, patient_id: str, embeddings: list[torch.Tensor], sites: list[str | None],
                                names: list[str], warnings: list[str],
                                cycles: list[torch.Tensor] | None = None, features: bool = True,
                                reader_vectors: list[np.ndarray] | None = None) -> PatientPrediction:
        """`embeddings`: each recording's `embed`; `cycles`: its `cycle_features`, needed when the feature
        heads read them; `reader_vectors`: its `feature_reader.vector`, without which the heads read every
        feature. `features=False`: the murmur call alone (no feature heads, so no cycles needed)."""
        if not embeddings:
            return self._no_recordings(patient_id, warnings)
        tokens, mask = site_tokens(embeddings, sites)  # (S, E, D)
        member_tokens = [tokens[:, k % tokens.shape[1]] for k in range(len(self.heads))]
        logits = ensemble_logits(torch.stack([head(x[None], mask[None]).logits[0]
                                              for head, x in zip(self.heads, member_tokens)]))
        recalibration = self.config.recalibration
        patient_logp = recalibration.log_probabilities(logits / self.config.temperature)
        probs = _probs(patient_logp)
        stacked = torch.stack(embeddings)  # (N, E, D)
        rec_logits = ensemble_logits(torch.stack([head.recording_logits(stacked[:, k % stacked.shape[1]])
                                                  for k, head in enumerate(self.heads)]))
        rec_logits = rec_logits / self.config.recording_temperature
        recordings = [RecordingPrediction(n, s, _probs(lg)) for n, s, lg in zip(names, sites, rec_logits)]
        if self.config.decision == "any_recording":
            murmur, probs = any_recording_rule([r.probabilities for r in recordings])
        else:
            murmur = MURMUR_CLASSES[int(recalibration.decide(patient_logp.exp()))]
        if not features:
            return PatientPrediction(patient_id, murmur, probs, recordings, {}, warnings)
        feature_tokens = member_tokens
        if self.config.uses_cycles:
            if cycles is None or len(cycles) != len(embeddings):
                raise ValueError("this model's feature heads need each recording's cycle_features")
            cycle_tokens, _ = site_tokens(cycles, sites)
            both = self.config.feature_input == "both"
            feature_tokens = [torch.cat([x, cycle_tokens], -1) if both else cycle_tokens for x in member_tokens]
        read = self.feature_reader.read(reader_vectors) if self.feature_reader and reader_vectors else {}
        features = self._features(feature_tokens, mask, murmur == "Present", read)
        return PatientPrediction(patient_id, murmur, probs, recordings, features, warnings)

    def _features(self, tokens: list[torch.Tensor], mask: torch.Tensor, present: bool,
                  read: dict[str, dict[str, float]]) -> dict[str, FeaturePrediction]:
        """The heads' features, those in `read` (the Whisper reader's probabilities) taken from there."""
        outs = [heads(x[None], mask[None]) for heads, x in zip(self.features, tokens)]
        logits = {name: ensemble_logits(torch.stack([o[name][0] for o in outs])) for name in outs[0]}
        p_diastolic = float(logits["diastolic"].softmax(-1)[1])
        result = {}
        for name, vocab in FEATURES.items():
            if name in read:
                probs, n, source = read[name], int(self.feature_reader.config.n_train.get(name, 0)), READER_SOURCE
            else:
                probs = {v: float(x) for v, x in zip(vocab, logits[name].softmax(-1).tolist())}
                n, source = int(self.config.n_train.get(name, 0)), "heads"
            applies = present and (not name.startswith("diastolic") or p_diastolic >= self.config.diastolic_threshold)
            result[name] = FeaturePrediction(name, max(probs, key=probs.get) if applies else None, probs, n,
                                             n < self.config.min_train, source)
        return result

    def _no_recordings(self, patient_id: str, warnings: list[str]) -> PatientPrediction:
        warnings = [*warnings, f"patient {patient_id}: no usable recording; murmur reported as Unknown"]
        features = {name: FeaturePrediction(name, None, {}, int(self.config.n_train.get(name, 0)), True)
                    for name in FEATURES}
        uniform = {c: 1.0 / len(MURMUR_CLASSES) for c in MURMUR_CLASSES}
        return PatientPrediction(patient_id, "Unknown", uniform, [], features, warnings)

    def predict_recordings(self, recordings: list[Recording], patient_id: str = "upload") -> PatientPrediction:
        def checked(rec: Recording) -> Recording:
            check_samples(rec.samples, rec.rate, rec.source)
            return rec

        items = [(Path(rec.source).stem if rec.source and not rec.source.startswith("<") else rec.source, rec.site,
                  lambda rec=rec: checked(rec)) for rec in recordings]
        return self._predict(patient_id, items)

    def predict_patient(self, patient: Patient) -> PatientPrediction:
        patient = patient.unlabelled()
        items = [(ref.name, ref.site, lambda ref=ref: ref.load(rate=self.rate)) for ref in patient.recordings]
        return self._predict(patient.patient_id, items)

    def _predict(self, patient_id: str, items: list[tuple[str, str | None, Callable[[], Recording]]]
                 ) -> PatientPrediction:
        """Embed every usable recording (an unusable one becomes a warning) and run the heads."""
        embeddings, cycles, vectors, sites, names, warnings = [], [], [], [], [], []
        for name, site, load in items:
            try:
                rec = load()
            except MurmurScopeError as e:
                warnings.append(str(e))
                continue
            embeddings.append(self.embed(rec))
            cycles.append(self.cycle_features(rec))
            if self.feature_reader is not None:
                vectors.append(self.feature_reader.vector(rec))
            sites.append(site)
            names.append(name)
        return self.predict_from_embeddings(patient_id, embeddings, sites, names, warnings,
                                            cycles if self.config.uses_cycles else None, reader_vectors=vectors)
