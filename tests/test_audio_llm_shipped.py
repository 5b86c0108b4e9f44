"""The shipped murmur-qwen2-audio-mini, served by `murmurscope serve llm` with no --model (the real vLLM), asked
about real CirCor recordings: its murmur call on the validation patients must reproduce the number its
evaluation (`evaluation.json` beside the weights, from `murmurscope eval run --predictor audio-llm`) documents,
within that evaluation's 95% interval; and the analysis shows its answers beside the classifier's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from assistant.llm.launcher import REPO_VLLM_PYTHON, SHIPPED_MODEL
from tests.live_server import free_port
from tests.test_audio_llm_serving import MURMURSCOPE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.realdata]

if not REPO_VLLM_PYTHON.exists():
    pytest.skip("no .venv-vllm here: run `make setup-vllm` (make test does)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`murmurscope serve llm --port P`: the shipped model, as a user starts it."""
    port = free_port()
    log = (tmp_path_factory.mktemp("shipped_vllm") / "serve.log").open("wb")
    proc = subprocess.Popen([MURMURSCOPE, "serve", "llm", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve llm exited with {proc.returncode}; see {log.name}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"serve llm not ready within 300 s; see {log.name}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def test_the_served_name_is_the_clients_default(served):
    from assistant.llm.client import AudioLLMConfig

    models = [m["id"] for m in httpx.get(served + "/models").json()["data"]]
    assert models == [AudioLLMConfig(base_url=served).model]


def test_murmur_call_on_validation_patients_reproduces_the_documented_uar(served, circor_dev):
    from assistant.data.circor import read_folder
    from assistant.data.split import SplitConfig, split_patients
    from assistant.llm.client import AudioLLMConfig
    from assistant.llm.opinion import ask_all, combine
    from eval.metrics import uar

    documented = json.loads((SHIPPED_MODEL / "evaluation.json").read_text())["murmur"]["uar"]
    patients = [p for p in read_folder(circor_dev) if p.labels is not None]
    val = set(split_patients(patients, SplitConfig()).val)
    config = AudioLLMConfig(base_url=served)
    truth, calls = [], []
    for p in patients:
        if p.patient_id not in val:
            continue
        answers = ask_all([ref.load() for ref in p.recordings], config, features=("murmur",))
        # Every reply's first token is read as a distribution over the answers (the feature vote's ballots).
        assert all(sum(a["murmur"].probabilities.values()) > 0.9 for a in answers)
        truth.append(p.labels.murmur)
        calls.append(combine(answers)[0])
    measured = uar(truth, calls)
    assert documented["ci95"][0] <= measured <= documented["ci95"][1], (measured, documented)


def test_analysis_shows_the_audio_llms_answers_beside_the_classifiers(served, circor_dev, analyzer):
    from assistant.consult.report import findings_markdown
    from assistant.consult.second_opinion import with_audio_llm
    from assistant.data.circor import read_folder
    from assistant.llm.client import AudioLLMConfig

    patient = next(p for p in read_folder(circor_dev) if p.labels is not None and p.labels.murmur == "Present")
    recordings = [ref.load() for ref in patient.recordings]
    findings = with_audio_llm(analyzer.analyze(recordings, guidance=False), recordings, AudioLLMConfig(base_url=served))
    opinion = findings.audio_llm
    assert opinion.error is None and opinion.murmur in ("Present", "Unknown", "Absent")
    assert set(opinion.answers) == {r.id for r in findings.recordings}
    assert all(len(a) == 12 for a in opinion.answers.values())
    assert "| murmur | " in findings_markdown(findings)
