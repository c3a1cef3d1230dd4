"""Built-in model graphs with seeded random weights (no downloads)."""
from __future__ import annotations

import numpy as np

from jitconv.runtime.builder import GraphBuilder

# MobileNetV2 (Sandler et al. 2018): expansion t, channels c, repeats n, first stride s
MOBILENET_V2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class _Weights:
    """He-initialised conv weights and small BN-like biases from one seeded generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def conv(self, cout, cin_per_group, k):
        fan_in = cin_per_group * k * k
        w = self.rng.standard_normal((cout, cin_per_group, k, k)) * np.sqrt(2.0 / fan_in)
        return w.astype(np.float32), (self.rng.standard_normal(cout) * 0.05).astype(np.float32)


def mobilenet_v2(*, input_size=224, batch=1, width=1.0, num_classes=1000, seed=0,
                 name="mobilenet_v2"):
    """A MobileNetV2-style graph: inverted residual blocks (1x1 expand, 3x3 depthwise,
    1x1 project), ReLU6, residual adds, global pool and a fully connected classifier."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    cin = _make_divisible(32 * width)
    w, b = wts.conv(cin, 3, 3)
    x = g.conv2d(x, w, b, stride=2, padding=1, activation="relu6", name="stem")
    for bi, (t, c, n, s) in enumerate(MOBILENET_V2_BLOCKS):
        cout = _make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                w, b = wts.conv(hidden, cin, 1)
                y = g.conv2d(y, w, b, activation="relu6", name=f"b{bi}_{i}_expand")
            w, b = wts.conv(hidden, 1, 3)
            y = g.conv2d(y, w, b, stride=stride, padding=1, groups=hidden, activation="relu6",
                         name=f"b{bi}_{i}_dw")
            w, b = wts.conv(cout, hidden, 1)
            y = g.conv2d(y, w * 0.5, b, name=f"b{bi}_{i}_project")
            x = g.add(x, y, name=f"b{bi}_{i}_add") if stride == 1 and cin == cout else y
            cin = cout
    last = _make_divisible(1280 * max(1.0, width))
    w, b = wts.conv(last, cin, 1)
    x = g.conv2d(x, w, b, activation="relu6", name="head")
    x = g.flatten(g.global_average_pool(x, name="pool"), name="flatten")
    fc = (wts.rng.standard_normal((num_classes, last)) * np.sqrt(1.0 / last)).astype(np.float32)
    logits = g.dense(x, fc, np.zeros(num_classes, np.float32), name="classifier")
    probs = g.softmax(logits, name="softmax")
    g.output(logits, "logits")
    g.output(probs, "probs")
    return g.build()


def resnet50(*, input_size=224, batch=1, num_classes=1000, seed=0, name="resnet50"):
    """A ResNet-50-shaped graph (bottleneck blocks 3-4-6-3, BatchNorm folded into the convs
    as the weights are generated), seeded random weights."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    w, b = wts.conv(64, 3, 7)
    x = g.conv2d(x, w, b, stride=2, padding=3, activation="relu", name="stem")
    x = g.max_pool(x, 3, stride=2, padding=1, name="stem_pool")
    cin = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            cout = width * 4
            pre = f"s{stage}_{i}"
            w, b = wts.conv(width, cin, 1)
            y = g.conv2d(x, w, b, activation="relu", name=f"{pre}_a")
            w, b = wts.conv(width, width, 3)
            y = g.conv2d(y, w, b, stride=stride, padding=1, activation="relu", name=f"{pre}_b")
            w, b = wts.conv(cout, width, 1)
            y = g.conv2d(y, w * 0.2, b, name=f"{pre}_c")
            if i == 0:
                w, b = wts.conv(cout, cin, 1)
                x = g.conv2d(x, w, b, stride=stride, name=f"{pre}_down")
            x = g.relu(g.add(x, y, name=f"{pre}_add"), name=f"{pre}_relu")
            cin = cout
    x = g.flatten(g.global_average_pool(x, name="pool"), name="flatten")
    fc = (wts.rng.standard_normal((num_classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
    g.output(g.dense(x, fc, np.zeros(num_classes, np.float32), name="classifier"), "logits")
    return g.build()


def unet(*, input_size=128, batch=1, base=32, levels=3, classes=2, seed=0, name="unet"):
    """A U-Net-shaped segmentation graph: per level two 3x3 conv + ReLU and a 2x2 max pool
    down, a 2x2 stride-2 ConvTranspose up, the skip concatenated, two 3x3 convs; a 1x1 head.
    Seeded random weights."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    cin, skips = 3, []
    for level in range(levels + 1):
        width = base * 2 ** level
        for j in range(2):
            w, b = wts.conv(width, cin, 3)
            x = g.conv2d(x, w, b, padding=1, activation="relu", name=f"down{level}_{j}")
            cin = width
        if level < levels:
            skips.append(x)
            x = g.max_pool(x, 2, name=f"pool{level}")
    for level in reversed(range(levels)):
        width = base * 2 ** level
        w, _ = wts.conv(cin, width, 2)        # torch's layout: (C_in, C_out, 2, 2)
        _, b = wts.conv(width, cin, 1)
        x = g.conv_transpose2d(x, w * 0.5, b, stride=2, name=f"up{level}")
        x = g.concat([x, skips[level]], axis=1, name=f"skip{level}")
        cin = 2 * width
        for j in range(2):
            w, b = wts.conv(width, cin, 3)
            x = g.conv2d(x, w, b, padding=1, activation="relu", name=f"dec{level}_{j}")
            cin = width
    w, b = wts.conv(classes, cin, 1)
    g.output(g.conv2d(x, w, b, name="head"), "logits")
    return g.build()


