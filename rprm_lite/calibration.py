"""Applying a calibration file made by `rprm-lite calibrate` (fitting lives in rprm_lite.labelled.fit).

A step's raw score is the mean P(Yes) of its K critiques. It ranks steps well but is not a probability
that the step is correct: a model can be over- or under-confident. A calibration file, fit on labelled
data, holds:
- `threshold`: the F1-optimal decision point, on the scale of the scores it is compared with;
- `map` (optional): a non-decreasing map from the raw score to the share of correct steps seen at that
  score on the fit data (`isotonic`: knots joined by straight lines; `platt`: 1 / (1 + exp(-(a * s + b)))
  with a >= 0); with a map, a step's `score` is the mapped value and `raw_score` keeps the mean P(Yes).
  A decreasing map of either kind is refused: it would turn the steps the model trusts most into the
  ones it calls wrong;
- `model_sha256`: the model it was fit for (a file for another model is refused), `lora`: the LoRA adapters
  that model ran with (each one's file name, sha256 and scale, in order, as results record them; left out or
  empty: none), so a calibration of the demo model (a base plus its bundled adapter) applies to that pair
  only, and the scoring settings of the predictions it was fit on (`k`, `temperature`, ...; other settings
  are refused too, since they change the distribution of scores).
A file is data, not trusted: it is read through the one bounded JSON reader (size, nesting, huge or
non-finite numbers are clean errors) and every field is checked, every number with `options.is_number`
(an integer too large for a float is refused, not turned into an OverflowError); `rprm-lite calibrate`
checks what it writes with the same rules (`parse_record`), so it never writes a file this module would refuse.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from rprm_lite.errors import InputError
from rprm_lite.jsonl import read_json_file
from rprm_lite.options import is_number, shown

FORMAT = "rprm-lite-calibration"
VERSION = 1
# settings that shape the distribution of raw scores: a calibration fit with others does not apply
SCORE_SETTINGS = ("k", "temperature", "top_p", "prompt_style", "verdict")
MAX_FILE_BYTES = 64 * 2**20  # an isotonic map has at most two knots per distinct score of the fit data
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ScoreMap:
    kind: str  # "isotonic" or "platt"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0

    def __call__(self, score: float) -> float:
        if self.kind == "platt":
            z = self.a * score + self.b
            return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        if score <= self.x[0]:
            return self.y[0]
        if score >= self.x[-1]:
            return self.y[-1]
        right = bisect.bisect_right(self.x, score)
        x0, x1, y0, y1 = self.x[right - 1], self.x[right], self.y[right - 1], self.y[right]
        return y0 + (y1 - y0) * (score - x0) / (x1 - x0)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "platt":
            return {"kind": "platt", "a": self.a, "b": self.b}
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    model_sha256: str
    model: str = ""
    mapping: ScoreMap | None = None
    settings: Mapping[str, Any] | None = None
    sha256: str = ""  # of the file's bytes, recorded in results as calibration_sha256
    path: str = ""
    lora: tuple[Mapping[str, Any], ...] = ()  # the adapters the model ran with: {"file", "sha256", "scale"}

    def score(self, raw: float) -> float:
        return raw if self.mapping is None else self.mapping(raw)


def load_calibration(path: str | Path, *, model_sha256: str | None = None,
                     lora: Sequence[Mapping[str, Any]] = ()) -> Calibration:
    """Read and check a calibration file; with `model_sha256`, refuse a file made for another model, or for
    that model with other adapters than `lora` (the records of `Adapter.record()`: file, sha256, scale)."""
    path = Path(path)
    record, data = read_json_file(path, where=f"--calibration {path}", max_bytes=MAX_FILE_BYTES)
    calibration = parse_record(record, str(path), hashlib.sha256(data).hexdigest())
    if model_sha256 is not None and calibration.model_sha256 != model_sha256:
        raise InputError(f"--calibration {path} was made for another model (sha256 {calibration.model_sha256[:12]}..."
                         f"{' ' + calibration.model if calibration.model else ''}, this one is "
                         f"{model_sha256[:12]}...); fit one for this model with `rprm-lite calibrate`")
    if model_sha256 is not None and adapter_identities(calibration.lora) != adapter_identities(lora):
        raise InputError(f"--calibration {path} was fit with {describe_adapters(calibration.lora)}, but this model "
                         f"runs with {describe_adapters(lora)}; adapters and their scales change the scores: fit one "
                         "for these with `rprm-lite calibrate`")
    return calibration


def adapter_identities(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    return [(record["sha256"], record["scale"]) for record in records]


def describe_adapters(records: Sequence[Mapping[str, Any]]) -> str:
    """`records` (file, sha256, scale) as a message names them."""
    if not records:
        return "no LoRA adapter"
    return "LoRA adapter(s) " + ", ".join(f"{record['file'] or '?'} (sha256 {record['sha256'][:12]}..., scale "
                                          f"{record['scale']:g})" for record in records)


def parse_record(record: Any, where: str, sha256: str = "") -> Calibration:
    """A calibration file's parsed JSON, every field checked (an InputError naming `where` otherwise)."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"--calibration {where}: not a calibration file (expected a JSON object with "
                         f"\"format\": \"{FORMAT}\", as `rprm-lite calibrate` writes)")
    if record.get("version") != VERSION:
        raise InputError(f"--calibration {where}: calibration format version {record.get('version')!r:.40}, "
                         f"this rprm-lite reads version {VERSION}")
    threshold, model_sha256, model = record.get("threshold"), record.get("model_sha256"), record.get("model", "")
    if not _unit_number(threshold):
        raise InputError(f"--calibration {where}: 'threshold' must be a number in [0, 1], got {shown(threshold)}")
    if not isinstance(model_sha256, str) or not _SHA256.fullmatch(model_sha256):
        raise InputError(f"--calibration {where}: 'model_sha256' must be the model file's sha256 (64 lowercase "
                         f"hex digits), got {model_sha256!r:.80}")
    if not isinstance(model, str):
        raise InputError(f"--calibration {where}: 'model' must be the model file's name, got {model!r:.40}")
    return Calibration(threshold=float(threshold), model_sha256=model_sha256, model=model,
                       mapping=parse_map(record.get("map"), where),
                       settings=parse_settings(record.get("settings"), f"--calibration {where}: 'settings'"),
                       sha256=sha256, path=where, lora=parse_lora(record.get("lora", []), f"--calibration {where}"))


