"""Typer options built from config dataclasses, so each setting's type, default and help are written once.

A field becomes `--field-name`; the fields of a nested dataclass become `--parent-field` (SplitConfig.seed
inside SegmenterTrainConfig.split is `--split-seed`). Field metadata carries the rest:
`help` (the option's help), `env` (an environment variable read when the option is not given), `name` (the
option's name when it is not the field's) and `aliases` (further flags, e.g. "-k").

    @app.command("classifier", cls=ConfigCommand)
    @from_config(config="finetune.classifier:ClassifierTrainConfig", yaml=True)
    def classifier(config: ClassifierTrainConfig) -> None: ...

With `yaml=True` the command also takes `--config FILE.yaml` (as TRL does): the file's values replace the
defaults, and options actually given on the command line replace the file's.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from rich.markup import escape
from typer.core import TyperCommand
from typer.main import get_command_from_info
from typer.models import CommandInfo

from assistant.errors import ConfigError

_CTX = "_murmurscope_ctx"
_CONFIG = "config_file"
_SCALARS = (bool, int, float, str, Path)


@dataclass(frozen=True)
class Section:
    """One config dataclass of a command (the class, or "module:Name"). `prefix` goes before its option
    names (`chat` -> `--chat-model`); an `optional` section is None when a required field of it is not
    given (no audio-LLM URL: no audio-LLM)."""

    cls: type | str
    prefix: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Leaf:
    """One option: a scalar field reached from the section's dataclass through `path`."""

    path: tuple[str, ...]
    param: str  # the Python parameter name; also the YAML key
    kind: Any  # the field's type without `| None`
    nullable: bool
    default: Any  # MISSING for a required field
    factory: Any  # the field's default_factory (the option then defaults to unset), else MISSING
    help: str
    env: str | None
    aliases: tuple[str, ...]

    @property
    def flag(self) -> str:
        return "--" + self.param.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.factory is MISSING


def _split_optional(t: Any) -> tuple[Any, bool]:
    if get_origin(t) in (Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(t))
    return t, False


def _is_tuple(t: Any) -> bool:
    return get_origin(t) is tuple


def _cli_type(t: Any) -> bool:
    """Whether a command-line option can carry this type (others, e.g. dicts, are YAML-only)."""
    if get_origin(t) is Literal or t in _SCALARS:
        return True
    return _is_tuple(t) and all(a in (int, float, str) or a is Ellipsis for a in get_args(t))


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every command-line setting of `cls`, nested dataclasses flattened."""
    return list(_leaves(cls, prefix, (), None))


def _leaves(cls: type, prefix: str, path: tuple[str, ...], instance: Any):
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.init:
            continue
        name = f.metadata.get("name", f.name)
        param = f"{prefix}_{name}" if prefix else name
        # Nested defaults come from the parent's default instance (CNNConfig's mel is CIRCOR_MEL, not MelConfig()).
        default = getattr(instance, f.name) if instance is not None else _field_default(f)
        kind, nullable = _split_optional(hints[f.name])
        if is_dataclass(kind):
            yield from _leaves(kind, param, path + (f.name,), default)
            continue
        if not _cli_type(kind):
            continue
        factory = f.default_factory if instance is None and f.default_factory is not MISSING else MISSING
        yield Leaf(path + (f.name,), param.replace("-", "_"), kind, nullable,
                   MISSING if factory is not MISSING else default, factory, f.metadata.get("help", ""),
                   f.metadata.get("env"), tuple(f.metadata.get("aliases", ())))


def _file_only(cls: type) -> dict[str, Any]:
    """Top-level fields no option carries (e.g. a dict of extra trainer settings), by type: set in YAML."""
    hints = typing.get_type_hints(cls)
    kinds = {f.name: _split_optional(hints[f.name])[0] for f in fields(cls) if f.init}
    return {name: kind for name, kind in kinds.items() if not is_dataclass(kind) and not _cli_type(kind)}


def _parameter(leaf: Leaf, yaml: bool, optional: bool) -> inspect.Parameter:
    kind = str if _is_tuple(leaf.kind) else leaf.kind
    flags = ([f"{leaf.flag}/--no-{leaf.flag[2:]}"] if kind is bool else [leaf.flag]) + list(leaf.aliases)
    help_text = escape(leaf.help)  # help reads "[default: ...]" literally, not as rich markup
    show_default = True
    if leaf.required and optional:
        default = None  # not given: the section is None
    elif leaf.required and yaml:
        # The file may give it, so the command line cannot insist on it; the builder checks.
        default, help_text = None, f"{help_text} (required)".strip()
    elif leaf.required:
        default = inspect.Parameter.empty
    elif leaf.factory is not MISSING:
        default, show_default = None, False
    elif _is_tuple(leaf.kind):
        default = None if leaf.default is None else ",".join(str(v) for v in leaf.default)
    else:
        default = leaf.default
    nullable = leaf.nullable or default is None
    annotation = Annotated[(kind | None) if nullable else kind,
                           typer.Option(*flags, help=help_text, envvar=leaf.env, show_default=show_default,
                                        rich_help_panel=leaf.path[0].replace("_", " ") if len(leaf.path) > 1
                                        else None)]
    return inspect.Parameter(leaf.param, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _type_name(t: Any) -> str:
    if get_origin(t) is Literal:
        return "one of " + ", ".join(map(str, get_args(t)))
    if _is_tuple(t):
        return f"a list of {get_args(t)[0].__name__}s"
    return {Path: "a path", bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        t, getattr(t, "__name__", str(t)))


def coerce(value: Any, kind: Any, nullable: bool, where: str) -> Any:
    """A YAML (or comma-separated) value as the field's type; a ConfigError names `where` if it is not one."""
    if value is None and nullable:
        return None
    if get_origin(kind) is Literal:
        if value in get_args(kind):
            return value
    elif _is_tuple(kind):
        elem = get_args(kind)[0]
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            try:
                return tuple(elem(v) if isinstance(v, str) and elem is not str else coerce(v, elem, False, where)
                             for v in items)
            except (ValueError, ConfigError):
                pass
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is dict or get_origin(kind) is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"{where} must be {_type_name(kind)}, not {value!r}")


