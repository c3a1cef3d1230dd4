"""Kernel choice for weight-carrying ops: one pure function of what is really in memory.

Two steps, kept apart on purpose (MNN's "Acquire buffer size = 0" came from mixing them):

1. ``keep_weights(constant, memory, int8_dot=...)`` is the loader: it decides what stays
   resident. memory normal/high: fp16 and quantized weights are decoded to fp32 once,
   here, except int8 weights the int8-dot kernel will read (precision=low,
   ``int8_dot_fits``), which it keeps as stored in every mode: decoding them would only
   make the session slower and bigger. memory low: weights stay exactly as stored.
2. ``choose_conv`` / ``choose_gemm`` look only at the *kept* constant (its storage and the
   bytes its arrays really hold), the op's attributes, precision, memory mode, the shapes
   (conv) and the hardware, passed in as one ``Target`` value. They never look at the
   stored model's quantization metadata, nor ask the machine anything themselves. The
   table is in docs/kernel_choice.md; tests/test_storage_matrix.py runs every row.

A choice names a kernel family (``Choice.family``, a key of backends/conv_family.py's
registry) plus its option; families registered with a rule of their own are asked first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from jitconv.errors import InternalError
from jitconv.runtime.ir import Constant

from .base import Target
from .conv_family import RULES, ConvGeometry, ConvRequest


@dataclass(frozen=True)
class Choice:
    """The kernel to build and why (the reason is shown per op in Session.info()).

    ``kernel`` is the name info() shows; ``family`` the registered family that runs it
    (backends/conv_family.py; "" for a kernel outside the family registry, e.g. Gemm's);
    ``option`` what the family needs besides the weights (the Winograd output tile m)."""
    kernel: str
    reason: str
    option: object = None
    family: str = ""


def keep_weights(const: Constant, memory: str, *, int8_dot: bool = False) -> Constant:
    """What the session keeps resident for a weight constant under a memory mode;
    ``int8_dot``: the op will run the int8-dot kernel (``int8_dot_fits``), which reads
    int8 weights as stored."""
    if const.storage == "fp32" or memory == "low" or (int8_dot and const.storage == "int8"):
        return const
    return Constant(const.name, const.as_float32(), "fp32")


def int8_dot_fits(const: Constant, attrs: dict, precision: str, vnni: bool) -> bool:
    """conv2d_int8dot can run this conv: precision=low, int8 weights with one symmetric
    scale per output channel, groups 1, and a CPU with AVX512-VNNI."""
    return (precision == "low" and const.storage == "int8" and bool(vnni)
            and const.scale is not None and const.scale.shape[1] == 1
            and const.zero is None and int(attrs.get("group", 1)) == 1)


def blocked_fits(const: Constant, attrs: dict, precision: str, memory: str,
                 target: Target) -> str:
    """Why this conv cannot run in the channel-blocked layout (conv2d_blocked, chosen by
    the CPU layout pass), or "" when it can: groups 1 or depthwise (groups = input
    channels = output channels), 2-D, weights kept as fp32 or, in memory=low, as stored
    (fp16 / int8 / int4: decoded pass by pass, a depthwise weight whole on each call), not
    the int8 dot kernel's, and AVX-512 (the kernel's 24-register tile)."""
    if not target.avx512:
        return "no AVX-512"
    if len(const.shape) != 4:
        return f"{len(const.shape) - 2}-D"
    group = int(attrs.get("group", 1))
    if group != 1 and not (group == const.shape[0] and const.shape[1] == 1):
        return "grouped (not depthwise)"
    # keep_weights' rule, without decoding anything: fp32 once kept, or what memory=low
    # keeps as stored; not the int8 dot kernel's weights
    if int8_dot_fits(const, attrs, precision, target.vnni):
        return "the int8 dot kernel reads these weights"
    return ""


def _check_kept(node_desc: str, kept: Constant) -> None:
    if math.prod(kept.shape) and kept.data.nbytes == 0:
        raise InternalError(f"{node_desc}: the loader kept 0 bytes of {kept.storage} weights "
                            f"for a weight of shape {kept.shape}")


_LOW_KERNELS = {"fp16": "fp16w", "int8": "int8w", "int4": "int4w"}


def _storage_reason(kept: Constant, memory: str, decoded_from: str) -> str:
    if kept.storage == "fp32":
        if decoded_from != "fp32":
            return f"{decoded_from} weights decoded to fp32 at prepare (memory={memory})"
        return "fp32 weights"
    if memory != "low":
        return (f"{kept.storage} weights kept as stored for the int8 dot kernel "
                f"(precision=low, memory={memory}, {kept.nbytes:,} B)")
    how = "converted" if kept.storage == "fp16" else "dequantized"
    return (f"{kept.storage} weights kept as stored (memory=low, {kept.nbytes:,} B), "
            f"{how} one panel at a time")


def _conv_geometry(attrs, kept, x_shape):
    m, cg, kh, kw = kept.shape
    groups = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dil = list(attrs.get("dilations", [1, 1]))
    return m, cg, kh, kw, groups, strides, dil, x_shape[1]


def _choose_fp32(attrs, kept, precision, memory, x_shape, out_shape, why):
    """The fp32 cost model: depthwise, Winograd, tiled implicit GEMM, direct."""
    from jitconv.kernels.winograd import winograd_cost
    m, cg, kh, kw, groups, strides, dil, c = _conv_geometry(attrs, kept, x_shape)
    if groups == c == m and cg == 1:
        return Choice("conv2d_depthwise", f"{why}; depthwise: register-tiled per channel",
                      family="depthwise")
    if (kh, kw) == (3, 3) and strides == [1, 1] and dil == [1, 1] and groups == 1:
        if precision == "high" or memory == "low":
            note = "precision=high" if precision == "high" else "memory=low"
            why += f"; Winograd ruled out ({note})"
        else:
            oh, ow = out_shape[2], out_shape[3]
            cost, tile = min((winograd_cost(c, m, oh, ow, t), t) for t in (2, 4))
            if cost < 1.0:
                return Choice("conv2d_winograd",
                              f"{why}; Winograd F({tile},3): cost {cost:.2f} of tiled direct",
                              tile, "winograd")
            why += f"; Winograd cost {cost:.2f} >= 1"
    if groups == 1 and c * kh * kw < CHANVEC_MIN_K:
        why += f"; K = {c * kh * kw} < {CHANVEC_MIN_K}: too short for channel-vectorized tiles"
    elif groups == 1:
        cv, tiled = _padded_work(m, kh, kw, strides, dil, out_shape)
        if cv <= tiled:
            return Choice("conv2d_chanvec",
                          f"{why}; channel-vectorized implicit GEMM (32 channels x 7 pixels "
                          f"per tile: {cv:,} outputs computed with tile padding, tiled {tiled:,})",
                          family="chanvec")
        why += f"; channel-vectorized would compute {cv:,} outputs, tiled {tiled:,}"
    return _tiled_or_direct(kept, groups, cg, why)


# conv2d_chanvec stores each tile transposed (channel by channel, through a per-thread
# stage): with a short K loop that store is a large share of the tile. Layers E (3x3 s2,
# K = 27) and I (1x1, K = 32) ran 0.87x / 0.92x of conv2d_tiled's speed (same process,
# 2 threads), and ResNet-50's 56x56 1x1 convs with K = 64 took 1.0-1.36 ms against tiled's
# 0.8-1.1 (Session.profile); from K = 128 on chanvec is as fast or faster.
CHANVEC_MIN_K = 128


def _padded_work(m, kh, kw, strides, dil, out_shape):
    """Output values each kernel computes per input-channel tap, tile padding included:
    conv2d_chanvec (32 channels x 7 pixels per tile) and conv2d_tiled (8 channels x 32
    pixels), both over the padded-width grid of OH x Wq pixels (Wq = OW for a 1x1 stride-1
    conv). Per FMA the two run at about the same speed once the tiles are full (measured on
    ResNet-50's layers, 2 threads), so the smaller padded work wins; ties go to chanvec,
    whose weight stream is contiguous.
    """
    from jitconv.kernels.phase_planes import phase_grid
    oh, ow = out_shape[2], out_shape[3]
    _, wq = phase_grid(oh, ow, kh, kw, strides[0], strides[1], dil[0], dil[1])
    grid = oh * wq
    cv = -(-m // 32) * 32 * (-(-grid // 7) * 7)
    tiled = -(-m // 8) * 8 * (-(-grid // 32) * 32)
    return cv, tiled


def _tiled_or_direct(kept, groups, cg, why):
    """The dense kernels, for every storage: the register-tiled implicit GEMM (fp32 panels,
    or fp16 / int8 / int4 panels decoded one at a time), else the direct family."""
    suffix = "" if kept.storage == "fp32" else "_" + _LOW_KERNELS[kept.storage]
    if groups == 1 or cg >= 8:
        return Choice("conv2d_tiled" + suffix, f"{why}; register-tiled implicit GEMM",
                      family="tiled")
    direct = "conv2d_direct" if kept.storage == "fp32" else "conv2d_" + _LOW_KERNELS[kept.storage]
    return Choice(direct, f"{why}; direct conv ({cg} channels per group: too few to tile)",
                  family="direct")


def choose_conv(node_desc: str, attrs: dict, kept: Constant, *, decoded_from: str,
                precision: str, memory: str, geom: ConvGeometry | None = None,
                target: Target = Target()) -> Choice:
    """Pick the conv kernel family. ``kept`` is what keep_weights() returned, ``geom`` the
    shapes and window (None: not known, the direct family), ``target`` the hardware.
    Rules of registered families (backends/conv_family.py) are asked first."""
    _check_kept(node_desc, kept)
    if RULES:
        request = ConvRequest(node_desc, dict(attrs), kept, decoded_from, precision, memory,
                              geom, target)
        for _, rule in RULES:
            choice = rule(request)
            if choice is not None:
                return choice
    why = _storage_reason(kept, memory, decoded_from)
    x_shape = geom.x if geom is not None else None
    out_shape = geom.out if geom is not None else None
    if kept.storage == "fp32":
        if x_shape is None:
            return Choice("conv2d_direct", f"{why}; direct conv (no shapes given)",
                          family="direct")
        return _choose_fp32(attrs, kept, precision, memory, x_shape, out_shape, why)
    name = "conv2d_" + _LOW_KERNELS[kept.storage]
    if precision == "low" and kept.storage == "int8":
        if int8_dot_fits(kept, attrs, precision, target.vnni):
            return Choice("conv2d_int8dot", f"{why}; precision=low: activations quantized "
                                            f"per tensor, int8 dot products (vpdpbusd)",
                          family="int8dot")
        why += ("; precision=low int8 dot needs symmetric per-channel weights, groups=1 and "
                "AVX512-VNNI")
    if x_shape is None:
        return Choice(name, f"{why}; direct conv (no shapes given)", family="direct")
    m, cg, kh, kw, groups, _, _, c = _conv_geometry(attrs, kept, x_shape)
    if groups == c == m and cg == 1:
        return Choice("conv2d_depthwise_" + _LOW_KERNELS[kept.storage],
                      f"{why}; depthwise: the (C, KH*KW) panel decoded per call, "
                      f"register-tiled per channel", family="depthwise_stored")
    return _tiled_or_direct(kept, groups, cg, why)


def choose_gemm(node_desc: str, kept: Constant, *, decoded_from: str, precision: str,
                memory: str) -> Choice:
    """Pick the Gemm kernel (B packed as (N, K) rows)."""
    _check_kept(node_desc, kept)
    why = _storage_reason(kept, memory, decoded_from)
    if kept.storage == "fp32":
        return Choice("gemm_nt", f"{why}; row dot products")
    return Choice("gemm_nt_" + _LOW_KERNELS[kept.storage], why)
