"""Names shared by everything that writes or reads a sweep in MLflow.

The report and the network comparison find runs through these tags and params only, so a
rename here is the one place to change.
"""

import json

# Tags on every run of a sweep.
SWEEP_ID = "sweep.id"
ROLE = "sweep.role"  # "parent" or "variant"
ROLE_PARENT = "parent"
ROLE_VARIANT = "variant"

# Tags on every run: who runs it, and proof of life (see sweep/tracking/owners.py).
OWNER = "sweep.owner"  # host:pid:process start time
HEARTBEAT = "sweep.heartbeat"  # unix seconds, refreshed while the owner lives
CLAIMED = "sweep.claimed"  # set once a run's claim has won (no live rival): it holds the variant
CLOSED_REASON = "sweep.closed_reason"  # why a run ended KILLED: a signal, or its owner was gone
RESUMED_AFTER = "sweep.resumed_after"  # on a resumed run: why its previous attempt ended

# Tags on the parent run.
OVERRIDES = "sweep.overrides"
GIT_COMMIT = "git.commit"
SWEEP_DIR = "sweep.dir"
BUDGET = "sweep.budget"  # a budgeted sweep's settings (sweep/budget/), e.g. "sweep.budget=60 s, eta=3, ..."

# Tags on a variant run.
PARENT_RUN_ID = "mlflow.parentRunId"
CONFIG_HASH = "config_hash"
DEVICE = "device"
OUTPUT_DIR = "output_dir"  # ultralytics save_dir of the variant (absolute): weights/best.pt
ERROR = "error"
ERROR_TRACEBACK = "error.traceback"
REUSED_BY = "sweep.reused_by."  # + parent run id, on a FINISHED run a later sweep reused (value: its sweep id)
SUPERSEDED_BY = "superseded_by"  # on an unfinished run replaced by a newer run of the same config
FIGURES_MISSING = "sweep.figures_missing"  # what the store refused while the variant trained on
STOPPED_AT_RUNG = "sweep.stopped_at_rung"  # a budgeted sweep stopped the variant after this rung (FINISHED)
STOPPED_REASON = "sweep.stopped_reason"  # ... and why: its figures against those kept (sweep/budget/rule.py)

# Params on a variant run (values are strings in MLflow).
P_MODEL = "model"  # model name, e.g. yolov8s
P_ARCH = "arch"  # architecture yaml
P_WEIGHTS = "weights"  # absolute path of the checkpoint the variant started from ("" = scratch)
P_DATA = "data"
P_FREEZE = "freeze"  # as given: "backbone", "10", "[0, 1, 2]"
P_FREEZE_LAYERS = "freeze_layers"  # resolved indices as a JSON list ("[]" = none): see freeze_layers_param
P_FROZEN_LAYERS = "frozen_layers"  # how many layers are frozen
P_NUM_LAYERS = "num_layers"
P_PARAMS_TOTAL = "params_total"
P_PARAMS_TRAINABLE = "params_trainable"
P_PARAMS_FROZEN = "params_frozen"
P_TRAINABLE_PCT = "trainable_pct"
P_FREEZE_SCHEDULE = "freeze_schedule"  # [[first epoch, [layers]], ...] of a schedule that switches
P_SEED = "train.seed"
# freeze=auto (sweep/auto_freeze.py): its rule, and at the end what it chose (with P_FREEZE_SCHEDULE).
P_FREEZE_AUTO = "freeze_auto"  # the rule's knobs as JSON, prefixes as layer counts
P_FREEZE_AUTO_CHOSEN = "freeze_auto.chosen"  # what it froze from which epoch: "none -> 10 @3 -> 16 @5"
M_AUTO_RATIO = "freeze_auto/candidate_ratio"  # per epoch: first trainable layer's plasticity / its peak before
ARTIFACT_AUTO_FREEZE = "freeze_auto"  # folder of auto_freeze.json: every epoch's plasticity per layer
P_EPOCHS = "train.epochs"

# What the variant freezes, as numbers the runs table can sort and chart by (step 0).
M_FROZEN_LAYERS = "frozen_layers"  # step 0; freeze=auto also logs it per epoch (step = epoch)
M_TRAINABLE_PCT = "trainable_pct"

