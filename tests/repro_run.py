"""A training script run in fresh processes by test_reproducibility.py (the README pattern:
``tn.manual_seed`` at the top, then build, train, maybe checkpoint or resume).

    python tests/repro_run.py DEVICE SEED {straight,first,resume} CHECKPOINT

Prints one JSON line: SHA-256 digests of the first Dropout and DropConnect masks, of every
batch the model saw (the shuffle order) and of the final weights and buffers.
"""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import tensornet as tn
from tensornet import nn

EPOCHS, HALF = 4, 2


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(tn.asnumpy(a)).tobytes())
    return h.hexdigest()[:16]


def main(device: str, seed: int, mode: str, checkpoint: str) -> None:
    tn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16, device=device), nn.BatchNorm1d(16, device=device),
                          nn.ReLU(), nn.Dropout(0.3), nn.DropConnect(16, 3, p=0.3, device=device))
    opt = tn.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    sched = tn.optim.StepLR(opt, step_size=1, gamma=0.7)
    x, y = tn.data.toy_spirals(n=240, seed=0)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 32, shuffle=True, device=device)
    seen, masks = [], {}

    def record_input(module, inputs, output):
        seen.append(inputs[0])

    def record_mask(name):
        def hook(module, inputs, output):
            masks.setdefault(name, module._mask)
        return hook

    model[0].register_forward_hook(record_input)
    model[3].register_forward_hook(record_mask("dropout"))
    model[4].register_forward_hook(record_mask("dropconnect"))
    loss_fn = nn.CrossEntropyLoss()
    if mode == "resume":
        state = tn.load_checkpoint(checkpoint, model, opt, scheduler=sched, loader=loader)
        tn.fit(model, loss_fn, opt, loader, epochs=EPOCHS, initial_epoch=state["epoch"],
               scheduler=sched, verbose=0)
    else:
        tn.fit(model, loss_fn, opt, loader, epochs=EPOCHS if mode == "straight" else HALF,
               scheduler=sched, verbose=0)
        if mode == "first":
            tn.save_checkpoint(checkpoint, model, opt, scheduler=sched, loader=loader,
                               epoch=HALF)
    print(json.dumps({"masks": {k: digest([m]) for k, m in sorted(masks.items())},
                      "batches": digest(seen),
                      "weights": digest(model.state_dict().values())}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
