"""Settings dataclasses whose fields are the command-line options: one declaration, one validation style.

Every setting is declared once, as a field of a frozen dataclass (`ScoreConfig`, `ServeConfig`, the
training jobs' configs, ...) with `option(default, help=...)`. From those fields come:
- the validation (`Settings`): types from the annotations, then each class's own `problems()`, all
  reported at once as one `InputError` ("invalid settings: a; b");
- the typer options of every command that takes them (`command_options`), with their help text and
  defaults, so that no command declares an option again and no help string repeats a default by hand;
- an argparse parser, for the `python -m` entry points outside the typer CLI (`argument_parser`).

Two kinds of options come from fields. `given` options (the scoring settings) default to "not given":
a value left out falls back to the model file's `rprm.*` defaults, then to the field's, and the help says
`[default: X]` from the field. Plain options default to the field's value, shown by typer.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeGuard, TypeVar

from rprm_lite.errors import InputError


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None, metavar: str | None = None,
           shown_default: str | None = None, cli_type: Any = None, cli_default: Any = dataclasses.MISSING,
           parse: Callable[[Any], Any] | None = None) -> Any:
    """A settings field and its command-line option.

    `flag`: the option's declaration (default `--field-name`; a plain option of type bool gets
    `--name/--no-name`). `shown_default`: the default as the help states it, where the field's value would
    mislead (threads: "all cores", not None). `cli_type`, `cli_default` and `parse`: the option's type and default when
    they differ from the field's, and the conversion of a given value into the field's type.
    """
    metadata = {"help": help, "flag": flag, "metavar": metavar, "shown_default": shown_default,
                "cli_type": cli_type, "cli_default": cli_default, "parse": parse}
    return dataclasses.field(default=default, metadata=metadata)


SettingsT = TypeVar("SettingsT", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """Base of the settings dataclasses: checked on construction, with one message for all problems.

    Type problems come first (a range check on a value of the wrong type would be meaningless): an int,
    float or bool field, or one typed as a `Literal` of choices, must hold such a value (None where the
    annotation allows it; NaN and inf are no numbers here). Then the subclass's `problems()`.
    """

    WHAT: ClassVar[str] = "settings"  # as the message names them: "invalid settings: ..."
    DASHED: ClassVar[bool] = False  # name fields in messages as their flags (max-queue), not as fields

    def __post_init__(self) -> None:
        self.normalize()
        problems = list(self.type_problems()) or list(self.problems())
        if problems:
            raise InputError(f"invalid {self.WHAT}: " + "; ".join(problems))

    def normalize(self) -> None:
        """Bring accepted spellings of a value into the field's form before the checks (subclasses)."""

    def problems(self) -> Iterator[str]:
        """Messages for values out of range (subclasses); types are already checked."""
        return iter(())

    def type_problems(self) -> Iterator[str]:
        settings_class: type = type(self)  # mypy takes a dataclass's __hash__ for its class's: not Hashable
        for name, kind in _checked_fields(settings_class).items():
            value = getattr(self, name)
            if value is None and kind.optional:
                continue
            if kind.choices is not None:
                yield from self.one_of(name, kind.choices)
            elif not _has_type(kind.base, value):
                yield f"{self.label(name)} must be {_EXPECTED[kind.base]}, got {shown(value)}"

    def label(self, name: str) -> str:
        return name.replace("_", "-") if self.DASHED else name

    def at_least(self, **minimums: float) -> Iterator[str]:
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                yield f"{self.label(name)} must be at least {minimum}, got {shown(value)}"

    def one_of(self, name: str, allowed: Sequence[str]) -> Iterator[str]:
        value = getattr(self, name)
        if value not in allowed:
            yield f"{self.label(name)} must be one of {', '.join(allowed)}, got {shown(value)}"

    def replace(self: SettingsT, **changes: Any) -> SettingsT:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Kind:
    base: type
    optional: bool
    choices: tuple[str, ...] | None = None


_EXPECTED = {bool: "true or false", int: "an integer", float: "a finite number"}


