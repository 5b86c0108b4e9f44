"""A tiny Qwen2 chat model that calls tools the Qwen2.5 / hermes way, built and trained offline for the
agent's integration test.

Qwen2.5-Instruct's chat template (tools listed in the system turn inside `<tools></tools>`, calls as
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, results as a user turn wrapped in
`<tool_response>`), a byte-level BPE trained on the text it is shown and must say, `<tool_call>` and
`</tool_call>` as added (not special) tokens as in Qwen2.5's tokenizer, so vLLM's hermes parser sees them in
the decoded text. A few hundred to a few thousand AdamW steps on CPU (training stops once it has) make it
memorise its behaviours (`Behaviour`): the first answer to a question (a tool call or plain text) and the
answer after the tool's result.

The model is cached under build/ in a folder named by the hash of its recipe (every training text, the
tool schemas, the hyper-parameters, the template and
`TRAINING_VERSION`), so a changed prompt or tool retrains it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune.tiny_model import QWEN_PATTERN

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
TOOL_CALL, TOOL_CALL_END = "<tool_call>", "</tool_call>"
# Raise when the training code changes what it makes of a recipe.
TRAINING_VERSION = "2"
CACHE = Path(__file__).resolve().parents[1] / "build" / "test-models"

# Qwen2.5-Instruct's template (its tool branch; the default system line is the only change).
CHAT_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided \
with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\
\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or \
(message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class Behaviour:
    """One memorised exchange: the user's turn, the model's first answer, and (when that answer is a
    tool call) the answer after any tool result."""

    user: str
    call: dict | None  # {"name": ..., "arguments": {...}}, or None for a plain-text first answer
    first_text: str = ""
    final_text: str = ""
    # Tool results the training shows in place of the real one (the real one is computed at test time).
    tool_results: tuple[str, ...] = ()

    @property
    def first(self) -> str:
        if self.call is None:
            return self.first_text
        return f"{TOOL_CALL}\n{json.dumps(self.call, ensure_ascii=False)}\n{TOOL_CALL_END}"


@dataclass(frozen=True)
class ToolChatModelRecipe:
    system: str
    tools: tuple[str, ...]  # OpenAI tool schemas as JSON, in the order the client sends them
    behaviours: tuple[Behaviour, ...]
    vocab_size: int = 1024
    hidden_size: int = 128
    layers: int = 2
    max_positions: int = 8192
    # What it takes moves with the findings' text and the installed tokenizer: 575 steps on 2026-12-02, 1,425 on
    # 2026-12-05 (when 1000 failed). A ceiling, not a count: training stops once every answer is memorised.
    steps: int = 3000
    learning_rate: float = 3e-3
    batch_size: int = 4
    seed: int = 0
    check_every: int = 25

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True) + CHAT_TEMPLATE + TRAINING_VERSION
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _conversations(recipe: ToolChatModelRecipe) -> list[tuple[list[dict], str]]:
    """(messages, the assistant's answer) pairs: every turn the model must say."""
    system = {"role": "system", "content": recipe.system}
    pairs = []
    for b in recipe.behaviours:
        user = {"role": "user", "content": b.user}
        pairs.append(([system, user], b.first))
        if b.call is None:
            continue
        call = {"role": "assistant", "content": None,
                "tool_calls": [{"id": "call0", "type": "function", "function": b.call}]}
        for result in b.tool_results:
            pairs.append(([system, user, call, {"role": "tool", "tool_call_id": "call0", "content": result}],
                          b.final_text))
    return pairs


def _tokenizer(recipe: ToolChatModelRecipe, texts: list[str]):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's pre-tokenisation, which transformers' Qwen2 tokenizer (what vLLM loads for a qwen2 config) applies
    # whatever the saved file says: the merges are learnt on the pieces the served tokenizer will cut.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size, special_tokens=[ENDOFTEXT, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # As in Qwen2.5: added, not special, so they survive decoding for the hermes parser.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (TOOL_CALL, TOOL_CALL_END)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tool_chat_model(recipe: ToolChatModelRecipe, cache: Path = CACHE) -> Path:
    """The trained model folder (config, weights, tokenizer with its chat template), cached by recipe."""
    out = cache / f"tool-chat-{recipe.key()}"
    if (out / "trained.json").exists():
        return out
    import torch
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    # As vLLM's server hands them to the template: the client's schemas, no unset fields added.
    tools = [json.loads(t) for t in recipe.tools]
    pairs = _conversations(recipe)
    # The tokenizer is trained on the rendered prompts (rendered once with a throwaway tokenizer: the template
    # does not depend on the vocabulary).
    render = PreTrainedTokenizerFast(tokenizer_object=_bare(), eos_token=IM_END)
    render.chat_template = CHAT_TEMPLATE
    prompts = [render.apply_chat_template(m, tools=tools, tokenize=False, add_generation_prompt=True) for m, _ in pairs]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _tokenizer(recipe, [*prompts, *(a for _, a in pairs)] * 2).save_pretrained(tmp)
    # Train on the ids the saved tokenizer gives once loaded back, as a server loads it.
    tokenizer = AutoTokenizer.from_pretrained(tmp)
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    examples = []
    for prompt, (_, answer) in zip(prompts, pairs, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
        examples.append((torch.tensor(p + a), len(p)))

    config = Qwen2Config(vocab_size=-(-len(tokenizer) // 64) * 64, hidden_size=recipe.hidden_size,
                         intermediate_size=2 * recipe.hidden_size, num_hidden_layers=recipe.layers,
                         num_attention_heads=recipe.hidden_size // 64, num_key_value_heads=recipe.hidden_size // 64,
                         head_dim=64, max_position_embeddings=recipe.max_positions, tie_word_embeddings=False,
                         bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT), eos_token_id=im_end,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(recipe.seed)
    model = Qwen2ForCausalLM(config)
    steps, losses = _train(model, examples, recipe)
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    model.save_pretrained(tmp)
    (tmp / "trained.json").write_text(json.dumps({"steps": steps, "loss_first": losses[0], "loss_last": losses[-1],
                                                  "examples": len(examples)}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _bare():
    from tokenizers import Tokenizer, models

    return Tokenizer(models.BPE())


def _memorised(model, examples) -> bool:
    """Every answer token is the greedy choice given the prompt and the answer so far."""
    import torch

    model.eval()
    with torch.no_grad():
        for ids, n_prompt in examples:
            logits = model(ids[None]).logits[0, n_prompt - 1:-1]
            if not torch.equal(logits.argmax(-1), ids[n_prompt:]):
                model.train()
                return False
    model.train()
    return True


def _train(model, examples, recipe: ToolChatModelRecipe) -> tuple[int, list[float]]:
    import torch

    rng = random.Random(recipe.seed)
    # One thread: on a shared CPU, torch's default threads oversubscribe it (docs/audio_llm.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _steps(model, examples, recipe, rng)
    finally:
        torch.set_num_threads(threads)


def _steps(model, examples, recipe: ToolChatModelRecipe, rng: random.Random) -> tuple[int, list[float]]:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(1, recipe.steps + 1):
        batch = rng.sample(examples, min(recipe.batch_size, len(examples)))
        loss = 0.0
        for ids, n_prompt in batch:
            labels = ids.clone()
            labels[:n_prompt] = -100  # only the answer is learnt
            loss = loss + model(ids[None], labels=labels[None]).loss / len(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % recipe.check_every == 0 and _memorised(model, examples):
            return step, losses
    raise RuntimeError(f"the tool-chat model did not memorise its {len(examples)} answers in {recipe.steps} steps "
                       f"(loss {losses[0]:.3f} -> {losses[-1]:.3f})")
