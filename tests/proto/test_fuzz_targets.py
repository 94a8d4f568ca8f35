"""A bounded, seeded slice of the atheris targets in fuzz/, without atheris:
each target's ``check`` on its seeds and on mutations of them drawn from a
fixed random seed (the same inputs on every run). `make fuzz` runs the
targets coverage-guided for longer (fuzz/README.md)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent.parent / "fuzz"
MUTATIONS = 400  # per target; about a second each


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutate(rng: random.Random, data: bytes) -> bytes:
    """What libFuzzer does most: flip, insert, delete, duplicate, splice."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(data))
        kind = rng.randrange(5)
        if kind == 0 and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at:at] = bytes([rng.choice(b"\r\n \t:;0#\x00\xff")]) * rng.randint(1, 3)
        elif kind == 2:
            del data[at:at + rng.randint(1, 8)]
        elif kind == 3:
            data[at:at] = data[max(0, at - 16):at]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


@pytest.mark.parametrize("name", ["h1", "ws"])
def test_fuzz_target_seeded_slice(name):
    target = load(name)
    rng = random.Random(9)
    for seed in target.SEEDS:
        target.check(seed)
    for _ in range(MUTATIONS):
        data = mutate(rng, rng.choice(target.SEEDS))
        try:
            target.check(data)
        except AssertionError as exc:
            raise AssertionError(f"fuzz/{name}.py check failed on {data!r}") from exc
