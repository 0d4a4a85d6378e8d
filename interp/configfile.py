"""Study config files, shared by every study runner and CLI.

A study config is a frozen dataclass with a few top-level keys (``name``, ``out_dir``...) and
sections (``[data]``, ``[train]``...), each a frozen dataclass that validates itself in
``__post_init__``. This module reads such a TOML file, applies ``section.key`` overrides
(the CLIs' ``--set``) with errors that name the valid keys, and holds the CLI plumbing
every runner shares (``--set/--out/--no-progress/--threads``).
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import tomllib
import types
import typing
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from interp.io import stable_hash

C = TypeVar("C")


class Hashed:
    """``to_dict()`` and a stable ``hash`` for a (frozen) dataclass config."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @property
    def hash(self) -> str:
        return stable_hash(self.to_dict())


def _tuples(value: Any) -> Any:
    """Lists become tuples, as TOML lists do in a loaded config (frozen and hashable)."""
    return tuple(value) if isinstance(value, list) else value


def _check_keys(cls, keys, where: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(keys) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in [{where}]: valid keys are {sorted(names)}")


def _type_name(tp: Any) -> str:
    """``float`` -> "a float", ``tuple[int, ...]`` -> "a list of int", for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "none (leave the key out)"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis:
            plural = {int: "integers", float: "floats", str: "strings", bool: "true/false values"}
            return f"a list of {plural.get(args[0], _type_name(args[0]))}"
        return f"a list of {len(args)} values" if args else "a list"
    name = getattr(tp, "__name__", str(tp))
    return {"int": "an integer", "float": "a float", "bool": "true or false", "str": "a string"}.get(name, f"a {name}")


def fits_annotation(value: Any, tp: Any) -> bool:
    """Whether a TOML value fits an annotation (ints are accepted for floats, bools are not
    numbers); annotations this checker does not know accept anything."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits_annotation(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits_annotation(v, args[0]) for v in value)
        return len(value) == len(args) and all(fits_annotation(v, a) for v, a in zip(value, args))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (bool, str):
        return isinstance(value, tp)
    if isinstance(tp, type) and not is_dataclass(tp):
        return isinstance(value, tp)
    return True


def check_types(cls: type, values: Mapping[str, Any], where: str) -> None:
    """Each value of ``values`` against ``cls``'s field annotation: a wrong type fails with
    one line naming the key, the value and the expected type (``train.lr = 'fast': expected
    a float``). Ranges are the dataclass's own ``__post_init__`` checks."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: leave it to the dataclass
        return
    for key, value in values.items():
        tp = hints.get(key)
        if tp is not None and not fits_annotation(value, tp):
            raise ValueError(f"{where + '.' if where else ''}{key} = {value!r}: expected {_type_name(tp)}")


def build_section(cls: type[C], raw: Mapping[str, Any], where: str) -> C:
    """One TOML table -> its dataclass; an unknown key fails naming the valid ones, a value
    of the wrong type names the key and the expected type."""
    _check_keys(cls, raw, where)
    check_types(cls, raw, where)
    try:
        return cls(**{k: _tuples(v) for k, v in raw.items()})
    except (ValueError, TypeError) as e:  # the dataclass's own range checks: name the table
        raise ValueError(f"[{where}]: {e}") from None


def apply_overrides(cfg: C, overrides: Mapping[str, Any], sections: Mapping[str, type],
                    top: Sequence[str] = ("name", "out_dir")) -> C:
    """``{"train.lr": 1e-4, "out_dir": "runs/x"}`` applied to ``cfg``; every section
    re-validates (``__post_init__``) with its new values."""
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        value = _tuples(value)
        if not name:
            if key not in top:
                raise ValueError(f"override {key!r}: use SECTION.KEY (sections {sorted(sections)}) or a top-level "
                                 f"key {list(top)}")
            check_types(type(cfg), {key: value}, "")
            cfg = replace(cfg, **{key: value})  # type: ignore[type-var]
            continue
        if section not in sections:
            raise ValueError(f"override {key!r}: unknown section {section!r}; valid sections are {sorted(sections)}")
        sub = getattr(cfg, section)
        _check_keys(type(sub), [name], section)
        check_types(type(sub), {name: value}, section)
        try:
            new = replace(sub, **{name: value})
        except (ValueError, TypeError) as e:  # the dataclass's own range checks: name the key
            raise ValueError(f"{key} = {value!r}: {e}") from None
        cfg = replace(cfg, **{section: new})  # type: ignore[type-var]
    return cfg


def load_sectioned(path: str | Path, root: type[C], sections: Mapping[str, type], *,
                   top: Sequence[str] = ("name", "out_dir"), overrides: Mapping[str, Any] | None = None,
                   presets: str = "experiments/") -> C:
    """Read a TOML config of ``root`` (top-level keys ``top``, tables ``sections``), then
    apply ``overrides``. A missing file names the presets; unknown keys name the valid ones."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no config at {path}; presets: {presets}")
    raw = tomllib.loads(path.read_text())
    unknown = sorted(set(raw) - set(top) - set(sections))
    if unknown:
        raise ValueError(f"unknown top-level keys {unknown} in {path}: valid are {list(top)} and sections "
                         f"{sorted(sections)}")
    check_types(root, {k: v for k, v in raw.items() if k in top}, "")
    for k in sections:
        if k in raw and not isinstance(raw[k], dict):
            raise ValueError(f"{k} = {raw[k]!r} in {path}: expected a [{k}] table")
    cfg = root(**{k: _tuples(v) for k, v in raw.items() if k in top},
               **{k: build_section(cls, raw.get(k, {}), k) for k, cls in sections.items()})
    return apply_overrides(cfg, overrides or {}, sections, top)


