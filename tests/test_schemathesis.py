"""The live API against its own OpenAPI schema: schemathesis with every check, zero failures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.consult.consultation import Consultation
from assistant.serve.app import APIConfig, create_app
from tests.live_server import serve

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None,
                    reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_api_conforms_to_its_schema(analyzer, tmp_path):
    app = create_app(Consultation(analyzer), APIConfig(api_key="k", max_upload_mb=1.0, upload_dir=tmp_path))
    exe = str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis"))
    with serve(app) as url:
        run = subprocess.run([exe, "--config-file", str(ROOT / "schemathesis.toml"), "--no-color", "run",
                              f"{url}/openapi.json", "--checks", "all", "-H", "Authorization: Bearer k",
                              "--max-examples", "30", "--seed", "13", "--request-timeout", "60",
                              "--report-dir", str(tmp_path / "reports")],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "No issues found" in run.stdout or "passed" in run.stdout, run.stdout[-2000:]
