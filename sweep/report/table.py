"""The comparison table: one row per configuration, sorted by the number of frozen layers.

Blocks of rows per model (and per other setting that varies, shown in a `config` column), each
sorted numerically by frozen layers.

Runs that differ only in seed, device or dataloader workers are replicates of one configuration
(the config hash leaves device and workers out too): their row shows mean ± std and n, also when
they come from several sweeps. Unfinished runs get rows of their own, marked by status, so their
partial numbers never mix into finished ones. Speedup and deltas compare a row with the finished
unfrozen row (0 frozen layers) of the same configuration otherwise; without one they are n/a.
"""

from __future__ import annotations

import json
import math
import statistics

import pandas as pd

from sweep.report.runs import MAP50, MAP50_95, History, metric, param, tag
from sweep.tracking import names

FINISHED = "FINISHED"
NA = "n/a"
# Params that make runs replicates rather than different configurations.
REPLICATE_PARAMS = (names.P_SEED, "train.device", "train.workers")
IDENTITY_PARAMS = (names.P_MODEL, names.P_ARCH, names.P_WEIGHTS, names.P_DATA)  # plus every train.* param
TRAIN_PREFIX = "train."

# Table value -> the run column it aggregates (mean and std over the row's runs).
VALUES = {
    **{name: metric(names.BEST[name]) for name in names.EPOCH_METRICS},
    "train_time_s": metric(names.TRAIN_TIME),
    "epoch_time_s": "epoch_time_s",  # mean of the run's epoch times (train + val), from its history
    "gpu_mem_mb": metric(names.GPU_PEAK_RESERVED),  # what the process held: what runs out first
    "gpu_alloc_mb": metric(names.GPU_PEAK_ALLOCATED),
    "gpu_util_pct": metric(names.GPU_UTIL_MEAN),
    "cpu_rss_mb": metric(names.CPU_PEAK_RSS),
    "cpu_util_pct": metric(names.CPU_UTIL_MEAN),
    "epoch_time_frozen_s": "epoch_time_frozen_s",  # a freeze schedule: mean epoch time of its first stage
    "epoch_time_unfrozen_s": "epoch_time_unfrozen_s",  # ... and of its last
    "cpu_share_pct": "cpu_share_pct",  # mean over epochs of the CPU the process got / its threads' wall time
    "load_per_core": "load_per_core",  # mean over epochs of the machine's 1-minute load average per core
}
DELTAS = (MAP50, MAP50_95)
STATUS_ORDER = {
    FINISHED: 0,
    "STOPPED": 1,
    "RUNNING": 2,
    "SCHEDULED": 3,
    "FAILED": 4,
    "KILLED": 5,
}  # STOPPED: by a budget


def summarize(frame: pd.DataFrame, histories: History) -> pd.DataFrame:
    """The table, numeric: what the CSV holds and what `display` formats."""
    of_run = [histories.get(run_id, {}) for run_id in frame["run_id"]]
    schedules = _param(frame, names.P_FREEZE_SCHEDULE)
    stages = [_stage_times(h.get(names.EPOCH_TIME), s) for h, s in zip(of_run, schedules, strict=True)]
    runs = frame.assign(
        frozen_layers=pd.to_numeric(_param(frame, names.P_FROZEN_LAYERS), errors="coerce"),
        epochs_done=[len(h.get(MAP50, ())) for h in of_run],
        epoch_time_s=[_mean(h, names.EPOCH_TIME) for h in of_run],
        _stages=stages,
        epoch_time_frozen_s=[times[0] if len(times) > 1 else math.nan for times in stages],
        epoch_time_unfrozen_s=[times[-1] if len(times) > 1 else math.nan for times in stages],
        cpu_share_pct=[_mean(h, names.CPU_SHARE) for h in of_run],
        load_per_core=[_mean(h, names.LOAD_PER_CORE) for h in of_run],
    )
    identity = [*IDENTITY_PARAMS, *sorted(_train_params(frame))]
    auto = _param(runs, names.P_FREEZE_AUTO)  # freeze=auto: its rule is the configuration, its schedule an outcome
    runs = runs.assign(
        **{_id(p): _param(runs, p) for p in identity},
        _frozen=_param(runs, names.P_FREEZE_LAYERS),
        _rule=schedules.where(auto == "", auto),
    )
    base_key = [_id(p) for p in identity]  # one configuration but for what it freezes
    model = _param(runs, names.P_MODEL)  # what varies with the model (arch, weights) is said by the model
    varying = [p for p in identity if p != names.P_MODEL and _param(runs, p).groupby(model).nunique().gt(1).any()]
    config_key = [*base_key, "_frozen", "_rule", "status"]
    rows = [_aggregate(group, varying, base_key) for _, group in runs.groupby(config_key, sort=False)]
    _tell_auto_rules_apart(rows)
    table = _against_unfrozen(pd.DataFrame(rows), base_key)
    table["_order"] = table["status"].map(STATUS_ORDER).fillna(len(STATUS_ORDER))
    table = table.sort_values(
        ["model", "config", "frozen_layers", "_order", "freeze"], na_position="last", kind="stable"
    )
    return table.drop(columns="_order").reset_index(drop=True)


