"""The math of the layers as functions: ``F.im2col(x, ...)``, ``F.softmax_cross_entropy``...

Each function is written once against the array API standard (the generic version) and
dispatches on its first array argument: a device whose backend registered an override of
the same name (``@NumpyBackend.override`` in ``backends/numpy.py``, likewise CuPy and
PyTorch) runs that instead. Layers call these; you can too, for a layer of your own:

    import tensornet.nn.functional as F
    cols = F.im2col(x, (3, 3), padding=((1, 1), (1, 1)))

Where each piece lives: ``basic.py`` (matmul, sums, scatter-add and -assign, one-hot, log-sum-exp,
softmax and log-softmax, ReLU, a Linear's bias with the ReLU after it, softmax
cross-entropy), ``windows.py`` (im2col/col2im, pooling, adaptive max pooling),
``conv.py`` (Conv2d's forward and backward: im2col + GEMM), ``normalization.py``
(BatchNorm/LayerNorm statistics and backward), ``dispatch.py`` (the ``@kernel`` decorator).
"""
from .basic import (all_finite, bias_relu, labels_equal, labels_in_range, log_softmax,
                    logsumexp, matmul, one_hot, reduce_sum, relu, relu_backward,
                    relu_backward_sum, scatter_add, scatter_assign, softmax,
                    softmax_cross_entropy, softmax_cross_entropy_backward)
from .conv import conv2d, conv2d_backward
from .dispatch import kernel
from .normalization import (normalize, normalize_affine_relu, normalize_backward,
                            normalize_relu_backward)
from .windows import (adaptive_max_pool2d, adaptive_max_pool2d_backward, avg_pool2d,
                      avg_pool2d_backward, col2im, im2col, max_pool2d, max_pool2d_backward,
                      max_pool2d_indices, pad2d)

__all__ = ["kernel", "matmul", "reduce_sum", "scatter_add", "scatter_assign", "one_hot",
           "labels_in_range", "labels_equal", "all_finite", "logsumexp", "log_softmax",
           "softmax", "relu", "relu_backward", "bias_relu", "relu_backward_sum",
           "softmax_cross_entropy", "softmax_cross_entropy_backward", "pad2d",
           "im2col", "col2im", "max_pool2d", "max_pool2d_backward", "max_pool2d_indices",
           "avg_pool2d", "avg_pool2d_backward", "adaptive_max_pool2d",
           "adaptive_max_pool2d_backward", "normalize", "normalize_backward",
           "normalize_affine_relu", "normalize_relu_backward", "conv2d", "conv2d_backward"]
