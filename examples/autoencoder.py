"""Autoencoder vs PCA, then the encoder reused as a classifier.

1. A deep autoencoder 784-512-256-128-30-128-256-512-784 (ReLU, sigmoid output, He init)
   learns to reproduce Fashion-MNIST through a 30-number code: MSE loss, batch 256, lr halved
   every 3 epochs (``tn.optim.StepLR``), trained twice from the same weights: with SGD +
   momentum 0.9 at lr 0.1, and with Adam at lr 1e-3.
2. PCA with 30 components (NumPy SVD of the centred training images) is the linear
   baseline with the same code size. Expect SGD's autoencoder to stay behind PCA in 12
   epochs (blurred, speckled images: deep autoencoders from a random start learn slowly,
   which is why Hinton & Salakhutdinov (2006) pre-trained theirs) and Adam's to pass it.
3. The decoder of the better autoencoder is cut off (``Sequential`` slicing,
   ``autoencoder[:-1]``), a linear head ``Linear(30, 10)`` appended, and the classifier
   trained on labels: first with the encoder frozen (``requires_grad_(False)``: a linear
   probe of the code), then fine-tuned end to end at a lower lr. A linear classifier on the
   PCA code is the baseline.

Writes to --out:
  reconstructions.png: test images (top row), the reconstructions of both autoencoders and
      of 30-component PCA, with each method's test MSE;
  autoencoder_training.png: left, train/test MSE per epoch of both autoencoders against the
      PCA MSE; right, test accuracy of the encoder + head, frozen then fine-tuned, against
      a linear classifier on the PCA code.

    python examples/autoencoder.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

import numpy as np
from _common import fashion, parse_args, plt, save

import tensornet as tn
from tensornet import nn

CODE = 30
OPTIMIZERS = {
    "SGD+momentum, lr 0.1": lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9),
    "Adam, lr 1e-3": lambda p: tn.optim.Adam(p, lr=1e-3),
}


def pca(x_train: np.ndarray, k: int):
    """Mean and top-``k`` principal directions ``(k, D)`` of the rows of ``x_train``."""
    mean = x_train.mean(axis=0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    return mean, vt[:k]


def train_classifier(model, params_lr, train, test, epochs, label):
    opt = tn.optim.SGD(model.parameters(), lr=params_lr, momentum=0.9)
    h = tn.fit(model, nn.CrossEntropyLoss(), opt, train, test, epochs=epochs, verbose=0)
    print(f"{label}: test accuracy per epoch " + ", ".join(f"{a:.1%}" for a in h["val_acc"]))
    return list(h["val_acc"])


def main(argv=None):
    args = parse_args("autoencoder", __doc__, argv)
    quick = args.quick
    n_train, n_test, ae_epochs, clf_epochs = (1024, 256, 2, 1) if quick else (60000, 10000, 12, 4)
    x, y = fashion("train", n_train, flat=True, seed=args.seed)
    xt, yt = fashion("test", n_test, flat=True, seed=args.seed)
    dev = args.device

    # 1. the autoencoders; ArrayDataset(x) makes each image its own target.
    ae_train = tn.data.DataLoader(tn.data.ArrayDataset(x), 256, shuffle=True, seed=args.seed,
                                  device=dev)
    ae_test = tn.data.DataLoader(tn.data.ArrayDataset(xt), 1000, device=dev)
    runs = {}
    for name, make_opt in OPTIMIZERS.items():
        tn.manual_seed(args.seed)
        ae = tn.models.autoencoder((784, 512, 256, 128, CODE), activation="relu", init="he",
                                   output="sigmoid", device=dev)
        opt = make_opt(ae.parameters())
        print(f"--- autoencoder, {name}")
        history = tn.fit(ae, nn.MSELoss(), opt, ae_train, ae_test, epochs=ae_epochs,
                         scheduler=tn.optim.StepLR(opt, step_size=3, gamma=0.5),
                         verbose=0 if quick else 1)
        recon = tn.asnumpy(tn.predict(ae, xt))
        runs[name] = (ae, history, recon, float(np.mean((recon - xt) ** 2)))

    # 2. PCA (a 10k-image subset is plenty for 30 directions and keeps the SVD fast).
    mean, components = pca(x[:10000].astype(np.float64), CODE)
    pca_recon = np.clip((xt - mean) @ components.T @ components + mean, 0.0, 1.0)
    pca_mse = float(np.mean((pca_recon - xt) ** 2))
    print("test MSE: " + ", ".join(f"autoencoder ({name}) {run[3]:.4f}"
                                   for name, run in runs.items()) + f", PCA-{CODE} {pca_mse:.4f}")

    show = 10
    rows = [("test image", xt)]
    rows += [(f"AE, {name.split(',')[0]}\nMSE {mse:.4f}", recon)
             for name, (_, _, recon, mse) in runs.items()]
    rows.append((f"PCA-{CODE}\nMSE {pca_mse:.4f}", pca_recon))
    fig, axes = plt.subplots(len(rows), show, figsize=(1.3 * show, 1.45 * len(rows) + 0.4))
    for r, (label, images) in enumerate(rows):
        for c in range(show):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(28, 28), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(f"Reconstructions through a {CODE}-number code (test images)")
    fig.tight_layout()
    save(fig, args.out / "reconstructions.png")

    # 3. encoder + linear head: drop the decoder by slicing, then append the head.
    best = min(runs, key=lambda name: runs[name][3])
    print(f"classifier from the encoder of the autoencoder trained with {best}")
    classifier = runs[best][0][:-1]
    classifier.add(nn.Linear(CODE, 10).to(dev), "head")
    train = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 128, shuffle=True, seed=args.seed,
                               device=dev)
    test = tn.data.DataLoader(tn.data.ArrayDataset(xt, yt), 1000, device=dev)
    classifier.encoder.requires_grad_(False)
    frozen = train_classifier(classifier, 0.05, train, test, clf_epochs, "frozen encoder")
    classifier.encoder.requires_grad_(True)
    tuned = train_classifier(classifier, 0.01, train, test, clf_epochs, "fine-tuned")
    codes = ((x - mean) @ components.T).astype(np.float32)
    codes_t = ((xt - mean) @ components.T).astype(np.float32)
    tn.manual_seed(args.seed)
    probe = nn.Sequential(nn.Linear(CODE, 10)).to(dev)
    pca_acc = train_classifier(
        probe, 0.05,
        tn.data.DataLoader(tn.data.ArrayDataset(codes, y), 128, shuffle=True, seed=args.seed,
                           device=dev),
        tn.data.DataLoader(tn.data.ArrayDataset(codes_t, yt), 1000, device=dev),
        2 * clf_epochs, f"linear on PCA-{CODE}")

    fig, (ax_mse, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, (name, (_, h, _, _)) in enumerate(runs.items()):
        ax_mse.plot(h.epoch, h["train_loss"], "o-", color=f"C{i}", ms=3, label=f"{name}, train")
        ax_mse.plot(h.epoch, h["val_loss"], "s--", color=f"C{i}", ms=3, label=f"{name}, test")
    ax_mse.axhline(pca_mse, color="C3", ls=":", label=f"PCA-{CODE}, test")
    ax_mse.set(xlabel="epoch", ylabel="reconstruction MSE", yscale="log",
               title="784-512-256-128-30 autoencoder, lr halved every 3 epochs")
    ax_mse.legend(fontsize=8)
    epochs = np.arange(1, 2 * clf_epochs + 1)
    ax_acc.plot(epochs[:clf_epochs], frozen, "o-", label="encoder frozen (linear probe)")
    ax_acc.plot(epochs[clf_epochs:], tuned, "o-", label="fine-tuned end to end")
    ax_acc.plot(epochs, pca_acc, "s--", color="C3", label=f"linear on PCA-{CODE}")
    ax_acc.axvline(clf_epochs + 0.5, color="0.5", lw=0.8)
    ax_acc.set(xlabel="classifier epoch", ylabel="test accuracy",
               title=f"encoder ({best.split(',')[0]}) + Linear(30, 10) head")
    ax_acc.legend(fontsize=8)
    for ax in (ax_mse, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, args.out / "autoencoder_training.png")


if __name__ == "__main__":
    main()
