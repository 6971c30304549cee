"""Learning rate and weight decay: divergence and under-fitting made visible.

1. Learning-rate sweep: a sigmoid MLP (1 -> 16 -> 16 -> 1) regresses y = sin(x) + noise
   with plain SGD at lr 100, 10, 1, 0.2 and 0.001. Too large a rate diverges within a few
   steps: the loss (or, with ``tn.diagnostics.NonFiniteWatch``, the first layer) turns
   NaN/Inf, and the run is drawn up to that point and marked "diverged" instead of crashing
   the script. lr 1 stays finite but its loss grows by orders of magnitude (the sigmoids
   saturate and the output layer oscillates). Too small a rate under-fits.
2. Weight-decay sweep: an MLP classifier (784 -> 128 -> 10, ReLU) on Fashion-MNIST with SGD
   + momentum and weight decay 10, 1, 0.1 (and 0 for reference). Strong decay pins the
   weights near zero: training and validation accuracy both stay low (under-fitting).
3. ``tn.diagnostics.lr_find`` on the classifier (no weight decay): the LR range test picks
   a learning rate in one short run instead of a sweep.

Writes to --out:
  lr_sweep.png: training loss per step for each lr (diverged runs end in a cross), and the
      fitted curves of the runs that survived, over the data;
  weight_decay.png: train/validation accuracy per epoch for each weight decay, and the
      final weight norm per weight decay;
  lr_find.png: the LR range test's loss vs learning rate, with its suggestion.

    python examples/lr_and_weight_decay.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

import numpy as np
from _common import StepLosses, fashion, parse_args, plt, save, smooth

import tensornet as tn
from tensornet import nn

LEARNING_RATES = (100.0, 10.0, 1.0, 0.2, 0.001)
WEIGHT_DECAYS = (10.0, 1.0, 0.1, 0.0)
LOSS_CEILING = 1e6


def regression_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, (n, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    return x, y


def sigmoid_mlp(device: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(1, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(),
                         nn.Linear(16, 1)).to(device)


def lr_sweep(args, epochs: int, n: int):
    x, y = regression_data(n, args.seed)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 32, shuffle=True, seed=args.seed,
                                device=args.device)
    grid = np.linspace(-3.0, 3.0, 200, dtype=np.float32)[:, None]
    fig, (ax_loss, ax_fit) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax_fit.plot(x[:, 0], y[:, 0], ".", color="0.75", ms=3, label="data")
    for i, lr in enumerate(LEARNING_RATES):
        tn.manual_seed(args.seed)
        model = sigmoid_mlp(args.device)
        recorder = StepLosses()
        opt = tn.optim.SGD(model.parameters(), lr=lr)
        try:
            tn.fit(model, nn.MSELoss(), opt, loader, epochs=epochs, verbose=0,
                   callbacks=[tn.diagnostics.NonFiniteWatch(), recorder])
            diverged = None
        except nn.NonFiniteError as exc:
            diverged = exc
        losses = recorder.flush()
        steps = np.arange(1, len(losses) + 1)
        color = f"C{i}"
        if diverged is not None:
            where = getattr(diverged.__cause__, "layer", None)
            label = f"lr={lr:g}: diverged at step {len(losses) + 1}"
            print(f"lr={lr:g}: DIVERGED. {diverged}")
            # The last finite losses are astronomically large: pin the cross to the top.
            shown = np.minimum(losses, LOSS_CEILING)
            ax_loss.loglog(np.append(steps, len(losses) + 1), np.append(shown, LOSS_CEILING),
                           color=color, lw=1, label=label)
            ax_loss.loglog([len(losses) + 1], [LOSS_CEILING], "x", color=color, ms=12, mew=3)
            if where is not None:
                print(f"        first non-finite layer: {where!r}")
            continue
        final = float(np.mean(losses[-len(loader):]))  # the last epoch, less noisy
        grew = final > 10.0 * losses[0]
        verdict = (f"loss grew {losses[0]:.2g} -> {final:.2g}" if grew
                   else f"final loss {final:.3g}")
        ax_loss.loglog(steps, smooth(losses), color=color, lw=1.5, label=f"lr={lr:g}: {verdict}")
        pred = tn.asnumpy(tn.predict(model, grid))
        ax_fit.plot(grid[:, 0], pred[:, 0], color=color, lw=2,
                    label=f"lr={lr:g}" + (" (mostly off the scale)" if grew else ""))
        print(f"lr={lr:g}: {verdict}")
    ax_loss.set(xlabel="SGD step", ylabel="MSE (smoothed)", ylim=(None, 2 * LOSS_CEILING),
                title=f"training loss per lr (x: NaN/Inf; losses above {LOSS_CEILING:g} "
                      f"drawn at it)")
    ax_fit.set(xlabel="x", ylabel="y", ylim=(-2.0, 2.0),
               title="fitted curves of the runs that stayed finite")
    for ax in (ax_loss, ax_fit):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("sigmoid MLP 1 -> 16 -> 16 -> 1, plain SGD, batch 32")
    fig.tight_layout()
    save(fig, args.out / "lr_sweep.png")


def weight_decay_sweep(args, epochs: int, n_train: int, n_val: int):
    x, y = fashion("train", n_train, flat=True, seed=args.seed)
    xv, yv = fashion("test", n_val, flat=True, seed=args.seed)
    train = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 64, shuffle=True, seed=args.seed,
                               device=args.device)
    val = tn.data.DataLoader(tn.data.ArrayDataset(xv, yv), 1000, device=args.device)
    fig, (ax_acc, ax_norm) = plt.subplots(1, 2, figsize=(12, 4.8),
                                          gridspec_kw={"width_ratios": [2, 1]})
    norms = []
    for i, wd in enumerate(WEIGHT_DECAYS):
        tn.manual_seed(args.seed)
        model = tn.models.mlp((784, 128, 10), init="he", device=args.device)
        opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
        h = tn.fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=epochs, verbose=0)
        ax_acc.plot(h.epoch, h["train_acc"], "o-", color=f"C{i}", ms=3,
                    label=f"wd={wd:g} train")
        ax_acc.plot(h.epoch, h["val_acc"], "s--", color=f"C{i}", ms=3, label=f"wd={wd:g} val")
        norm = float(np.sqrt(sum(np.sum(tn.asnumpy(p.data).astype(np.float64) ** 2)
                                 for name, p in model.named_parameters()
                                 if name.endswith("weight"))))
        norms.append(norm)
        print(f"weight decay {wd:g}: train acc {h['train_acc'][-1]:.1%}, val acc "
              f"{h['val_acc'][-1]:.1%}, weight norm {norm:.3g}")
    ax_acc.axhline(0.1, color="0.5", lw=0.8, ls=":", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1),
               title="train (solid) and validation (dashed) accuracy")
    ax_acc.legend(fontsize=7, ncol=2)
    labels = [f"{wd:g}" for wd in WEIGHT_DECAYS]
    ax_norm.bar(labels, norms, color=[f"C{i}" for i in range(len(norms))])
    ax_norm.set_yscale("log")
    ax_norm.set(xlabel="weight decay", ylabel="L2 norm of all weights", title="final weights")
    for ax in (ax_acc, ax_norm):
        ax.grid(alpha=0.3)
    fig.suptitle(f"MLP 784 -> 128 -> 10 on {n_train} Fashion-MNIST images, SGD lr 0.05 "
                 f"momentum 0.9")
    fig.tight_layout()
    save(fig, args.out / "weight_decay.png")
    return train


def main(argv=None):
    args = parse_args("lr_and_weight_decay", __doc__, argv)
    quick = args.quick
    lr_sweep(args, epochs=2 if quick else 100, n=256 if quick else 512)
    train = weight_decay_sweep(args, epochs=2 if quick else 8, n_train=512 if quick else 5000,
                               n_val=256 if quick else 2000)
    tn.manual_seed(args.seed)
    model = tn.models.mlp((784, 128, 10), init="he", device=args.device)
    opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    result = tn.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, train, start_lr=1e-5,
                                    end_lr=10.0, num_steps=30 if quick else 200)
    print(result)
    result.plot(args.out / "lr_find.png",
                title="LR range test: MLP 784-128-10, SGD + momentum 0.9, batch 64")
    print(f"wrote {args.out / 'lr_find.png'}")


if __name__ == "__main__":
    main()
