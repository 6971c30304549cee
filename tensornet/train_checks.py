"""The argument checks of ``fit``, ``evaluate`` and ``train_step``.

A wrong object (a class where an instance belongs, None, an optimizer or schedule over other
parameters, a one-shot iterator for several epochs, batches that are not ``(x, y)`` pairs)
fails at once with one error naming what was expected, instead of a traceback from deep
inside a layer, or a run that silently trains nothing.
"""
from __future__ import annotations

from tensornet.backends import DeviceError
from tensornet.callbacks import Callback


def _describe(obj) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if hasattr(obj, "shape"):
        return f"an array of shape {tuple(obj.shape)}"
    return "None" if obj is None else type(obj).__name__


def _instance(where: str, name: str, obj, example: str) -> None:
    if isinstance(obj, type):
        raise TypeError(f"{where}: {name} must be an instance, got the class {obj.__name__}; "
                        f"pass {obj.__name__}(...), e.g. {example}")


def check_parts(where: str, model, loss_fn, optimizer=None, *, training: bool = True) -> None:
    """``model`` a module, ``loss_fn`` a loss instance (None allowed when not training),
    ``optimizer`` an optimizer instance (training only)."""
    if isinstance(model, type) or not callable(getattr(model, "parameters", None)) \
            or not callable(getattr(model, "eval", None)):
        raise TypeError(f"{where}: model must be a tensornet module (an nn.Module instance), "
                        f"got {_describe(model)}")
    _instance(where, "loss_fn", loss_fn, "nn.CrossEntropyLoss()")
    if (training or loss_fn is not None) and not (callable(loss_fn)
                                                  and hasattr(loss_fn, "backward")):
        raise TypeError(f"{where}: loss_fn must be a loss instance with backward(), e.g. "
                        f"nn.CrossEntropyLoss(); got {_describe(loss_fn)}")
    if not training:
        return
    _instance(where, "optimizer", optimizer, "tn.optim.SGD(model.parameters(), lr=0.1)")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"{where}: optimizer must be an optimizer instance with step(), e.g. "
                        f"tn.optim.SGD(model.parameters(), lr=0.1); got {_describe(optimizer)}")


def check_optimizer_params(model, optimizer) -> None:
    """Refuse an optimizer that holds none of the model's parameters (built over another
    model, or before the model was replaced): the run would train nothing."""
    groups = getattr(optimizer, "param_groups", None)
    params = [p for p in model.parameters() if getattr(p, "requires_grad", True)]
    if not groups or not params:
        return
    held = {id(p) for group in groups for p in group.get("params", ())}
    if not any(id(p) in held for p in params):
        raise ValueError(f"fit: the optimizer holds none of the model's {len(params)} "
                         f"trainable parameters, so training would change nothing; build it "
                         f"over this model: {type(optimizer).__name__}(model.parameters(), ...)")


def check_scheduler(scheduler, optimizer) -> None:
    if scheduler is None:
        return
    _instance("fit", "scheduler", scheduler, "tn.optim.StepLR(optimizer, step_size=2)")
    own = getattr(scheduler, "optimizer", None)
    if own is not None and own is not optimizer:
        raise ValueError(f"fit: the scheduler {type(scheduler).__name__} steps another "
                         f"optimizer than the one fit trains with, so the learning rate "
                         f"would never change; build it over fit's optimizer")


def check_callbacks(callbacks) -> list:
    """``callbacks`` (a list or tuple of Callback instances, or None) as a new list."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError(f"fit: callbacks must be a list of Callback instances, got one "
                        f"{type(callbacks).__name__}; pass callbacks=[...] around it")
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of Callback instances, got "
                        f"{_describe(callbacks)}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be Callback instances, got "
                            f"{_describe(cb) if isinstance(cb, type) else type(cb).__name__}")
    return list(callbacks)


def check_schedulers_once(callbacks) -> None:
    """Refuse one schedule stepped by two callbacks (``scheduler=`` and a
    LearningRateScheduler of the same object): it would decay twice per epoch. Refuse two
    schedules of one optimizer: each writes its own lr (closed forms; ReduceLROnPlateau
    cuts what it finds), so one undoes the other, and a checkpoint keeps one's state."""
    from tensornet.callbacks import LearningRateScheduler

    seen, by_optimizer = set(), {}
    for cb in callbacks:
        if isinstance(cb, LearningRateScheduler):
            if id(cb.scheduler) in seen:
                raise ValueError(f"fit: the schedule {type(cb.scheduler).__name__} is passed "
                                 f"twice (scheduler= and a LearningRateScheduler callback, or "
                                 f"two callbacks) and would be stepped twice per epoch; pass "
                                 f"it once")
            seen.add(id(cb.scheduler))
            optimizer = getattr(cb.scheduler, "optimizer", None)
            other = by_optimizer.setdefault(id(optimizer), cb.scheduler)
            if optimizer is not None and other is not cb.scheduler:
                raise ValueError(
                    f"fit: {type(other).__name__} and {type(cb.scheduler).__name__} both set "
                    f"the lr of the optimizer {type(optimizer).__name__}; each writes its own "
                    f"lr, so one would undo the other's changes at its next step (and a "
                    f"checkpoint would keep only {type(other).__name__}'s state). Pass one "
                    f"schedule: tn.optim.ChainedScheduler multiplies schedules' factors, "
                    f"tn.optim.SequentialLR runs them one after another (ReduceLROnPlateau "
                    f"goes in neither)")


def check_options(verbose, grad_hook) -> None:
    if not isinstance(verbose, int) or verbose < 0:
        raise TypeError(f"fit: verbose must be 0 (silent), 1 or 2, got {verbose!r}")
    if grad_hook is not None and not callable(grad_hook):
        raise TypeError(f"fit: grad_hook must be a function hook(model) or None, got "
                        f"{_describe(grad_hook)}")


def check_loader(loader, backend, name: str, passes: int) -> None:
    """``loader`` iterable, on the model's device, and (when it is iterated ``passes`` > 1
    times) not a one-shot iterator such as a generator."""
    if loader is None:
        return
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"fit: {name} must be a DataLoader (or an iterable of (x, y) "
                        f"batches), got {type(loader).__name__}")
    if passes > 1 and hasattr(loader, "__next__"):
        raise TypeError(f"fit: {name} is a one-shot iterator ({type(loader).__name__}), which "
                        f"yields nothing after the first epoch; for {passes} epochs pass a "
                        f"DataLoader or a list of (x, y) batches")
    device = getattr(getattr(loader, "backend", None), "device", None)
    if device is not None and device != backend.device:
        raise DeviceError(f"fit: the model is on {backend.device!r} but {name} yields batches "
                          f"on {device!r}; build the DataLoader with device={backend.device!r}")


def batch_pair(batch, where: str, index: int, epoch: int | None = None):
    """``batch`` as ``(x, y)``, or a TypeError naming what the loader yielded (``where``,
    and ``epoch`` when given: the message is only built for the error)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch
    if epoch is not None:
        where = f"{where}, epoch {epoch}"
    hint = ""
    if isinstance(batch, dict):
        hint = ": yield (batch['x'], batch['y']) instead"
    elif hasattr(batch, "shape"):
        hint = " (bare inputs are for tn.predict)"
    raise TypeError(f"{where}: batch {index} is {_describe(batch)}; the loader must yield "
                    f"(x, y) pairs{hint}")
