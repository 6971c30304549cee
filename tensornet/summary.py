"""``tn.summary(model, input_shape)``: each layer's output shape and parameter count, as
Keras' ``model.summary()``."""
from __future__ import annotations

import numpy as np

from tensornet.backends import dtype_name, get_backend
from tensornet.nn.module import Module


def _shape_text(output) -> str:
    if hasattr(output, "shape"):
        return str(("None",) + tuple(output.shape[1:])).replace("'None'", "None")
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape_text(o) for o in output)
    return type(output).__name__


def summary(model: Module, input_shape, *, batch_size: int = 2, dtype=None,
            print_fn=print) -> str:
    """Print (through ``print_fn``; None prints nothing) and return a table of ``model``:
    one row per module in call order, with its output shape (batch axis shown as None) and
    its own parameter count; then the totals.

    ``input_shape`` is one sample's shape, without the batch axis (e.g. ``(1, 28, 28)``).
    It runs one forward pass in eval mode on a zero batch of ``batch_size`` samples of
    ``dtype`` (the model's by default; ``"int64"`` for an Embedding model) on the model's
    device, under ``no_grad``, then restores each module's mode; a pending forward's caches
    are kept, so its backward still works.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary expected a tensornet Module, got {type(model).__name__}")
    def positive_int(d):
        return not isinstance(d, bool) and isinstance(d, (int, np.integer)) and d > 0

    shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else input_shape
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__") \
            or not all(positive_int(d) for d in shape):
        raise ValueError(f"summary: input_shape must be positive ints (one sample's shape, "
                         f"without the batch axis), got {input_shape!r}")
    shape = tuple(int(d) for d in shape)
    if not positive_int(batch_size):
        raise ValueError(f"summary: batch_size must be a positive integer, got {batch_size!r}")
    # a parameter's device: a container's own backend may be a leading Flatten's
    backend = next((get_backend(p.data) for p in model.parameters()), model.backend)
    rows, depth_of = [], {}
    for name, module in model.named_modules():
        depth_of[id(module)] = (name or type(model).__name__, name.count(".") + bool(name))

    def record(module, inputs, output):
        label, depth = depth_of.get(id(module), (type(module).__name__, 0))
        own = sum(p.size for p in module.parameters(recurse=False))
        rows.append((depth, label, type(module).__name__, _shape_text(output), own,
                     bool(module._modules)))

    x = backend.zeros((int(batch_size),) + shape, dtype=dtype or model.dtype)
    try:
        run_with_hooks(model, x, record)
    except Exception as exc:  # the layer's own error stays; say which batch summary ran
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"(in tn.summary: the forward pass of a zero batch of shape "
                         f"{tuple(x.shape)}, {dtype_name(x.dtype)}, from input_shape="
                         f"{input_shape!r} and batch_size={batch_size})")
        raise
    # hooks fire as each module returns, so containers come after their children: put each
    # container back in front of the rows its forward produced
    ordered = _containers_first(rows)
    if ordered and ordered[0][0] == 0 and ordered[0][5]:
        # the model itself: its header line says what it is
        ordered = [(depth - 1, *rest) for depth, *rest in ordered[1:]]
    total = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    width = max([len("  " * d + f"{label} ({kind})") for d, label, kind, *_ in ordered]
                + [len("Layer (type)")])
    shape_width = max([len(r[3]) for r in ordered] + [len("Output shape")])
    rule = "-" * (width + shape_width + 16)
    lines = [f"Model: {type(model).__name__} on {backend.device!r}, "
             f"{dtype_name(x.dtype)} input {_shape_text(x)}", rule,
             f"{'Layer (type)':<{width}}  {'Output shape':<{shape_width}}  {'Param #':>12}",
             rule.replace("-", "=")]
    for depth, label, kind, out, own, container in ordered:
        count = "" if container and own == 0 else f"{own:,}"
        lines.append(f"{'  ' * depth + f'{label} ({kind})':<{width}}  {out:<{shape_width}}  "
                     f"{count:>12}")
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", rule]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


def run_with_hooks(model: Module, x, hook):
    """``model(x)`` in eval mode under ``no_grad`` with ``hook(module, inputs, output)`` as a
    forward hook on every module; then the hooks are removed and every module's own mode
    put back. A pending forward's caches are kept (``no_grad`` leaves them as they were), so
    a backward after it still works. Returns the output."""
    from tensornet.evaluation import _inference

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with _inference(model):
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


def _containers_first(rows):
    """Reorder post-order rows (children, then their container) into pre-order."""
    stack = []
    for row in rows:
        depth = row[0]
        children = []
        while stack and stack[-1][0][0] > depth:
            children.append(stack.pop())
        block = [row] + [r for child in reversed(children) for r in child[1]]
        stack.append((row, block))
    return [r for _, block in stack for r in block]
