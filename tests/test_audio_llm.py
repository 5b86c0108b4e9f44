"""Audio-LLM on tiny models: questions and parsing, Q&A build, 5 SFT steps, adapter reload, merge export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from assistant.llm.prompts import (
    NO_MURMUR_LABEL,
    PHRASINGS,
    QUESTION_FEATURES,
    UNPARSEABLE,
    answer,
    parse_answer,
)


def test_every_feature_has_several_phrasings():
    assert set(QUESTION_FEATURES) == {"murmur", *FEATURES}
    for feature, phrasings in PHRASINGS.items():
        assert len(set(phrasings)) >= 3, feature
    assert "Is there a murmur?" in PHRASINGS["murmur"]
    assert "Where is it loudest?" in PHRASINGS["most_audible_location"]


@pytest.mark.parametrize("feature", QUESTION_FEATURES)
def test_every_training_answer_parses_back(feature):
    vocab = MURMUR_CLASSES if feature == "murmur" else FEATURES[feature]
    for label in vocab:
        assert parse_answer(feature, answer(feature, label)) == label
    if feature != "murmur":
        assert parse_answer(feature, answer(feature, None)) == NO_MURMUR_LABEL


def test_parse_answer_free_text():
    assert parse_answer("systolic_timing", "It is mid-systolic, not holosystolic.") == "Mid-systolic"
    assert parse_answer("systolic_grading", "Grade II/VI") == "II/VI"
    assert parse_answer("systolic_grading", "I/VI") == "I/VI"
    assert parse_answer("diastolic_timing", "There is no diastolic murmur.") == NO_MURMUR_LABEL
    assert parse_answer("murmur", "No murmur is heard.") == "Absent"
    assert parse_answer("most_audible_location", "loudest at the MV site") == "MV"
    assert parse_answer("systolic_pitch", "\n\n") == UNPARSEABLE
    with pytest.raises(MurmurScopeError):
        parse_answer("heart_rate", "80")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    return write_tiny_model(TinyModelConfig(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def qa_dir(synth_root, tmp_path_factory) -> Path:
    from finetune.qa import QAConfig, build_qa

    out = tmp_path_factory.mktemp("qa") / "qa"
    build_qa(QAConfig(synth_root, out, max_clip_seconds=5.0))
    return out


def test_tiny_model_processor_and_config(tiny_model_dir):
    from transformers import AutoConfig, AutoProcessor

    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    assert cfg.model_type == "qwen2_audio"
    assert cfg.audio_config.encoder_layers == 2 and cfg.text_config.num_hidden_layers == 2
    assert cfg.text_config.hidden_size // cfg.text_config.num_attention_heads == 64
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    vocab = processor.tokenizer.get_vocab()
    for token in ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "<|im_start|>", "<|im_end|>"):
        assert token in vocab
    assert cfg.audio_token_index == vocab["<|AUDIO|>"]
    assert type(processor.feature_extractor).__name__ == "WhisperFeatureExtractor"


def test_tiny_model_refuses_a_non_empty_folder(tiny_model_dir):
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    with pytest.raises(MurmurScopeError, match="not empty"):
        write_tiny_model(TinyModelConfig(tiny_model_dir))


def test_qa_build_is_cycle_aligned_and_split_by_patient(qa_dir, synth_root):
    import soundfile as sf
    from datasets import load_dataset

    from assistant.data.circor import read_folder
    from assistant.data.split import split_patients

    ds = load_dataset("json", data_files={"train": str(qa_dir / "train.jsonl"), "val": str(qa_dir / "val.jsonl")})
    train_ids, val_ids = set(ds["train"]["patient_id"]), set(ds["val"]["patient_id"])
    assert train_ids and val_ids and not train_ids & val_ids
    split = split_patients(read_folder(synth_root))
    assert train_ids <= set(split.train) and val_ids <= set(split.val)
    rows = list(ds["train"]) + list(ds["val"])
    assert {r["feature"] for r in rows} == set(QUESTION_FEATURES)
    for r in rows:
        info = sf.info(str(qa_dir / r["audio"]))
        assert info.samplerate == 16_000 and info.duration <= 5.0 + 1e-3
        assert r["n_cycles"] >= 1
        assert parse_answer(r["feature"], r["answer"]) != UNPARSEABLE
        assert r["question"] in PHRASINGS[r["feature"]]
    absent = [r for r in rows if r["feature"] == "systolic_timing" and r["answer"] == "no systolic murmur"]
    assert absent, "murmur-free clips must be asked about features too"
    # A clip starts on an S1 onset: the segmenter's, close to the expert's (exactly it for .tsv rows).
    onsets = {ref.name: [iv.start for iv in ref.segmentation().intervals if iv.state == 1]
              for p in read_folder(synth_root) for ref in p.recordings}
    for r in rows:
        name = Path(r["audio"]).stem.rsplit("_", 2)[0]
        tolerance = 1e-3 if r["cycle_source"] == "tsv" else 0.15
        assert min(abs(s - r["start_s"]) for s in onsets[name]) < tolerance, r


def test_qa_falls_back_to_the_annotation_when_the_segmenter_is_unreliable(synth_root, tmp_path, monkeypatch):
    from dataclasses import replace

    import assistant.segment.segmenter as segmenter
    from finetune.qa import QAConfig, build_qa

    real = segmenter.segment_recording
    monkeypatch.setattr(segmenter, "segment_recording", lambda rec, *a: replace(real(rec, *a), reliable=False))
    summary = build_qa(QAConfig(synth_root, tmp_path / "qa", max_clip_seconds=5.0, max_patients=2))
    assert summary.cycle_sources == {"tsv": summary.clips}


def test_qa_refuses_to_overwrite(qa_dir, synth_root):
    from finetune.qa import QAConfig, build_qa

    with pytest.raises(MurmurScopeError, match="already holds"):
        build_qa(QAConfig(synth_root, qa_dir))


def test_collator_masks_all_but_the_answer(tiny_model_dir, qa_dir):
    from transformers import AutoProcessor

    from finetune.audio_collator import IGNORE_INDEX, AudioQACollator

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    rows = [json.loads(line) for line in (qa_dir / "train.jsonl").read_text().splitlines()[:3]]
    batch = AudioQACollator(processor, qa_dir)(rows)
    assert batch["input_features"].shape[1:] == (128, 3000)
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    for i, r in enumerate(rows):
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert processor.tokenizer.decode(kept) == r["answer"] + "<|im_end|>"
        n_audio = int((batch["input_ids"][i] == audio_id).sum())
        frames = int(batch["feature_attention_mask"][i].sum())
        assert n_audio == ((frames - 1) // 2 + 1 - 2) // 2 + 1  # the encoder's output length for this clip


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, qa_dir, tmp_path_factory):
    from finetune.sft import AudioSFTConfig, train

    out = tmp_path_factory.mktemp("sft") / "adapter"
    result = train(AudioSFTConfig(model=str(tiny_model_dir), data=qa_dir, out=out, max_steps=5, batch_size=2,
                                  grad_accum=1, learning_rate=5e-3, logging_steps=1, warmup_ratio=0.0))
    return out, result


def test_five_sft_steps_change_a_finite_loss(adapter_dir):
    out, result = adapter_dir
    assert result.steps == 5 and len(result.losses) == 5
    assert all(math.isfinite(x) for x in result.losses)
    assert max(result.losses) - min(result.losses) > 1e-3
    assert (out / "loss.png").exists() and (out / "training_log.json").exists()


def test_lora_targets_only_the_language_model(adapter_dir):
    out, _ = adapter_dir
    from safetensors import safe_open

    keys = list(safe_open(str(out / "adapter_model.safetensors"), "pt").keys())
    assert keys and all("language_model" in k for k in keys)
    assert {k.split(".")[-3] for k in keys if "lora_A" in k} == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"}


def test_audio_encoder_option_adds_encoder_targets():
    import re

    from finetune.sft import target_modules

    assert not re.fullmatch(target_modules(False), "model.audio_tower.layers.0.self_attn.q_proj")
    assert re.fullmatch(target_modules(False), "model.language_model.layers.0.mlp.gate_proj")
    assert re.fullmatch(target_modules(True), "model.audio_tower.layers.0.self_attn.q_proj")


def test_adapter_reloads_and_changes_the_model(adapter_dir, tiny_model_dir, qa_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from finetune.audio_collator import AudioQACollator

    out, _ = adapter_dir
    processor = AutoProcessor.from_pretrained(out)
    rows = [json.loads(line) for line in (qa_dir / "train.jsonl").read_text().splitlines()[:2]]
    batch = AudioQACollator(processor, qa_dir)(rows)
    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        before = base(**batch).loss.item()
        tuned = PeftModel.from_pretrained(base, str(out)).eval()
        after = tuned(**batch).loss.item()
    assert math.isfinite(after) and abs(after - before) > 1e-4


def test_merge_exports_vllm_layout_equal_to_the_adapted_model(adapter_dir, tiny_model_dir, qa_dir, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from finetune.audio_collator import AudioQACollator
    from finetune.export import merge_adapter

    out, _ = adapter_dir
    merged = merge_adapter(str(tiny_model_dir), out, tmp_path / "merged")
    keys = list(safe_open(str(merged / "model.safetensors"), "pt").keys())
    prefixes = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("language_model") else "") for k in keys}
    assert prefixes == {"audio_tower", "multi_modal_projector", "language_model.model", "language_model.lm_head"}
    assert not any(k.startswith("language_model.model.model.") or "lora" in k for k in keys)
    processor = AutoProcessor.from_pretrained(merged)
    rows = [json.loads(line) for line in (qa_dir / "train.jsonl").read_text().splitlines()[:2]]
    batch = AudioQACollator(processor, qa_dir)(rows)
    with torch.no_grad():
        reloaded = Qwen2AudioForConditionalGeneration.from_pretrained(merged).eval()(**batch).loss.item()
        base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_model_dir)
        adapted = PeftModel.from_pretrained(base, str(out)).eval()(**batch).loss.item()
    assert reloaded == pytest.approx(adapted, rel=1e-4)


def test_merge_refuses_a_folder_without_adapter(tiny_model_dir, tmp_path):
    from finetune.export import merge_adapter

    with pytest.raises(MurmurScopeError, match="adapter_config.json"):
        merge_adapter(str(tiny_model_dir), tmp_path, tmp_path / "out")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_export_config_names_the_dtype_of_its_weights(tiny_model_dir, tmp_path, dtype):
    import torch
    from safetensors import safe_open
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from finetune.export import export_for_vllm

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert model.config.dtype == torch.float32  # as loaded: the cast below is what the config must follow
    out = export_for_vllm(model.to(getattr(torch, dtype)), AutoProcessor.from_pretrained(tiny_model_dir),
                          tmp_path / "out")
    f = safe_open(str(out / "model.safetensors"), "pt")
    assert {f.get_slice(k).get_dtype() for k in f.keys()} == {{"float16": "F16", "bfloat16": "BF16"}[dtype]}
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == config["audio_config"]["dtype"] == config["text_config"]["dtype"] == dtype
    # transformers loads it in the dtype the config states, which is now that of the weights.
    reloaded = Qwen2AudioForConditionalGeneration.from_pretrained(out)
    assert {p.dtype for p in reloaded.parameters()} == {getattr(torch, dtype)}


def test_vllm_key_renaming():
    from finetune.export import ExportError, vllm_key

    key = "layers.0.mlp.up_proj.weight"
    assert vllm_key(f"model.language_model.{key}") == f"language_model.model.{key}"
    assert vllm_key("language_model.model.model.norm.weight") == "language_model.model.norm.weight"
    assert vllm_key("lm_head.weight") == "language_model.lm_head.weight"
    assert vllm_key("model.audio_tower.conv1.weight") == "audio_tower.conv1.weight"
    with pytest.raises(ExportError):
        vllm_key("vision_tower.x")


@pytest.mark.realdata
def test_qa_on_circor_dev(circor_dev, tmp_path):
    from finetune.qa import QAConfig, build_qa

    summary = build_qa(QAConfig(circor_dev, tmp_path / "qa", max_clip_seconds=10.0, max_patients=4))
    assert summary.rows["train"] > 0 and summary.rows["val"] > 0
    assert summary.patients["train"] + summary.patients["val"] == 4
    rows = [json.loads(line) for line in (tmp_path / "qa" / "train.jsonl").read_text().splitlines()]
    assert all(r["end_s"] - r["start_s"] <= 10.0 + 1e-6 for r in rows)
