"""Inception-v3 of 2015, the video half of YT8M's features.

YT8M's frame features come from `classify_image_graph_def.pb` (in
inception-2015-12-05.tgz): a frozen TF1 graph that takes one uint8 H x W x 3
RGB image at `DecodeJpeg:0`, resizes it bilinearly to 299 x 299, scales it by
(x - 128) / 128 itself, and gives the 2048-d `pool_3/_reshape:0` [1, 2048]
(starter code, feature_extractor/feature_extractor.py). It is not Keras'
InceptionV3: other weights and 1008 classes. The graph is imported as is and
pruned to that input and output; its input holds one image, so frames go
through it one at a time.
"""

import numpy as np
import tensorflow as tf

INPUT_TENSOR = "DecodeJpeg:0"
OUTPUT_TENSOR = "pool_3/_reshape:0"
FEATURE_SIZE = 2048


def read_graph_def(path):
    """The GraphDef of `path`, checked to have YT8M's input and output.

    Raises:
      ValueError: naming the file, when it is not such a graph.
    """
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:  # protobuf's DecodeError has no stable home
        raise ValueError(f"{path}: not a TensorFlow GraphDef ({e})") from None
    names = {node.name for node in graph_def.node}
    for tensor in (INPUT_TENSOR, OUTPUT_TENSOR):
        if tensor.split(":")[0] not in names:
            raise ValueError(f"{path}: no {tensor} (not Inception-v3's "
                             "classify_image_graph_def.pb)")
    return graph_def


class InceptionV3Graph:
    """The imported graph: uint8 RGB frames -> float32 [T, 2048] (before
    PCA).

    Args:
      graph_path: `classify_image_graph_def.pb`, or a stand-in with the same
        tensor names.
    """

    def __init__(self, graph_path):
        graph_def = read_graph_def(graph_path)

        def import_graph():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        self._function = wrapped.prune(
            feeds=wrapped.graph.get_tensor_by_name(INPUT_TENSOR),
            fetches=wrapped.graph.get_tensor_by_name(OUTPUT_TENSOR))

    def embed(self, frames):
        """uint8 [T, H, W, 3] RGB -> float32 [T, 2048]."""
        out = [np.reshape(self._function(tf.constant(frame, tf.uint8)).numpy(),
                          [FEATURE_SIZE]) for frame in frames]
        if not out:
            return np.zeros([0, FEATURE_SIZE], np.float32)
        return np.stack(out).astype(np.float32)