# ------------------------------------------------------------------------- CLI
def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``true``, ``[0, 1]``, ``1e-3``, ``'x'``), else a Python
    literal (``None``), else the plain string (``every:4``). Lists become tuples, as in a
    loaded config. A bracketed list of bare words (``[hypernym]``, what a shell leaves of
    ``['hypernym']``) is a list of their values."""
    try:
        return _tuples(tomllib.loads(f"v = {text}")["v"])
    except tomllib.TOMLDecodeError:
        pass
    try:
        return _tuples(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        pass
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]") and "[" not in inner[1:-1]:
        return tuple(parse_value(x.strip()) for x in inner[1:-1].split(",") if x.strip())
    return text


def parse_sets(items: Sequence[str], out: str | None = None) -> dict[str, Any]:
    """``["train.lr=1e-4", "seeds=[0,1]"]`` (+ ``--out``) -> overrides for :func:`apply_overrides`."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE (or a top-level KEY=VALUE)")
        overrides[key] = parse_value(value)
    if out:
        overrides["out_dir"] = out
    return overrides


def cli_overrides(ap: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The overrides of ``--set`` and ``--out`` (see :func:`add_study_args`); a malformed
    ``--set`` exits through ``ap.error`` with the bad item named."""
    try:
        return parse_sets(args.set, args.out)
    except ValueError as e:
        ap.error(str(e))
        raise  # unreachable: ap.error exits


def load_or_exit(ap: argparse.ArgumentParser, loader: Callable[..., Any], path: str,
                 overrides: dict[str, Any] | None = None) -> Any:
    """``loader(path, overrides)``, or one clear line and exit code 2 (``ap.error``, no
    traceback) when the config is missing, is not valid TOML (file, line and column named)
    or holds a bad value."""
    try:
        return loader(path, overrides or {})
    except tomllib.TOMLDecodeError as e:
        ap.error(f"{path}: not valid TOML: {e}")
    except (FileNotFoundError, ValueError, TypeError, KeyError) as e:
        ap.error(f"{path}: {e}")
    raise AssertionError("unreachable: ap.error exits")


def add_study_args(ap: argparse.ArgumentParser, config_help: str, set_example: str, *,
                   threads: bool = True) -> None:
    """The arguments every study CLI takes: CONFIG, --set, --out, --no-progress, --dry-run (, --threads)."""
    ap.add_argument("config", help=config_help)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help=f"override a config value (TOML syntax), e.g. {set_example}")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-progress", action="store_true")
    add_dry_run(ap)
    if threads:
        ap.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: $OMP_NUM_THREADS if set, else all cores)")


def add_dry_run(ap: argparse.ArgumentParser) -> None:
    """``--dry-run``: check the config and the arguments, say what would run, load nothing."""
    ap.add_argument("--dry-run", action="store_true",
                    help="check the config and arguments, print what would run and exit (no model is loaded)")


def dry_run_exit(ap: argparse.ArgumentParser, what: str, cfg: Any = None) -> None:
    """End a ``--dry-run``: one line saying the input is valid and what would run; exit code 0."""
    where = f"; results in {cfg.out_dir}" if getattr(cfg, "out_dir", None) else ""
    ap.exit(0, f"{ap.prog}: dry run: {what} is valid{where}; nothing was loaded or run\n")


def load_study_config(ap: argparse.ArgumentParser, args: argparse.Namespace, loader: Callable[..., Any],
                      what: Callable[[Any], str] | None = None, check: Callable[[Any], None] | None = None) -> Any:
    """The study CLIs' common path (arguments of :func:`add_study_args`): check ``--threads``,
    apply ``--set``/``--out``, load the config with :func:`load_or_exit`, run ``check(cfg)``
    (a cheap check of what the config points to, e.g. that a checkpoint exists: its
    ``ValueError`` or ``FileNotFoundError`` exits with one line), end a ``--dry-run``
    (saying ``what(cfg)``, default the config path), then set torch's threads (``--threads``,
    else the config's ``threads`` field when it has one, else the default of
    :func:`set_threads`). Every bad input exits with one line and code 2 before any model loads."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        ap.error(f"--threads {threads}: must be >= 1")
    cfg = load_or_exit(ap, loader, args.config, cli_overrides(ap, args))
    if check is not None:
        try:
            check(cfg)
        except (ValueError, FileNotFoundError) as e:
            ap.error(str(e))
    if args.dry_run:
        dry_run_exit(ap, what(cfg) if what else args.config, cfg)
    set_threads(threads or getattr(cfg, "threads", None) or None)
    return cfg


def run_source(args: argparse.Namespace) -> str:
    """What reproduces a study run, as typed: the config path, every ``--set`` and ``--out``
    (recorded with the results)."""
    return shlex.join([args.config, *(f"--set={s}" for s in args.set), *(["--out", args.out] if args.out else [])])


def set_threads(n: int | None = None) -> int:
    """torch CPU threads: ``n``, else ``$OMP_NUM_THREADS``, else all cores."""
    import torch  # deferred: configfile stays torch-free so config checks run before torch loads

    if n is not None and n < 1:
        raise ValueError(f"threads {n}: must be >= 1")
    n = n or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
