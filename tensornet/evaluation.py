"""Evaluation: ``evaluate`` (mean loss and accuracy over a loader) and ``predict`` (model
outputs), both in eval mode under ``no_grad``; and the epoch figures ``fit`` shares with them
(hit counts per step on the device, summed once at the epoch's end).
"""
from __future__ import annotations

import math

import numpy as np

from tensornet import train_checks as checks
from tensornet.backends import dtype_name, get_backend
from tensornet.nn.grad_mode import no_grad


def _concat(xp):
    return getattr(xp, "concat", None) or xp.concatenate  # CuPy may lack the standard name


def _correct_count(xp, out, target, ignore_index=None):
    """Device count of argmax hits when ``target`` holds class labels (``(N,)`` for (N, C)
    scores, ``(N, d1, ...)`` for (N, C, d1, ...)), else None. A label equal to the loss's
    ``ignore_index`` is no hit (``_summarize`` leaves it out of the count as well)."""
    shape = tuple(out.shape)
    if len(shape) < 2 or tuple(target.shape) != (shape[0],) + shape[2:] \
            or not dtype_name(target.dtype).startswith(("int", "uint")):
        return None
    hits = xp.argmax(out, axis=1) == target
    if ignore_index is not None and 0 <= ignore_index < shape[1]:  # else argmax never hits it
        hits = hits & (target != ignore_index)
    return xp.sum(xp.astype(hits, xp.int64))


def _ignore_index(loss_fn):
    """The class-label loss's ``ignore_index`` (CrossEntropyLoss, NLLLoss), else None."""
    value = getattr(loss_fn, "ignore_index", None)
    return value if isinstance(value, int) else None


def _summarize(backend, losses, corrects, sizes, labels=(), ignore_index=None):
    """``(mean loss (weighted by batch size), accuracy, host per-step losses, labels
    counted)``. The accuracy is over the steps' ``labels`` that are not ``ignore_index``
    (every position of per-position labels); None without a hit count for every step."""
    xp = backend.xp
    step_losses = backend.to_numpy(xp.stack(losses)).astype(np.float64)
    total = float(sum(sizes))
    loss = float(np.dot(step_losses, np.asarray(sizes, dtype=np.float64)) / total)
    acc = counted = None
    if corrects and len(corrects) == len(losses) and len(labels) == len(losses):
        counted = sum(math.prod(y.shape) for y in labels)
        if ignore_index is not None:  # one pass over the epoch's labels, not one per step
            flat = _concat(xp)([xp.reshape(y, (-1,)) for y in labels])
            counted -= int(backend.to_numpy(xp.sum(xp.astype(flat == ignore_index,
                                                              xp.int64))))
        hits = int(backend.to_numpy(xp.sum(xp.stack(corrects))))
        acc = hits / counted if counted else None
    return loss, acc, step_losses, counted


def _distributed(model, fitting: bool = False):
    """Issue 18: the data-parallel hooks when ``model`` is a DataParallel over several
    ranks (tensornet.distributed.training), else None; ``fit`` (``fitting``) also refuses
    to train inside ``DataParallel.no_sync()``."""
    from tensornet.distributed.training import check_not_in_no_sync, for_model

    if fitting:
        check_not_in_no_sync(model)
    return for_model(model)


def _model_backend(model):
    for param in model.parameters():
        return get_backend(param.data)
    return model.backend


# ---------------------------------------------------------------------- evaluate / predict
class _inference:
    """Eval mode and ``no_grad`` for a block; every module's own mode is put back after."""

    def __init__(self, model):
        self.model, self.grad = model, no_grad()

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        self.grad.__enter__()

    def __exit__(self, *exc_info):
        self.grad.__exit__(*exc_info)
        for module, training in self.modes:
            object.__setattr__(module, "training", training)
        return False


def evaluate(model, loss_fn, loader=None) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode, under
    ``tn.no_grad()`` (a pending backward of the model keeps its caches).

    Returns ``{"loss", "acc", "samples"}``; ``acc`` is None unless the targets are class
    labels, ``loss`` None when ``loss_fn`` is None (``evaluate(model, loader)`` also works).
    """
    if loader is None and loss_fn is not None and not hasattr(loss_fn, "backward"):
        loss_fn, loader = None, loss_fn
    if loader is None:
        raise TypeError("evaluate(model, loss_fn, loader): loader is missing")
    checks.check_parts("evaluate", model, loss_fn, training=False)
    backend = _model_backend(model)
    xp = backend.xp
    losses, corrects, sizes, labels = [], [], [], []
    ignore_index = _ignore_index(loss_fn)
    with _inference(model):
        for i, batch in enumerate(loader, 1):
            xb, yb = checks.batch_pair(batch, "evaluate", i)
            out = model(xb)
            n = int(xb.shape[0])
            losses.append(loss_fn(out, yb) if loss_fn is not None else backend.zeros(()))
            correct = _correct_count(xp, out, yb, ignore_index)
            if correct is not None:
                corrects.append(correct)
                labels.append(yb)
            sizes.append(n)
    if not sizes:
        raise ValueError("evaluate: the loader yielded no batches")
    loss, acc, _, counted = _summarize(backend, losses, corrects, sizes, labels, ignore_index)
    samples, dist = sum(sizes), _distributed(model)
    if loss_fn is None:
        loss = None
    if dist is not None:  # distributed (issue 18): sums over the ranks' shards
        loss, acc, samples, _ = dist.summarize(loss, acc, samples, counted=counted)
    return {"loss": loss, "acc": acc, "samples": samples}


def predict(model, data, batch_size: int = 256):
    """Model outputs for ``data`` in eval mode under ``tn.no_grad()``, concatenated on the
    model's device.

    ``data`` is an array (host or the model's device; batched by ``batch_size``), or a
    DataLoader / iterable of batches (``(x, y)`` pairs or bare inputs).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"predict: batch_size must be a positive integer, got {batch_size!r}")
    checks.check_parts("predict", model, None, training=False)
    backend = _model_backend(model)
    xp = backend.xp
    if hasattr(data, "shape"):
        if len(data.shape) == 0:
            raise ValueError(f"predict: data must have a batch axis (N, ...), got a 0-d "
                             f"{type(data).__name__}")
        n = int(data.shape[0])
        # The array API wants a trailing ellipsis on n-d arrays and stops within bounds.
        batches = (backend.asarray(data[i:i + batch_size]) if isinstance(data, np.ndarray)
                   else data[i:min(i + batch_size, n), ...] for i in range(0, n, batch_size))
    else:
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in data)
    with _inference(model):
        outputs = [model(xb) for xb in batches]
    if not outputs:
        raise ValueError("predict: no input samples")
    if len(outputs) == 1:
        return outputs[0]
    return _concat(xp)(outputs, axis=0)
