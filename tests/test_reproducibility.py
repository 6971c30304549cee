"""Seeding: ``tn.manual_seed`` seeds every backend, also those created after it, so one
seed at the top of a script fixes masks, shuffles and weights in any fresh process, and a
checkpoint resumed in a fresh process continues bit for bit. ``set_rng_state`` is all or
nothing and never swallows errors."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import DeviceError, get_backend

SCRIPT = Path(__file__).with_name("repro_run.py")


def _run(device, seed, mode, checkpoint="-"):
    done = subprocess.run([sys.executable, str(SCRIPT), device, str(seed), mode, str(checkpoint)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_seed_gives_the_same_masks_shuffles_and_weights_in_fresh_processes(device):
    first, second = _run(device, 7, "straight"), _run(device, 7, "straight")
    assert set(first["masks"]) == {"dropout", "dropconnect"}
    assert first == second
    assert _run(device, 8, "straight")["masks"] != first["masks"]  # the seed matters


def test_resume_in_a_fresh_process_is_bit_identical(device, tmp_path):
    """Dropout, DropConnect, unseeded shuffling, Adam with weight decay, BatchNorm, StepLR:
    4 epochs straight == 2 epochs, checkpoint, then 2 more in a fresh process (seeded
    differently: everything that matters comes from the file)."""
    checkpoint = tmp_path / "half.safetensors"
    straight = _run(device, 7, "straight")
    _run(device, 7, "first", checkpoint)
    resumed = _run(device, 123, "resume", checkpoint)
    assert resumed["weights"] == straight["weights"]


def _no_backends_yet(monkeypatch):
    """As in a fresh process (monkeypatch puts the real registry back afterwards)."""
    from tensornet import backends
    monkeypatch.setattr(backends, "_CACHE", {})
    monkeypatch.setattr(backends, "_BY_TYPE", {})


def test_manual_seed_seeds_backends_created_later(monkeypatch):
    _no_backends_yet(monkeypatch)
    tn.manual_seed(3)
    first = tn.asnumpy(get_backend("strict").bernoulli((64,), 0.5))
    _no_backends_yet(monkeypatch)
    tn.manual_seed(3)
    tn.manual_seed(3)  # seeding twice, or creating other backends first, changes nothing
    get_backend("cpu")
    again = tn.asnumpy(get_backend("strict").bernoulli((64,), 0.5))
    assert np.array_equal(first, again)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_manual_seed_refuses_what_is_not_a_seed(seed):
    with pytest.raises(ValueError, match="manual_seed: seed must be a non-negative integer"):
        tn.manual_seed(seed)


def test_set_rng_state_restores_every_stream():
    tn.manual_seed(0)
    state = tn.get_rng_state()
    draws = [tn.asnumpy(get_backend("cpu").bernoulli((32,), 0.5)), tn.random.host_rng().random()]
    tn.manual_seed(99)
    tn.set_rng_state(state)
    assert np.array_equal(tn.asnumpy(get_backend("cpu").bernoulli((32,), 0.5)), draws[0])
    assert tn.random.host_rng().random() == draws[1]


def test_a_device_this_machine_lacks_is_skipped_with_a_warning_naming_it(monkeypatch):
    tn.manual_seed(0)
    state = tn.get_rng_state()
    state["backends"]["torch:cuda:7"] = {"bit_generator": "PCG64"}

    with pytest.warns(RuntimeWarning, match=r"lacks 'torch:cuda:7'"):
        tn.set_rng_state(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing lacking: no warning
        tn.set_rng_state(tn.get_rng_state())


def test_a_damaged_state_for_a_present_device_is_an_error_and_changes_nothing():
    tn.manual_seed(0)
    get_backend("strict")
    good = tn.get_rng_state()
    damaged = tn.get_rng_state()
    damaged["backends"]["strict"] = {"bit_generator": "PCG64", "state": "garbage"}
    before = tn.get_rng_state()
    with pytest.raises(ValueError, match=r"the saved state of device 'strict' is damaged"):
        tn.set_rng_state(damaged)
    assert tn.get_rng_state() == before  # the host and 'cpu' were put back too
    damaged = dict(good, host={"bit_generator": "MT19937", "state": 5})
    with pytest.raises(ValueError, match="the saved state of the host generator is damaged"):
        tn.set_rng_state(damaged)
    for bad in (None, {"backends": {}}, dict(good, backends=[1, 2]),
                dict(good, backends={5: {}})):
        with pytest.raises(ValueError, match="set_rng_state"):
            tn.set_rng_state(bad)
    tn.set_rng_state(good)


def test_a_missing_optional_backend_reads_as_lacking(monkeypatch):
    from tensornet.backends import strict

    def unavailable(*args, **kwargs):
        raise DeviceError("device='strict' needs the array-api-strict package")

    _no_backends_yet(monkeypatch)
    monkeypatch.setattr(strict.StrictBackend, "__init__", unavailable)
    state = {"host": tn.random.host_rng().bit_generator.state, "backends": {"strict": {}}}
    with pytest.warns(RuntimeWarning, match=r"lacks 'strict' \(device='strict' needs"):
        tn.set_rng_state(state)


def test_a_checkpoint_with_a_damaged_generator_state_leaves_the_model_unchanged(tmp_path):
    tn.manual_seed(0)
    model = tn.nn.Linear(2, 2)
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model)
    state = tn.load(path)
    state["rng"]["backends"]["cpu"] = {"bit_generator": "PCG64", "state": "garbage"}
    tn.save(state, path)
    fresh = tn.nn.Linear(2, 2)
    before = tn.asnumpy(fresh.weight.data).copy()
    with pytest.raises(tn.CheckpointError,
                       match=r"ckpt.safetensors.*(rng/backends/cpu|device 'cpu' is damaged)"):
        tn.load_checkpoint(path, fresh)
    assert np.array_equal(tn.asnumpy(fresh.weight.data), before)
