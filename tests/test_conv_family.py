"""Conv kernel families (backends/conv_family.py): one interface, choice made per shape.

A family registered here, outside the package, is chosen by its own rule, packed, planned,
resized and run exactly as the built-in ones are; a conv whose best family changes with
the input size repacks from the old family's unpack().
"""
import numpy as np
import pytest

import jitconv as jc
from helpers import assert_close, rand
from jitconv.backends.choice import Choice
from jitconv.backends.conv_family import (ConvFamily, register_conv_family,
                                          unregister_conv_family)
from jitconv.kernels.epilogue import ACT_CLIP, ACT_RELU
from jitconv.runtime.ir import Constant
from jitconv.runtime.reference import evaluate


class Toy1x1(ConvFamily):
    """A 1x1 stride-1 conv as one einsum: what a third party might add."""
    key = "toy_1x1"
    log: list = []

    def pack(self, kept):
        self.w = np.ascontiguousarray(kept.as_float32()[:, :, 0, 0])
        self.log.append(("pack", kept.shape))

    def plan(self, geom):
        self.geom = geom
        self.log.append(("plan", geom.x))
        return 0

    def run(self, x, bias, res, out, scratch, epi, w=None):
        y = np.einsum("mc,nchw->nmhw", self.w, x) + bias[None, :, None, None]
        if epi.act == ACT_RELU:
            y = np.maximum(y, 0)
        elif epi.act == ACT_CLIP:
            y = np.clip(y, epi.lo, epi.hi)
        out[...] = y

    def arrays(self):
        return (self.w,)

    def unpack(self):
        return Constant("w", np.ascontiguousarray(self.w[:, :, None, None]))


def small_1x1_maps(req):
    """The toy's rule: fp32 1x1 stride-1 convs on maps of at most 64 pixels."""
    g = req.geom
    if g is None or req.kept.storage != "fp32" or g.w[2:] != (1, 1) or g.strides != (1, 1):
        return None
    if g.x[2] * g.x[3] > 64:
        return None
    return Choice("toy_1x1", f"toy: {g.x[2]}x{g.x[3]} map, one einsum", family="toy_1x1")


@pytest.fixture
def toy():
    Toy1x1.log.clear()
    register_conv_family(Toy1x1, rule=small_1x1_maps)
    yield Toy1x1
    unregister_conv_family("toy_1x1")


def _net(rng, c=16, m=32, k=1, hw=8):
    g = jc.GraphBuilder("fam")
    x = g.input("x", (1, c, hw, hw), dynamic_axes=(0, 2, 3))
    g.output(g.conv2d(x, rand(rng, m, c, k, k), rand(rng, m), padding=k // 2,
                      activation="relu", name="conv"), "y")
    return g.build()


def _check(sess, graph, rng, shape):
    x = rand(rng, *shape)
    assert_close(sess.run({"x": x})["y"], evaluate(graph, {"x": x})["y"],
                 what=f"conv at {shape}")


def test_a_registered_family_is_chosen_planned_resized_and_run(rng, toy):
    graph = _net(rng)
    sess = jc.Session(graph, jc.Config(threads=1))
    op = sess.info().ops[0]
    assert op.kernel == "toy_1x1" and "toy: 8x8 map" in op.reason
    assert ("pack", (32, 16, 1, 1)) in toy.log
    _check(sess, graph, rng, (1, 16, 8, 8))
    # another batch: planned again, not repacked
    packs = sum(1 for e in toy.log if e[0] == "pack")
    _check(sess, graph, rng, (3, 16, 8, 8))
    assert ("plan", (3, 16, 8, 8)) in toy.log
    assert sum(1 for e in toy.log if e[0] == "pack") == packs
    # a bigger map: the rule declines, the built-in table chooses, weights repacked from
    # the toy's unpack()
    _check(sess, graph, rng, (1, 16, 12, 12))
    big = sess.info().ops[0]
    assert big.kernel.startswith("conv2d_") and "toy" not in big.reason
    # and back: the toy again, packed from the built-in family's unpack()
    _check(sess, graph, rng, (1, 16, 6, 6))
    assert sess.info().ops[0].kernel == "toy_1x1"
    assert sum(1 for e in toy.log if e[0] == "pack") == packs + 1
    # the session holds one copy of the weights: the current family's (and the bias)
    assert sess.info().weight_bytes == 32 * 16 * 4 + 32 * 4


def test_a_builtin_conv_rechooses_its_family_at_a_new_size(rng):
    """3x3 64->64: Winograd on a 56x56 map, not on a 7x7 one; repacking in both
    directions keeps the results right and the weights held once."""
    graph = _net(rng, c=64, m=64, k=3, hw=56)
    # layout nchw: on AVX-512 the layout pass would run this lone conv blocked
    sess = jc.Session(graph, jc.Config(threads=1, layout="nchw"))
    assert sess.info().ops[0].kernel == "conv2d_winograd"
    _check(sess, graph, rng, (1, 64, 56, 56))
    _check(sess, graph, rng, (1, 64, 7, 7))
    small = sess.info()
    assert small.ops[0].kernel != "conv2d_winograd"
    _check(sess, graph, rng, (1, 64, 56, 56))
    again = sess.info()
    assert again.ops[0].kernel == "conv2d_winograd"
    # weights held: the current family's arrays and the bias, nothing left of the others
    # (chanvec and tiled keep 64 x 576 floats; Winograd F(m,3) (m+2)^2 x 64 x 64)
    assert small.weight_bytes == 64 * 576 * 4 + 64 * 4
    assert again.weight_bytes in (16 * 64 * 64 * 4 + 64 * 4, 36 * 64 * 64 * 4 + 64 * 4)
    assert again.weight_bytes == sess.info().ops[0].weight_bytes


def test_the_target_is_an_explicit_input_of_choice(rng):
    """precision=low int8 takes the VNNI dot kernel only when the Target says VNNI."""
    g = jc.GraphBuilder()
    x = g.input("x", (1, 32, 10, 10))
    g.output(g.conv2d(x, rand(rng, 48, 32, 3, 3), padding=1, name="conv"), "y")
    q = jc.quantize(g.build(), "int8")
    cfg = jc.Config(threads=1, precision="low", memory="low")
    without = jc.Session(q, cfg, target=jc.Target(vnni=False, threads=1)).info().ops[0]
    assert without.kernel == "conv2d_tiled_int8w" and "AVX512-VNNI" in without.reason
    from jitconv.kernels.vnni import has_vnni
    if has_vnni():
        assert jc.Session(q, cfg).info().ops[0].kernel == "conv2d_int8dot"


def test_registering_a_family_checks_what_it_is_given(toy):
    with pytest.raises(jc.RegistryError, match="'toy_1x1' is already registered"):
        register_conv_family(Toy1x1)
    with pytest.raises(jc.RegistryError, match="ConvFamily subclass with a key"):
        register_conv_family(object)
    with pytest.raises(jc.RegistryError, match="unknown conv family 'nope'; registered: .*chanvec"):
        unregister_conv_family("nope")
