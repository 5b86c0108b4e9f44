"""The command line built from the config dataclasses (assistant/cli/options.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.cli.options import ConfigCommand, from_config
from assistant.data.split import SplitConfig
from assistant.errors import ConfigError

WIDE = {"COLUMNS": "250"}  # option names must not be cut by a narrow terminal


def _flags(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """--flag -> field for every field, nested dataclasses flattened as --parent-field (written out here,
    not taken from options.py, so the two cannot drift together)."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}-{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_flags(hints[f.name], name))
        else:
            out["--" + name.replace("_", "-")] = f
    return out


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", *args],
                          capture_output=True, text=True)


def test_classifier_help_lists_every_setting():
    from finetune.classifier import ClassifierTrainConfig

    flags = _flags(ClassifierTrainConfig)
    assert len(flags) > 33  # the 33 top-level settings, the nested ones flattened
    result = CliRunner().invoke(app, ["finetune", "classifier", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    missing = [flag for flag in flags if flag not in result.output]
    assert not missing, f"not on the command line: {missing}"
    undocumented = [flag for flag, f in flags.items() if not f.metadata.get("help")]
    assert not undocumented, f"no help text: {undocumented}"
    assert "--config" in result.output and "--split-seed" in result.output and "--cnn-mel-n-mels" in result.output


@dataclass(frozen=True)
class Toy:
    root: Path = field(metadata={"help": "A folder."})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "How."})
    steps: int = field(default=10, metadata={"help": "Steps."})
    rate: float = field(default=0.5, metadata={"help": "Rate."})
    sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "Sizes."})
    limit: int | None = field(default=None, metadata={"help": "Limit."})
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, not {self.steps}")


toy = typer.Typer()
seen: list[Toy] = []


@toy.command("go", cls=ConfigCommand)
@from_config(config=Toy, yaml=True)
def go(config: Toy, loud: bool = False) -> None:
    seen.append(config)


@toy.command("other")
def other() -> None:
    pass


def _toy(*args: str, yaml_text: str | None = None, tmp_path: Path | None = None) -> Toy:
    seen.clear()
    argv = ["go", *args]
    if yaml_text is not None:
        path = tmp_path / "settings.yaml"
        path.write_text(yaml_text)
        argv += ["--config", str(path)]
    result = CliRunner().invoke(toy, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return seen[-1]


def test_yaml_values_then_command_line_override(tmp_path):
    text = "root: data\nmode: slow\nsteps: 3\nsizes: [4, 5]\nsplit: {seed: 7}\nsplit_val_fraction: 0.2\n"
    c = _toy(yaml_text=text, tmp_path=tmp_path)
    assert c == Toy(root=Path("data"), mode="slow", steps=3, sizes=(4, 5), split=SplitConfig(0.2, 7))
    # Given on the command line beats the file, even when it equals the default; the rest stays the file's.
    c = _toy("--steps", "10", "--split-seed", "1", "--sizes", "8,9", yaml_text=text, tmp_path=tmp_path)
    assert (c.steps, c.split, c.sizes, c.mode) == (10, SplitConfig(0.2, 1), (8, 9), "slow")
    # Neither: the dataclass's own defaults.
    assert _toy("--root", "r") == Toy(root=Path("r"))


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("root: r\nbogus: 1\n", "unknown setting 'bogus'"),
    ("root: r\nmode: medium\n", "mode must be one of fast, slow, not 'medium'"),
    ("root: r\nsteps: many\n", "steps must be an integer, not 'many'"),
    ("root: r\nsteps: 0\n", "--steps must be at least 1, not 0"),
    ("root: [r\n", "not valid YAML"),
    ("mode: slow\n", "missing option --root"),
])
def test_bad_settings_are_config_errors(tmp_path, yaml_text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        _toy(yaml_text=yaml_text, tmp_path=tmp_path)


def test_commands_do_not_import_their_configs_to_list_help():
    # `murmurscope --help` must not pay for torch, LangChain and FastAPI (the configs' modules).
    code = ("import sys; from typer.testing import CliRunner; from assistant.cli.main import app\n"
            "for group in ([], ['finetune'], ['eval'], ['serve'], ['index']):\n"
            "    r = CliRunner().invoke(app, [*group, '--help']); assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'langchain', 'fastapi', 'finetune.classifier') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_real_command_yaml_precedence(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "murmur.safetensors").write_bytes(b"")  # the command stops here once its config is built
    settings = tmp_path / "train.yaml"
    settings.write_text(f"circor_root: {tmp_path}\nout: {out}\nhead_fraction: 1.0\n")
    refused = _main("finetune", "classifier", "--config", str(settings))
    assert refused.returncode == 2 and "--head-fraction must lie in [0, 1), not 1.0" in refused.stderr
    overridden = _main("finetune", "classifier", "--config", str(settings), "--head-fraction", "0.25")
    assert overridden.returncode == 2 and "already holds a murmur model" in overridden.stderr


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("circor_root: data\nout: model\nlearning_rate: 0.1\n", "unknown setting 'learning_rate'"),
    ("circor_root: data\nout: model\nencoder: resnet\n", "encoder must be one of cnn, m2d, not 'resnet'"),
])
def test_bad_yaml_is_one_line_exit_2(tmp_path, yaml_text, message):
    settings = tmp_path / "train.yaml"
    settings.write_text(yaml_text)
    result = _main("finetune", "classifier", "--config", str(settings))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "model").exists()
