"""Write a builder-made jitconv Graph as an ONNX model, so both engines run the same graph.

Only what the builder emits is handled: a Conv's fused activation becomes a Relu or Clip
node after it. (Benchmark helper, not part of the library.)
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def to_onnx(graph, opset=17):
    nodes, inits = [], []
    # ConvTranspose weights are kept in conv layout (M, C/g, KH, KW); ONNX wants (C, M/g, ...)
    convt = {n.inputs[1]: int(n.attrs.get("group", 1)) for n in graph.nodes
             if n.op_type == "ConvTranspose"}
    for name, c in graph.constants.items():
        w = c.as_float32()
        if name in convt:
            g = convt[name]
            m, cg, kh, kw = w.shape
            w = np.ascontiguousarray(w.reshape(g, m // g, cg, kh, kw).transpose(0, 2, 1, 3, 4)
                                     .reshape(g * cg, m // g, kh, kw))
        inits.append(numpy_helper.from_array(w, name))
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
        if n.op_type == "Slice":       # attributes in the IR, inputs in ONNX since opset 10
            extra = []
            for key in ("starts", "ends", "axes", "steps"):
                if key in attrs:
                    inits.append(numpy_helper.from_array(np.array(attrs.pop(key), np.int64),
                                                         f"{n.name}_{key}"))
                    extra.append(f"{n.name}_{key}")
            nodes.append(helper.make_node("Slice", [n.inputs[0], *extra], n.outputs, n.name))
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
