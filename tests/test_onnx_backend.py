"""ONNX's own conformance tests (onnx.backend.test.BackendTest) run on jitconv.

Included: the node test cases of every op jitconv supports (NODE_OPS: op -> the test
name prefixes of its cases) and the pytorch-converted Conv / MaxPool / AvgPool cases that
ship in the onnx package. Every included case runs through
``jitconv.runtime.onnx_backend.JitconvBackend`` (import, Session, CPU kernels) unless
EXCLUDED lists it, with the reason; excluded cases are not collected, and
``test_excluded_cases_fail_with_a_clear_error`` checks that each one jitconv cannot run
is refused with a JitconvError rather than a crash or a wrong answer.
``python tests/test_onnx_backend.py`` prints the run / excluded count per op.
"""
from __future__ import annotations

import re

import pytest

onnx = pytest.importorskip("onnx")
import onnx.backend.test  # noqa: E402

from jitconv.runtime.onnx_backend import JitconvBackend  # noqa: E402

# op -> name prefixes of its node test cases ("test_<prefix>" or "test_<prefix>_...";
# the longest matching prefix decides the op)
NODE_OPS = {
    "Conv": ("conv", "basic_conv"), "ConvTranspose": ("convtranspose",), "Relu": ("relu",), "Clip": ("clip",), "Add": ("add",),
    "Sub": ("sub",), "Mul": ("mul",), "Div": ("div",), "Sum": ("sum",),
    "Sigmoid": ("sigmoid",), "HardSigmoid": ("hardsigmoid",), "HardSwish": ("hardswish",),
    "Exp": ("exp",), "Tanh": ("tanh",),
    "LeakyRelu": ("leakyrelu",), "PRelu": ("prelu",),
    "Pad": ("constant_pad", "edge_pad", "reflect_pad", "wrap_pad"), "Dropout": ("dropout",),
    "Identity": ("identity",), "LRN": ("lrn",), "Unsqueeze": ("unsqueeze",),
    "Squeeze": ("squeeze",), "Shape": ("shape",), "Gather": ("gather",),
    "Constant": ("constant",), "ConstantOfShape": ("constantofshape",),
    "ReduceMean": ("reduce_mean",), "Resize": ("resize",), "Upsample": ("upsample",),
    "Split": ("split",), "Slice": ("slice",), "MaxPool": ("maxpool",),
    "AveragePool": ("averagepool",), "GlobalAveragePool": ("globalaveragepool",),
    "Concat": ("concat",), "Flatten": ("flatten",), "Reshape": ("reshape",),
    "Transpose": ("transpose",), "Gemm": ("gemm",), "MatMul": ("matmul",),
    "Softmax": ("softmax",), "BatchNormalization": ("batchnorm",),
    "LayerNormalization": ("layer_normalization",),
    "GroupNormalization": ("group_normalization",),
    "InstanceNormalization": ("instancenorm",),
}
# pytorch-converted cases (onnx/backend/test/data/pytorch-converted), by op
PYTORCH_CONVERTED = {"Conv": "Conv", "MaxPool": "MaxPool", "AveragePool": "AvgPool",
                     "ConvTranspose": "ConvTranspose"}

