"""Layers, containers, losses, initialisers and the gradient checker."""
from . import init
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, SoftPlus, Softplus, Tanh
from .container import Residual, Sequential
from .conv import Conv2d
from .dropout import DropConnect, Dropout
from .flatten import Flatten
from .gradcheck import GradcheckError, gradcheck
from .linear import Identity, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss, NonFiniteError
from .module import Module, RemovableHandle
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .sync_batchnorm import SyncBatchNorm  # data-parallel (issue 18)

__all__ = [
    "init", "Module", "Parameter", "RemovableHandle", "Sequential", "Residual",
    "Linear", "Identity", "Flatten", "Dropout", "DropConnect",
    "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "SoftPlus", "Softplus", "Softmax", "LogSoftmax",
    "Loss", "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "NonFiniteError",
    "gradcheck", "GradcheckError",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d",
    "LayerNorm", "SyncBatchNorm",
]
