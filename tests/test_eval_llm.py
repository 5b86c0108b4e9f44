"""The audio-LLM predictor: answer voting, and the vLLM OpenAI batch files written and read back."""

import json

import pytest

from assistant.data.circor import read_folder
from assistant.data.labels import FEATURES
from assistant.llm.client import AudioLLMAnswer
from assistant.llm.opinion import combine, vote
from assistant.llm.prompts import first_token_probabilities, parse_answer


def _answers(feature, *replies, probabilities=None):
    """One recording per reply, each answering `feature` (with its first-token distribution when given)."""
    probabilities = probabilities or [None] * len(replies)
    return [{feature: AudioLLMAnswer(feature, "q", raw, parse_answer(feature, raw), p)}
            for raw, p in zip(replies, probabilities)]


def test_vote_ignores_unparseable_and_no_murmur_and_breaks_ties_by_vocabulary():
    vocab = ("Low", "Medium", "High")
    assert vote(["High", "unparseable", "High", "Low"], vocab) == "High"
    assert vote(["High", "Low"], vocab) == "Low"  # tie: the vocabulary's order
    assert vote(["nan", "unparseable"], vocab) is None
    murmur, features = combine(_answers("murmur", "Absent", "Absent", "Present")
                               + _answers("systolic_pitch", "no systolic murmur"))
    # CirCor's rule: a murmur heard at any site makes the patient Present.
    assert murmur == "Present" and features["systolic_pitch"] is None
    assert combine(_answers("murmur", "Absent", "Unknown", "Unknown"))[0] == "Unknown"
    assert combine(_answers("murmur", "garbled"))[0] is None


def test_feature_vote_weighs_each_recording_by_the_probability_it_gave_each_label():
    # Greedy, both recordings say "no systolic murmur"; the model still preferred High over Low where it heard one.
    quiet = {"nan": 0.9, "Low": 0.06, "Medium": 0.0, "High": 0.04}
    loud = {"nan": 0.55, "Low": 0.05, "Medium": 0.0, "High": 0.4}
    murmur, features = combine(_answers("systolic_pitch", "no systolic murmur", "no systolic murmur",
                                        probabilities=[quiet, loud]))
    assert features["systolic_pitch"] == "High"
    # A recording without a distribution votes with its reply's label.
    mixed = _answers("systolic_pitch", "Low", "no systolic murmur", probabilities=[None, loud])
    assert combine(mixed)[1]["systolic_pitch"] == "Low"


def test_most_audible_location_is_the_site_the_model_is_surest_of_the_murmur():
    def presence(p):
        return {"Present": p, "Unknown": 0.0, "Absent": 1.0 - p}

    murmur = _answers("murmur", "Absent", "Present", "Present", probabilities=[presence(0.2), presence(0.6),
                                                                               presence(0.9)])
    asked = _answers("most_audible_location", "PV", "PV", "PV")
    per_recording = [{**m, **a} for m, a in zip(murmur, asked)]
    # The third recording has no known site; the replies to "where is it loudest?" (PV) are overruled.
    assert combine(per_recording, ["AV", "MV", None])[1]["most_audible_location"] == "MV"
    # Without sites, or without distributions, the replies are voted.
    assert combine(per_recording)[1]["most_audible_location"] == "PV"
    greedy = [{**m, **a} for m, a in zip(_answers("murmur", "Absent", "Present", "Present"), asked)]
    assert combine(greedy, ["AV", "MV", "TV"])[1]["most_audible_location"] == "PV"


