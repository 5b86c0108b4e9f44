"""The direction of dependencies between the stages, read from the imports (ast, function bodies included).

Consultation-time code (assistant/ but cli/) never imports finetune/ or eval/; assistant/data imports no
other stage; the API and the app reach the models only through assistant/consult. Each stage lists what it
may import; a new edge is a decision to make in this table, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("assistant", "finetune", "eval", "knowledge")

# What each part may import from the project, by the first two name parts ("assistant.data") or the package.
ALLOWED = {
    "assistant.errors": set(),
    "assistant.data": {"assistant.errors", "assistant.data"},
    "assistant.segment": {"assistant.errors", "assistant.data", "assistant.segment"},
    "assistant.murmur": {"assistant.errors", "assistant.data", "assistant.segment", "assistant.murmur"},
    # Normal/abnormal reads the murmur CNN's embeddings and the segmenter's cycles.
    "assistant.abnormal": {"assistant.errors", "assistant.data", "assistant.segment", "assistant.murmur",
                           "assistant.abnormal"},
    "assistant.llm": {"assistant.errors", "assistant.data", "assistant.llm"},
    "assistant.consult": {"assistant.errors", "assistant.data", "assistant.segment", "assistant.murmur",
                          "assistant.abnormal", "assistant.llm", "assistant.consult", "knowledge"},
    "assistant.viz": {"assistant.errors", "assistant.data", "assistant.consult", "assistant.viz"},
    # Reports fingerprint the weights they were made with, so they may name the weights' folders.
    "assistant.report": {"assistant.errors", "assistant.data", "assistant.segment", "assistant.murmur",
                         "assistant.consult", "assistant.viz", "assistant.report", "knowledge"},
    "assistant.serve": {"assistant.errors", "assistant.data", "assistant.consult", "assistant.report",
                        "assistant.serve"},
    # The app also lets a user add a guideline to the session's retriever (knowledge/ingest).
    "streamlit_app": {"assistant.errors", "assistant.data", "assistant.consult", "assistant.report", "assistant.viz",
                      "knowledge"},
    "knowledge": {"assistant.errors", "knowledge"},
}
# cli/ composes everything, and each package's own `cli.py` is one of its typer groups, built with
# assistant/cli/options.py; training and evaluation may use any consultation-time code but not the CLI.
ANYTHING_BUT_CLI = ("finetune", "eval")


def _is_cli(module: str) -> bool:
    return _part(module) == "assistant.cli" or module.split(".")[-1] == "cli"


def _part(module: str) -> str:
    """'assistant.data.audio' -> 'assistant.data'; 'knowledge.index' -> 'knowledge'."""
    names = module.split(".")
    return ".".join(names[:2]) if names[0] == "assistant" and len(names) > 1 else names[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "assistant":
                # `from assistant import murmur` names a subpackage; `__version__` is the package's own.
                for alias in node.names:
                    yield node.lineno, "assistant" if alias.name.startswith("__") else f"assistant.{alias.name}"
            else:
                yield node.lineno, node.module


def _sources() -> list[Path]:
    files = [ROOT / "streamlit_app.py"]
    for package in PROJECT:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def violations() -> list[str]:
    found = []
    for path in _sources():
        module = _module_of(path)
        if _is_cli(module):
            continue
        part = _part(module)
        for lineno, name in _imports(path):
            if name.split(".")[0] not in PROJECT:
                continue
            target = _part(name)
            if target == "assistant":
                continue
            if part in ANYTHING_BUT_CLI:
                ok = target != "assistant.cli"
            else:
                ok = target in ALLOWED.get(part, set())
            if not ok:
                source = path.read_text().splitlines()[lineno - 1].strip()
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {part} may not import {target}: {source}")
    return found


def test_every_part_has_a_rule():
    parts = {_part(_module_of(p)) for p in _sources()}
    unruled = parts - set(ALLOWED) - set(ANYTHING_BUT_CLI) - {"assistant.cli", "assistant"}
    assert not unruled, f"add these to ALLOWED: {sorted(unruled)}"


def test_dependencies_point_one_way():
    found = violations()
    assert not found, "\n".join(found)


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The rule table is only worth something if a bad edge fails; plant one and look for it."""
    import tests.test_architecture as me

    fake_root = tmp_path / "repo"
    (fake_root / "assistant" / "data").mkdir(parents=True)
    (fake_root / "streamlit_app.py").write_text("from assistant.murmur.model import MurmurModel\n")
    (fake_root / "assistant" / "data" / "audio.py").write_text("def f():\n    from eval.metrics import uar\n")
    monkeypatch.setattr(me, "ROOT", fake_root)
    found = me.violations()
    assert any("streamlit_app.py:1: streamlit_app may not import assistant.murmur" in v for v in found), found
    assert any("assistant/data/audio.py:2: assistant.data may not import eval" in v for v in found), found


def test_assistant_top_level_stays_small():
    modules = sorted(p.name for p in (ROOT / "assistant").glob("*.py"))
    assert len(modules) <= 4, modules
