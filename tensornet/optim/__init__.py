"""Optimizers, learning-rate schedules and gradient clipping.

    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = tn.optim.StepLR(opt, step_size=10, gamma=0.5)
"""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .clip import ClipGradNorm, clip_grad_norm_, clip_grad_value_
from .lr_scheduler import (ChainedScheduler, ConstantLR, CosineAnnealingLR,
                           CosineAnnealingWarmRestarts, CyclicLR, ExponentialLR, InverseTimeLR,
                           LambdaLR, LinearLR, LRScheduler, MultiStepLR, OneCycleLR,
                           PolynomialLR, ReduceLROnPlateau, SequentialLR, StepLR)
from .compose import coupled_decay, decoupled_decay, maximized, variants  # noqa: F401
from .nadam import NAdam
from .optimizer import Optimizer
from .radam import RAdam
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad",
           "Adadelta", "Rprop", "lr_scheduler",
           "LRScheduler", "StepLR", "ExponentialLR", "InverseTimeLR", "CosineAnnealingLR",
           "MultiStepLR", "LambdaLR", "LinearLR", "CosineAnnealingWarmRestarts", "OneCycleLR",
           "SequentialLR", "ReduceLROnPlateau", "ConstantLR", "PolynomialLR", "CyclicLR",
           "ChainedScheduler",
           "clip_grad_norm_", "clip_grad_value_", "ClipGradNorm", "fused_updates"]


def fused_updates() -> list:
    """Every FusedUpdate the optimizers here may run, with weight decay and ``maximize``
    composed in (what a device must be able to compile; the kernel compile checks iterate
    over it)."""
    found, classes = [], list(Optimizer.__subclasses__())
    while classes:
        cls = classes.pop(0)
        classes.extend(cls.__subclasses__())
        for rule in cls.rules:
            for variant in variants(rule, cls.weight_decay_style):
                if variant not in found:
                    found.append(variant)
    return found
