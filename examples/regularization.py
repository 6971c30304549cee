"""Regularisation: a small CNN trained on too little Fashion-MNIST, five ways.

The network is conv(8) -> pool -> conv(16) -> pool -> 128 -> 128 -> 10 (ReLU), trained with
SGD + momentum on 4000 images so that the plain version over-fits. The fully connected part
is varied:
  - baseline: Linear -> ReLU;
  - Dropout: Linear -> ReLU -> Dropout(0.5)          (Srivastava et al., 2014);
  - DropConnect: DropConnect(p=0.5) -> ReLU          (Wan et al., 2013);
  - BatchNorm: Linear -> BatchNorm1d -> ReLU         (Ioffe & Szegedy, 2015);
  - LayerNorm: Linear -> LayerNorm -> ReLU           (Ba et al., 2016).
Expect: the baseline's validation loss turns up while its training loss keeps falling;
Dropout/DropConnect close that gap (and train slower); the normalisations mostly speed up
training. Training figures are averaged during each epoch in training mode, i.e. with the
units or weights being dropped, which is why they can sit above the validation ones.

Writes to --out:
  regularization.png: one column per variant; top: train and validation loss per epoch,
      bottom: train and validation accuracy (shared axes, so the gaps compare directly).
Prints the final figures of each variant.

    python examples/regularization.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

from _common import fashion, parse_args, plt, save

import tensornet as tn
from tensornet import nn

VARIANTS = ("baseline", "Dropout", "DropConnect", "BatchNorm", "LayerNorm")


def build(variant: str, device: str) -> nn.Sequential:
    layers = [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    for fan_in, fan_out in ((16 * 7 * 7, 128), (128, 128)):
        if variant == "DropConnect":
            layers.append(nn.DropConnect(fan_in, fan_out, p=0.5))
        else:
            layers.append(nn.Linear(fan_in, fan_out))
        if variant == "BatchNorm":
            layers.append(nn.BatchNorm1d(fan_out))
        elif variant == "LayerNorm":
            layers.append(nn.LayerNorm(fan_out))
        layers.append(nn.ReLU())
        if variant == "Dropout":
            layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(128, 10))
    model = nn.Sequential(*layers)
    tn.models.init_weights(model, "he")  # PyTorch's default init trains this net slowly
    return model.to(device)


def main(argv=None):
    args = parse_args("regularization", __doc__, argv)
    n_train, n_val, epochs = (256, 128, 2) if args.quick else (4000, 2000, 10)
    x, y = fashion("train", n_train, seed=args.seed)
    xv, yv = fashion("test", n_val, seed=args.seed)
    train = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 64, shuffle=True, seed=args.seed,
                               device=args.device)
    val = tn.data.DataLoader(tn.data.ArrayDataset(xv, yv), 500, device=args.device)
    histories = {}
    for variant in VARIANTS:
        tn.manual_seed(args.seed)
        model = build(variant, args.device)
        opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        print(f"--- {variant}")
        histories[variant] = tn.fit(model, nn.CrossEntropyLoss(), opt, train, val,
                                    epochs=epochs, verbose=0 if args.quick else 1)
    fig, axes = plt.subplots(2, len(VARIANTS), figsize=(3.3 * len(VARIANTS), 6.5),
                             sharex=True, sharey="row")
    for col, (variant, h) in enumerate(histories.items()):
        for row, key in enumerate(("loss", "acc")):
            ax = axes[row, col]
            ax.plot(h.epoch, h[f"train_{key}"], "o-", ms=3, label="train")
            ax.plot(h.epoch, h[f"val_{key}"], "s--", ms=3, label="validation")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("cross-entropy" if key == "loss" else "accuracy")
        axes[0, col].set_title(variant)
        axes[1, col].set_xlabel("epoch")
        print(f"{variant:12s} train loss {h['train_loss'][-1]:.3f}  val loss "
              f"{h['val_loss'][-1]:.3f} (best {min(h['val_loss']):.3f})  "
              f"val acc {h['val_acc'][-1]:.1%}")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"CNN -> 128 -> 128 -> 10 on {n_train} Fashion-MNIST images "
                 f"(validation: {n_val} test images)")
    fig.tight_layout()
    save(fig, args.out / "regularization.png")


if __name__ == "__main__":
    main()