# Per-epoch metrics (step = epoch, 1-based).
EPOCH_METRICS = ("mAP50", "mAP50-95", "precision", "recall")
TRAIN_LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
VAL_LOSSES = ("val/box_loss", "val/cls_loss", "val/dfl_loss")
LR = "lr"
EPOCH_TIME = "epoch_time_s"
SETUP_TIME = "setup_s"  # a budgeted job: its start to its first epoch (step); above step 1, a restart
IMAGES_PER_S = "images_per_s"
TRAINABLE_PARAMS = "trainable_params"  # per epoch: shows a freeze schedule's switches
DATA_WAIT = "data_wait_pct"  # per epoch: share of training spent waiting for batches (sweep/tracking/data_wait.py)

# Ultralytics' validation keys (trainer.metrics, results.csv) -> ours: the one table of them.
UL_MAP50 = "metrics/mAP50(B)"
UL_MAP50_95 = "metrics/mAP50-95(B)"
ULTRALYTICS_METRICS = {
    UL_MAP50: "mAP50",
    UL_MAP50_95: "mAP50-95",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    **{loss: loss for loss in VAL_LOSSES},
}

# Final metrics.
BEST = {name: f"best/{name}" for name in EPOCH_METRICS}
TRAIN_TIME = "train_time_s"

# Resources.
GPU_PEAK_ALLOCATED = "gpu/peak_memory_allocated_mb"
GPU_PEAK_RESERVED = "gpu/peak_memory_reserved_mb"
GPU_UTIL_MEAN = "gpu/utilization_mean_pct"
GPU_UTIL_MAX = "gpu/utilization_max_pct"
GPU_UTIL = "gpu/utilization_pct"  # time series, step = seconds since training start
GPU_MEMORY = "gpu/memory_used_mb"  # time series
CPU_PEAK_RSS = "cpu/peak_rss_mb"
CPU_UTIL_MEAN = "cpu/utilization_mean_pct"
CPU_UTIL = "cpu/utilization_pct"  # time series
CPU_RSS = "cpu/rss_mb"  # time series
GPU_SOURCE = "gpu.source"  # tag: where the GPU time series came from, one of the two below
GPU_SOURCE_PROCESS = "process"  # NVML's per-process figures for this variant's processes only
GPU_SOURCE_DEVICE = "device"  # whole-device figures: they include every other process on the GPU

# Artifact paths inside a variant run.
ARTIFACT_WEIGHTS = "weights/best.pt"


def freeze_layers_param(layers) -> str:
    """The one written form of the frozen layer indices: a JSON list, so "[5]" is layer 5 only."""
    return json.dumps([int(i) for i in layers])


def parse_freeze_layers(text: str | None) -> list[int] | None:
    """Read what `freeze_layers_param` wrote; None when the param is absent. Raises ValueError."""
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in value):
        raise ValueError(f"{P_FREEZE_LAYERS}={text!r} is not a JSON list of layer indices")
    return value


# What the runs table shows of a finished sweep, written by its report (the figures depend on the
# whole sweep). Tags hold the report's rounded text, readable in the UI's columns; metrics hold
# the exact figures. All can be written again: a later report of the sweep replaces them.
VIEW_VERDICT = "verdict"  # tag on a variant: RECOMMENDED_MARK, PARETO_MARK or ""
RECOMMENDED_MARK = "★ recommended"
PARETO_MARK = "pareto front"
VIEW_DELTA = "Δ mAP50-95"  # tag, against the unfrozen variant, e.g. "-0.012"
VIEW_SPEEDUP = "speed-up"  # tag, against the unfrozen variant, e.g. "2.26x"
VIEW_TRAIN_TIME = "train time"  # tag, e.g. "12.4 s"
VIEW_GPU_MEM = "GPU mem MB"  # tag, e.g. "4,120"; only where logged
VIEW_MAP = "mAP50-95"  # tag, e.g. "0.741"
DELTA_VS_UNFROZEN = "vs_unfrozen/delta_mAP50-95"  # metric on a variant, step 0
SPEEDUP_VS_UNFROZEN = "vs_unfrozen/speedup"  # metric on a variant, step 0

# Machine load while a variant trained (sweep/tracking/machine_load.py), per epoch (step = epoch).
LOAD_AVG = "machine/load_avg_1m"  # the OS's 1-minute load average at the epoch's end
LOAD_PER_CORE = "machine/load_per_core"  # the same over the machine's cores
CPU_SHARE = "machine/cpu_share_pct"  # CPU time the process got over the epoch / (wall time x its threads)
