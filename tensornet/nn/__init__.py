"""Layers, containers, losses, initialisers and the gradient checker."""
from . import init
from .activation import (CELU, ELU, GELU, GLU, SELU, Hardshrink, Hardsigmoid, Hardswish,
                         Hardtanh, LeakyReLU, LogSigmoid, LogSoftmax, Mish, PReLU, ReLU, ReLU6,
                         Sigmoid, SiLU, Softmax, Softmin, SoftPlus, Softplus, Softshrink,
                         Softsign, Tanh, Tanhshrink, Threshold)
from .container import ModuleDict, ModuleList, Residual, Sequential
from .conv import Conv1d, Conv2d
from .conv_transpose import ConvTranspose1d, ConvTranspose2d
from .distance import CosineSimilarity, PairwiseDistance
from .dropout import AlphaDropout, DropConnect, Dropout, Dropout1d, Dropout2d
from .embedding import Embedding
from .fold import Fold, Unfold
from .flatten import Flatten, PixelShuffle, PixelUnshuffle, Unflatten
from .gradcheck import GradcheckError, gradcheck
from .linear import Bilinear, Identity, Linear
from .loss import Loss, NonFiniteError
from .loss_labels import CrossEntropyLoss, NLLLoss
from .loss_classification import (BCELoss, BCEWithLogitsLoss, KLDivLoss,
                                  MultiLabelSoftMarginLoss, MultiMarginLoss)
from .loss_margin import HingeEmbeddingLoss, MultiLabelMarginLoss, SoftMarginLoss
from .loss_pairs import CosineEmbeddingLoss, MarginRankingLoss, TripletMarginLoss
from .loss_regression import (GaussianNLLLoss, HuberLoss, L1Loss, MSELoss, PoissonNLLLoss,
                              SmoothL1Loss)
from .module import Module, RemovableHandle
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm1d, InstanceNorm2d
from .normalization_layer import LayerNorm, RMSNorm
from .padding import (ConstantPad1d, ConstantPad2d, ReflectionPad1d, ReflectionPad2d,
                      ReplicationPad1d, ReplicationPad2d, ZeroPad1d, ZeroPad2d)
from .parameter import Parameter
from .pooling import AvgPool1d, AvgPool2d, GlobalAvgPool2d, MaxPool1d, MaxPool2d
from .pooling_adaptive import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d,
                               AdaptiveMaxPool2d)
from .recurrent import GRU, LSTM, RNN
from .unpooling import MaxUnpool2d
from .upsampling import Upsample
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "init", "Module", "Parameter", "RemovableHandle", "Sequential", "Residual", "ModuleList",
    "ModuleDict",
    "Linear", "Bilinear", "Identity", "Embedding", "PairwiseDistance", "CosineSimilarity",
    "Flatten", "Unflatten", "Fold", "Unfold", "PixelShuffle", "PixelUnshuffle",
    "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout",
    "DropConnect",
    "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "SoftPlus", "Softplus", "Softmax", "LogSoftmax",
    "GELU", "SiLU", "Hardtanh", "PReLU", "ReLU6", "Hardsigmoid", "Hardswish", "Mish", "CELU",
    "SELU", "Softsign", "LogSigmoid", "Softmin", "GLU", "Threshold", "Hardshrink", "Softshrink",
    "Tanhshrink",
    "Loss", "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "NonFiniteError",
    "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "KLDivLoss", "MultiMarginLoss",
    "SoftMarginLoss", "MultiLabelSoftMarginLoss", "HingeEmbeddingLoss", "PoissonNLLLoss",
    "GaussianNLLLoss", "MarginRankingLoss", "CosineEmbeddingLoss", "TripletMarginLoss",
    "MultiLabelMarginLoss",
    "gradcheck", "GradcheckError",
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d",
    "MaxUnpool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d",
    "GlobalAvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample", "BatchNorm1d",
    "BatchNorm2d",
    "ZeroPad1d", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d",
    "ReflectionPad2d", "ReplicationPad1d", "ReplicationPad2d",
    "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "SyncBatchNorm",
    "RNN", "LSTM", "GRU",
]