def conv_chain(*, layers=20, channels=16, size=32, seed=0, name="conv_chain"):
    """A plain chain of 3x3 conv + ReLU layers (used to test the memory planner)."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("x", (1, channels, size, size))
    for i in range(layers):
        w, b = wts.conv(channels, channels, 3)
        x = g.conv2d(x, w * 0.7, b, padding=1, activation="relu", name=f"conv{i}")
    g.output(x, "y")
    return g.build()


# -- other architecture families (issue 11's set): concat-heavy, shuffles, fire modules,
# big dense layers. Shapes follow the published networks; BatchNorm is folded into the
# conv weights as they are generated, as in resnet50.

def _head(g, wts, x, cin, num_classes, name="classifier"):
    x = g.flatten(g.global_average_pool(x, name="pool"), name="flatten")
    fc = (wts.rng.standard_normal((num_classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
    return g.dense(x, fc, np.zeros(num_classes, np.float32), name=name)


def _conv(g, wts, x, cin, cout, k, *, stride=1, groups=1, act="relu", name):
    w, b = wts.conv(cout, cin // groups, k)
    return g.conv2d(x, w, b, stride=stride, padding=k // 2, groups=groups, activation=act,
                    name=name)


def densenet(*, input_size=224, batch=1, growth=32, blocks=(6, 12, 24, 16), num_classes=1000,
             seed=0, name="densenet"):
    """A DenseNet-121-shaped graph: dense blocks whose layers (1x1 to 4 x growth, 3x3 to
    growth) each concatenate their output to all before them, 1x1 + 2x2 average-pool
    transitions halving the channels. 58 Concats at the default size."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    c = 2 * growth
    x = _conv(g, wts, x, 3, c, 7, stride=2, name="stem")
    x = g.max_pool(x, 3, stride=2, padding=1, name="stem_pool")
    for bi, n in enumerate(blocks):
        for i in range(n):
            y = _conv(g, wts, x, c, 4 * growth, 1, name=f"d{bi}_{i}_a")
            y = _conv(g, wts, y, 4 * growth, growth, 3, name=f"d{bi}_{i}_b")
            x = g.concat([x, y], axis=1, name=f"d{bi}_{i}_cat")
            c += growth
        if bi < len(blocks) - 1:
            x = _conv(g, wts, x, c, c // 2, 1, name=f"t{bi}")
            x = g.average_pool(x, 2, stride=2, name=f"t{bi}_pool")
            c //= 2
    g.output(_head(g, wts, x, c, num_classes), "logits")
    return g.build()


# GoogLeNet's inception modules: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
INCEPTION_MODULES = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), "pool",
                     ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64),
                     ("4c", 128, 128, 256, 24, 64, 64), ("4d", 112, 144, 288, 32, 64, 64),
                     ("4e", 256, 160, 320, 32, 128, 128), "pool",
                     ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]