# case name (without the device suffix) -> why it does not run on jitconv
EXCLUDED = {
    "test_AvgPool3d": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_AvgPool3d_stride": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_AvgPool3d_stride1_pad0_gpu_input": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_dilated": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_dilated_strided": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_groups": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_no_bias": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_stride": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_Conv3d_stride_padding": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_MaxPool3d": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_convtranspose_3d": "3-D: jitconv's Conv and ConvTranspose kernels are 1-D and 2-D",
    "test_MaxPool3d_stride": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_MaxPool3d_stride_padding": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_add_int16": "int16 data: jitconv runs float32 tensors",
    "test_add_int8": "int8 data: jitconv runs float32 tensors",
    "test_add_uint16": "uint16 data: jitconv runs float32 tensors",
    "test_add_uint32": "uint32 data: jitconv runs float32 tensors",
    "test_add_uint64": "uint64 data: jitconv runs float32 tensors",
    "test_add_uint8": "uint8 data: jitconv runs float32 tensors",
    "test_averagepool_3d_default": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_averagepool_3d_dilations_small": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_batchnorm_epsilon_training_mode": "BatchNormalization training_mode=1 (jitconv is inference only)",
    "test_batchnorm_example_training_mode": "BatchNormalization training_mode=1 (jitconv is inference only)",
    "test_clip_default_int8_inbounds": "int8 data: jitconv runs float32 tensors",
    "test_clip_default_int8_inbounds_expanded": "int8 data: jitconv runs float32 tensors",
    "test_clip_default_int8_max": "int8 data: jitconv runs float32 tensors",
    "test_clip_default_int8_max_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_default_int8_min": "int8 data: jitconv runs float32 tensors",
    "test_clip_default_int8_min_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_default_max_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_default_min_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_example_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_inbounds_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_min_greater_than_max_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_outbounds_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_clip_splitbounds_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_div_int16": "int16 data: jitconv runs float32 tensors",
    "test_div_int32_trunc": "int32 data: jitconv runs float32 tensors",
    "test_div_int8": "int8 data: jitconv runs float32 tensors",
    "test_div_uint16": "uint16 data: jitconv runs float32 tensors",
    "test_div_uint32": "uint32 data: jitconv runs float32 tensors",
    "test_div_uint64": "uint64 data: jitconv runs float32 tensors",
    "test_div_uint8": "uint8 data: jitconv runs float32 tensors",
    "test_edge_pad": "int32 data: jitconv runs float32 tensors (float edge padding is tested in tests/test_onnx_import.py)",
    "test_gather_elements_0": "GatherElements is a different op, not in jitconv's op set",
    "test_gather_elements_1": "GatherElements is a different op, not in jitconv's op set",
    "test_gather_elements_negative_indices": "GatherElements is a different op, not in jitconv's op set",
    "test_group_normalization_epsilon_expanded": "function-expanded form; its body uses Sqrt, not in jitconv's op set",
    "test_group_normalization_example_expanded": "function-expanded form; its body uses Sqrt, not in jitconv's op set",
    "test_hardsigmoid_default_expanded_ver18": "function-expanded form; its body uses Max, not in jitconv's op set",
    "test_hardsigmoid_example_expanded_ver18": "function-expanded form; its body uses Max, not in jitconv's op set",
    "test_hardsigmoid_expanded_ver18": "function-expanded form; its body uses Max, not in jitconv's op set",
    "test_identity_opt": "optional/sequence types: jitconv runs tensors only",
    "test_identity_sequence": "optional/sequence types: jitconv runs tensors only",
    "test_layer_normalization_2d_axis0": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_2d_axis0_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis0_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis1": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_2d_axis1_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis1_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis_negative_1": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_2d_axis_negative_1_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis_negative_1_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis_negative_2": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_2d_axis_negative_2_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_2d_axis_negative_2_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis0_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis0_epsilon_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis0_epsilon_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis1_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis1_epsilon_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis1_epsilon_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis2_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis2_epsilon_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis2_epsilon_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_1_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis_negative_1_epsilon_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_1_epsilon_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_2_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis_negative_2_epsilon_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_2_epsilon_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_3_epsilon": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_3d_axis_negative_3_epsilon_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_3d_axis_negative_3_epsilon_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis0": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis0_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis0_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis1": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis1_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis1_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis2": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis2_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis2_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis3": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis3_expanded": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis3_expanded_ver18": "function-expanded form; its body uses Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_1": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis_negative_1_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_1_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_2": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis_negative_2_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_2_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_3": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis_negative_3_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_3_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_4": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_4d_axis_negative_4_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_4d_axis_negative_4_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_default_axis": "LayerNormalization's Mean and InvStdDev outputs (training) are refused; Y alone is checked against this case in tests/test_norm_resize.py",
    "test_layer_normalization_default_axis_expanded": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_layer_normalization_default_axis_expanded_ver18": "function-expanded form; its body uses Neg, Reciprocal, Size and Sqrt, not in jitconv's op set",
    "test_leakyrelu_default_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_leakyrelu_example_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_leakyrelu_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_maxpool_2d_uint8": "uint8 data: jitconv runs float32 tensors",
    "test_maxpool_3d_default": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_maxpool_3d_dilations": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_maxpool_3d_dilations_use_ref_impl": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_maxpool_3d_dilations_use_ref_impl_large": "3-D: jitconv's Conv and pool kernels are 1-D and 2-D",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's second output (Indices) is not supported",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's second output (Indices) is not supported",
    "test_mul_int16": "int16 data: jitconv runs float32 tensors",
    "test_mul_int8": "int8 data: jitconv runs float32 tensors",
    "test_mul_uint16": "uint16 data: jitconv runs float32 tensors",
    "test_mul_uint32": "uint32 data: jitconv runs float32 tensors",
    "test_mul_uint64": "uint64 data: jitconv runs float32 tensors",
    "test_mul_uint8": "uint8 data: jitconv runs float32 tensors",
    "test_prelu_broadcast_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_prelu_example_expanded": "function-expanded form; its body uses Where, not in jitconv's op set",
    "test_reflect_pad": "int32 data: jitconv runs float32 tensors (float reflect padding is tested in tests/test_onnx_import.py)",
    "test_relu_expanded_ver18": "function-expanded form; its body uses Max, not in jitconv's op set",
    "test_reshape_allowzero_reordered": "Reshape allowzero=1 with a 0 in the shape is not supported",
    "test_softmax_axis_0_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_axis_0_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_axis_1_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_axis_1_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_axis_2_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_axis_2_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_default_axis_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_default_axis_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_example_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_example_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_large_number_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_large_number_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_negative_axis_expanded": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_softmax_negative_axis_expanded_ver18": "function-expanded form; its body uses ReduceSum, not in jitconv's op set",
    "test_split_to_sequence_1": "SplitToSequence is a different op, not in jitconv's op set",
    "test_split_to_sequence_2": "SplitToSequence is a different op, not in jitconv's op set",
    "test_split_to_sequence_nokeepdims": "SplitToSequence is a different op, not in jitconv's op set",
    "test_sub_int16": "int16 data: jitconv runs float32 tensors",
    "test_sub_int8": "int8 data: jitconv runs float32 tensors",
    "test_sub_uint16": "uint16 data: jitconv runs float32 tensors",
    "test_sub_uint32": "uint32 data: jitconv runs float32 tensors",
    "test_sub_uint64": "uint64 data: jitconv runs float32 tensors",
    "test_sub_uint8": "uint8 data: jitconv runs float32 tensors",
    "test_wrap_pad": "int32 data: jitconv runs float32 tensors (float wrap padding is tested in tests/test_onnx_import.py)",
}

