"""Optimizers, learning-rate schedules and gradient clipping.

    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = tn.optim.StepLR(opt, step_size=10, gamma=0.5)
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .lr_scheduler import (CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR,
                           InverseTimeLR, LambdaLR, LinearLR, LRScheduler, MultiStepLR,
                           OneCycleLR, ReduceLROnPlateau, SequentialLR, StepLR)
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler",
           "LRScheduler", "StepLR", "ExponentialLR", "InverseTimeLR", "CosineAnnealingLR",
           "MultiStepLR", "LambdaLR", "LinearLR", "CosineAnnealingWarmRestarts", "OneCycleLR",
           "SequentialLR", "ReduceLROnPlateau",
           "clip_grad_norm_", "clip_grad_value_"]
