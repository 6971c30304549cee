"""``History``: the per-epoch figures ``tn.fit`` returns."""
from __future__ import annotations

import json

HISTORY_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "seconds",
                "samples_per_s")


class History:
    """Per-epoch figures: ``history.history[key]`` is a list with one entry per epoch for
    each key of ``HISTORY_KEYS`` (None where not measured, e.g. val_* without a validation
    loader, accuracies for a regression loss). ``history.epoch`` lists the epoch numbers.

    When training stops at a non-finite loss in the middle of an epoch (``TerminateOnNaN``),
    that epoch is kept with the figures of its steps before the bad one, so the run up to the
    divergence can still be plotted; ``stop_reason`` names the epoch and step."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
        self.stop_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key in HISTORY_KEYS:
            self.history[key].append(logs.get(key))

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict:
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()},
                "stop_reason": self.stop_reason}

    def save_json(self, path) -> None:
        """Write ``to_dict()`` as JSON, atomically (the previous file or the whole new one)."""
        from pathlib import Path

        from tensornet.io.atomic import atomic_write

        atomic_write(Path(path), json.dumps(self.to_dict(), indent=1).encode(), "the history")

    def plot(self, path, title: str | None = None) -> None:
        """Write a PNG of the loss and (when measured) accuracy curves to ``path``."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install 'tensornet[plot]'") \
                from exc
        panels = [("loss", "Loss")]
        if any(v is not None for v in self.history["train_acc"] + self.history["val_acc"]):
            panels.append(("acc", "Accuracy"))
        fig = Figure(figsize=(5.5 * len(panels), 4.0))
        FigureCanvasAgg(fig)
        for i, (key, label) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            for split, style in (("train", "-o"), ("val", "-s")):
                values = self.history[f"{split}_{key}"]
                points = [(e, v) for e, v in zip(self.epoch, values) if v is not None]
                if points:
                    ax.plot(*zip(*points), style, markersize=3,
                            label="train" if split == "train" else "validation")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    def __repr__(self) -> str:
        count = f"{len(self)} epoch{'' if len(self) == 1 else 's'}"
        if not self.epoch:
            return f"History({count})"
        shown = []
        for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
            value = self.history[key][-1]
            if value is not None:
                shown.append(f"{key}={value:.2%}" if key.endswith("acc") else f"{key}={value:.4f}")
        last = f"epoch {self.epoch[-1]}: {', '.join(shown)}" if shown else f"epoch {self.epoch[-1]}"
        return f"History({count}; last {last})"
