"""tn.save / tn.load (safetensors, atomic) and training checkpoints (exact resume)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import io as tio
from tensornet.backends import asnumpy, get_backend
from tensornet.data import ArrayDataset, DataLoader


def _nested(device="cpu"):
    backend = get_backend(device)
    return {
        "weights": {"0.weight": backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
                    "0.bias": np.array([1.5, -2.0], dtype=np.float64)},
        "state": {0: {"step": 7, "exp_avg": np.ones((2, 3), np.float32)}, 1: {}},
        "groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1], "nesterov": False}],
        "ints": np.array([1, 2, 3], np.int64), "mask": np.array([True, False]),
        "pixels": np.array([[0, 255]], np.uint8), "scalar0d": np.array(3.5, np.float32),
        "npscalar": np.float32(2.5), "empty": np.zeros((0, 4), np.float32),
        "epoch": 3, "name": "mlp", "nothing": None, "nan": float("nan"), "big": 2**100,
        "tricky": {"__tensor__": "not a tensor", "a/b": 1},
    }


def test_round_trip_nested(tmp_path, device):
    obj = _nested(device)
    tn.save(obj, tmp_path / "ckpt.safetensors")
    back = tn.load(tmp_path / "ckpt.safetensors")
    assert set(back) == set(obj)
    np.testing.assert_array_equal(back["weights"]["0.weight"], asnumpy(obj["weights"]["0.weight"]))
    assert isinstance(back["weights"]["0.weight"], np.ndarray)
    for key in ("ints", "mask", "pixels", "scalar0d", "empty"):
        assert back[key].dtype == obj[key].dtype and back[key].shape == obj[key].shape
        np.testing.assert_array_equal(back[key], obj[key])
    assert back["weights"]["0.bias"].dtype == np.float64
    assert back["state"][0]["step"] == 7 and back["state"][1] == {}   # int keys survive
    assert back["groups"][0]["betas"] == (0.9, 0.999)                   # tuples survive
    assert back["npscalar"] == np.float32(2.5) and back["npscalar"].dtype == np.float32
    assert back["epoch"] == 3 and back["name"] == "mlp" and back["nothing"] is None
    assert math.isnan(back["nan"]) and back["big"] == 2**100
    assert back["tricky"] == {"__tensor__": "not a tensor", "a/b": 1}


def test_file_is_plain_safetensors(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    model = tn.models.mlp((4, 3, 2))
    tn.save({"model": model.state_dict()}, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        assert sorted(f.keys()) == ["model/1.bias", "model/1.weight", "model/3.bias",
                                    "model/3.weight"]
        assert json.loads(f.metadata()["structure"])["model"]["1.weight"] == {
            "__tensor__": "model/1.weight"}
    save_file({"w": np.ones(3, np.float32)}, str(tmp_path / "foreign.safetensors"))
    assert list(tn.load(tmp_path / "foreign.safetensors")) == ["w"]   # foreign file: flat dict


def test_never_pickles(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object"):
        tn.save({"x": object()}, tmp_path / "bad.safetensors")
    assert not list(tmp_path.iterdir())


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.ones(1000, np.float32)}, path)
    before = path.read_bytes()

    def half_then_crash(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(tio.atomic, "_write_all", half_then_crash)
    with pytest.raises(tn.CheckpointError, match=r"ckpt.safetensors.*No space"):
        tn.save({"w": np.zeros(1000, np.float32)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]   # no temp file left
    np.testing.assert_array_equal(tn.load(path)["w"], np.ones(1000, np.float32))


@pytest.mark.parametrize("cut", [0, 5, 40, -100, -1])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, cut):
    path = tmp_path / "ckpt.safetensors"
    tn.save({"model": tn.models.mlp((4, 8, 2)).state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(tn.CheckpointError, match=str(path)):
        tn.load(path)


def test_corrupted_header_and_missing_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.ones(3, np.float32)}, path)
    data = bytearray(path.read_bytes())
    data[10:20] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(tn.CheckpointError, match="corrupted"):
        tn.load(path)
    with pytest.raises(tn.CheckpointError, match="cannot read"):
        tn.load(tmp_path / "missing.safetensors")


def test_wrong_architecture_leaves_model_and_optimizer_unchanged(tmp_path):
    tn.manual_seed(0)
    small = tn.models.mlp((4, 8, 2))
    opt = tn.optim.Adam(small.parameters())
    tn.save_checkpoint(tmp_path / "small.safetensors", small, opt)
    other = tn.models.mlp((4, 9, 2))
    before = {k: asnumpy(v).copy() for k, v in other.state_dict().items()}
    with pytest.raises(tn.CheckpointError, match=r"small.safetensors.*1.weight"):
        tn.load_checkpoint(tmp_path / "small.safetensors", other)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(asnumpy(value), before[key])
    # Same model but an optimizer of another kind: the model must be rolled back too.
    twin = tn.models.mlp((4, 8, 2))
    sgd = tn.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    x = np.ones((3, 4), np.float32)
    sgd.zero_grad()
    twin.backward(np.ones((3, 2), np.float32) + 0 * twin(x))
    sgd.step()
    before = {k: asnumpy(v).copy() for k, v in twin.state_dict().items()}
    with pytest.raises(tn.CheckpointError, match="does not fit"):
        tn.load_checkpoint(tmp_path / "small.safetensors", twin, sgd)
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(asnumpy(value), before[key])
    assert sgd.state_dict()["param_groups"][0]["momentum"] == 0.9


# ---------------------------------------------------------------------- exact resume
def _training_objects(seed, loader_seed):
    tn.manual_seed(seed)
    model = tn.models.mlp((2, 32, 32, 3), dropout=0.2)
    optimizer = tn.optim.Adam(model.parameters(), lr=0.01)
    scheduler = tn.optim.StepLR(optimizer, step_size=1, gamma=0.7)
    x, y = tn.data.toy_spirals(n=300, seed=0)
    loader = DataLoader(ArrayDataset(x, y), 32, shuffle=True, seed=loader_seed)
    return model, optimizer, scheduler, loader


@pytest.mark.parametrize("loader_seed", [None, 5], ids=["backend-rng-shuffle", "seeded-shuffle"])
def test_resume_is_bit_identical(tmp_path, loader_seed):
    loss_fn = tn.nn.CrossEntropyLoss()
    model, opt, sched, loader = _training_objects(0, loader_seed)
    tn.fit(model, loss_fn, opt, loader, epochs=2, scheduler=sched, verbose=0)
    straight = {k: asnumpy(v).copy() for k, v in model.state_dict().items()}

    model, opt, sched, loader = _training_objects(0, loader_seed)
    tn.fit(model, loss_fn, opt, loader, epochs=1, scheduler=sched, verbose=0)
    tn.save_checkpoint(tmp_path / "ckpt.safetensors", model, opt, scheduler=sched,
                       loader=loader, epoch=1)
    # Fresh objects from another seed: everything that matters must come from the file.
    model, opt, sched, loader = _training_objects(123, loader_seed)
    state = tn.load_checkpoint(tmp_path / "ckpt.safetensors", model, opt, scheduler=sched,
                               loader=loader)
    assert state["epoch"] == 1 and opt.param_groups[0]["lr"] == pytest.approx(0.007)
    tn.fit(model, loss_fn, opt, loader, epochs=2, scheduler=sched, verbose=0,
           initial_epoch=state["epoch"])
    resumed = {k: asnumpy(v) for k, v in model.state_dict().items()}
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert np.array_equal(resumed[key], straight[key]), key


def test_resume_without_rng_state_diverges(tmp_path):
    """The exact-resume test above can fail: skipping the RNG restore changes the result."""
    loss_fn = tn.nn.CrossEntropyLoss()
    model, opt, sched, loader = _training_objects(0, None)
    tn.fit(model, loss_fn, opt, loader, epochs=2, scheduler=sched, verbose=0)
    straight = asnumpy(model.state_dict()["1.weight"]).copy()
    model, opt, sched, loader = _training_objects(0, None)
    tn.fit(model, loss_fn, opt, loader, epochs=1, scheduler=sched, verbose=0)
    tn.save_checkpoint(tmp_path / "c.safetensors", model, opt, scheduler=sched, loader=loader)
    model, opt, sched, loader = _training_objects(123, None)
    tn.load_checkpoint(tmp_path / "c.safetensors", model, opt, scheduler=sched, loader=loader,
                       restore_rng=False)
    tn.fit(model, loss_fn, opt, loader, epochs=1, scheduler=sched, verbose=0)
    assert not np.array_equal(asnumpy(model.state_dict()["1.weight"]), straight)
