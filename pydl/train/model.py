"""``Model`` and ``Sequential``: Keras's compile / fit / evaluate / predict over any pydl.nn module.

    model = pydl.Sequential([nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=10, batch_size=32, validation_split=0.2)

pydl's classification losses take *logits* (no softmax layer at the end), as PyTorch's
``CrossEntropyLoss`` does: the softmax is fused into the loss, which is more stable.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import amp, nn, optim
from ..autograd import no_grad
from ..backend import as_device
from ..creation import get_rng_state, set_rng_state
from ..creation import tensor as _tensor
from ..data import DataLoader, TensorDataset
from ..distributed import is_main_process
from ..nn import functional as F
from ..tensor import LOW_PRECISION, Tensor, bfloat16, float16
from . import callbacks as cb
from .history import History
from .metrics import get_metric
from .parallel import fit_parallel

__all__ = ["Model", "Sequential", "get_loss", "get_optimizer", "resolve_device"]


def _sparse_ce(logits, target):
    if target.dtype.kind != "i":
        check_class_labels(_host(target), "sparse_categorical_crossentropy")
        target = target.long()
    return F.cross_entropy(logits, target)


def check_class_labels(y, loss_name: str) -> None:
    """Class-index targets must be whole numbers in one column: say so instead of truncating
    ``0.37`` to class 0 and training on nonsense."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return
    if y.dtype.kind == "b" or y.dtype.kind not in "f":
        raise TypeError(f"{loss_name} takes integer class labels, got targets of dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] > 1:
        raise ValueError(
            f"{loss_name} takes one integer class label per sample, got float targets of shape "
            f"{y.shape}; for one-hot or probability targets use 'categorical_crossentropy'")
    bad = y[~np.isfinite(y) | (y != np.round(y))] if y.size else y
    if bad.size:
        raise ValueError(
            f"{loss_name} takes integer class labels, got float targets with values that are not "
            f"whole numbers (e.g. {float(bad.flat[0]):g}); pass integer labels, or use "
            "'categorical_crossentropy' for one-hot or probability targets")


def _categorical_ce(logits, target):
    return -(F.log_softmax(logits, dim=-1) * target).sum(dim=-1).mean()


def _binary_ce(prob, target):
    return F.binary_cross_entropy(prob, target.reshape(prob.shape).to(prob.dtype))


def _binary_ce_logits(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target.reshape(logits.shape).to(logits.dtype))


def _mse(pred, target):
    return F.mse_loss(pred, target.reshape(pred.shape).to(pred.dtype))


def _mae(pred, target):
    return F.l1_loss(pred, target.reshape(pred.shape).to(pred.dtype))


_LOSSES = {
    "sparse_categorical_crossentropy": _sparse_ce, "cross_entropy": _sparse_ce,
    "categorical_crossentropy": _categorical_ce,
    "binary_crossentropy": _binary_ce,
    "binary_crossentropy_with_logits": _binary_ce_logits, "bce_with_logits": _binary_ce_logits,
    "mse": _mse, "mean_squared_error": _mse,
    "mae": _mae, "mean_absolute_error": _mae,
}

_OPTIMIZERS = {
    "sgd": (lambda p, lr: optim.SGD(p, lr=lr), 0.01),
    "adam": (lambda p, lr: optim.Adam(p, lr=lr), 1e-3),
    "adamw": (lambda p, lr: optim.AdamW(p, lr=lr), 1e-3),
    "rmsprop": (lambda p, lr: optim.RMSprop(p, lr=lr), 1e-3),
    "adagrad": (lambda p, lr: optim.Adagrad(p, lr=lr), 0.01),
}


def get_loss(loss):
    """A loss function ``f(pred, target) -> scalar Tensor`` from a name, module or function."""
    if callable(loss):
        return loss
    fn = _LOSSES.get(str(loss).lower())
    if fn is None:
        raise ValueError(f"unknown loss {loss!r}; known: {sorted(_LOSSES)}")
    return fn


def get_optimizer(optimizer, params, lr=None):
    """An optimizer from a name ('sgd', 'adam', ...) or an Optimizer instance."""
    if isinstance(optimizer, optim.Optimizer):
        return optimizer
    entry = _OPTIMIZERS.get(str(optimizer).lower())
    if entry is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {sorted(_OPTIMIZERS)}")
    make, default_lr = entry
    return make(params, default_lr if lr is None else lr)


def resolve_device(device):
    """``"auto"``: the GPU when one is usable, else the CPU; anything else as ``as_device``.
    Under a launcher (``mpiexec``) a GPU named without an index is this process's GPU
    (its local rank), so the processes do not all crowd onto GPU 0."""
    from .. import cuda

    if device == "auto":
        device = "cuda" if cuda.is_available() else "cpu"
    if device == "cuda":
        from ..distributed.group import local_gpu

        return as_device(f"cuda:{local_gpu(cuda.device_count())}")
    return as_device(device)



def _host(x):
    if isinstance(x, Tensor):
        x = x.data
    return x.get() if type(x).__module__.startswith("cupy") else np.asarray(x)


class Model:
    """Wraps any ``nn.Module`` with ``compile``, ``fit``, ``evaluate``, ``predict``, ``summary``."""

    def __init__(self, module: nn.Module):
        if not isinstance(module, nn.Module):
            raise TypeError(f"Model wraps an nn.Module, got {type(module).__name__}")
        self.module = module
        self.optimizer = None
        self.loss_fn = None
        self.metrics = []
        self.stop_training = False
        self.device = as_device("cpu")
        self.history = None
        self._rng = np.random.default_rng(0)  # shuffling; saved in training checkpoints
        self._parallel = self._fit_parallel = None  # data-parallel state under a launcher
        self.mixed_precision = None  # the autocast dtype compile(mixed_precision=...) chose
        self.scaler = None  # its GradScaler (float16 only)

    # the module's interface, so a Model can be used where a module is expected
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def parameters(self):
        return self.module.parameters()

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state, strict=True):
        return self.module.load_state_dict(state, strict=strict)

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        self.module.eval()
        return self

    def to(self, device):
        self.device = resolve_device(device)
        self.module.to(self.device)
        return self

    def summary(self, input_shape, **kwargs):
        return self.module.summary(input_shape, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({self.module!r})"

    # -- Keras interface --------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=(),
                lr=None, scheduler=None, mixed_precision=None):
        """Choose the optimizer, loss and metrics (names or objects).

        ``mixed_precision``: ``"bf16"`` (Keras: ``"mixed_bfloat16"``) or ``"fp16"``
        (``"mixed_float16"``) runs forward and loss under ``pydl.autocast`` in that dtype, the
        weights staying float32; fp16 also scales the loss with a ``pydl.amp.GradScaler``
        (kept in ``model.scaler`` and in training checkpoints). ``None``/``"fp32"``/
        ``"float32"``: full precision (docs/mixed_precision.md).
        """
        self.mixed_precision = _precision(mixed_precision)
        self.scaler = amp.GradScaler(self.device.type) if self.mixed_precision == float16 \
            else None
        self.optimizer = get_optimizer(optimizer, self.module.parameters(), lr)
        self.loss_fn = get_loss(loss)
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.metrics = [get_metric(m) for m in (metrics or ())]
        self.scheduler = scheduler
        return self

    def _autocast(self):
        """The autocast region forward and loss run in (a no-op at full precision)."""
        if self.mixed_precision is None:
            return contextlib.nullcontext()
        return amp.autocast(self.device.type, dtype=self.mixed_precision)

    def _require_compiled(self):
        if self.optimizer is None or self.loss_fn is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before fit/evaluate")

    def _loader(self, x, y, batch_size, shuffle):
        if isinstance(x, DataLoader):
            return x
        if y is None:
            raise ValueError("fit/evaluate need targets y (or a DataLoader as x)")
        xs, ys = _host(x), _host(y)
        if len(xs) != len(ys):
            raise ValueError(f"x has {len(xs)} samples but y has {len(ys)}")
        if self.loss_fn is _sparse_ce:  # checked once here, before any work
            check_class_labels(ys, self.loss_name)
            ys = ys.astype(np.int64, copy=False)
        loader = DataLoader(TensorDataset(xs, ys), batch_size=batch_size, shuffle=shuffle,
                            device=self.device)
        loader._rng = self._rng
        return loader

    def fit(self, x, y=None, epochs=1, batch_size=32, validation_split=0.0, validation_data=None,
            shuffle=True, callbacks=None, verbose=1, device=None, initial_epoch=0,
            augment=None):
        """Train for ``epochs``; returns a ``History`` of per-epoch losses and metrics.

        ``x``/``y`` are arrays or tensors, or ``x`` is a DataLoader yielding (inputs, targets).
        ``validation_split`` holds out the last fraction of (x, y), as Keras does.
        ``device`` is 'cpu', 'cuda' or 'auto'. ``augment`` is a transform applied to each
        input batch (as a NumPy array) during training.

        Under a launcher (``mpiexec -n N``) it trains data-parallel: ``batch_size`` per
        rank, gradients averaged, metrics over all ranks, output and checkpoints on rank 0
        only (docs/distributed.md).
        """
        self._require_compiled()
        if device is not None:
            self.to(device)
        if validation_split and validation_data is None and not isinstance(x, DataLoader):
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            xs, ys = _host(x), _host(y)
            cut = int(len(xs) * (1.0 - validation_split))
            x, y, validation_data = xs[:cut], ys[:cut], (xs[cut:], ys[cut:])
        loader = self._loader(x, y, batch_size, shuffle)
        self._fit_parallel = parallel = fit_parallel(self)
        if parallel is not None:
            loader = parallel.shard(loader)
            verbose = verbose if parallel.main else 0
        callbacks = list(callbacks or [])
        if verbose:
            callbacks.append(cb.ProgressBar(len(loader), epochs))
        for c in callbacks:
            c.set_model(self)
        self._callbacks = callbacks
        if self.history is None or initial_epoch == 0:
            self.history = History()
        self.stop_training = False
        for c in callbacks:
            c.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for c in callbacks:
                c.on_epoch_begin(epoch)
            if parallel is not None:
                parallel.set_epoch(epoch)
            logs = self._train_epoch(loader, callbacks, augment)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=max(batch_size, 256), verbose=0)
                logs.update({f"val_{k}": v for k, v in val.items()})
            logs["lr"] = self.optimizer.param_groups[0]["lr"]
            self.history.append(epoch, logs)
            self.epoch = epoch + 1
            for c in callbacks:
                c.on_epoch_end(epoch, logs)
            if self.scheduler is not None:
                if isinstance(self.scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(logs.get("val_loss", logs["loss"]))
                else:
                    self.scheduler.step()
            if self.stop_training:
                break
        for c in callbacks:
            c.on_train_end()
        return self.history

    def _train_epoch(self, loader, callbacks, augment):
        self.module.train()
        parallel = self._fit_parallel
        net = self.module if parallel is None else parallel.ddp
        total, count = 0.0, 0
        preds, targets = [], []
        for i, (xb, yb) in enumerate(loader):
            if augment is not None:
                xb = _tensor(augment(_host(xb)), device=self.device)
            with self._autocast():
                out = net(xb)
                loss = self.loss_fn(out, yb)
            self.optimizer.zero_grad()
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            value = loss.item()
            n = len(xb)
            total += value * n
            count += n
            if self.metrics:
                preds.append(_host(_full(out.detach())))
                targets.append(_host(yb))
            for c in callbacks:
                c.on_batch_end(i, {"loss": value, "size": n})
            if self.stop_training:
                break
        if parallel is not None:
            total, count, preds, targets = parallel.reduce(total, count, preds, targets)
        logs = {"loss": total / max(count, 1)}
        logs.update(self._metric_logs(preds, targets))
        return logs

    def _metric_logs(self, preds, targets):
        if not self.metrics or not preds:
            return {}
        p, t = np.concatenate(preds), np.concatenate(targets)
        return {name: float(fn(t, p)) for name, fn in self.metrics}

    def evaluate(self, x, y=None, batch_size=256, verbose=1):
        """Loss and metrics over (x, y) in eval mode, as a dict."""
        self._require_compiled()
        loader = self._loader(x, y, batch_size, shuffle=False)
        self.module.eval()
        total, count, preds, targets = 0.0, 0, [], []
        with no_grad():
            for xb, yb in loader:
                with self._autocast():
                    out = self.module(xb)
                    total += self.loss_fn(out, yb).item() * len(xb)
                count += len(xb)
                preds.append(_host(_full(out)))
                targets.append(_host(yb))
        logs = {"loss": total / max(count, 1)}
        logs.update(self._metric_logs(preds, targets))
        if verbose and is_main_process():
            print(" - ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        return logs

    def predict(self, x, batch_size=256):
        """Model outputs for ``x`` (eval mode, no graph) as a NumPy array."""
        xs = _host(x)
        self.module.eval()
        outs = []
        with no_grad():
            for start in range(0, len(xs), batch_size):
                xb = _tensor(xs[start:start + batch_size], device=self.device)
                with self._autocast():
                    outs.append(_host(_full(self.module(xb))))
        return np.concatenate(outs) if outs else np.zeros((0,))

    # -- saving -----------------------------------------------------------------------------
    def save(self, path):
        """Save the module's weights (safetensors); under a launcher only rank 0 writes."""
        from ..io import save

        if not is_main_process():
            return

        save(self.module.state_dict(), path)

    def load(self, path, strict=True):
        """Load weights saved by :meth:`save` (strict: names and shapes must match)."""
        from ..io import load

        _require_file(path, "load")
        self.module.load_state_dict(load(path, device=self.device), strict=strict)
        return self

    def save_checkpoint(self, path, epoch=None):
        """A full training checkpoint: weights, optimizer, scheduler, epoch, callbacks, RNGs,
        and the history so far; :meth:`load_checkpoint` resumes from it exactly (on any
        number of processes). Under a launcher only rank 0 writes."""
        from ..io import save

        self._require_compiled()
        if not is_main_process():
            return
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": getattr(self, "epoch", 0) if epoch is None else epoch,
            "callbacks": [c.state_dict() for c in getattr(self, "_callbacks", [])
                          if not isinstance(c, cb.ProgressBar)],
            "rng": {"pydl": _jsonable_rng(get_rng_state()),
                    "shuffle": _jsonable_rng(self._rng.bit_generator.state)},
            "history": self.history.history if self.history is not None else {},
        }
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        save(state, path)

    def load_checkpoint(self, path, callbacks=()):
        """Restore everything :meth:`save_checkpoint` wrote; returns the epoch to resume at
        (pass it to ``fit(initial_epoch=...)`` with the same callbacks)."""
        from ..io import CheckpointError, load

        _require_file(path, "load_checkpoint")
        self._require_compiled()
        state = load(path, device=self.device)
        missing = [k for k in ("model", "optimizer", "scheduler", "callbacks", "rng", "history",
                               "epoch") if not isinstance(state, dict) or k not in state]
        if missing:
            raise CheckpointError(
                f"{path}: not a training checkpoint written by save_checkpoint (missing "
                f"{', '.join(missing)}); weights saved by Model.save load with Model.load")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        saved_cbs = state["callbacks"]
        live = [c for c in callbacks if not isinstance(c, cb.ProgressBar)]
        for c, s in zip(live, saved_cbs):
            c.load_state_dict(s)
        set_rng_state(_restore_rng(state["rng"]["pydl"]))
        self._rng.bit_generator.state = _restore_rng(state["rng"]["shuffle"])
        self.history = History()
        hist = state["history"]
        for i in range(len(next(iter(hist.values()), []))):
            self.history.append(i, {k: v[i] for k, v in hist.items()})
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.epoch = state["epoch"]
        return self.epoch


_PRECISIONS = {None: None, "fp32": None, "float32": None, "bf16": bfloat16,
               "bfloat16": bfloat16, "mixed_bfloat16": bfloat16, "fp16": float16,
               "float16": float16, "mixed_float16": float16}


def _precision(name):
    """The autocast dtype of a ``mixed_precision`` name (None: full precision)."""
    if name in LOW_PRECISION:
        return name
    key = name.lower() if isinstance(name, str) else name
    if key not in _PRECISIONS:
        raise ValueError(f"compile: mixed_precision must be 'bf16', 'fp16', 'fp32' or None "
                         f"(or Keras's 'mixed_bfloat16' / 'mixed_float16'), got {name!r}")
    return _PRECISIONS[key]


def _full(t: Tensor) -> Tensor:
    """Outputs handed to metrics and predict() in float32 when autocast left them narrower."""
    return t.float() if t.dtype in LOW_PRECISION else t


def _require_file(path, what: str) -> None:
    import os

    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"Model.{what}: {path!r} {reason}")


def _jsonable_rng(state):
    """Bit-generator states hold 128-bit ints; store them as strings."""
    if isinstance(state, dict):
        return {k: _jsonable_rng(v) for k, v in state.items()}
    if isinstance(state, int) and not isinstance(state, bool) and abs(state) >= 2 ** 53:
        return {"__bigint__": str(state)}
    return state


def _restore_rng(state):
    if isinstance(state, dict):
        if set(state) == {"__bigint__"}:
            return int(state["__bigint__"])
        return {k: _restore_rng(v) for k, v in state.items()}
    return state


class Sequential(Model):
    """A Keras-style Sequential model: ``pydl.Sequential([layer, layer, ...])``.

    It is a :class:`Model` over ``nn.Sequential(*layers)``; index it like a list.
    """

    def __init__(self, layers=()):
        super().__init__(nn.Sequential(*layers))

    def add(self, layer):
        self.module.append(layer)

    def __getitem__(self, i):
        return self.module[i]

    def __len__(self):
        return len(self.module)
