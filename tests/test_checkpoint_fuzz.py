"""Property test: however a checkpoint's bytes are damaged (truncated, bits flipped, bytes
spliced in, header fields rewritten), loading it either gives back exactly what was saved
or raises CheckpointError naming the file: never another exception, never something else.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensornet as tn
from tensornet.backends import asnumpy

from checkpoint_bytes import pack, unpack

DTYPES = ["F32", "F64", "F16", "BF16", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "X", 3]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=8),
                 st.lists(st.integers(-3, 300), max_size=4))


def _build():
    tn.manual_seed(0)
    model = tn.models.mlp((3, 4, 2))
    opt = tn.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    sched = tn.optim.StepLR(opt, step_size=1, gamma=0.5)
    return model, opt, sched


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, opt, sched = _build()
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    tn.nn.CrossEntropyLoss()(model(x), np.array([0, 1, 0, 1, 1]))
    model.backward(np.ones((5, 2), np.float32))
    opt.step()
    sched.step()
    path = tmp_path_factory.mktemp("fuzz") / "ckpt.safetensors"
    tn.save_checkpoint(path, model, opt, scheduler=sched, epoch=1,
                       config={"name": "mlp", "nan": float("nan"), "t": (1, None, "x")},
                       history={"loss": [0.5, 0.25]})
    blob = path.read_bytes()
    return path, blob, tn.load(path), {k: asnumpy(v).copy() for k, v in
                                        model.state_dict().items()}


def _same(a, b) -> bool:
    """Bit-identical values of identical types."""
    if isinstance(a, (np.ndarray, np.generic)):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if isinstance(a, float):
        return type(b) is float and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return type(b) is dict and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _rewrite_header(blob: bytes, target: int, field, value) -> bytes:
    header, data = unpack(blob)
    names = sorted(header)
    name = names[target % len(names)]
    entry = dict(header[name])
    if name == "__metadata__":
        key = sorted(entry)[hash(str(field)) % len(entry)]
        if value is None:
            del entry[key]          # one entry at a time; a file stripped of all of them is
        elif isinstance(value, int):  # a plain safetensors file by definition
            text = entry[key]
            i = value % max(len(text), 1)
            entry[key] = text[:i] + chr((ord(text[i:i + 1] or "a") + 1) % 128) + text[i + 1:]
        else:
            entry[key] = str(value)
    else:
        entry[field] = value
    header[name] = entry
    return pack(header, data)


@st.composite
def mutations(draw, size: int):
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "copy", "header"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "flip":
        return kind, draw(st.integers(0, size - 1)), draw(st.integers(0, 7))
    if kind == "splice":
        return (kind, draw(st.integers(0, size)), draw(st.integers(0, 16)),
                draw(st.binary(max_size=16)))
    if kind == "copy":
        return kind, draw(st.integers(0, size)), draw(st.integers(0, size)), \
            draw(st.integers(1, 64))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    value = draw({"dtype": st.one_of(st.sampled_from(DTYPES), JUNK),
                  "shape": st.one_of(st.lists(st.integers(0, 40), max_size=3), JUNK),
                  "data_offsets": st.one_of(st.lists(st.integers(-2, 4000), min_size=2,
                                                     max_size=2), JUNK)}[field])
    return kind, draw(st.integers(0, 100)), field, value


def _apply(blob: bytes, mutation) -> bytes:
    kind, *args = mutation
    if kind == "truncate":
        return blob[:args[0]]
    if kind == "flip":
        pos, bit = args
        pos %= max(len(blob), 1)
        return blob[:pos] + bytes([blob[pos] ^ (1 << bit)]) + blob[pos + 1:] if blob else blob
    if kind == "splice":
        pos, cut, insert = args
        return blob[:pos] + insert + blob[pos + cut:]
    if kind == "copy":
        src, dst, length = args
        return blob[:dst] + blob[src:src + length] + blob[dst + length:]
    try:
        return _rewrite_header(blob, *args)
    except (ValueError, KeyError, IndexError):   # earlier mutations broke the header already
        return blob


@settings(max_examples=300, deadline=1000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_checkpoints_load_identically_or_raise(saved, data):
    path, blob, original, weights = saved
    changes = data.draw(st.lists(mutations(len(blob)), min_size=1, max_size=3))
    damaged = blob
    for change in changes:
        damaged = _apply(damaged, change)
    path.write_bytes(damaged)
    try:
        loaded = tn.load(path)
    except tn.CheckpointError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert _same(loaded, original), f"{changes} loaded something else"

    rng = tn.get_rng_state()
    model, opt, sched = _build()
    before = {k: asnumpy(v).copy() for k, v in model.state_dict().items()}
    try:
        tn.load_checkpoint(path, model, opt, scheduler=sched)
        expected = weights
    except tn.CheckpointError as exc:
        assert str(exc).startswith(str(path))
        expected = before
    finally:
        tn.set_rng_state(rng)
    for key, value in model.state_dict().items():
        assert asnumpy(value).tobytes() == expected[key].tobytes(), key


def test_the_fuzzer_reaches_every_outcome(saved):
    """The property above is not vacuous: undamaged loads succeed, and header rewrites
    reach the checksum checks (not only the safetensors parser)."""
    path, blob, original, _ = saved
    path.write_bytes(blob)
    assert _same(tn.load(path), original) and math.isnan(original["config"]["nan"])
    header, data = unpack(blob)
    name = next(k for k in header if k != "__metadata__")
    shape = header[name]["shape"]
    path.write_bytes(_rewrite_header(blob, sorted(header).index(name), "shape",
                                     shape[::-1] if len(set(shape)) > 1 else shape))
    if len(set(shape)) > 1:
        with pytest.raises(tn.CheckpointError, match="is damaged"):
            tn.load(path)
    meta = json.loads(header["__metadata__"]["tensor_sha256"])
    assert set(meta) == set(header) - {"__metadata__"}
    path.write_bytes(blob)