def test_first_token_probabilities_read_whole_word_tokens_only():
    import math

    lp = math.log
    got = first_token_probabilities("systolic_grading", {"I": lp(0.5), "II": lp(0.2), "no": lp(0.25), "x": lp(0.05)})
    assert got == pytest.approx({"I/VI": 0.5, "II/VI": 0.2, "III/VI": 0.0, "nan": 0.25})
    presence = first_token_probabilities("murmur", {"Present": lp(0.3), "no": lp(0.2), "Absent": lp(0.4)})
    assert presence == pytest.approx({"Present": 0.3, "Unknown": 0.0, "Absent": 0.6})
    # A tokenizer that splits the labels into sub-words: nothing is read, rather than a wrong distribution.
    assert first_token_probabilities("systolic_timing", {"H": lp(0.6), "E": lp(0.3)}) is None
    assert first_token_probabilities("systolic_pitch", {"Lo": lp(0.9), "High": lp(0.05)}) is None


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    from assistant.data.synth import write_circor_folder

    root = tmp_path_factory.mktemp("llm_circor")
    write_circor_folder(root, n_patients=4, seed=5, duration=3.0)
    return root


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", *args],
                          capture_output=True, text=True)


def test_batch_round_trip(small_root, tmp_path):
    import soundfile as sf

    from assistant.llm.prompts import QUESTION_FEATURES, answer
    from eval.batch import SEP, read_batch_output

    batch = tmp_path / "requests.jsonl"
    common = ["--circor-root", str(small_root), "--split", "all", "--predictor", "audio-llm", "--no-progress"]
    r = _cli("eval", "run", *common, "--model", "tiny", "--out", str(tmp_path / "unused"), "--batch-out", str(batch))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in batch.read_text().splitlines()]
    assert len(lines) == 4 * 4 * len(QUESTION_FEATURES)  # patients x sites x questions
    first = lines[0]
    assert first["method"] == "POST" and first["url"] == "/v1/chat/completions"
    assert first["body"]["model"] == "tiny" and first["body"]["messages"][0]["role"] == "system"
    assert first["body"]["logprobs"] and first["body"]["top_logprobs"] >= 5
    audio = first["body"]["messages"][1]["content"][0]
    assert audio["type"] == "audio_url" and audio["audio_url"]["url"].startswith("file://")
    info = sf.info(audio["audio_url"]["url"][len("file://"):])
    assert info.samplerate == 16000 and info.duration == pytest.approx(3.0, abs=0.01)
    assert len({x["custom_id"] for x in lines}) == len(lines)
    assert not (tmp_path / "unused").exists()
    assert _cli("eval", "run", *common, "--model", "tiny", "--out", str(tmp_path / "u"), "--batch-out",
                str(batch)).returncode != 0  # never overwrites

    # vLLM's batch output: every reply is the training answer for the true label (one request failed).
    truth = {p.patient_id: p.labels for p in read_folder(small_root)}
    out_lines = []
    for k, req in enumerate(lines):
        pid, _, feature = req["custom_id"].split(SEP)
        labels = truth[pid]
        text = answer(feature, labels.murmur if feature == "murmur" else labels.feature(feature))
        response = {"status_code": 200, "request_id": f"r{k}", "body": {
            "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}}
        error = None
        if k == 0:
            response, error = {"status_code": 500, "request_id": "r0", "body": None}, {"message": "boom"}
        out_lines.append(json.dumps({"id": f"vllm-{k}", "custom_id": req["custom_id"], "response": response,
                                     "error": error}))
    replies = tmp_path / "replies.jsonl"
    # A run-batch that stopped early: the file is valid JSONL but short, and is refused, not scored.
    replies.write_text("\n".join(out_lines[:-5]) + "\n")
    partial = _cli("eval", "run", *common, "--out", str(tmp_path / "partial"), "--batch-in", str(replies))
    assert partial.returncode == 2 and "5 of" in partial.stderr and "did not finish" in partial.stderr
    assert not (tmp_path / "partial").exists()
    replies.write_text("\n".join(out_lines) + "\n")
    assert read_batch_output(replies)[lines[0]["custom_id"]] == {}
    r = _cli("eval", "run", *common, "--out", str(tmp_path / "scored"), "--batch-in", str(replies),
             "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert m["murmur"]["accuracy"]["value"] == 1.0
    assert all(f["accuracy"]["value"] == 1.0 for name, f in m["features"].items() if f["n"] and name in FEATURES)
    cache = [json.loads(x) for x in (tmp_path / "scored" / "cache.jsonl").read_text().splitlines()]
    assert all(len(c["answers"]["murmur"]) in (3, 4) for c in cache)  # raw replies kept; one was lost
