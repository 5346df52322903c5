"""``pydl.amp.GradScaler``: dynamic loss scaling for float16 training, torch's algorithm.

float16 holds magnitudes from about 6e-8 (subnormal) to 65504, and small gradients round to
zero. The scaler multiplies the loss by ``scale`` before ``backward`` so the gradients are
``scale`` times larger, then divides them back (``unscale_``) before the optimizer steps. When
any gradient is inf or NaN the step is skipped and the scale shrinks (``backoff_factor``);
after ``growth_interval`` clean steps in a row it grows (``growth_factor``).

    scaler = pydl.amp.GradScaler()
    for x, y in loader:
        opt.zero_grad()
        with pydl.autocast("cuda", dtype=pydl.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)               # optional: clip the true gradients here
        pydl.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)                   # skipped when a gradient is inf/NaN
        scaler.update()
"""

from __future__ import annotations

import numbers

from ..backend import backend_of
from ..tensor import LOW_PRECISION, Tensor, float16, float32, is_floating_dtype

__all__ = ["GradScaler"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Scale the loss, unscale the gradients, skip steps on inf/NaN, adapt the scale.

    Args (torch's names and defaults):
        device: the device type the scaler serves (``"cuda"`` or ``"cpu"``); informational,
            the scale is kept as a Python float.
        init_scale: the first scale (2**16).
        growth_factor: the scale is multiplied by it after ``growth_interval`` clean steps (2.0).
        backoff_factor: the scale is multiplied by it after a step with inf/NaN (0.5).
        growth_interval: clean steps in a row before the scale grows (2000).
        enabled: ``False`` makes every method a pass-through (``step`` just steps).

    Gradients are unscaled into float32: a float16 or bfloat16 parameter's ``.grad`` becomes
    a float32 tensor, which pydl's optimizers apply to the parameter's float32 master copy.
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        if not isinstance(growth_interval, numbers.Integral) or growth_interval < 1:
            raise ValueError(
                f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        if not init_scale > 0.0:
            raise ValueError(f"GradScaler: init_scale must be > 0, got {init_scale}")
        self.device = str(device)
        self._enabled = bool(enabled)
        self._scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict] = {}

    # -- scaling --------------------------------------------------------------------------
    def scale(self, outputs):
        """``outputs`` (a tensor, or a list/tuple/dict of them) multiplied by the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if isinstance(outputs, dict):
            return {k: self.scale(v) for k, v in outputs.items()}
        raise TypeError(
            f"GradScaler.scale: expected a Tensor or a list/tuple/dict of them, got "
            f"{type(outputs).__name__}")

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    def unscale_(self, optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale, in float32, and note any inf/NaN.

        Call it at most once per optimizer between ``update()`` calls, before clipping.
        """
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] is _UNSCALED:
            raise RuntimeError(
                "GradScaler.unscale_: already called on this optimizer since the last update()")
        if state["stage"] is _STEPPED:
            raise RuntimeError("GradScaler.unscale_: called after step(); call update() first")
        _check_optimizer_state(optimizer)
        inv = float32.type(1.0 / self._scale)  # torch: the reciprocal in double, then float
        found = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                data = g.data
                xp = backend_of(data).xp
                wide = data.astype(float32) if data.dtype in LOW_PRECISION else data
                if not bool(xp.isfinite(wide).all()):
                    found = True
                if wide is data:
                    data *= data.dtype.type(inv)
                    g._bump()
                else:
                    wide *= inv
                    p.grad = Tensor._make(wide)
        state["found_inf"] = found
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``unscale_`` (unless done), then ``optimizer.step()`` unless a gradient was inf/NaN.

        Returns what ``optimizer.step`` returns, or None when the step was skipped.
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs or args:
            raise RuntimeError("GradScaler.step: closures are not supported (as in torch)")
        state = self._state(optimizer)
        if state["stage"] is _STEPPED:
            raise RuntimeError("GradScaler.step: already called on this optimizer since the last "
                               "update()")
        if state["stage"] is _READY:
            self.unscale_(optimizer)
        result = None if state["found_inf"] else optimizer.step()
        state["stage"] = _STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """Adapt the scale from this iteration's steps (or set it to ``new_scale``)."""
        if not self._enabled:
            return
        if new_scale is not None:
            value = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
            if not value > 0.0:
                raise ValueError(f"GradScaler.update: new_scale must be > 0, got {value}")
            self._scale = value
        else:
            states = [s for s in self._per_optimizer.values() if s["stage"] is not _READY]
            if not states:
                raise RuntimeError("GradScaler.update: no inf checks were recorded before "
                                   "update(); call scaler.step(optimizer) (or unscale_) first")
            if any(s["found_inf"] for s in states):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        self._per_optimizer = {}

    # -- inspection and checkpoints -------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, value: float) -> None:
        self._growth_factor = float(value)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, value: float) -> None:
        self._backoff_factor = float(value)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, value: int) -> None:
        self._growth_interval = int(value)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict:
        """torch's keys: ``scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval``,
        ``_growth_tracker`` (empty when disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty: it was "
                               "saved by a disabled GradScaler")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                   "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing {sorted(missing)}")
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _check_optimizer_state(optimizer) -> None:
    """Refuse float16 optimizer state: its moments overflow and underflow under a scaled loss."""
    index = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                dt = getattr(value, "dtype", None)
                if dt is not None and is_floating_dtype(dt) and dt == float16:
                    raise TypeError(
                        f"GradScaler: optimizer state {name!r} of parameter {index} is float16; "
                        "a scaled loss needs float32 optimizer state. Keep the parameters in "
                        "float16 and let pydl's optimizers hold float32 state and master "
                        "weights (they do for float16 parameters), or load an optimizer state "
                        "dict saved in float32")
            index += 1
