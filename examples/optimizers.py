"""Optimizers and learning-rate schedules, compared on the same network and data.

An MLP (784 -> 128 -> 64 -> 10, ReLU, He init) learns Fashion-MNIST from the same initial
weights and the same batches with:
  - SGD (lr 0.05), SGD + momentum 0.9 and Nesterov momentum 0.9 (lr 0.01),
    Adagrad (lr 0.05), RMSprop (lr 1e-3), Adam (lr 1e-3) and AdamW (lr 1e-3, decay 0.01);
  - SGD + momentum (lr 0.05) under no schedule, step decay (halve every 2 epochs),
    exponential decay (x0.7 per epoch) and time-based decay (lr / (1 + 0.5 epoch)).
Expect: plain SGD slowest; momentum, RMSprop and Adam(W) fastest early; Adagrad's steps
shrink as its accumulator grows; a decaying lr ends lower and steadier than a constant one.

Writes to --out:
  optimizers.png: training loss per step (smoothed) of every optimizer on one plot;
  lr_schedules.png: training loss per step under each schedule, and the lr per epoch.

    python examples/optimizers.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

import numpy as np
from _common import StepLosses, fashion, parse_args, plt, save, smooth

import tensornet as tn
from tensornet import nn

optim = tn.optim
OPTIMIZERS = {
    "SGD (lr 0.05)": lambda p: optim.SGD(p, lr=0.05),
    "Momentum (lr 0.01)": lambda p: optim.SGD(p, lr=0.01, momentum=0.9),
    "Nesterov (lr 0.01)": lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "Adagrad (lr 0.05)": lambda p: optim.Adagrad(p, lr=0.05),
    "RMSprop (lr 1e-3)": lambda p: optim.RMSprop(p, lr=1e-3),
    "Adam (lr 1e-3)": lambda p: optim.Adam(p, lr=1e-3),
    "AdamW (lr 1e-3, wd 0.01)": lambda p: optim.AdamW(p, lr=1e-3, weight_decay=0.01),
}
SCHEDULES = {
    "constant": lambda opt: None,
    "step (x0.5 every 2 epochs)": lambda opt: optim.StepLR(opt, step_size=2, gamma=0.5),
    "exponential (x0.7 per epoch)": lambda opt: optim.ExponentialLR(opt, gamma=0.7),
    "time-based (1 / (1 + 0.5 epoch))": lambda opt: optim.InverseTimeLR(opt, decay_rate=0.5),
}


def train(make_optimizer, make_schedule, loader, epochs, args):
    tn.manual_seed(args.seed)  # same initial weights for every run
    model = tn.models.mlp((784, 128, 64, 10), init="he", device=args.device)
    opt = make_optimizer(model.parameters())
    recorder = StepLosses()
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=epochs, verbose=0,
                     scheduler=make_schedule(opt) if make_schedule else None,
                     callbacks=[recorder])
    return np.asarray(recorder.losses), history


def main(argv=None):
    args = parse_args("optimizers", __doc__, argv)
    n, epochs = (512, 2) if args.quick else (12000, 8)
    x, y = fashion("train", n, flat=True, seed=args.seed)
    # A fixed shuffling seed: every optimizer sees the same batches in the same order.
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 64, shuffle=True, seed=args.seed,
                                device=args.device)
    steps_per_epoch = len(loader)

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, (name, make) in enumerate(OPTIMIZERS.items()):
        losses, history = train(make, None, loader, epochs, args)
        ax.plot(np.arange(1, len(losses) + 1) / steps_per_epoch, smooth(losses, 0.95),
                color=f"C{i}", lw=1.5, label=f"{name}: {history['train_loss'][-1]:.3f}")
        print(f"{name:28s} final epoch loss {history['train_loss'][-1]:.4f}, "
              f"acc {history['train_acc'][-1]:.1%}")
    ax.set(xlabel="epoch", ylabel="training cross-entropy (smoothed)", yscale="log",
           title=f"Optimizers: MLP 784-128-64-10 on {n} Fashion-MNIST images, batch 64")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="last-epoch mean loss", title_fontsize=8)
    fig.tight_layout()
    save(fig, args.out / "optimizers.png")

    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(13, 5),
                                         gridspec_kw={"width_ratios": [3, 2]})
    for i, (name, make_schedule) in enumerate(SCHEDULES.items()):
        losses, history = train(lambda p: optim.SGD(p, lr=0.05, momentum=0.9), make_schedule,
                                loader, epochs, args)
        ax_loss.plot(np.arange(1, len(losses) + 1) / steps_per_epoch, smooth(losses, 0.95),
                     color=f"C{i}", lw=1.5, label=f"{name}: {history['train_loss'][-1]:.3f}")
        ax_lr.plot(history.epoch, history["lr"], "o-", color=f"C{i}", ms=4, label=name)
        print(f"{name:34s} final epoch loss {history['train_loss'][-1]:.4f}")
    ax_loss.set(xlabel="epoch", ylabel="training cross-entropy (smoothed)", yscale="log",
                title="SGD + momentum 0.9, base lr 0.05")
    ax_loss.legend(fontsize=8, title="last-epoch mean loss", title_fontsize=8)
    ax_lr.set(xlabel="epoch", ylabel="learning rate during the epoch", title="schedules")
    ax_lr.legend(fontsize=8)
    for a in (ax_loss, ax_lr):
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save(fig, args.out / "lr_schedules.png")


if __name__ == "__main__":
    main()
