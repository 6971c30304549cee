"""Checkpoints as a hostile tester meets them: flipped bits, absurd headers, devices, forged
nesting, other tools' dtypes, damaged RNG/loader entries. Every failure is a CheckpointError
naming the file; nothing is changed before everything is known to fit."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import asnumpy
from tensornet.data import ArrayDataset, DataLoader
from tensornet.io import reader, store

from checkpoint_bytes import pack, unpack, with_metadata


def _adamw_checkpoint(path):
    tn.manual_seed(0)
    model = tn.models.mlp((4, 8, 3))
    opt = tn.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    tn.save_checkpoint(path, model, opt)
    return model, opt


def _raises_naming(path, needle=""):
    return pytest.raises(tn.CheckpointError, match=re.escape(str(path)) + ".*" + needle)


# ---------------------------------------------------------------------- checksums
def test_every_flipped_data_bit_names_the_file_and_the_tensor(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    _adamw_checkpoint(path)
    blob = path.read_bytes()
    header, data = unpack(blob)
    start = len(blob) - len(data)
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        lo, hi = entry["data_offsets"]
        if lo == hi:
            continue
        for offset, bit in ((lo, 0), ((lo + hi) // 2, 5), (hi - 1, 7)):
            damaged = bytearray(blob)
            damaged[start + offset] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            with _raises_naming(path, re.escape(repr(name))):
                tn.load(path)


def test_a_metadata_flip_cannot_change_a_hyperparameter(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    _adamw_checkpoint(path)
    blob = path.read_bytes()
    assert b'\\"weight_decay\\": 0.01' in blob
    path.write_bytes(blob.replace(b'\\"weight_decay\\": 0.01', b'\\"weight_decay\\": 0.05'))
    with _raises_naming(path, "metadata is damaged"):
        tn.load(path)
    model = tn.models.mlp((4, 8, 3))
    opt = tn.optim.AdamW(model.parameters(), weight_decay=0.3)
    with _raises_naming(path):
        tn.load_checkpoint(path, model, opt)
    assert opt.param_groups[0]["weight_decay"] == 0.3


def test_a_rewritten_dtype_or_shape_is_caught(tmp_path):
    """Same bytes, other meaning: the tensor checksum covers dtype and shape too."""
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, path)
    header, data = unpack(path.read_bytes())
    for field, value in (("dtype", "I32"), ("shape", [3, 2]), ("shape", [6])):
        path.write_bytes(pack({**header, "w": {**header["w"], field: value}}, data))
        with _raises_naming(path, "'w' is damaged"):
            tn.load(path)


def test_files_without_checksums_still_load(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.ones(3, np.float32)}, str(tmp_path / "foreign.safetensors"),
              metadata={"format": "pt"})
    np.testing.assert_array_equal(tn.load(tmp_path / "foreign.safetensors")["w"], np.ones(3))
    # a checkpoint from tensornet before checksums (format version 1)
    legacy = {"format": "tensornet", "format_version": "1",
              "structure": json.dumps({"model": {"w": {"__tensor__": "model/w"}}, "epoch": 3})}
    save_file({"model/w": np.arange(3, dtype=np.float32)}, str(tmp_path / "v1.safetensors"),
              metadata=legacy)
    state = tn.load(tmp_path / "v1.safetensors")
    assert state["epoch"] == 3 and state["model"]["w"].tolist() == [0.0, 1.0, 2.0]


def test_checksummed_file_claiming_another_format_or_version_is_damage(tmp_path):
    """Even with a recomputed metadata checksum, a file carrying tensornet checksums must be
    a tensornet version-2 file: never silently read as a foreign or unverified one."""
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.ones(2, np.float32)}, path)
    original = path.read_bytes()
    for changes in ({"format": "tensornat"}, {"format_version": "1"}, {"format_version": "7"}):
        path.write_bytes(with_metadata(original, **changes))
        with _raises_naming(path):
            tn.load(path)


# ---------------------------------------------------------------------- bounded parsing
def test_devices_pipes_and_folders_are_refused_without_reading(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    with _raises_naming(tmp_path / "zero.safetensors", "not a regular file"):
        tn.load(tmp_path / "zero.safetensors")
    os.mkfifo(tmp_path / "fifo.safetensors")   # opening it must not wait for a writer
    with _raises_naming(tmp_path / "fifo.safetensors", "not a regular file"):
        tn.load(tmp_path / "fifo.safetensors")
    with _raises_naming(tmp_path, "not a regular file"):
        tn.load(tmp_path)


def test_absurd_header_lengths_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    path.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    with _raises_naming(path, "header claims 1152921504606846976 bytes"):
        tn.load(path)
    path.write_bytes(pack({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                          b"\0" * 4))
    monkeypatch.setattr(reader, "MAX_HEADER_BYTES", 16)
    with _raises_naming(path, "the limit is 16"):
        tn.load(path)

    def no_whole_reads(*args, **kwargs):
        raise AssertionError("the whole file was read")
    monkeypatch.setattr(type(path), "read_bytes", no_whole_reads)
    path.write_bytes((2**40).to_bytes(8, "little") + b"{" + b" " * 100)
    with _raises_naming(path, "truncated"):
        tn.load(path)


@pytest.mark.parametrize("offsets", [8, [0], ["0", "8"], [0, 8, 16], [-4, 4], [4, 12], [0, 4],
                                     [0, 800], [8, 0], None, {"a": 1}],
                         ids=lambda o: json.dumps(o))
def test_hostile_data_offsets(tmp_path, offsets):
    path = tmp_path / "hostile.safetensors"
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": offsets}}
    path.write_bytes(pack(header, b"\0" * 16))
    with _raises_naming(path):
        tn.load(path)


def test_overlapping_ranges_are_refused(tmp_path):
    path = tmp_path / "overlap.safetensors"
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}}
    path.write_bytes(pack(header, b"\0" * 20))
    with _raises_naming(path):
        tn.load(path)


def test_header_json_nested_100000_deep(tmp_path):
    path = tmp_path / "deep.safetensors"
    for raw in (b"[" * 100_000 + b"]" * 100_000,
                b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        path.write_bytes(pack(raw))
        with _raises_naming(path):
            tn.load(path)


def _nested(depth):
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("version", ["1", "2"])
def test_structure_metadata_nested_5000_deep(tmp_path, version):
    """Even with valid checksums (a forged file), absurd nesting is refused, not recursed."""
    path = tmp_path / "deep.safetensors"
    tn.save({"w": np.ones(2, np.float32)}, path)
    original = path.read_bytes()

    def with_structure(structure):
        if version == "2":
            return with_metadata(original, structure=structure)
        header, data = unpack(original)
        header["__metadata__"] = {"format": "tensornet", "format_version": "1",
                                  "structure": structure}
        return pack(header, data)

    path.write_bytes(with_structure(_nested(5000)))
    with _raises_naming(path, "structure metadata is damaged"):
        tn.load(path)
    path.write_bytes(with_structure(_nested(store.MAX_DEPTH + 5)))
    with _raises_naming(path, "nested more than"):
        tn.load(path)
    path.write_bytes(with_structure(_nested(store.MAX_DEPTH - 5)))
    assert tn.load(path) == json.loads(_nested(store.MAX_DEPTH - 5))


@pytest.mark.parametrize("structure", [
    {"__tensor__": "missing"}, {"__tensor__": 5}, {"__scalar__": "w"}, {"__dict__": 5},
    {"__dict__": [[["unhashable"], 1]]}, {"__tuple__": {"a": 1}},
    {"__tensor__": "w", "extra": 1}, {"__dict__": [[1]]}])
def test_malformed_structure_with_valid_checksums(tmp_path, structure):
    path = tmp_path / "forged.safetensors"
    tn.save({"w": np.ones(2, np.float32)}, path)
    path.write_bytes(with_metadata(path.read_bytes(), structure=json.dumps(structure)))
    with _raises_naming(path, "structure metadata is damaged"):
        tn.load(path)


def test_save_refuses_nesting_load_would_refuse(tmp_path):
    deep = 0
    for _ in range(store.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than 100 levels"):
        tn.save({"x": deep}, tmp_path / "deep.safetensors")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- other tools' dtypes
def _bf16_bits(values):
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype("<u2")


def test_bf16_f16_i8_tensors_from_other_tools(tmp_path):
    values = np.array([[1.0, -2.5, 3.140625], [np.inf, 0.0, -0.0]], np.float32)  # exact in bf16
    bf16 = _bf16_bits(values).tobytes()
    f16 = np.array([0.5, -1.25], "<f2").tobytes()
    i8 = np.array([-128, 127, -1], "i1").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
              "b": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]},
              "c": {"dtype": "I8", "shape": [3], "data_offsets": [16, 19]}}
    path = tmp_path / "hf.safetensors"
    path.write_bytes(pack(header, bf16 + f16 + i8))
    with pytest.warns(UserWarning, match=r"hf.safetensors: 1 BF16 tensor\(s\) \('a'\) loaded "
                                         r"as float32"):
        state = tn.load(path)
    assert state["a"].dtype == np.float32 and state["a"].shape == (2, 3)
    assert state["a"].tobytes() == values.tobytes()
    assert state["b"].dtype == np.float16 and state["b"].tolist() == [0.5, -1.25]
    assert state["c"].dtype == np.int8 and state["c"].tolist() == [-128, 127, -1]


def test_unsupported_dtype_is_named(tmp_path):
    path = tmp_path / "f8.safetensors"
    path.write_bytes(pack({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                           "f": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [4, 6]}},
                          b"\0" * 6))
    with _raises_naming(path, "unsupported dtype F8_E4M3 in tensor 'f'"):
        tn.load(path)


def test_save_names_an_array_safetensors_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="the array at labels has dtype <U1"):
        tn.save({"labels": np.array(["a", "b"])}, tmp_path / "s.safetensors")


# ---------------------------------------------------------------------- all or nothing
def _objects(seed):
    tn.manual_seed(seed)
    model = tn.models.mlp((2, 8, 4))
    opt = tn.optim.Adam(model.parameters(), lr=0.01)
    x, y = tn.data.toy_blobs(n=60, seed=0)
    loader = DataLoader(ArrayDataset(x, y), 16, shuffle=True)
    tn.fit(model, tn.nn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0)
    return model, opt, loader


def _snapshot(model, opt, loader):
    return ({k: asnumpy(v).copy() for k, v in model.state_dict().items()},
            json.dumps(opt.state_dict()["param_groups"]),
            {i: {k: np.array(asnumpy(v)) if hasattr(v, "shape") else v for k, v in s.items()}
             for i, s in opt.state_dict()["state"].items()},
            loader.epoch, json.dumps(tn.get_rng_state(), default=str))


def _assert_same(a, b):
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key])
    assert a[1] == b[1] and a[3] == b[3] and a[4] == b[4]
    for i in a[2]:
        for k in a[2][i]:
            np.testing.assert_array_equal(a[2][i][k], b[2][i][k])


@pytest.mark.parametrize("entry, value", [
    ("rng", {"host": {"bit_generator": "PCG64", "state": "garbage"}}),
    ("rng", {"host": {"bit_generator": "os.system", "state": {}}}),
    ("rng", {"backends": {}}),
    ("rng", {"host": None, "backends": {"cpu": 5}}),
    ("rng", {"host": {"bit_generator": "PCG64", "state": {"state": 1, "inc": 1},
                      "has_uint32": 0, "uinteger": 0},
             "backends": {"cpu": {"bit_generator": "PCG64", "state": {"state": "x"}}}}),
    ("loader", {"epoch": "x"}), ("loader", {"epoch": -1}), ("loader", [1]),
])
def test_damaged_rng_or_loader_entry_changes_nothing(tmp_path, entry, value):
    model, opt, loader = _objects(0)
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, loader=loader)
    state = tn.load(path)
    state[entry] = value
    tn.save(state, path)                # checksums valid: the content itself is wrong
    model, opt, loader = _objects(1)    # other weights, optimizer state and RNG draws
    before = _snapshot(model, opt, loader)
    with _raises_naming(path, f"'{entry}' entry is damaged"):
        tn.load_checkpoint(path, model, opt, loader=loader)
    _assert_same(before, _snapshot(model, opt, loader))


def test_failure_after_the_checks_rolls_everything_back(tmp_path):
    model, opt, loader = _objects(0)
    sched = tn.optim.StepLR(opt, step_size=1, gamma=0.5)
    path = tmp_path / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, scheduler=sched, loader=loader)
    state = tn.load(path)
    state["scheduler"] = {"bogus": 1}   # model and optimizer fit; the scheduler does not
    tn.save(state, path)
    model, opt, loader = _objects(1)
    sched = tn.optim.StepLR(opt, step_size=1, gamma=0.5)
    before = _snapshot(model, opt, loader)
    with _raises_naming(path, "does not fit"):
        tn.load_checkpoint(path, model, opt, scheduler=sched, loader=loader)
    _assert_same(before, _snapshot(model, opt, loader))


def test_forged_checksum_table_is_damage_not_a_crash(tmp_path):
    path = tmp_path / "forged.safetensors"
    tn.save({"w": np.ones(2, np.float32)}, path)
    original = path.read_bytes()
    for table in ("[" * 100_000, "{}", '{"w": 5}', "not json"):
        path.write_bytes(with_metadata(original, tensor_sha256=table))
        with _raises_naming(path, "checksum table|'w' is damaged"):
            tn.load(path)
