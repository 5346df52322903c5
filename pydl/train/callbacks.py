"""Callbacks for ``Model.fit``: early stopping, checkpoints, LR schedules, logging, progress.

A callback gets ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``
(with the epoch's ``logs``: loss, metrics, val_ versions, lr) and ``on_train_end``. Setting
``model.stop_training = True`` ends training after the current epoch. Callbacks with state
(best value, wait count) expose ``state_dict()`` / ``load_state_dict()`` so a resumed run
continues exactly.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

import numpy as np

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
           "ReduceLROnPlateau", "CSVLogger", "TerminateOnNaN", "ProgressBar"]


class Callback:
    """Base class; override the hooks you need. ``self.model`` is set by ``fit``."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _Monitor(Callback):
    def __init__(self, monitor, mode, min_delta=0.0):
        self.monitor = monitor
        if mode == "auto":
            higher_is_better = "acc" in monitor or monitor.endswith(("f1", "precision", "recall"))
            mode = "max" if higher_is_better else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def _value(self, logs):
        if self.monitor not in (logs or {}):
            raise KeyError(
                f"{type(self).__name__} monitors '{self.monitor}', which is not among the logged "
                f"values {sorted(logs or {})}; pass validation data for val_ metrics"
            )
        return float(logs[self.monitor])

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model gets the weights of its best epoch back at the end.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in
                                     self.model.module.state_dict().items()}
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.module.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.best, self.wait, self.best_epoch = state["best"], state["wait"], state["best_epoch"]


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch (``filepath`` may hold ``{epoch}`` and log keys).

    With ``save_best_only`` it saves only when ``monitor`` improves. With
    ``save_training_state`` the file is a full training checkpoint (optimizer, scheduler,
    epoch, callbacks, random state) that ``Model.load_checkpoint`` resumes from.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 save_training_state=False):
        super().__init__(monitor, mode)
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_training_state = save_training_state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_training_state:
            self.model.save_checkpoint(path, epoch=epoch + 1)
        else:
            self.model.save(path)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]


class LearningRateScheduler(Callback):
    """Step an LR scheduler (``pydl.optim.lr_scheduler``) once per epoch, or set the LR from
    ``schedule(epoch, lr) -> new_lr``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        if callable(self.schedule) and not hasattr(self.schedule, "step"):
            opt = self.model.optimizer
            lr = float(self.schedule(epoch, opt.param_groups[0]["lr"]))
            for group in opt.param_groups:
                group["lr"] = lr

    def on_epoch_end(self, epoch, logs=None):
        if hasattr(self.schedule, "step"):
            self.schedule.step()

    def state_dict(self):
        return self.schedule.state_dict() if hasattr(self.schedule, "state_dict") else {}

    def load_state_dict(self, state):
        if hasattr(self.schedule, "load_state_dict"):
            self.schedule.load_state_dict(state)


class ReduceLROnPlateau(_Monitor):
    """Multiply the LR by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.wait = 0
        self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait > self.patience:
                for group in self.model.optimizer.param_groups:
                    group["lr"] = max(group["lr"] * self.factor, self.min_lr)
                self.cooldown_left, self.wait = self.cooldown, 0

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state):
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_left = state["cooldown_left"]


class CSVLogger(Callback):
    """Append one row of logs per epoch to a CSV file (under a launcher: rank 0 only)."""

    def __init__(self, filename, append=False):
        self.filename = os.fspath(filename)
        self.append = append
        self._keys = None

    def on_train_begin(self, logs=None):
        from ..distributed import is_main_process

        self._writes = is_main_process()
        if self._writes and not self.append and os.path.exists(self.filename):
            os.remove(self.filename)

    def on_epoch_end(self, epoch, logs=None):
        if not getattr(self, "_writes", True):
            return
        logs = logs or {}
        new = not os.path.exists(self.filename)
        if self._keys is None:
            self._keys = sorted(logs)
        with open(self.filename, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch"] + self._keys)
            w.writerow([epoch + 1] + [logs.get(k, "") for k in self._keys])


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"batch {batch}: loss is {loss}, terminating training", file=sys.stderr)
            self.model.stop_training = True


class ProgressBar(Callback):
    """A per-epoch progress bar (tqdm when installed) with loss, metrics and speed."""

    def __init__(self, total_batches, epochs):
        self.total, self.epochs = total_batches, epochs
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._seen = 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            self._bar = tqdm(total=self.total, desc=f"epoch {epoch + 1}/{self.epochs}",
                             leave=True, dynamic_ncols=True, file=sys.stdout)

    def on_batch_end(self, batch, logs=None):
        self._seen += (logs or {}).get("size", 0)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        secs = time.perf_counter() - self._start
        text = " - ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "lr")
        speed = f"{self._seen / secs:.0f} samples/s" if secs > 0 else ""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{text} - {speed}")
            self._bar.close()
            self._bar = None
        else:
            print(f"epoch {epoch + 1}/{self.epochs} - {text} - {secs:.1f}s - {speed}")
