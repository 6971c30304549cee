"""Initialisation: how the weight scale decides whether a deep network's signal survives.

Two families of nets see one batch of Fashion-MNIST (standardised, flattened):
  - deep-wide: 784 -> 500 x 10 hidden layers -> 10 (as in Glorot & Bengio, 2010);
  - deep-thin: 784 -> 50 x 30 hidden layers -> 10;
each with tanh and with ReLU, and three initialisations of the weights (biases zero):
  - N(0, 0.1): one fixed scale for every layer, whatever its width;
  - Xavier/Glorot normal: std = sqrt(2 / (fan_in + fan_out)), keeps variance for tanh;
  - He/Kaiming normal: std = sqrt(2 / fan_in), keeps variance for ReLU.
``tn.diagnostics.layer_stats`` measures the std of every activation layer's output and of the
gradient arriving at it. Expect: N(0, 0.1) explodes with ReLU on the wide net (std x1.6 per
layer) and vanishes on the thin one; Xavier keeps tanh's signal within a factor of a few
(it decays slowly) but lets ReLU's fade geometrically; He holds ReLU steady.

Writes to --out:
  init_deep_wide.png, init_deep_thin.png: activation std (top) and gradient std (bottom) per
      layer, tanh left, ReLU right, one line per initialisation (log scale);
  layer_stats_<net>_<act>_<init>.png: the full layer_stats panel for two telling cases.
Prints each case's layer_stats hints.

    python examples/init_experiment.py [--device cuda] [--quick] [--out DIR]
"""
from __future__ import annotations

import numpy as np
from _common import fashion, parse_args, plt, save

import tensornet as tn
from tensornet import nn

INITS = {
    "N(0, 0.1)": lambda w: nn.init.normal_(w, 0.0, 0.1),
    "Xavier": nn.init.xavier_normal_,
    "He": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
}
SLUGS = {"N(0, 0.1)": "normal", "Xavier": "xavier", "He": "he"}
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def build(width: int, depth: int, act, init, device: str) -> nn.Sequential:
    sizes = [784] + [width] * depth
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out, device=device), act()]
    layers.append(nn.Linear(width, 10, device=device))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            init(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def run_family(title, width, depth, x, y, args, detail_cases):
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    for col, (act_name, act) in enumerate(ACTIVATIONS.items()):
        for init_name, init in INITS.items():
            model = build(width, depth, act, init, args.device)
            stats = tn.diagnostics.layer_stats(model, x, y, nn.CrossEntropyLoss())
            kinds = (act.__name__,)
            act_std = np.array(stats.column("act_std", kinds), dtype=float)
            grad_std = np.array(stats.column("grad_std", kinds), dtype=float)
            layer = np.arange(1, len(act_std) + 1)
            axes[0, col].semilogy(layer, act_std, "o-", ms=3, label=init_name)
            axes[1, col].semilogy(layer, grad_std, "o-", ms=3, label=init_name)
            print(f"[{title}] {act_name:4s} {init_name:9s} "
                  f"act std {act_std[0]:.2g} -> {act_std[-1]:.2g}, "
                  f"grad std {grad_std[0]:.2g} -> {grad_std[-1]:.2g}")
            for hint in stats.hints:
                print(f"      ! {hint}")
            if (act_name, init_name) in detail_cases:
                stats.plot(args.out / f"layer_stats_{title}_{act_name}_{SLUGS[init_name]}.png",
                           title=f"{title}, {act_name}, {init_name}: "
                                 f"{'; '.join(sorted(stats.flags)) or 'no problems'}")
        axes[0, col].set_title(f"{act_name}: activation std per layer")
        axes[1, col].set_title(f"{act_name}: gradient std (d loss / d activation)")
        axes[1, col].set_xlabel("hidden layer")
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="major")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: 784 -> {width} x {depth} -> 10, one batch of {len(x)} images")
    fig.tight_layout()
    return save(fig, args.out / f"init_{title}.png")


def main(argv=None):
    args = parse_args("init_experiment", __doc__, argv)
    n = 64 if args.quick else 512
    x, y = fashion("train", n, flat=True, seed=args.seed)
    x = (x - x.mean()) / x.std()
    wide = (64, 4) if args.quick else (500, 10)
    thin = (16, 6) if args.quick else (50, 30)
    run_family("deep_wide", *wide, x, y, args, {("relu", "N(0, 0.1)")})
    run_family("deep_thin", *thin, x, y, args, {("tanh", "N(0, 0.1)")})


if __name__ == "__main__":
    main()
