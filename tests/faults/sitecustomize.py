"""Fault injection for tests only: put this folder on PYTHONPATH and set FREEZE_SWEEP_FAULT.

`FREEZE_SWEEP_FAULT=frozen=10,epoch=2,error=crash|oom` makes the ultralytics training that freezes
10 layers fail while finishing that epoch, after the epochs before it were recorded: the way a
real mid-training crash (or CUDA running out of memory) looks to freeze-sweep.
"""

import os

spec = os.environ.get("FREEZE_SWEEP_FAULT")
if spec:
    fault = dict(item.split("=") for item in spec.split(","))

    import torch
    from ultralytics.engine.trainer import BaseTrainer

    original = BaseTrainer.save_metrics

    def save_metrics(self, metrics):
        frozen = self.args.freeze if isinstance(self.args.freeze, list) else []
        if len(frozen) == int(fault["frozen"]) and self.epoch + 1 == int(fault["epoch"]):
            if fault.get("error") == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
            raise RuntimeError("injected crash (test)")
        return original(self, metrics)

    BaseTrainer.save_metrics = save_metrics
