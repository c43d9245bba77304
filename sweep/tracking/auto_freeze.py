"""freeze=auto in its MLflow run: what it froze each epoch, the signal that decided it, what it chose.

Per epoch (step = epoch): `frozen_layers`, and the plasticity of the first still-trainable layer as
a fraction of its peak (the next candidate's distance to the threshold); every layer's values
are in the `freeze_auto/auto_freeze.json` artifact. Params are written once in MLflow, so the
chosen schedule (`freeze_schedule`, `freeze_auto.chosen`) is written when training ends, by the
process that ends it: after a resume, from the records it continued.
"""

from __future__ import annotations

import math

from sweep.auto_freeze import AutoFreezer, chosen_schedule
from sweep.tracking import names
from sweep.tracking.variant_run import VariantRun


class AutoFreezeTracking:
    def __init__(self, freezer: AutoFreezer, run: VariantRun) -> None:
        self.freezer = freezer
        self.run = run
        self._logged: set[int] = set()

    def callbacks(self) -> dict[str, list]:
        return {
            "on_train_start": [self._on_train_start],
            "on_fit_epoch_end": [self._on_fit_epoch_end],
            "on_train_end": [self._on_train_end],
        }

    def _on_train_start(self, trainer) -> None:
        """The rule (the same value again on a resume); epochs a killed attempt trained but never logged."""
        client, run_id = self.run.client, self.run.run_id
        with self.run.contained(f"param {names.P_FREEZE_AUTO}"):
            client.log_param(run_id, names.P_FREEZE_AUTO, self.freezer.policy.as_param())
        self._logged = {m.step for m in client.get_metric_history(run_id, names.M_FROZEN_LAYERS) if m.step > 0}
        for record in self.freezer.records:
            self._log(record)

    def _on_fit_epoch_end(self, trainer) -> None:
        if self.freezer.records and self.freezer.records[-1]["epoch"] == trainer.epoch + 1:
            self._log(self.freezer.records[-1])
            with self.run.contained(f"artifact {names.ARTIFACT_AUTO_FREEZE}"):
                self.run.client.log_artifact(
                    self.run.run_id, str(self.freezer.state_file(trainer)), names.ARTIFACT_AUTO_FREEZE
                )

    def _log(self, record: dict) -> None:
        if record["epoch"] in self._logged:  # never twice: a resumed run may redo an epoch
            return
        metrics = {names.M_FROZEN_LAYERS: record["frozen"]}
        ratio = next(iter(record["ratio"].values()), math.nan)
        if math.isfinite(ratio):
            metrics[names.M_AUTO_RATIO] = ratio
        self.run.log_metrics(metrics, step=record["epoch"])
        self._logged.add(record["epoch"])

    def _on_train_end(self, trainer) -> None:
        schedule = chosen_schedule(self.freezer.records, self.freezer.policy)
        for key, value in (
            (names.P_FREEZE_SCHEDULE, schedule.as_param()),
            (names.P_FREEZE_AUTO_CHOSEN, schedule.label),
        ):
            with self.run.contained(f"param {key}"):
                self.run.client.log_param(self.run.run_id, key, value)
