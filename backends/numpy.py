"""NumPy (CPU) backend: the generic math with NumPy's ``out=`` and ``bincount`` speed-ups."""
from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """CPU arrays are plain ``numpy.ndarray``; the RNG is NumPy's Generator."""

    xp = np
    name = "numpy"
    device = "cpu"

    def owns(self, x) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        if isinstance(x, np.ndarray):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        return super().asarray(x, dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    # Draws need no transfer on the CPU.
    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        out = self._rng.standard_normal(size=shape, dtype=self.dtype(dtype))
        if std != 1.0:
            out *= std
        if mean != 0.0:
            out += mean
        return out

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        out = self._rng.random(size=shape, dtype=self.dtype(dtype))
        if (low, high) != (0.0, 1.0):
            out *= high - low
            out += low
        return out

    def bernoulli(self, shape, p, dtype=None):
        draw = self._rng.random(size=shape, dtype=np.float32)
        return np.less(draw, p).astype(self.dtype(dtype))

    def permutation(self, n: int):
        return self._rng.permutation(n).astype(np.int64)

    def scatter_add(self, target, index, values):
        # bincount sums in float64 and is far faster than np.add.at.
        flat = target.reshape(-1)
        summed = np.bincount(index.reshape(-1), weights=values.reshape(-1), minlength=flat.size)
        flat += summed.astype(target.dtype, copy=False)
        return target

    def relu(self, x):
        return np.maximum(x, 0, dtype=x.dtype)

    def relu_backward(self, grad, y):
        out = np.greater(y, 0).astype(grad.dtype, copy=False)
        out *= grad
        return out

    # Optimizer updates with out= so that a step allocates no full-size temporaries
    # beyond one scratch array per call.
    def sgd_update(self, param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
                   first_step):
        if weight_decay:
            grad = grad + weight_decay * param
        if not momentum:
            param -= lr * grad
            return
        if first_step:
            np.copyto(buf, grad)
        else:
            buf *= momentum
            if dampening:
                buf += (1.0 - dampening) * grad
            else:
                buf += grad
        if nesterov:
            step = momentum * buf
            step += grad
            step *= lr
        else:
            step = np.multiply(buf, lr, dtype=buf.dtype)
        param -= step

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step, weight_decay,
                    decoupled):
        if weight_decay:
            if decoupled:
                param *= 1.0 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        scratch = np.multiply(grad, grad)
        scratch *= 1.0 - beta2
        v += scratch
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        np.sqrt(v, out=scratch)
        scratch *= 1.0 / np.sqrt(bc2)
        scratch += eps
        np.divide(m, scratch, out=scratch)
        scratch *= lr / bc1
        param -= scratch
