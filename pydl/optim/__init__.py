"""Optimizers and learning-rate schedulers, with PyTorch's API and update rules.

>>> opt = pydl.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
>>> sched = pydl.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
>>> for x, y in loader:
...     opt.zero_grad()
...     loss_fn(model(x), y).backward()
...     opt.step()
>>> sched.step()

Each optimizer's update runs in the backend's fused multi-tensor kernel (``sgd_step``,
``adam_step``, ``rmsprop_step``, ``adagrad_step``): one call per parameter group, device and
dtype. See docs/optim.md for which optimizer to pick and how to set the learning rate.
"""

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
