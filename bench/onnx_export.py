"""Write a builder-made jitconv Graph as an ONNX model, so both engines run the same graph.

Only what the builder emits is handled: a Conv's fused activation becomes a Relu or Clip
node after it. (Benchmark helper, not part of the library.)
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def to_onnx(graph, opset=17):
    nodes, inits = [], []
    for name, c in graph.constants.items():
        inits.append(numpy_helper.from_array(c.as_float32(), name))
    for n in graph.nodes:
        attrs = {k: v for k, v in n.attrs.items() if not k.startswith("_")}
        act = attrs.pop("activation", "")
        lo, hi = attrs.pop("activation_min", None), attrs.pop("activation_max", None)
        if n.op_type == "Clip":
            lo, hi = attrs.pop("min", -np.inf), attrs.pop("max", np.inf)
            bounds = _bounds(n.name, lo, hi, inits)
            nodes.append(helper.make_node("Clip", [n.inputs[0], *bounds], n.outputs, n.name))
            continue
        if n.op_type == "Reshape":
            shape = attrs.pop("shape")
            inits.append(numpy_helper.from_array(np.array(shape, np.int64), n.name + "_shape"))
            nodes.append(helper.make_node("Reshape", [n.inputs[0], n.name + "_shape"],
                                          n.outputs, n.name))
            continue
        if attrs.get("auto_pad") == "NOTSET":
            attrs.pop("auto_pad")
        out = n.outputs[0]
        mid = out + "_pre" if act else out
        nodes.append(helper.make_node(n.op_type, list(n.inputs), [mid], n.name, **attrs))
        if act == "relu":
            nodes.append(helper.make_node("Relu", [mid], [out], n.name + "_relu"))
        elif act == "clip":
            bounds = _bounds(n.name, lo, hi, inits)
            nodes.append(helper.make_node("Clip", [mid, *bounds], [out], n.name + "_clip"))
    vi = lambda s: helper.make_tensor_value_info(s.name, TensorProto.FLOAT, list(s.shape))
    g = helper.make_graph(nodes, graph.name, [vi(s) for s in graph.inputs],
                          [vi(s) for s in graph.outputs], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _bounds(name, lo, hi, inits):
    inits.append(numpy_helper.from_array(np.array(lo, np.float32), name + "_min"))
    inits.append(numpy_helper.from_array(np.array(hi, np.float32), name + "_max"))
    return [name + "_min", name + "_max"]