def read_yaml(path: Path, settings: dict[str, Leaf], file_only: dict[str, Any]) -> dict[str, Any]:
    """The file's settings by parameter name. Keys are option names (`split_seed` or `split-seed`) or nested
    mappings (`split: {seed: 1}`)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at} ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of setting: value")
    values: dict[str, Any] = {}

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            name = f"{prefix}_{key}" if prefix else str(key)
            name = name.replace("-", "_")
            if name in settings:
                leaf = settings[name]
                values[name] = coerce(value, leaf.kind, leaf.nullable, f"{path}: {name}")
            elif name in file_only:
                values[name] = coerce(value, file_only[name], False, f"{path}: {name}")
            elif isinstance(value, dict) and any(s.startswith(name + "_") for s in settings):
                walk(value, name)
            else:
                raise ConfigError(f"{path}: unknown setting {name!r} (the settings are the command's options, "
                                  "see --help)")

    walk(data, "")
    return values


def _build(section: Section, settings: list[Leaf], chosen: dict[str, Any], file_only: dict[str, Any] | None) -> Any:
    """The section's dataclass from the chosen values; defaults stay the dataclass's own. `file_only` is
    None for a command without --config."""
    by_path: dict[tuple[str, ...], Any] = {leaf.path: chosen[leaf.param] for leaf in settings if leaf.param in chosen}
    missing = [leaf for leaf in settings if leaf.required and leaf.path not in by_path]
    if missing:
        if section.optional:
            return None
        where = " (or give it in --config)" if file_only is not None else ""
        raise ConfigError(f"missing option {missing[0].flag}{where}")
    kwargs: dict[str, Any] = {}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in by_path.items():
        if len(path) == 1:
            kwargs[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1:]] = value
    top = {f.name: f for f in fields(section.cls)}
    for name, values in nested.items():
        kwargs[name] = _replace_nested(_field_default(top[name]), values)
    kwargs.update(file_only or {})
    return section.cls(**kwargs)


def _replace_nested(instance: Any, values: dict[tuple[str, ...], Any]) -> Any:
    direct = {path[0]: v for path, v in values.items() if len(path) == 1}
    deeper: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, v in values.items():
        if len(path) > 1:
            deeper.setdefault(path[0], {})[path[1:]] = v
    direct.update({name: _replace_nested(getattr(instance, name), sub) for name, sub in deeper.items()})
    return replace(instance, **direct)


def _given(ctx: typer.Context, name: str) -> bool:
    # By name: typer bundles its own click, whose ParameterSource enum is not public.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _resolve(ref: type | str) -> type:
    """A dataclass, or "module:Name" for one whose module is imported only when the command is used."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def from_config(*, yaml: bool = False, **sections: type | str | Section):
    """Decorate a command whose parameters named in `sections` receive built config instances: they are
    replaced by one option per setting. The command's other parameters stay as they are. Register it with
    `cls=ConfigCommand`; name a dataclass as "module:Name" to keep its imports out of `murmurscope --help`."""

    def decorate(func):
        @functools.wraps(func)
        def light(**kwargs):  # pragma: no cover - ConfigCommand calls the full command instead
            raise TypeError(f"{func.__name__}: register it with cls=ConfigCommand")

        light.__signature__ = inspect.Signature()
        light.__annotations__ = {}  # they name configs, which typer must not resolve yet
        light.full_command = functools.cache(lambda: _full_command(func, yaml, sections))
        return light

    return decorate


