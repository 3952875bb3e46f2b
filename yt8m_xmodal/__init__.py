"""yt8m_xmodal: temporal audio-video retrieval on YouTube-8M features.

The data path, top-down:

    records on disk -> readers -> layers (chunk, recurrent, attention) -> towers
        -> models -> losses / subspace -> training / evaluation / inference

The public API is importable from here (`yt8m_xmodal.train`,
`yt8m_xmodal.TrainConfig`, ...; see `__all__` and README's "Python API").
Names are imported on first use, so `import yt8m_xmodal` stays cheap and
does not load TensorFlow.
"""

__version__ = "0.1.0"

# Public name -> module (relative to this package) that defines it.
_API = {
    # Configuration: every default once, as typed dataclasses.
    "DataConfig": "config",
    "TrainConfig": "config",
    "ChunkAttentionConfig": "config",
    "FrameLstmConfig": "config",
    "MeanPoolConfig": "config",
    "VideoLevelMlpConfig": "config",
    "DeepCcaConfig": "config",
    "ClusterCcaConfig": "config",
    "SoftCcaConfig": "config",
    "InfoNceConfig": "config",
    "TripletConfig": "config",
    "FRAME_LEVEL_RECIPE": "config",
    "VIDEO_LEVEL_RECIPE": "config",
    "recipe": "config",
    "read_model_flags": "rundir",
    # Errors the library raises for bad configuration or data.
    "ConfigError": "errors",
    "DataError": "errors",
    # Readers of YT8M TFRecords.
    "YT8MFrameFeatureReader": "readers",
    "YT8MAggregatedFeatureReader": "readers",
    "reader_for": "readers",
    # Models and losses.
    "ChunkAttentionModel": "models",
    "FrameLstmModel": "models",
    "MeanPoolModel": "models",
    "VideoLevelMlpModel": "models",
    "build_model": "modeling",
    "DeepCCALoss": "losses",
    "ClusterCCALoss": "losses",
    "SoftCCALoss": "losses",
    "InfoNCELoss": "losses",
    "TripletLoss": "losses",
    "build_loss": "losses",
    "LinearCCA": "subspace",
    # Train, evaluate, embed.
    "train": "training",
    "TrainResult": "training",
    "restore": "modeling",
    "load_export": "modeling",
    "ExportedModel": "modeling",
    "latest_export": "modeling",
    "embed_dataset": "evaluation",
    "score": "evaluation",
    "evaluate_checkpoint": "evaluation",
    "format_table": "evaluation",
    "run_inference": "inference",
    # Data tools.
    "generate_dataset": "tools.synthetic",
    "ensure_demo_data": "tools.synthetic",
    "extract_subset": "subset",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