def parse_lora(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    """The adapters a calibration was fit with (or a run.json's `config.lora`): a list of {"file": name,
    "sha256": hex, "scale": number}, as results record them."""
    if not isinstance(value, list):
        raise InputError(f"{where}: 'lora' must be a list of adapters, got {shown(value)}")
    adapters = []
    for number, item in enumerate(value, start=1):
        if not (isinstance(item, dict) and set(item) == {"file", "sha256", "scale"} and isinstance(item["file"], str)
                and isinstance(item["sha256"], str) and _SHA256.fullmatch(item["sha256"])
                and is_number(item["scale"])):
            raise InputError(f"{where}: 'lora' adapter {number} must be an object with 'file' (its "
                             "name), 'sha256' (64 lowercase hex digits) and 'scale' (a finite number), got "
                             f"{shown(item, 80)}")
        adapters.append({**item, "scale": float(item["scale"])})
    return tuple(adapters)


def parse_settings(value: Any, where: str) -> dict[str, Any]:
    """The scoring settings (SCORE_SETTINGS) a calibration was fit with, checked as scoring options are."""
    from rprm_lite.config import ScoreConfig

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object, got {value!r:.60}")
    recorded = {key: value[key] for key in SCORE_SETTINGS if key in value}
    try:
        ScoreConfig(**recorded)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return recorded


def parse_map(value: Any, where: str) -> ScoreMap | None:
    """A map from its JSON: finite numbers, and non-decreasing whatever its kind."""
    if value is None:
        return None
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "platt":
        a, b = value.get("a"), value.get("b")
        if not (is_number(a) and is_number(b)):
            raise InputError(f"--calibration {where}: a platt map needs finite numbers 'a' and 'b', got "
                             f"{shown(a, 30)} and {shown(b, 30)}")
        if a < 0:
            raise InputError(f"--calibration {where}: a platt map must be non-decreasing (slope 'a' >= 0), got "
                             f"a = {a}: it would call the steps the model trusts most wrong; fit it again")
        return ScoreMap("platt", a=float(a), b=float(b))
    if kind == "isotonic":
        x, y = value.get("x"), value.get("y")
        if not (_numbers(x) and _numbers(y) and len(x) == len(y) >= 1 and _increasing(x, strict=True)
                and _increasing(y, strict=False)):
            raise InputError(f"--calibration {where}: an isotonic map needs lists 'x' (increasing) and 'y' "
                             "(non-decreasing) of equal length, numbers in [0, 1]")
        return ScoreMap("isotonic", x=tuple(map(float, x)), y=tuple(map(float, y)))
    raise InputError(f"--calibration {where}: 'map' must be null or an object with kind isotonic or platt, "
                     f"got {value!r:.60}")


def check_settings(calibration: Calibration, settings: Mapping[str, Any]) -> None:
    """Refuse scoring settings other than those the calibration was fit with (where it recorded them)."""
    recorded = calibration.settings or {}
    changed = [f"{key} {recorded[key]!r} there, {settings.get(key)!r} here" for key in SCORE_SETTINGS
               if key in recorded and recorded[key] != settings.get(key)]
    if changed:
        raise InputError(f"--calibration {calibration.path} was fit on scores made with other settings "
                         f"({'; '.join(changed)}); score with those settings or fit a calibration for these")


def _unit_number(value: Any) -> TypeGuard[float]:
    return is_number(value) and 0 <= value <= 1


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and all(_unit_number(v) for v in values)


def _increasing(values: Sequence[float], *, strict: bool) -> bool:
    return all(a < b if strict else a <= b for a, b in zip(values, values[1:], strict=False))


def calibrated_config(config: Any, model_sha256: str, lora: Sequence[Mapping[str, Any]] = ()
                      ) -> tuple[Any, Calibration | None]:
    """`config` with the calibration's threshold (checked against the model and its adapters `lora`, the
    settings and the band)."""
    if config.calibration is None:
        return config, None
    calibration = load_calibration(config.calibration, model_sha256=model_sha256, lora=lora)
    check_config(calibration, config)
    return config.replace(threshold=calibration.threshold), calibration


def check_config(calibration: Calibration, config: Any) -> None:
    """Refuse a config the calibration does not apply to: other scoring settings than it was fit with,
    or an uncertain band that does not hold its threshold (a server checks each request's options so)."""
    check_settings(calibration, config.to_dict())
    band = config.uncertain_band
    if band is not None and not band[0] <= calibration.threshold <= band[1]:
        raise InputError(f"--uncertain-band {band[0]},{band[1]} must hold the calibrated threshold "
                         f"{calibration.threshold} of {calibration.path}")
