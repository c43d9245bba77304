"""What a sweep varied and what it held fixed, read from the variants' params.

A reader can only trust "freezing costs 3 points" if every other setting was the same; the report
opens by saying which settings were swept and which were held fixed. The sweep writes the same
summary once as its parent run's params, at its start, from the variants it expanded
(`parent_params`): MLflow params are write-once, so no report, partial or not, writes them.
"""

from __future__ import annotations

import pandas as pd

from sweep.report.runs import param
from sweep.tracking import names

# Settings a reader asks about first, in the words of the report: param -> name shown.
HEADLINE = {
    names.P_MODEL: "model",
    "data_name": "data",
    names.P_EPOCHS: "epochs",
    "train.imgsz": "image size",
    "train.batch": "batch",
    "train.device": "device",
}


SWEPT = "sweep.swept"  # parent run param
MAX_PARAM = 6000  # MLflow's longest param value


def sweep_settings(frame: pd.DataFrame) -> dict[str, str]:
    """{"swept": ..., "held fixed": ...} as one line each, for the report's header and the parent run."""
    varying = {name: values for name, values in _values(frame).items() if len(values) > 1}
    swept = [f"freeze: {', '.join(_freeze_levels(frame))}"]
    swept += [f"{HEADLINE[p]}: {', '.join(v)}" for p, v in varying.items() if p in HEADLINE]
    others = [p for p in varying if p not in HEADLINE]
    if others:
        swept.append("hyperparameters: " + "; ".join(f"{p} = {', '.join(varying[p])}" for p in others))
    fixed = [f"{HEADLINE[p]} {v[0]}" for p, v in _values(frame).items() if p in HEADLINE and len(v) == 1]
    return {"swept": "; ".join(swept), "held fixed": ", ".join(fixed)}


def fixed_params(frame: pd.DataFrame) -> dict[str, str]:
    """The headline settings all variants share, under the variants' own param names."""
    return {p: v[0] for p, v in _values(frame).items() if p in HEADLINE and len(v) == 1}


def variants_frame(variant_params: list[dict[str, str]]) -> pd.DataFrame:
    """Variants' params (as `variant_params` writes them) in the columns the runs' frame has."""
    return pd.DataFrame([{param(k): v for k, v in params.items()} for params in variant_params])


def parent_params(frame: pd.DataFrame) -> dict[str, str]:
    """What the parent run records as params: what was swept, and the settings all variants share."""
    return {SWEPT: sweep_settings(frame)["swept"][:MAX_PARAM], **fixed_params(frame)}


def _freeze_levels(frame: pd.DataFrame) -> list[str]:
    """The freeze values as given, in the order of their frozen layers (as the table lists them)."""
    levels = pd.DataFrame(
        {
            "layers": pd.to_numeric(frame.get(param(names.P_FROZEN_LAYERS)), errors="coerce"),
            "freeze": frame[param(names.P_FREEZE)].astype(str),
        }
    )
    return list(dict.fromkeys(levels.sort_values(["layers", "freeze"], kind="stable")["freeze"]))


def _values(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Distinct values of the headline params and of every train.* param except seeds (replicates)."""
    prefix = param("")
    train = sorted(c[len(prefix) :] for c in frame.columns if c.startswith(param("train.")))
    wanted = [*HEADLINE, *(p for p in train if p not in HEADLINE and p != names.P_SEED)]
    found = {}
    for name in wanted:
        if param(name) in frame:
            values = frame[param(name)].dropna().astype(str)
            found[name] = sorted(dict.fromkeys(values), key=_natural)
    return found


def _natural(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