def _mean(history: dict[str, pd.Series], key: str) -> float:
    return history[key].mean() if key in history else math.nan


def csv_frame(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in table.columns if c.startswith("_")])


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as printed and shown in the HTML page: formatted strings, n/a where missing."""
    columns: dict[str, pd.Series] = {
        "model": table["model"],
        "freeze": table["freeze"],
        "frozen layers": table["frozen_layers"].map(lambda v: _fmt(v, "{:.0f}")),
        "trainable %": table["trainable_pct"].map(lambda v: _fmt(v, "{:.1f}")),
        "status": table["status"],
        "n": table["n"].astype(str),
        **{name: _plus_minus(table, name, "{:.3f}") for name in names.EPOCH_METRICS},
        "train time": _plus_minus(table, "train_time_s", duration=True),
        "time/epoch": _plus_minus(table, "epoch_time_s", duration=True),
        "time/epoch per stage": table["_stage_times"].map(_per_stage),
        "speedup": table["speedup"].map(lambda v: _fmt(v, "{:.2f}x")),
        "GPU mem (MB)": _plus_minus(table, "gpu_mem_mb", "{:,.0f}"),
        "GPU util %": _plus_minus(table, "gpu_util_pct", "{:.0f}"),
        **{f"Δ {name}": table[f"delta_{name}"].map(lambda v: _fmt(v, "{:+.3f}")) for name in DELTAS},
        "Δ GPU mem": table["delta_gpu_mem_pct"].map(lambda v: _fmt(v, "{:+.0f}%")),
        "config": table["config"],
        "note": table["note"],
    }
    shown = pd.DataFrame(columns)
    optional = [c for c in ("config", "note") if not shown[c].astype(bool).any()]
    return shown.drop(columns=optional)


def compact(shown: pd.DataFrame) -> pd.DataFrame:
    """The table as read (terminal, Markdown, HTML): columns that tell no row apart left out.

    n/a in every row (GPU columns of a CPU sweep), and one model, all FINISHED or n = 1 throughout:
    the report's header says those once.
    """
    empty = [c for c in shown.columns if (shown[c] == NA).all()]
    same = [c for c, value in (("model", None), ("status", FINISHED), ("n", "1")) if _only(shown[c], value)]
    return shown.drop(columns=empty + same)


def _only(column: pd.Series, value: str | None) -> bool:
    return column.nunique() == 1 and (value is None or column.iloc[0] == value)


def to_markdown(shown: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned.

    By hand, not `DataFrame.to_markdown`: that needs `tabulate`, a dependency for six lines."""
    left = {"model", "freeze", "status", "config", "note"}
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join(":---" if c in left else "---:" for c in shown.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _aggregate(group: pd.DataFrame, varying: list[str], base_key: list[str]) -> dict:
    first = group.iloc[0]
    status = first["status"]
    row = {
        "label": "",
        "model": _param(group, names.P_MODEL).iloc[0],
        "freeze": ", ".join(dict.fromkeys(_param(group, names.P_FREEZE) + _auto_chosen(group))),
        "frozen_layers": first["frozen_layers"],
        "trainable_pct": pd.to_numeric(_param(group, names.P_TRAINABLE_PCT), errors="coerce").mean(),
        "status": status,
        "n": len(group),
        "config": " ".join(f"{p}={_param(group, p).iloc[0]}" for p in varying),
        "note": _note(group, status),
        "seeds": ",".join(dict.fromkeys(_param(group, names.P_SEED))),
        "sweeps": ",".join(dict.fromkeys(group["sweep"])),
        "run_ids": ",".join(group["run_id"]),
        **{column: first[column] for column in base_key},
        "_auto_rule": _param(group, names.P_FREEZE_AUTO).iloc[0],  # "" unless freeze=auto
    }
    for name, column in VALUES.items():
        values = pd.to_numeric(group[column], errors="coerce")
        row[name], row[f"{name}_std"] = values.mean(), values.std()
    row["_stage_times"] = _mean_stage_times(group)
    row["label"] = _label(row)
    return row


def _tell_auto_rules_apart(rows: list[dict]) -> None:
    """`freeze=auto` rows of different rules (`freeze_auto.threshold=0.5,0.7`) name the knobs in
    which they differ in their `config`, as other swept settings are named; their label follows."""
    rules = {row["_auto_rule"]: json.loads(row["_auto_rule"]) for row in rows if row["_auto_rule"]}
    differing = sorted(
        {key for rule in rules.values() for key in rule if len({str(r.get(key)) for r in rules.values()}) > 1}
    )
    for row in rows if differing else []:
        if row["_auto_rule"]:
            knobs = " ".join(f"freeze_auto.{key}={rules[row['_auto_rule']].get(key)}" for key in differing)
            row["config"] = f"{row['config']} {knobs}".strip()
            row["label"] = _label(row)


def _stage_times(epoch_times: pd.Series | None, schedule: str) -> list[float]:
    """Mean epoch time of each stage of a freeze schedule (or of auto's chosen one) that has
    epochs; [] without a schedule. What each step saved (or an unfreezing cost) per epoch."""
    if epoch_times is None or not schedule:
        return []
    firsts = [first_epoch for first_epoch, _ in json.loads(schedule)]
    ends = [*firsts[1:], math.inf]
    stages = [
        epoch_times[(epoch_times.index >= a) & (epoch_times.index < b)] for a, b in zip(firsts, ends, strict=True)
    ]
    return [float(times.mean()) for times in stages if len(times)]


def _mean_stage_times(group: pd.DataFrame) -> list[list[float]]:
    """Per schedule the row's runs followed (replicates of `freeze=auto` may choose different ones,
    in the order the row's label lists them), each stage's epoch time averaged over those runs."""
    by_schedule: dict[str, list[list[float]]] = {}
    for schedule, times in zip(_param(group, names.P_FREEZE_SCHEDULE), group["_stages"], strict=True):
        if times:
            by_schedule.setdefault(schedule, []).append(times)
    return [
        [statistics.fmean(stage) for stage in zip(*runs, strict=True)]
        for runs in by_schedule.values()
        if len({len(times) for times in runs}) == 1
    ]


def _per_stage(schedules: list[list[float]]) -> str:
    """`1.6 s → 1.4 s → 1.3 s` per stage; `; ` between the schedules of one row."""
    return "; ".join(" → ".join(_duration(t, math.nan) for t in times) for times in schedules) or NA


def _against_unfrozen(table: pd.DataFrame, base_key: list[str]) -> pd.DataFrame:
    """Each row against the unfrozen run of its configuration (a left merge keeps the table's order)."""
    unfrozen = table[(table["status"] == FINISHED) & (table["frozen_layers"] == 0) & (table["_auto_rule"] == "")]
    base = table[base_key].merge(unfrozen.drop_duplicates(base_key), on=base_key, how="left")
    table["speedup"] = base["train_time_s"] / table["train_time_s"]
    for name in DELTAS:
        table[f"delta_{name}"] = table[name] - base[name]
    table["delta_gpu_mem_pct"] = 100 * (table["gpu_mem_mb"] / base["gpu_mem_mb"] - 1)
    table["has_baseline"] = base["n"].notna()
    return table


def _auto_chosen(group: pd.DataFrame) -> pd.Series:
    """freeze=auto's label gets the schedule it chose: `auto: none -> 10 @3 -> 16 @5`."""
    return _param(group, names.P_FREEZE_AUTO_CHOSEN).map(lambda chosen: f": {chosen}" if chosen else "")


def _note(group: pd.DataFrame, status: str) -> str:
    if status == FINISHED:
        return ""
    errors = [
        str(e).strip().splitlines()[0][:120] for e in group.get(tag(names.ERROR), pd.Series(dtype=object)).dropna()
    ]
    if errors:
        return "; ".join(dict.fromkeys(errors))
    if status == "RUNNING":
        epochs = _param(group, names.P_EPOCHS).iloc[0] or "?"
        return f"epoch {group['epochs_done'].max()}/{epochs}"
    return ""


def _label(row: dict) -> str:
    """Short name for legends: freeze, and what else tells rows apart."""
    label = f"{row['model']} freeze={row['freeze']}"
    if row["config"]:
        label += f" [{row['config']}]"
    if row["n"] > 1:
        label += f" (n={row['n']})"
    if row["status"] != FINISHED:
        label += f" {row['status']}"
    return label


def _plus_minus(table: pd.DataFrame, name: str, spec: str = "", duration: bool = False) -> pd.Series:
    def one(mean: float, std: float) -> str:
        if _missing(mean):
            return NA
        if duration:
            return _duration(mean, std)
        return spec.format(mean) + ("" if _missing(std) else " ± " + spec.format(std))

    return pd.Series(
        [one(m, s) for m, s in zip(table[name], table[f"{name}_std"], strict=True)], index=table.index, dtype=str
    )


def time_unit(seconds: float) -> tuple[str, float]:
    """s below 2 min, min below 2 h, else h."""
    return ("s", 1.0) if seconds < 120 else ("min", 60.0) if seconds < 7200 else ("h", 3600.0)


def _duration(seconds: float, std: float) -> str:
    """One unit for the mean and its std."""
    unit, scale = time_unit(seconds)
    text = f"{seconds / scale:.1f}"
    if not _missing(std):
        text += f" ± {std / scale:.1f}"
    return f"{text} {unit}"


def _fmt(value: float, spec: str) -> str:
    return NA if _missing(value) else spec.format(value)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _param(frame: pd.DataFrame, name: str) -> pd.Series:
    """A param column as strings ("" where a run lacks it)."""
    column = param(name)
    if column not in frame:
        return pd.Series("", index=frame.index, dtype=str)
    return frame[column].fillna("").astype(str)


def _train_params(frame: pd.DataFrame) -> list[str]:
    prefix = param(TRAIN_PREFIX)
    found = [c[len(param("")) :] for c in frame.columns if c.startswith(prefix)]
    return [p for p in found if p not in REPLICATE_PARAMS]


def _id(param_name: str) -> str:
    """The column that holds a param as a grouping key (strings, "" where a run lacks it)."""
    return f"_id_{param_name}"