def inception(*, input_size=224, batch=1, num_classes=1000, seed=0, name="inception"):
    """A GoogLeNet (Inception v1)-shaped graph: four-branch modules (1x1; 1x1 -> 3x3;
    1x1 -> 5x5; 3x3 max pool -> 1x1) concatenated along channels."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    x = _conv(g, wts, x, 3, 64, 7, stride=2, name="stem")
    x = g.max_pool(x, 3, stride=2, padding=1, name="stem_pool")
    x = _conv(g, wts, x, 64, 64, 1, name="stem_b")
    x = _conv(g, wts, x, 64, 192, 3, name="stem_c")
    x = g.max_pool(x, 3, stride=2, padding=1, name="stem_pool2")
    c = 192
    for m in INCEPTION_MODULES:
        if m == "pool":
            x = g.max_pool(x, 3, stride=2, padding=1, name=f"pool_{c}")
            continue
        tag, c1, r3, c3, r5, c5, pp = m
        b1 = _conv(g, wts, x, c, c1, 1, name=f"i{tag}_1")
        b2 = _conv(g, wts, _conv(g, wts, x, c, r3, 1, name=f"i{tag}_3r"), r3, c3, 3,
                   name=f"i{tag}_3")
        b3 = _conv(g, wts, _conv(g, wts, x, c, r5, 1, name=f"i{tag}_5r"), r5, c5, 5,
                   name=f"i{tag}_5")
        b4 = _conv(g, wts, g.max_pool(x, 3, stride=1, padding=1, name=f"i{tag}_pool"), c, pp,
                   1, name=f"i{tag}_pp")
        x = g.concat([b1, b2, b3, b4], axis=1, name=f"i{tag}_cat")
        c = c1 + c3 + c5 + pp
    g.output(_head(g, wts, x, c, num_classes), "logits")
    return g.build()


def _shuffle(g, x, groups, name):
    n, c, h, w = x.shape
    x = g.reshape(x, [n, groups, c // groups, h, w], name=f"{name}_r1")
    x = g.transpose(x, [0, 2, 1, 3, 4], name=f"{name}_t")
    return g.reshape(x, [n, c, h, w], name=f"{name}_r2")


def shufflenet_v2(*, input_size=224, batch=1, stages=(116, 232, 464), repeats=(4, 8, 4),
                  num_classes=1000, seed=0, name="shufflenet_v2"):
    """A ShuffleNetV2 (1.0x)-shaped graph: units that split the channels in half (Slice),
    run 1x1 -> depthwise 3x3 -> 1x1 on one half, concatenate and shuffle the channels
    (Reshape -> Transpose -> Reshape); stride-2 units run both halves."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    x = _conv(g, wts, x, 3, 24, 3, stride=2, name="stem")
    x = g.max_pool(x, 3, stride=2, padding=1, name="stem_pool")
    c = 24
    for si, (cout, n) in enumerate(zip(stages, repeats)):
        half = cout // 2
        for i in range(n):
            pre = f"s{si}_{i}"
            if i == 0:      # stride 2: both branches see the whole input
                a = _conv(g, wts, x, c, c, 3, stride=2, groups=c, act=None, name=f"{pre}_adw")
                a = _conv(g, wts, a, c, half, 1, name=f"{pre}_a1")
                src, cin = x, c
            else:
                a = g.slice(x, starts=[0], ends=[half], axes=[1], name=f"{pre}_keep")
                src = g.slice(x, starts=[half], ends=[cout], axes=[1], name=f"{pre}_split")
                cin = half
            s = 2 if i == 0 else 1
            b = _conv(g, wts, src, cin, half, 1, name=f"{pre}_b1")
            b = _conv(g, wts, b, half, half, 3, stride=s, groups=half, act=None,
                      name=f"{pre}_bdw")
            b = _conv(g, wts, b, half, half, 1, name=f"{pre}_b2")
            x = _shuffle(g, g.concat([a, b], axis=1, name=f"{pre}_cat"), 2, f"{pre}_shuffle")
            c = cout
    x = _conv(g, wts, x, c, 1024, 1, name="last")
    g.output(_head(g, wts, x, 1024, num_classes), "logits")
    return g.build()


# SqueezeNet 1.1's fire modules: (squeeze, expand 1x1 = expand 3x3); "pool" a 3x3/2 max pool
SQUEEZENET_FIRES = [(16, 64), (16, 64), "pool", (32, 128), (32, 128), "pool", (48, 192),
                    (48, 192), (64, 256), (64, 256)]


