"""Central differences of a scalar function of one array, for the gradients that
``tn.gradcheck`` does not reach (a second input's, left in an attribute such as
``input2_grad`` or ``var_grad``)."""
from __future__ import annotations

import numpy as np


def central_differences(function, array, eps: float = 1e-6) -> np.ndarray:
    """d function(array) / d array, element by element: ``(f(a + eps) - f(a - eps)) / 2eps``
    (``function`` takes a float64 array of ``array``'s shape and returns a number)."""
    array = np.asarray(array, dtype=np.float64)
    numeric = np.empty(array.shape)
    for i in np.ndindex(array.shape):
        values = []
        for step in (eps, -eps):
            bumped = array.copy()
            bumped[i] += step
            values.append(float(function(bumped)))
        numeric[i] = (values[0] - values[1]) / (2 * eps)
    return numeric
