"""Compile the GPU engine's Triton kernels for Hopper (sm_90) without a GPU.

Run by tests/test_gpu_kernels.py in a subprocess without TRITON_INTERPRET: the interpreter
accepts code the compiler rejects (non-constexpr globals, loop-carried type changes), so CPU-only
CI compiles every kernel variant the engine launches.
"""

from __future__ import annotations

import itertools

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from wmnet.engines import kernels as K
from wmnet.engines.gpu import Blocks

TARGET = GPUTarget("cuda", 90, 32)
BLOCKS = Blocks()  # the engine's default launch shapes
CONST = ("PLASTIC", "BOUNDED", "DET", "KEEP", "MANT", "BLOCK", "FROM_LIST", "NPROG", "NCHUNK")


def signature(fn: triton.JITFunction, dt: str, det: bool) -> dict[str, str]:
    """Argument types as the engine passes them (dt: fp32 | fp64)."""
    acc = "i64" if det else dt
    bits = "i64" if det or dt == "fp64" else "i32"
    sig = {}
    for name in fn.arg_names:
        if name in CONST:
            sig[name] = "constexpr"
        elif name in ("n", "n_e", "ev_cap"):
            sig[name] = "i32"
        elif name == "acc_ptr":
            sig[name] = "*" + acc
        elif name == "acc_bits":
            sig[name] = "*" + bits
        elif name in ("pot_ptr", "flags_ptr"):
            sig[name] = "*u8"
        elif name.endswith("_post") or name in ("ee_post", "onset_ptr", "onset_cnt"):
            sig[name] = "*i32"
        elif name in ("k_ptr", "last_ptr", "ev_ptr", "cnt_ptr") or "rowptr" in name or "split" in name:
            sig[name] = "*i64"
        else:
            sig[name] = "*" + dt
    return sig


def compile_one(fn: triton.JITFunction, dt: str, det: bool, const: dict) -> None:
    triton.compile(
        ASTSource(fn=fn, signature=signature(fn, dt, det), constexprs=const),
        target=TARGET,
        options={"enable_fp_fusion": False},
    )
    print("compiled", fn.__name__, dt, const, flush=True)


def main() -> None:
    for dt in ("fp32", "fp64"):
        mant = 23 if dt == "fp32" else 52
        for plastic, bounded, det, keep in itertools.product(
            [True, False], [True, False], [False, True], [False, True]
        ):
            if not plastic and (bounded or keep):
                continue
            compile_one(
                K.synapse_step,
                dt,
                det,
                {
                    "PLASTIC": plastic,
                    "BOUNDED": bounded,
                    "DET": det,
                    "KEEP": keep,
                    "MANT": mant,
                    "BLOCK": BLOCKS.synapse,
                },
            )
        for det, plastic in itertools.product([False, True], [True, False]):
            compile_one(K.neuron_step, dt, det, {"DET": det, "PLASTIC": plastic, "BLOCK": BLOCKS.neuron})
        for (from_list, nchunk), bounded in itertools.product([(True, 0), (True, 4), (False, 0)], [True, False]):
            compile_one(
                K.catch_up,
                dt,
                False,
                {
                    "FROM_LIST": from_list,
                    "NPROG": 264,
                    "BOUNDED": bounded,
                    "MANT": mant,
                    "KEEP": True,
                    "BLOCK": BLOCKS.catch_up,
                    "NCHUNK": nchunk,
                },
            )


if __name__ == "__main__":
    main()
