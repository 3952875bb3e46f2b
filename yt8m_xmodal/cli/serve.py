r"""Serves a model's search index over HTTP, with a page to drop songs on.

    pip install -e ".[serve]"
    yt8m-xmodal-serve --train_dir=/tmp/yt8m_xmodal_demo \
        --index_dir=/tmp/video_index --gallery_data_pattern='/data/videos*'

then open http://127.0.0.1:8080/ (the API's documentation is at /docs).
The model is the newest export in --train_dir, or --export_dir. The index is
built by `yt8m-xmodal-index build` from this model's embeddings; its
modality is the gallery's and the queries are of the other one.
"""

import dataclasses
import logging

from absl import flags

from yt8m_xmodal import cli
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import modeling
from yt8m_xmodal.errors import ConfigError

FLAGS = flags.FLAGS
log = logging.getLogger("yt8m_xmodal")


_field = config_lib.option


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """The service's options."""

    train_dir: str = _field("", "The directory train.py wrote; its newest "
                            "export is served.")
    export_dir: str = _field("", "An export directory to serve instead of "
                             "--train_dir's newest.")
    index_dir: str = _field("", "The index to search, built by "
                            "yt8m-xmodal-index from this model's "
                            "embeddings.")
    gallery_data_pattern: str = _field(
        "", "Records of the gallery (optional): their chunk attention is "
        "shown beside each match.")
    weights_dir: str = _field(
        "", "The feature extractors' weights (yt8m_xmodal.extraction), for "
        "media uploads; without it only TFRecords are taken.")
    host: str = _field("127.0.0.1", "Address to listen on.")
    port: int = _field(8080, "Port to listen on.")
    max_upload_mb: int = _field(50, "Largest upload taken, in MiB.")

    def __post_init__(self):
        if bool(self.train_dir) == bool(self.export_dir):
            raise ConfigError(
                "{train_dir} and {export_dir} are both "
                + ("given: give one" if self.train_dir
                   else "empty: give the model to serve"),
                train_dir=self.train_dir, export_dir=self.export_dir)
        if not self.index_dir:
            raise ConfigError("{index_dir} is empty: build one with "
                              "yt8m-xmodal-index build", index_dir="")
        if not 0 <= self.port <= 65535:
            raise ConfigError("{port} must be in 0..65535", port=self.port)
        if self.max_upload_mb < 1:
            raise ConfigError("{max_upload_mb} must be >= 1",
                              max_upload_mb=self.max_upload_mb)


cli.define_config_flags(ServeConfig)


def _extractor(weights_dir):
    """(extractor or None, why media uploads are refused without one)."""
    if not weights_dir:
        return None, ("media files need feature extraction: start the "
                      "service with --weights_dir")
    try:
        from yt8m_xmodal import extraction  # noqa: PLC0415 - optional
    except ImportError as e:
        log.warning("--weights_dir is set but feature extraction is not "
                    "available (%s): media uploads will be refused", e)
        return None, ("this installation has no feature extraction "
                      f"(yt8m_xmodal.extraction: {e})")
    return extraction.FeatureExtractor(weights_dir), ""


def build_app(config):
    """The app of a `ServeConfig`: the export and index loaded once."""
    from yt8m_xmodal.service import app as app_lib  # noqa: PLC0415
    from yt8m_xmodal.service import engine as engine_lib  # noqa: PLC0415
    export_dir = config.export_dir or modeling.latest_export_or_error(
        config.train_dir)
    engine = engine_lib.SearchEngine(export_dir, config.index_dir,
                                     config.gallery_data_pattern)
    extractor, missing = _extractor(config.weights_dir)
    app = app_lib.create_app(engine, config.max_upload_mb << 20, extractor,
                             missing)
    return app, engine


def main(argv):
    del argv
    try:
        import uvicorn  # noqa: PLC0415 - the [serve] extra
    except ImportError:
        raise cli.FlagError('the service needs the serve extra: pip install '
                            '-e ".[serve]"') from None
    config = ServeConfig(**{f.name: FLAGS[f.name].value
                            for f in dataclasses.fields(ServeConfig)})
    app, engine = build_app(config)
    print(f"serving {len(engine)} {engine.gallery_modality}s of "
          f"{config.index_dir} with {engine.export_dir} on "
          f"http://{config.host}:{config.port}/ (API: /docs)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0


def run():
    """The command's entry point (console script and python -m)."""
    cli.run(main)


if __name__ == "__main__":
    run()
