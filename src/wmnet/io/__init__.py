"""Readers and writers: SONATA spikes and reports, run.json; NWB and Neo export (`to_nwb`,
`to_neo`, imported on first use: they need the `nwb` extra)."""

from __future__ import annotations

from typing import Any

__all__ = ["to_neo", "to_nwb"]


def __getattr__(name: str) -> Any:
    # Lazy: pynwb and neo are an optional extra, and heavy to import.
    if name == "to_nwb":
        from wmnet.io.nwb import to_nwb

        return to_nwb
    if name == "to_neo":
        from wmnet.io.neo import to_neo

        return to_neo
    raise AttributeError(f"module 'wmnet.io' has no attribute {name!r}")