def _full_command(func, yaml: bool, sections: dict[str, type | str | Section]):
    """The command function with its real signature: explicit parameters, then one option per setting."""
    specs = {}
    for key, ref in sections.items():
        spec = ref if isinstance(ref, Section) else Section(ref)
        specs[key] = replace(spec, cls=_resolve(spec.cls))
    signature = inspect.signature(func)
    # The configs' names may be imported for type checking only; the other annotations resolve as written.
    hints = typing.get_type_hints(func, localns={s.cls.__name__: s.cls for s in specs.values()}, include_extras=True)
    explicit = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values() if p.name not in specs]
    settings = {k: leaves(s.cls, s.prefix.replace("-", "_")) for k, s in specs.items()}
    extra = {k: _file_only(s.cls) if yaml else {} for k, s in specs.items()}
    params = explicit + [_parameter(leaf, yaml, specs[k].optional) for k, group in settings.items() for leaf in group]
    if yaml:
        params.append(inspect.Parameter(_CONFIG, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Path | None, typer.Option(
                                            "--config", help="YAML file of settings; options given on the "
                                                             "command line override it.")]))
    params.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
    names = [p.name for p in params]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise TypeError(f"{func.__name__}: options defined twice: {', '.join(sorted(clashes))}")
    by_param = {leaf.param: leaf for group in settings.values() for leaf in group}
    file_only = {name: kind for group in extra.values() for name, kind in group.items()}

    @functools.wraps(func)
    def command(**kwargs):
        ctx = kwargs.pop(_CTX)
        config_file = kwargs.pop(_CONFIG, None)
        chosen = read_yaml(config_file, by_param, file_only) if config_file is not None else {}
        for name, leaf in by_param.items():
            if _given(ctx, name):
                value = kwargs[name]
                chosen[name] = coerce(value, leaf.kind, True, leaf.flag) if _is_tuple(leaf.kind) else value
        built = {k: _build(spec, settings[k], chosen, {f: chosen[f] for f in extra[k] if f in chosen}
                           if yaml else None)
                 for k, spec in specs.items()}
        return func(**{p.name: kwargs[p.name] for p in explicit}, **built)

    del command.__wrapped__  # typer must see the new signature, not the function's
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


class ConfigCommand(TyperCommand):
    """A command made by `from_config`, whose options are built when it is used (its help, its run), not
    when the whole command tree is: that would import every config's module (torch, LangChain, FastAPI)
    for `murmurscope --help`."""

    def __init__(self, *args, callback=None, **kwargs):
        self._full_function = inspect.unwrap(callback, stop=lambda f: hasattr(f, "full_command")).full_command
        self._full = None
        super().__init__(*args, callback=callback, **kwargs)

    def _command(self) -> TyperCommand:
        if self._full is None:
            # typer's own builder, on the function with the real signature.
            info = CommandInfo(name=self.name, callback=self._full_function(), help=self.help)
            self._full = get_command_from_info(info, pretty_exceptions_short=True,
                                               rich_markup_mode=self.rich_markup_mode)
        return self._full

    # typer hands in the light function's (empty) parameters and callback; the real ones are built on use.
    params = property(lambda self: self._command().params, lambda self, value: None)
    callback = property(lambda self: self._command().callback, lambda self, value: None)