@functools.cache
def _checked_fields(cls: type) -> dict[str, _Kind]:
    """The fields of `cls` whose type is checked: int, float, bool and Literal choices, maybe optional."""
    kinds, names = {}, {spec.name for spec in dataclasses.fields(cls)}
    for name, hint in typing.get_type_hints(cls).items():
        if name not in names:  # ClassVars
            continue
        args = typing.get_args(hint) if _is_union(hint) else (hint,)
        optional = type(None) in args
        members = [arg for arg in args if arg is not type(None)]
        if len(members) != 1:
            continue
        base = members[0]
        if typing.get_origin(base) is Literal:
            kinds[name] = _Kind(str, optional, tuple(typing.get_args(base)))
        elif base in _EXPECTED:
            kinds[name] = _Kind(base, optional)
    return kinds


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _has_type(base: type, value: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if base is int:
        return isinstance(value, int)
    return is_number(value)


def is_number(value: Any) -> TypeGuard[float]:
    """A finite int or float, not a bool, that a float can hold: NaN and inf compare false to every bound,
    and an integer beyond a float's range (JSON allows 10**400 written out) cannot become one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: Any, most: int = 40) -> str:
    """`value` as a message shows it: its repr, cut to `most` characters (an integer by its digit count)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # holds an integer beyond Python's digit limit
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= most else text[:most - 3] + "..."


# -- typer options from fields ----------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """The options a command takes from the fields of `config`: `names` (default: every field with a help
    text), as `given` options or plain ones, with `changes` to a field's option metadata for this command
    (another help text, flag or default)."""

    config: type
    names: tuple[str, ...] | None = None
    given: bool = False
    changes: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def only(self, *names: str, **changes: Mapping[str, Any]) -> Options:
        """These options (in the fields' order), with these changes."""
        return dataclasses.replace(self, names=names, changes={**self.changes, **changes})

    def without(self, *names: str, **changes: Mapping[str, Any]) -> Options:
        kept = tuple(spec.name for spec in self._fields() if spec.name not in names)
        return dataclasses.replace(self, names=kept, changes={**self.changes, **changes})

    def _fields(self) -> list[dataclasses.Field[Any]]:
        return [spec for spec in dataclasses.fields(self.config) if "help" in spec.metadata
                and (self.names is None or spec.name in self.names)]

    def parameters(self) -> list[inspect.Parameter]:
        hints = typing.get_type_hints(self.config)
        return [self._parameter(spec, hints[spec.name]) for spec in self._fields()]

    def _parameter(self, spec: dataclasses.Field[Any], hint: Any) -> inspect.Parameter:
        import typer

        meta = self._meta(spec)
        own_default = meta["cli_default"] is not dataclasses.MISSING
        if self.given:  # left out, an option is None (not given) and a flag False
            kind = _given_type(meta["cli_type"] or hint)
            default = meta["cli_default"] if own_default else (False if kind is bool else None)
            declaration = meta["flag"] or _flag(spec.name)
            shown = meta["shown_default"] if meta["shown_default"] is not None else spec.default
            help_text = (meta["help"] if kind is bool or shown in (None, dataclasses.MISSING)
                         else _with_default(meta["help"], shown))
            show_default = own_default  # typer shows a default this command sets itself
        else:
            kind = meta["cli_type"] or hint
            default = meta["cli_default"] if own_default else (
                ... if spec.default is dataclasses.MISSING else spec.default)
            declaration = meta["flag"] or (f"{_flag(spec.name)}/--no-{_flag(spec.name)[2:]}" if kind is bool
                                           else _flag(spec.name))
            help_text, show_default = meta["help"], default != ""
        info = typer.Option(*declaration.split(" "), help=help_text, metavar=meta["metavar"],
                            show_default=show_default)
        return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=typing.Annotated[kind, info],
                                 default=default)

    def annotation(self, name: str) -> Any:
        """The typer annotation of one field's option, for a command that declares it as its own parameter."""
        return self.only(name).parameters()[0].annotation

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of the option values a command received: parsed, and without those not given (None,
        and a `given` flag left off) so that the field's own default or a layered one applies."""
        values = {}
        for spec in self._fields():
            meta, value = self._meta(spec), given[spec.name]
            if value is None or (self.given and value is False and meta["cli_default"] is dataclasses.MISSING):
                continue
            values[spec.name] = meta["parse"](value) if meta["parse"] is not None else value
        return values

    def _meta(self, spec: dataclasses.Field[Any]) -> dict[str, Any]:
        return {**spec.metadata, **self.changes.get(spec.name, {})}


def _given_type(kind: Any) -> Any:
    """The option type of a given option: a flag stays bool; choices are checked by the settings class, so
    that the message is its own; anything else may be None (not given)."""
    if kind is bool or _is_union(kind):
        return kind
    return str | None if typing.get_origin(kind) is Literal else kind | None


def _with_default(help_text: str, default: Any) -> str:
    """The default inside the help's sentence, as `Critiques per step [default: 10].`"""
    stop = "." if help_text.endswith(".") else ""
    return help_text.removesuffix(stop) + f" [default: {default}]" + stop


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def command_options(**groups: Options) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add each group's options to a typer command: the command's own parameters come first, then every
    group's; the body gets each group's values as one keyword argument of the group's name, a dict of
    field values as `Options.values` gives them."""
    def decorate(body: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for name, p in inspect.signature(body, eval_str=True).parameters.items()
               if name not in groups and p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = {name: group.parameters() for name, group in groups.items()}

        @functools.wraps(body)
        def command(**received: Any) -> Any:
            for name, group in groups.items():
                received[name] = group.values({p.name: received.pop(p.name) for p in added[name]})
            return body(**received)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
            + [p for parameters in added.values() for p in parameters])
        command.__annotations__ = {}
        return command
    return decorate


def argument_parser(config: type, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of `config`, for `python -m` entry points."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for spec in dataclasses.fields(config):
        flag, help_text = _flag(spec.name), spec.metadata["help"]
        if spec.default is dataclasses.MISSING:
            parser.add_argument(flag, required=True, help=help_text)
        elif isinstance(spec.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default, help=help_text)
        else:
            parser.add_argument(flag, type=type(spec.default), default=spec.default, help=help_text)
    return parser
