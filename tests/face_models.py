"""Test-made ONNX models with buffalo_l's interfaces, so insightface's real model zoo loads and runs them.

They are not face models. They follow a rule a test can control with pixels, on 640 x 640 detector
input where a "face" is a 32 x 32 block aligned to the 32-pixel grid:
- detector (SCRFD interface: 9 outputs, strides 8/16/32, 2 anchors, 5 keypoints): at stride 32 a cell's
  score is 0.9 x clip(mean green, 0, 1) on insightface's (pixel - 127.5) / 128 input, so a block with
  green >= 200 is detected (score rises with green) and darker texture is not; the box is centred on
  the cell, 3 cells wide at red 0 and about 6 at red 255; keypoints sit where ArcFace's template
  expects eyes, nose and mouth in that box. Strides 8 and 16 never fire.
- recogniser (ArcFace interface, 112 x 112 -> 64-d): a fixed random projection of the 8 x 8-pooled
  aligned crop, so identical face patches give identical embeddings and different textures do not.
- 3D landmarks (1k3d68 interface, 3309 outputs): insightface's own 68-point mean shape turned by a
  fixed yaw and pitch, whatever the input; insightface's pose estimate recovers those angles.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 13)]
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
PACK_MEMBERS = ("det_10g.onnx", "w600k_r50.onnx", "1k3d68.onnx")


def _model(nodes: list, inputs: list, outputs: list, initializers: list, name: str) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, initializers), opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def detector() -> onnx.ModelProto:
    init = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
            (("zero", 0.0), ("lo", 0.0), ("hi", 1.0), ("half", 0.5), ("one_half", 1.5))]
    init += [numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
             numpy_helper.from_array(np.array([[-0.5, -0.5, 0.5, 0.5]], np.float32), "box_shift"),
             numpy_helper.from_array(np.ones((1, 4), np.float32) * 1.5, "box_scale"),
             numpy_helper.from_array((3.0 * (ARCFACE_TEMPLATE / 112.0 - 0.5)).reshape(1, 10), "kps_scale"),
             *(numpy_helper.from_array(np.array([v], np.int64), n) for n, v in
               (("c0", 0), ("c1", 1), ("c2", 2), ("ax1", 1)))]
    nodes = []
    for s, gain in ((8, 0.0), (16, 0.0), (32, 0.9)):
        init.append(numpy_helper.from_array(np.array(gain, np.float32), f"gain{s}"))

        def rows(src: str, out: str, s: int = s) -> list:  # (1,1,h,w) -> one row per anchor (2 per cell)
            return [helper.make_node("Reshape", [src, "col"], [f"{out}_c"], name=f"{out}_col"),
                    helper.make_node("Concat", [f"{out}_c", f"{out}_c"], [f"{out}_2"], axis=1, name=f"{out}_anchors"),
                    helper.make_node("Reshape", [f"{out}_2", "col"], [out], name=f"{out}_rows")]

        nodes += [helper.make_node("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s],
                                   name=f"pool{s}"),
                  helper.make_node("Slice", [f"pool{s}", "c1", "c2", "ax1"], [f"green{s}"], name=f"green{s}"),
                  helper.make_node("Slice", [f"pool{s}", "c0", "c1", "ax1"], [f"red{s}"], name=f"red{s}")]
        nodes += rows(f"green{s}", f"g{s}") + rows(f"red{s}", f"r{s}")
        nodes += [helper.make_node("Clip", [f"g{s}", "lo", "hi"], [f"gc{s}"], name=f"clip{s}"),
                  helper.make_node("Mul", [f"gc{s}", f"gain{s}"], [f"score_{s}"], name=f"score{s}"),
                  helper.make_node("Mul", [f"r{s}", "half"], [f"rh{s}"], name=f"rhalf{s}"),
                  helper.make_node("Add", [f"rh{s}", "one_half"], [f"f{s}"], name=f"size{s}"),  # 1..2
                  helper.make_node("Mul", [f"f{s}", "box_scale"], [f"bs{s}"], name=f"bscale{s}"),
                  helper.make_node("Add", [f"bs{s}", "box_shift"], [f"bbox_{s}"], name=f"bbox{s}"),
                  helper.make_node("Mul", [f"f{s}", "kps_scale"], [f"ks{s}"], name=f"kscale{s}"),
                  helper.make_node("Add", [f"ks{s}", "half"], [f"kps_{s}"], name=f"kps{s}")]
    outputs = [helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [f"n{s}", width])
               for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)) for s in (8, 16, 32)]
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])]
    return _model(nodes, inputs, outputs, init, "test_scrfd")


def recogniser(dim: int = 64, seed: int = 0) -> onnx.ModelProto:
    weights = np.random.default_rng(seed).normal(0, 1, (3 * 14 * 14, dim)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
             helper.make_node("MatMul", ["flat", "W"], ["embedding"], name="project")]
    return _model(nodes, [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
                  [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
                  [numpy_helper.from_array(weights, "W")], "test_arcface")


def landmarks_3d(yaw: float, pitch: float) -> onnx.ModelProto:
    from insightface.data import get_object

    mean = get_object("meanshape_68.pkl").astype(np.float64)
    y, p = np.deg2rad(yaw), np.deg2rad(pitch)
    turn_y = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    turn_x = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    points = np.zeros((1103, 3))
    points[-68:] = 0.5 * mean @ (turn_x @ turn_y).T
    nodes = [helper.make_node("ReduceMean", ["data"], ["m"], axes=[1, 2, 3], keepdims=0, name="mean"),
             helper.make_node("Mul", ["m", "zero"], ["z"], name="zeros"),
             helper.make_node("Unsqueeze", ["z", "axis"], ["z1"], name="unsqueeze"),
             helper.make_node("Add", ["z1", "points"], ["fc1"], name="points_out")]
    init = [numpy_helper.from_array(points.reshape(1, -1).astype(np.float32), "points"),
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "axis")]
    return _model(nodes, [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
                  [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3309])], init, "test_lmk3d")


def buffalo_like_zip(path: Path, yaw: float = 0.0, pitch: float = 0.0) -> Path:
    """A zip laid out like buffalo_l.zip (same member names) holding the test-made models."""
    models = dict(zip(PACK_MEMBERS, (detector(), recogniser(), landmarks_3d(yaw, pitch))))
    with zipfile.ZipFile(path, "w") as zf:
        for name, model in models.items():
            zf.writestr(name, model.SerializeToString())
        zf.writestr("genderage.onnx", b"not extracted: the face scorers do not use it")
    return path


def texture(seed: int, size: int) -> np.ndarray:
    """A person's 'face': blocky random texture, dark enough never to be detected itself."""
    cells = np.random.default_rng(seed).integers(0, 2, (size // 8 + 1, size // 8 + 1, 3)) * 150
    return np.kron(cells, np.ones((8, 8, 1)))[:size, :size].astype(np.uint8)


def face_image(faces: list[tuple[int, int, int]], size: tuple[int, int] = (640, 640), green: int = 255,
               red: int = 0, seed: int = 0) -> np.ndarray:
    """RGB image (width, height) = `size` with a test 'face' of person `p` on grid cell (row, col) for
    each (row, col, p): the detectable block plus that person's texture over the face box."""
    w, h = size
    img = np.random.default_rng(1000 + seed).integers(0, 50, (h, w, 3)).astype(np.uint8)
    for row, col, person in faces:
        y, x = row * 32, col * 32
        pad = 48 if red == 0 else 96  # half the box side beyond the block's centre
        y0, x0, y1, x1 = max(0, y + 16 - pad), max(0, x + 16 - pad), min(h, y + 16 + pad), min(w, x + 16 + pad)
        patch = texture(person, 2 * pad)
        img[y0:y1, x0:x1] = patch[y0 - (y + 16 - pad):y1 - (y + 16 - pad), x0 - (x + 16 - pad):x1 - (x + 16 - pad)]
        img[y:y + 32, x:x + 32] = (red, green, 0)
    return img
