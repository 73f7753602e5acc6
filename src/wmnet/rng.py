"""Seed derivation: one master seed, independent named streams."""

from __future__ import annotations

import zlib

import numpy as np
import torch

STREAMS = ("connectivity", "synapse_state", "stimulus")


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named stream, derived from the master seed."""
    ss = np.random.SeedSequence([seed, zlib.crc32(stream.encode())])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for `stream` on `device`."""
    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(seed, stream))
    return g
