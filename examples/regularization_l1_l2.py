"""L1, L2 and elastic-net weight penalties on a Fashion-MNIST MLP, compared with none.

An MLP 784-256-10 (ReLU) is trained with SGD + momentum four times from the same initial
weights, with the penalty attached to both weight matrices through ``tn.regularizers``:
  - none;
  - L1:          l1 * sum|w|                 (Tibshirani 1996, the lasso);
  - L2:          l2 * sum w^2                (ridge; what weight decay does);
  - elastic net: l1 * sum|w| + l2 * sum w^2  (Zou & Hastie 2005).
Expect: L1 (and, less so, the elastic net) pushes many weights to (nearly) zero: a sparse
first layer that ignores most border pixels; L2 shrinks every weight a little but zeros
none; the accuracies stay close (the penalty trades a little fit for simpler weights).

Writes to --out:
  regularization_l1_l2.png: left, validation accuracy per epoch; middle, the fraction of
      near-zero weights (|w| < 1e-3) per variant; right, the distribution of |w| (log x).
Prints each variant's final accuracy, near-zero fraction and weight norms.

    python examples/regularization_l1_l2.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

import numpy as np
from _common import fashion, loaders, parse_args, plt, save

import tensornet as tn
from tensornet import nn, regularizers

NEAR_ZERO = 1e-3
VARIANTS = {
    "none": None,
    "L1": regularizers.L1(2e-4),
    "L2": regularizers.L2(5e-4),
    "elastic net": regularizers.L1L2(l1=1e-4, l2=2.5e-4),
}


def weights_of(model) -> np.ndarray:
    """Every weight (not bias) of the model's Linear layers, flattened, on the host."""
    return np.concatenate([tn.asnumpy(m.weight.data).ravel() for m in model.modules()
                           if isinstance(m, nn.Linear)])


def main(argv=None):
    args = parse_args("regularization_l1_l2", __doc__, argv)
    n_train, n_test, epochs = (1024, 512, 2) if args.quick else (12000, 5000, 12)
    x, y = fashion("train", n_train, seed=args.seed)
    xt, yt = fashion("test", n_test, seed=args.seed)
    norm = tn.data.Normalize.from_data(x)
    x, xt = norm(x), norm(xt)
    train = loaders(x, y, batch_size=128, device=args.device, seed=args.seed)
    test = tn.data.DataLoader(tn.data.ArrayDataset(xt, yt), 1000, device=args.device)
    results = {}
    for name, penalty in VARIANTS.items():
        tn.manual_seed(args.seed)  # same initial weights for every variant
        model = tn.models.mlp((784, 256, 10), init="he").to(args.device)
        if penalty is not None:
            regularizers.attach(model, penalty)
        opt = tn.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
        history = tn.fit(model, nn.CrossEntropyLoss(), opt, train, val_loader=test,
                         epochs=epochs, verbose=0)
        w = weights_of(model)
        results[name] = (history, w)
        print(f"{name:12s} test acc {history['val_acc'][-1]:.1%}  near-zero weights "
              f"{np.mean(np.abs(w) < NEAR_ZERO):6.1%}  |w|_1 {np.abs(w).sum():8.1f}  "
              f"|w|_2 {np.sqrt((w * w).sum()):6.2f}")

    fig, (acc_ax, zero_ax, hist_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    bins = np.logspace(-7, 0, 60)
    for name, (history, w) in results.items():
        acc_ax.plot(history.epoch, history["val_acc"], "o-", ms=3, label=name)
        hist_ax.hist(np.abs(w) + 1e-12, bins=bins, histtype="step", lw=1.5, label=name)
    names = list(results)
    fractions = [np.mean(np.abs(results[n][1]) < NEAR_ZERO) for n in names]
    bars = zero_ax.bar(names, fractions, color=[f"C{i}" for i in range(len(names))])
    zero_ax.bar_label(bars, labels=[f"{f:.1%}" for f in fractions])
    acc_ax.set(xlabel="epoch", ylabel="test accuracy", title="accuracy")
    zero_ax.set(ylabel=f"fraction of weights with |w| < {NEAR_ZERO:g}", title="sparsity",
                ylim=(0, max(fractions + [0.01]) * 1.2))
    hist_ax.set(xscale="log", xlabel="|w|", ylabel="weights", title="weight magnitudes")
    hist_ax.axvline(NEAR_ZERO, color="gray", ls="--", lw=1)
    for ax in (acc_ax, hist_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"MLP 784-256-10 on {n_train} Fashion-MNIST images, SGD momentum, "
                 f"{epochs} epochs: L1 vs L2 vs elastic net")
    fig.tight_layout()
    save(fig, args.out / "regularization_l1_l2.png")


if __name__ == "__main__":
    main()
