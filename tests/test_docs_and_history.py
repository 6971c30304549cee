"""What help() shows, what fit's epochs means after a resume, what a History prints and
keeps after a divergence (that a NonFiniteWatch names epoch and step once is in
test_diagnostics.py)."""
import inspect
import pydoc
import re

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.callbacks import TerminateOnNaN
from tensornet.data import ArrayDataset, DataLoader

BANNER = re.compile(r"^\s*#?\s*-{8,}", re.M)


def _public_classes():
    seen = []
    for namespace in (tn, tn.nn, tn.optim, tn.data, tn.callbacks, tn.diagnostics):
        for name in dir(namespace):
            obj = getattr(namespace, name)
            if inspect.isclass(obj) and obj.__module__.startswith("tensornet") \
                    and obj not in seen:
                seen.append(obj)
    return seen + [tn.get_backend("cpu").__class__.__mro__[1]]  # the Backend base


def test_help_never_shows_a_section_banner_as_a_method_doc():
    offenders = []
    for cls in _public_classes():
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            doc = pydoc.getdoc(member)  # falls back to the comment above the def
            if BANNER.search(doc):
                offenders.append(f"{cls.__name__}.{name}")
    assert not offenders, offenders


@pytest.mark.parametrize("method", ["train", "forward", "children", "eval", "parameters"])
def test_module_methods_have_their_own_docstrings(method):
    doc = pydoc.render_doc(getattr(nn.Module, method), renderer=pydoc.plaintext)
    assert getattr(nn.Module, method).__doc__ and "-----" not in doc


def _loader(n=60, nan_at=None, batch=10):
    x, y = tn.data.toy_blobs(n=n, seed=0)
    if nan_at is not None:
        x[nan_at] = np.nan
    return DataLoader(ArrayDataset(x, y), batch)


def _setup():
    tn.manual_seed(0)
    model = tn.models.mlp((2, 8, 4))
    return model, nn.CrossEntropyLoss(), tn.optim.SGD(model.parameters(), lr=0.05)


def test_epochs_is_the_total_after_a_resume_as_in_keras():
    model, loss_fn, opt = _setup()
    history = tn.fit(model, loss_fn, opt, _loader(), epochs=4, initial_epoch=2, verbose=0)
    assert history.epoch == [3, 4]
    assert "total" in tn.fit.__doc__ and "Keras" in tn.fit.__doc__
    assert len(tn.fit(model, loss_fn, opt, _loader(), epochs=4, initial_epoch=4, verbose=0)) == 0
    with pytest.raises(ValueError, match=r"epochs is the total.*pass epochs=E \+ N"):
        tn.fit(model, loss_fn, opt, _loader(), epochs=2, initial_epoch=3, verbose=0)


def test_history_repr_shows_the_last_epoch():
    model, loss_fn, opt = _setup()
    history = tn.fit(model, loss_fn, opt, _loader(), _loader(n=30), epochs=2, verbose=0)
    text = repr(history)
    assert text.startswith("History(2 epochs; last epoch 2: ")
    assert f"train_loss={history['train_loss'][-1]:.4f}" in text
    assert f"val_acc={history['val_acc'][-1]:.2%}" in text
    assert repr(tn.History()) == "History(0 epochs)"


@pytest.mark.parametrize("check", [None, False], ids=["loss-check", "callback-check"])
def test_terminate_on_nan_keeps_the_history_up_to_the_bad_step(tmp_path, check):
    model, _, opt = _setup()
    loss_fn = nn.CrossEntropyLoss(check=check)
    good = _loader()
    tn.fit(model, loss_fn, opt, good, epochs=1, verbose=0)  # a clean first epoch
    history = tn.fit(model, loss_fn, opt, _loader(nan_at=37), epochs=3, initial_epoch=1,
                     verbose=0, callbacks=[TerminateOnNaN()])
    assert "epoch 2, step 4" in history.stop_reason
    assert history.epoch == [2]  # the epoch it stopped in is kept ...
    assert np.isfinite(history["train_loss"][0])  # ... with the figures of steps 1-3
    assert history["val_loss"] == [None]
    history.plot(tmp_path / "divergence.png")
    assert (tmp_path / "divergence.png").stat().st_size > 0


def test_history_save_json_is_atomic(tmp_path):
    """A save that fails (here a value JSON cannot hold) keeps the previous file whole and
    leaves no temporary file; it used to truncate the previous file first."""
    history = tn.History()
    history.append(1, {"train_loss": 0.5})
    path = tmp_path / "history.json"
    history.save_json(path)
    before = path.read_bytes()
    history.append(2, {"train_loss": object()})
    with pytest.raises(TypeError):
        history.save_json(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_manual_seed_says_which_backends_draw_alike():
    """The docstring said the NumPy, strict and torch backends draw alike: only the shuffles
    do; the NumPy backend draws float32 masks of its own, the generic backends float64."""
    devices = ["cpu", "strict"] + (["torch"] if _has_torch() else [])
    masks, orders = {}, {}
    for device in devices:
        tn.manual_seed(5)
        backend = tn.get_backend(device)
        masks[device] = tn.asnumpy(backend.bernoulli((8, 8), 0.5))
        tn.manual_seed(5)  # a float32 draw consumes less of the stream than a float64 one
        orders[device] = tn.asnumpy(backend.permutation(50))
    assert all(np.array_equal(orders[d], orders["cpu"]) for d in devices)
    assert not np.array_equal(masks["cpu"], masks["strict"])
    if "torch" in masks:
        assert np.array_equal(masks["strict"], masks["torch"])
    doc = " ".join(tn.manual_seed.__doc__.split())
    assert "NumPy, strict and torch backends draw alike" not in doc
    assert "the NumPy backend draws float32" in doc


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_readme_lookup_order_root_replaces_tensornet_data(tmp_path, monkeypatch):
    """README said the files are looked up in root=, *then* $TENSORNET_DATA: the code takes
    root= instead of $TENSORNET_DATA (as datasets.py says), so a root= without the files
    goes on to the cache and the Debian folder, never to $TENSORNET_DATA."""
    import functools
    from pathlib import Path

    from fake_datasets import isolate, write_fake_idx_folder
    from tensornet.data import datasets

    isolated = isolate(tmp_path, monkeypatch)
    env, root, system = isolated / "env", isolated / "root", isolated / "system"
    write_fake_idx_folder(env)
    write_fake_idx_folder(system / "fashion-mnist")
    root.mkdir()
    monkeypatch.setenv("TENSORNET_DATA", str(env))
    find = functools.partial(datasets.find, datasets.FASHION_MNIST, download=False)
    assert find() == env
    assert find(root=root) == system / "fashion-mnist"  # not env
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`root=` / `--data-dir` or, without one, `$TENSORNET_DATA`" in readme
    assert "`root=` / `--data-dir`, then `$TENSORNET_DATA`" not in readme