def squeezenet(*, input_size=224, batch=1, num_classes=1000, seed=0, name="squeezenet"):
    """A SqueezeNet 1.1-shaped graph: fire modules (1x1 squeeze, then 1x1 and 3x3 expands
    concatenated) and a 1x1 conv classifier before the global pool."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    w, b = wts.conv(64, 3, 3)
    x = g.conv2d(x, w, b, stride=2, activation="relu", name="stem")
    x = g.max_pool(x, 3, stride=2, ceil_mode=True, name="stem_pool")
    c = 64
    for i, f in enumerate(SQUEEZENET_FIRES):
        if f == "pool":
            x = g.max_pool(x, 3, stride=2, ceil_mode=True, name=f"pool{i}")
            continue
        sq, ex = f
        s = _conv(g, wts, x, c, sq, 1, name=f"f{i}_squeeze")
        x = g.concat([_conv(g, wts, s, sq, ex, 1, name=f"f{i}_e1"),
                      _conv(g, wts, s, sq, ex, 3, name=f"f{i}_e3")], axis=1, name=f"f{i}_cat")
        c = 2 * ex
    x = _conv(g, wts, x, c, num_classes, 1, name="classifier")
    g.output(g.flatten(g.global_average_pool(x, name="pool"), name="flatten"), "logits")
    return g.build()


VGG11 = [64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool"]


def vgg(*, input_size=224, batch=1, width=0.5, hidden=1024, num_classes=1000, seed=0,
        name="vgg"):
    """A VGG-11-shaped graph (channels scaled by ``width``) with its big dense head: the
    last feature map flattened (C x 7 x 7 at 224) into two dense layers of ``hidden``."""
    g = GraphBuilder(name)
    wts = _Weights(seed)
    x = g.input("input", (batch, 3, input_size, input_size))
    c = 3
    for i, v in enumerate(VGG11):
        if v == "pool":
            x = g.max_pool(x, 2, stride=2, name=f"pool{i}")
            continue
        x = _conv(g, wts, x, c, int(v * width), 3, name=f"conv{i}")
        c = int(v * width)
    x = g.flatten(x, name="flatten")
    k = x.shape[1]
    for j, n in enumerate((hidden, hidden)):
        w = (wts.rng.standard_normal((n, k)) * np.sqrt(2.0 / k)).astype(np.float32)
        x = g.relu(g.dense(x, w, np.zeros(n, np.float32), name=f"fc{j}"), name=f"fc{j}_relu")
        k = n
    w = (wts.rng.standard_normal((num_classes, k)) * np.sqrt(1.0 / k)).astype(np.float32)
    g.output(g.dense(x, w, np.zeros(num_classes, np.float32), name="classifier"), "logits")
    return g.build()


# The CPU-speed yardstick layers: name -> (C, M, k, stride, pad, H, groups), batch 1, H x H
CONV_LAYERS = {
    "A": (64, 64, 3, 1, 1, 56, 1),
    "B": (256, 64, 1, 1, 0, 56, 1),
    "C": (256, 256, 3, 1, 1, 14, 1),
    "D": (144, 144, 3, 1, 1, 56, 144),
    "E": (3, 32, 3, 2, 1, 224, 1),
    "F": (1024, 1024, 1, 1, 0, 14, 1),
    "G": (128, 256, 3, 2, 1, 28, 1),
    "H": (240, 240, 5, 1, 2, 14, 240),
    "I": (32, 192, 1, 1, 0, 112, 1),
}


def conv_layer_label(name: str) -> str:
    """"A 3x3 64->64 56", "D dw3x3 C144 56", "E 3x3/2 3->32 224", ..."""
    c, m, k, s, _, h, groups = CONV_LAYERS[name]
    shape = f"{k}x{k}" + (f"/{s}" if s > 1 else "")
    if groups == c == m:
        return f"{name} dw{shape} C{c} {h}"
    return f"{name} {shape} {c}->{m} {h}"


def conv_layer(name: str, *, activation=None, seed=0):
    """One yardstick layer (CONV_LAYERS[name]) as a graph with input "x" and output "y"."""
    if name not in CONV_LAYERS:
        raise KeyError(f"unknown layer {name!r}; layers are {', '.join(CONV_LAYERS)}")
    c, m, k, s, p, h, groups = CONV_LAYERS[name]
    rng = np.random.default_rng(seed)
    g = GraphBuilder(f"layer_{name}")
    x = g.input("x", (1, c, h, h))
    w = (rng.standard_normal((m, c // groups, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    g.output(g.conv2d(x, w, b, stride=s, padding=p, groups=groups, activation=activation,
                      name="conv"), "y")
    return g.build()


MODELS = {"mobilenet_v2": mobilenet_v2, "resnet50": resnet50, "conv_chain": conv_chain}
# issue 11's other architecture families (bench/compare_engines.py --models FAMILIES)
FAMILIES = {"densenet": densenet, "inception": inception, "shufflenet_v2": shufflenet_v2,
            "squeezenet": squeezenet, "vgg": vgg}
MODELS.update(FAMILIES)
