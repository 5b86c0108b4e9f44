"""murmur-qwen2-audio-mini's pieces: the pretrained Whisper tower, one sequence per clip whose turns branch off
its audio, class balance, the memoized frozen tower, the fp16 export,
and the audio-LLM's opinion beside the findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_audio_llm import qa_dir, tiny_model_dir  # noqa: F401 - module fixtures reused


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    from finetune.convert_ct2 import convert, packaged_model_dir

    return convert(packaged_model_dir(), tmp_path_factory.mktemp("whisper") / "tiny.en")


@pytest.fixture(scope="module")
def mini_dir(whisper_dir, tmp_path_factory) -> Path:
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    return write_tiny_model(TinyModelConfig(tmp_path_factory.mktemp("mini") / "model", audio_encoder=str(whisper_dir),
                                            hidden_size=128, layers=1))


def test_whisper_tower_is_the_pretrained_encoder(mini_dir, whisper_dir):
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, WhisperModel

    model = Qwen2AudioForConditionalGeneration.from_pretrained(mini_dir)
    whisper = WhisperModel.from_pretrained(whisper_dir).encoder
    tower = model.model.audio_tower
    assert tower.config.num_mel_bins == 80 and tower.config.d_model == 384 and len(tower.layers) == 4
    for (name, p), (wname, w) in zip(tower.state_dict().items(), whisper.state_dict().items(), strict=True):
        assert name == wname and torch.equal(p, w.to(p.dtype)), name
    assert AutoProcessor.from_pretrained(mini_dir).feature_extractor.feature_size == 80


def test_conversations_carry_every_question_of_a_clip_once(qa_dir):  # noqa: F811
    from finetune.qa import conversations

    rows = [json.loads(line) for line in (qa_dir / "train.jsonl").read_text().splitlines()]
    convs = conversations(rows, seed=0)
    assert len(convs) == len({r["audio"] for r in rows})
    for c in convs:
        mine = sorted((r["feature"], r["question"], r["answer"]) for r in rows if r["audio"] == c["audio"])
        assert sorted((t["feature"], t["question"], t["answer"]) for t in c["turns"]) == mine
    # The order is shuffled per clip, so presence is not always the first question.
    assert any(c["turns"][0]["feature"] != "murmur" for c in convs if len(c["turns"]) > 1)
    assert conversations(rows, seed=0) == convs


def test_a_clips_turns_score_every_answer_as_if_it_were_asked_alone(tiny_model_dir, qa_dir):  # noqa: F811
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from finetune.audio_collator import IGNORE_INDEX, AudioQACollator
    from finetune.qa import conversations

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rows = [json.loads(line) for line in (qa_dir / "train.jsonl").read_text().splitlines()]
    convs = sorted(conversations(rows), key=lambda c: -len(c["turns"]))[:2]
    assert len(convs[0]["turns"]) > 1

    def answer_logprobs(batch, i):
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[i, :-1].log_softmax(-1)
        target = batch["labels"][i, 1:]
        keep = target != IGNORE_INDEX
        return logits[keep].gather(1, target[keep][:, None])[:, 0]

    branched = AudioQACollator(processor, qa_dir)(convs)
    single = AudioQACollator(processor, qa_dir)
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    for i, c in enumerate(convs):
        kept = branched["labels"][i][branched["labels"][i] != IGNORE_INDEX]
        assert processor.tokenizer.decode(kept) == "".join(t["answer"] + "<|im_end|>" for t in c["turns"])
        assert int((branched["input_ids"][i] == audio_id).sum()) > 0
        assert processor.tokenizer.decode(branched["input_ids"][i]).count("<|audio_bos|>") == 1  # encoded once
        alone = torch.cat([answer_logprobs(single([{"audio": c["audio"], **t}]), 0) for t in c["turns"]])
        # Same tokens at the same positions seeing the same context: the same log-probabilities.
        assert torch.allclose(answer_logprobs(branched, i), alone, atol=1e-4)
    # The mask is what keeps the turns apart: under plain causal attention the later answers change.
    causal = dict(branched, attention_mask=torch.ones_like(branched["input_ids"]))
    assert not torch.allclose(answer_logprobs(causal, 0), answer_logprobs(branched, 0), atol=1e-4)


def test_balance_repeats_rare_murmur_answers_up_to_the_cap():
    from finetune.sft import balanced

    rows = ([{"audio": f"a{i}", "feature": "murmur", "answer": "Absent", "question": "q"} for i in range(12)]
            + [{"audio": "p", "feature": "murmur", "answer": "Present", "question": "q"},
               {"audio": "p", "feature": "systolic_pitch", "answer": "High", "question": "q"},
               {"audio": "u", "feature": "murmur", "answer": "Unknown", "question": "q"},
               {"audio": "h", "feature": "murmur", "answer": "Present", "question": "q"}])
    out = balanced(rows, cap=4)
    count = {a: sum(r["audio"] == a for r in out) for a in ("a0", "p", "u", "h")}
    assert count == {"a0": 1, "p": 8, "u": 4, "h": 4}  # Present x4 (2 rows of clip p), Unknown capped at 4
    assert balanced(rows, cap=1) == rows


def test_tower_cache_gives_the_towers_output_and_encodes_each_clip_once(mini_dir):
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    from finetune.tower_cache import TowerCache

    tower = Qwen2AudioForConditionalGeneration.from_pretrained(mini_dir).model.audio_tower.eval()
    x = torch.randn(2, 80, 3000)
    with torch.no_grad():
        direct = tower(x).last_hidden_state
    with pytest.raises(ValueError, match="frozen"):
        TowerCache(tower)
    tower.requires_grad_(False)
    with TowerCache(tower) as cache:
        first = tower(x).last_hidden_state
        again = tower(x[[1, 0]]).last_hidden_state
        assert (cache.misses, cache.hits) == (2, 2)
    assert torch.allclose(first, direct, atol=2e-2) and torch.equal(again, first[[1, 0]])
    assert "forward" not in tower.__dict__  # the real forward is back


def test_full_training_exports_float16_in_vllms_layout(mini_dir, qa_dir, tmp_path):  # noqa: F811
    from safetensors import safe_open
    from transformers import Qwen2AudioForConditionalGeneration

    from finetune.sft import AudioSFTConfig, train

    out = tmp_path / "sft"
    result = train(AudioSFTConfig(model=str(mini_dir), data=qa_dir, out=out, lora=False, freeze_audio_tower=True,
                                  multi_turn=True, murmur_balance_cap=2, max_steps=2,
                                  batch_size=2, grad_accum=1, learning_rate=1e-3, logging_steps=1, warmup_ratio=0.0,
                                  export_dtype="float16"))
    assert result.steps == 2
    # Only the projector and the language model learn; the tower is frozen.
    model = Qwen2AudioForConditionalGeneration.from_pretrained(mini_dir)
    tower = sum(p.numel() for p in model.model.audio_tower.parameters())
    assert result.trainable_parameters == sum(p.numel() for p in model.parameters()) - tower
    f = safe_open(str(out / "model.safetensors"), "pt")
    assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert any(k.startswith("audio_tower.") for k in f.keys())
    config = json.loads((out / "config.json").read_text())  # the config states the dtype written
    assert config["dtype"] == config["audio_config"]["dtype"] == config["text_config"]["dtype"] == "float16"


def test_audio_llm_unreachable_leaves_the_findings_with_a_reason(analyzer, synth_recordings):
    from assistant.consult.report import findings_markdown
    from assistant.consult.second_opinion import with_audio_llm
    from assistant.llm.client import AudioLLMConfig

    findings = analyzer.analyze(synth_recordings, guidance=False)
    assert with_audio_llm(findings, synth_recordings, None) is findings
    config = AudioLLMConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout=2)
    out = with_audio_llm(findings, synth_recordings, config)
    assert out.murmur == findings.murmur and out.audio_llm.error and out.audio_llm.murmur is None
    assert "no second opinion" in findings_markdown(out)
