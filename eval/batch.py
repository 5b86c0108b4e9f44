"""The audio-LLM predictor through vLLM's OpenAI batch files instead of live requests.

`--batch-out FILE` writes one `/v1/chat/completions` request per (patient, recording, question) in the
OpenAI batch input format that `vllm run-batch` reads, and stops. The messages are those the live client
sends (`assistant.llm.client.chat_messages`: system prompt, question phrasing), except that the audio, the
same 16 kHz 16-bit WAV of the same length, is written once per recording to `FILE.audio/` and referenced as an
`audio_url` file:// URL rather than inlined 12 times as base64; run vLLM with
`--allowed-local-media-path` pointing at that folder. `--batch-in FILE` reads `vllm run-batch`'s output,
reads each reply as the live client does (`AudioLLMAnswer.from_choice`), votes per patient exactly as the live
predictor does, and scores the result as an ordinary run (cache, report and all).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from tqdm import tqdm

from assistant.data.circor import Patient
from assistant.errors import MurmurScopeError
from eval.datasets import load_eval_set
from eval.predictors import PatientOutput, PredictorError
from eval.runner import RunConfig, run

SEP = "|"  # custom_id = patient|recording|question feature; CirCor ids and stems contain no "|"


class BatchFileError(MurmurScopeError):
    pass


def request_lines(patients: list[Patient], model: str, audio_dir: Path, progress: bool = True):
    """Yield (custom_id, request) for every question on every recording, writing each WAV once."""
    from assistant.llm.client import ANSWER_REQUEST, DEFAULT_AUDIO_SECONDS, chat_messages
    from assistant.llm.prompts import QUESTION_FEATURES, question

    for patient in tqdm(patients, desc="batch requests", unit="patient", disable=not progress):
        for ref in patient.recordings:
            recording = ref.load()
            wav = audio_dir / f"{ref.name}.wav"
            for feature in QUESTION_FEATURES:
                messages = chat_messages(recording, question(feature), DEFAULT_AUDIO_SECONDS)
                for part in messages[1]["content"]:
                    if part["type"] == "input_audio":
                        if not wav.exists():
                            wav.write_bytes(base64.b64decode(part["input_audio"]["data"]))
                        part.clear()
                        part.update({"type": "audio_url", "audio_url": {"url": wav.resolve().as_uri()}})
                custom_id = SEP.join((patient.patient_id, ref.name, feature))
                yield custom_id, {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": model, "messages": messages, **ANSWER_REQUEST}}


def write_batch(config: RunConfig, path: Path) -> str:
    if config.model is None:
        raise PredictorError("--batch-out needs --model (the model name `vllm run-batch` will serve)")
    if path.exists():
        raise BatchFileError(f"{path}: exists; choose another --batch-out")
    evalset = load_eval_set(config.data_root, config.split)
    by_id = evalset.by_id()
    patients = [by_id[i].unlabelled() for i in evalset.selected]
    audio_dir = path.with_name(path.name + ".audio")
    audio_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as fh:
        for _, request in request_lines(patients, config.model, audio_dir, config.progress):
            fh.write(json.dumps(request) + "\n")
            n += 1
    return (f"wrote {n} requests for {len(patients)} patients to {path} (audio in {audio_dir}); run\n"
            f"  vllm run-batch -i {path} -o OUTPUT.jsonl --model MODEL_DIR --served-model-name {config.model} "
            f"--allowed-local-media-path {audio_dir.resolve()}\n"
            f"then: murmurscope eval run ... --predictor audio-llm --batch-in OUTPUT.jsonl --out DIR")


def read_batch_output(path: Path) -> dict[str, dict]:
    """custom_id -> the reply's chat-completion choice; a failed request's is empty (it parses as unparseable)."""
    if not path.is_file():
        raise BatchFileError(f"{path}: no such batch output file")
    replies = {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            custom_id = row["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise BatchFileError(f"{path}:{k}: not a vLLM batch output line ({e})") from e
        response = row.get("response") or {}
        reply = {}
        if response.get("status_code") == 200 and not row.get("error"):
            try:
                reply = dict(response["body"]["choices"][0])
            except (KeyError, IndexError, TypeError, ValueError):
                pass
        replies[custom_id] = reply
    return replies


class BatchReplies:
    """A predictor that reads the parsed replies of a `vllm run-batch` output instead of asking a server."""

    name = "audio-llm"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.replies = read_batch_output(self.path)

    def fingerprint(self) -> dict:
        return {"predictor": "audio-llm", "batch_output_sha256": hashlib.sha256(self.path.read_bytes()).hexdigest()}

    def predict(self, patient: Patient) -> PatientOutput:
        from assistant.llm.client import AudioLLMAnswer
        from assistant.llm.opinion import combine
        from assistant.llm.prompts import QUESTION_FEATURES, question

        per_recording: list[dict[str, AudioLLMAnswer]] = []
        answers: dict[str, list[str]] = {}
        for ref in patient.recordings:
            recording_answers = {}
            for feature in QUESTION_FEATURES:
                choice = self.replies.get(SEP.join((patient.patient_id, ref.name, feature)))
                if choice is None:
                    continue  # not in the batch: no answer
                a = AudioLLMAnswer.from_choice(feature, question(feature), choice)
                recording_answers[feature] = a
                answers.setdefault(feature, []).append(a.raw)
            per_recording.append(recording_answers)
        murmur, features = combine(per_recording, [ref.site for ref in patient.recordings])
        return PatientOutput(patient.patient_id, murmur, None, features, answers)


def expected_ids(evalset) -> list[str]:
    """The custom_id of every request `write_batch` makes for the selected patients."""
    from assistant.llm.prompts import QUESTION_FEATURES

    by_id = evalset.by_id()
    return [SEP.join((pid, ref.name, feature)) for pid in evalset.selected for ref in by_id[pid].recordings
            for feature in QUESTION_FEATURES]


def run_batch(config: RunConfig, batch_out: Path | None, batch_in: Path | None) -> str:
    if config.predictor != "audio-llm":
        raise PredictorError("--batch-out / --batch-in go with --predictor audio-llm")
    if batch_out is not None and batch_in is not None:
        raise PredictorError("give --batch-out (write requests) or --batch-in (score replies), not both")
    if batch_out is not None:
        return write_batch(config, batch_out)
    predictor = BatchReplies(batch_in)
    ids = {cid.split(SEP, 1)[0] for cid in predictor.replies}
    evalset = load_eval_set(config.data_root, config.split)
    if not ids & set(evalset.selected):
        raise BatchFileError(f"{batch_in}: answers none of the {len(evalset.selected)} patients to score")
    missing = [cid for cid in expected_ids(evalset) if cid not in predictor.replies]
    if missing:
        # A run-batch that stopped early leaves a valid but short file: scoring it would count the
        # missing answers as abstentions and report a number for a run that never finished.
        raise BatchFileError(f"{batch_in}: {len(missing)} of {len(expected_ids(evalset))} requests have no reply "
                             f"(first: {missing[0]}); the batch did not finish, rerun vllm run-batch")
    result = run(config, predictor)
    return f"{result.predicted} patients scored from {batch_in}, {result.resumed} from the cache; report in " \
           f"{config.out}/report.md"