_PREFIXES = sorted(((p, op) for op, ps in NODE_OPS.items() for p in ps),
                   key=lambda t: -len(t[0]))
_TORCH = re.compile(r"^test_(%s)" % "|".join(PYTORCH_CONVERTED.values()))


def case_op(category: str, name: str):
    """The jitconv op a case (name without device suffix) tests, or None if not included."""
    if category == "NodeModel":
        for prefix, op in _PREFIXES:
            if name == f"test_{prefix}" or name.startswith(f"test_{prefix}_"):
                return op
    elif category == "PyTorchConvertedModel":
        m = _TORCH.match(name)
        if m:
            return next(op for op, p in PYTORCH_CONVERTED.items() if p == m.group(1))
    return None


def _collect():
    """The included CPU cases as unittest classes (EXCLUDED ones left out); also
    {(category, op): [included names, excluded ones too]} for the count table."""
    backend_test = onnx.backend.test.BackendTest(JitconvBackend, __name__)
    classes, cases = {}, {}
    for cls_name, cls in backend_test.test_cases.items():
        category = cls_name[len("OnnxBackend"):-len("Test")]
        keep = False
        for attr in [a for a in vars(cls) if a.startswith("test_")]:
            base = attr[:-len("_cpu")] if attr.endswith("_cpu") else None
            op = case_op(category, base) if base else None
            if op is None:
                delattr(cls, attr)
                continue
            keep = True
            cases.setdefault((category, op), []).append(base)
            if base in EXCLUDED:
                delattr(cls, attr)
        if keep:
            classes[cls_name] = cls
    return classes, cases


_CLASSES, CASES = _collect()
globals().update(_CLASSES)


def test_every_excluded_case_exists_and_says_why():
    included = {n for names in CASES.values() for n in names}
    stale = sorted(set(EXCLUDED) - included)
    assert not stale, f"EXCLUDED names cases that are not included (renamed?): {stale}"
    assert all(len(reason) > 10 for reason in EXCLUDED.values())


def _case_models():
    """name -> (model, first data set's inputs) of every included case."""
    from onnx.backend.test.loader import load_model_tests
    import glob, os  # noqa: E401
    out = {}
    for t in load_model_tests(kind="node"):
        if t.name in EXCLUDED:
            out[t.name] = (t.model, list(t.data_sets[0][0]))
    for t in load_model_tests(kind="pytorch-converted"):
        if t.name in EXCLUDED:
            model = onnx.load(os.path.join(t.model_dir, "model.onnx"))
            files = sorted(glob.glob(os.path.join(t.model_dir, "test_data_set_0", "input_*.pb")))
            out[t.name] = (model, [onnx.numpy_helper.to_array(onnx.load_tensor(f))
                                   for f in files])
    return out


def test_excluded_cases_fail_with_a_clear_error():
    from jitconv.errors import JitconvError
    models = _case_models()
    for name, reason in EXCLUDED.items():
        if " data: " in reason:      # integer data: the backend folds it, nothing to refuse
            continue
        model, inputs = models[name]
        with pytest.raises(JitconvError):
            JitconvBackend.prepare(model).run(inputs)


# ops none of whose ONNX node cases can run, and where the op is checked instead
NO_RUNNABLE_CASE = {
    "LayerNormalization": "every case also reads the Mean and InvStdDev outputs, which "
                          "jitconv refuses (inference: Y only); tests/test_norm_resize.py "
                          "runs each case with those outputs removed and checks Y",
}


def test_every_supported_op_has_passing_cases():
    for op in set(NODE_OPS) - set(NO_RUNNABLE_CASE):
        names = CASES.get(("NodeModel", op), [])
        assert any(n not in EXCLUDED for n in names), f"no node case of {op} runs"


def conformance_table() -> str:
    """Per op: cases run (and expected to pass) / excluded."""
    rows = [("source", "op", "run", "excluded")]
    for (category, op), names in sorted(CASES.items()):
        excluded = sum(n in EXCLUDED for n in names)
        rows.append((category, op, str(len(names) - excluded), str(excluded)))
    total_run = sum(int(r[2]) for r in rows[1:])
    total_ex = sum(int(r[3]) for r in rows[1:])
    rows.append(("total", "", str(total_run), str(total_ex)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


if __name__ == "__main__":
    print(conformance_table())
