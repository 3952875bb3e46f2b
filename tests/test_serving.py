"""The exported model answers one-modality queries: a song alone, a video
alone, through the SavedModel's signatures and the Python API."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_FEATURE_SIZES
import prewarmed
from yt8m_xmodal import config as config_lib
from yt8m_xmodal import modeling
from yt8m_xmodal import readers
from yt8m_xmodal import training


@pytest.fixture(scope="module")
def exported(chunk_export):
    """The export, loaded once for the module's tests."""
    return modeling.load_export(chunk_export)


def _records_and_batch(config, pattern):
    files = readers.resolve_files(pattern)
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    batch = next(iter(readers.reader_for(config.data).batches(
        pattern, len(serialized))))
    return serialized, batch


def _assert_embeds_like(alone, both, modality):
    """One modality's embedding and attention equal the two-stream ones."""
    np.testing.assert_allclose(alone["embedding"], both[modality], atol=1e-5)
    np.testing.assert_allclose(alone["attention"],
                               both[f"{modality}_attention"], atol=1e-6)


def test_one_modality_embeddings_equal_the_two_stream_ones(
        exported, tiny_frame_data):
    model = exported
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_frame_data}/validate-*")
    both = model.embed_records(serialized)
    num_frames = batch["num_frames"].numpy()
    assert np.array_equal(both["id"], batch["id"].numpy())
    for modality in ("audio", "video"):
        embed = getattr(model, f"embed_{modality}")
        _assert_embeds_like(embed(batch[modality].numpy(), num_frames),
                            both, modality)


def _without(serialized, feature, frame_level=True):
    """The records with one feature (list) removed."""
    out = []
    for record in serialized:
        if frame_level:
            example = tf.train.SequenceExample.FromString(record)
            del example.feature_lists.feature_list[feature]
        else:
            example = tf.train.Example.FromString(record)
            del example.features.feature[feature]
        out.append(example.SerializeToString())
    return out


@pytest.mark.parametrize("modality,other", [("audio", "rgb"),
                                            ("video", "audio")])
def test_records_with_one_modality_embed_like_the_two_stream_path(
        exported, tiny_frame_data, modality, other):
    model = exported
    serialized, _ = _records_and_batch(model.config,
                                       f"{tiny_frame_data}/validate-*")
    both = model.embed_records(serialized)
    one = _without(serialized, other)
    alone = getattr(model, f"embed_{modality}_records")(one)
    assert np.array_equal(alone["id"], both["id"])
    _assert_embeds_like(alone, both, modality)
    # Records without the query's modality are refused, naming the list.
    name = "rgb" if modality == "video" else "audio"
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"records without frames in \\*'" + name):
        getattr(model, f"embed_{modality}_records")(_without(serialized, name))


def test_attention_weights_cover_only_the_valid_chunks(
        exported, tiny_frame_data):
    model = exported
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_frame_data}/validate-*")
    out = model.embed_records(serialized)
    chunk = model.config.model_config.chunk_size
    valid_chunks = -(-batch["num_frames"].numpy() // chunk)
    for modality in ("audio", "video"):
        weights = out[f"{modality}_attention"]
        positions = np.arange(weights.shape[1])[None, :]
        valid = positions < valid_chunks[:, None]
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(weights[~valid], 0.0)
        assert (weights[valid] > 0).all()


def test_the_python_api_example_runs(chunk_export, exported,
                                     tiny_frame_data):
    train_dir = chunk_export.split("/export/")[0]
    model = exported
    _, batch = _records_and_batch(model.config, f"{tiny_frame_data}/test-*")
    globs = {"load_export": modeling.load_export,
             "latest_export": modeling.latest_export, "train_dir": train_dir,
             "audio_frames": batch["audio"].numpy(),
             "num_frames": batch["num_frames"].numpy()}
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(modeling.ExportedModel,
                                             globs=globs):
        runner.run(test)
    assert runner.tries >= 3 and runner.failures == 0


def test_video_level_exports_embed_one_modality_too(tiny_video_data,
                                                    tmp_path):
    cfg = config_lib.VIDEO_LEVEL_RECIPE.replace(
        data=config_lib.DataConfig(frame_features=False,
                                   feature_sizes=TINY_FEATURE_SIZES,
                                   num_classes=4),
        model_config={"embedding_dim": 4, "hidden_units": 16}, subspace_dim=2,
        train_data_pattern=f"{tiny_video_data}/train-*",
        train_dir=str(tmp_path / "run"), batch_size=32, max_steps=2,
        export_model_steps=2)
    training.train(cfg)
    model = modeling.load_export(modeling.latest_export(cfg.train_dir))
    serialized, batch = _records_and_batch(
        model.config, f"{tiny_video_data}/validate-*")
    both = model.embed_records(serialized)
    assert "audio_attention" not in both
    alone = model.embed_audio_records(_without(serialized, "mean_rgb",
                                               frame_level=False))
    np.testing.assert_allclose(alone["embedding"], both["audio"], atol=1e-5)
    for modality in ("audio", "video"):
        alone = getattr(model, f"embed_{modality}")(batch[modality].numpy())
        assert set(alone) == {"embedding"}
        np.testing.assert_allclose(alone["embedding"], both[modality],
                                   atol=1e-5)


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _inference(*args):
    import sys
    from conftest import REPO_ROOT
    out = prewarmed.run([sys.executable, str(REPO_ROOT / "inference.py"),
                         *args], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _csv_rows(path):
    import csv
    with open(path) as f:
        return {(r["QueryId"], r["QueryModality"]): r["MatchScorePairs"]
                for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def song_search(chunk_export, exported, tiny_frame_data, tmp_path_factory):
    """Songs (validation records without rgb) searched against a gallery of
    the same records' videos (without audio) by inference.py: the directory
    with both record files, the top-5 CSV, the embeddings and the page.
    The tests below only read it."""
    out = tmp_path_factory.mktemp("song_search")
    train_dir = chunk_export.split("/export/")[0]
    serialized, _ = _records_and_batch(exported.config,
                                       f"{tiny_frame_data}/validate-*")
    songs = _write(out / "songs.tfrecord", _without(serialized, "rgb"))
    videos = _write(out / "videos.tfrecord", _without(serialized, "audio"))
    _inference(f"--train_dir={train_dir}", f"--input_data_pattern={songs}",
               f"--gallery_data_pattern={videos}", "--query_modality=audio",
               "--top_k=5", f"--output_file={out}/songs.csv",
               f"--embeddings_file={out}/songs.npz",
               f"--explain_file={out}/why.html")
    return out


def test_a_song_alone_finds_its_videos_and_the_page_says_why(
        chunk_export, exported, tiny_frame_data, song_search, tmp_path):
    train_dir = chunk_export.split("/export/")[0]
    model = exported
    serialized, _ = _records_and_batch(model.config,
                                       f"{tiny_frame_data}/validate-*")
    both = _write(tmp_path / "both.tfrecord", serialized)
    _inference(f"--train_dir={train_dir}", f"--input_data_pattern={both}",
               "--top_k=5", f"--output_file={tmp_path}/both.csv")
    alone, together = _csv_rows(song_search / "songs.csv"), _csv_rows(
        tmp_path / "both.csv")
    assert len(alone) == len(serialized)
    for key, pairs in alone.items():
        assert key[1] == "audio"
        got, want = pairs.split(), together[key].split()
        assert got[0::2] == want[0::2]  # the same videos, in the same order
        np.testing.assert_allclose(np.float64(got[1::2]),
                                   np.float64(want[1::2]), atol=2e-5)
    saved = np.load(song_search / "songs.npz")
    assert set(saved.files) == {"ids", "audio", "attention_audio",
                                "model_fingerprint"}
    np.testing.assert_allclose(saved["attention_audio"].sum(axis=1), 1.0,
                               atol=1e-5)
    page = (song_search / "why.html").read_text()
    for (query, _), pairs in alone.items():
        assert query in page and pairs.split()[0] in page
    assert page.count("<svg") == len(alone) * 6  # the query and 5 matches


def test_a_song_searches_an_index_of_the_videos_as_the_records_do(
        chunk_export, exported, tiny_frame_data, song_search, tmp_path):
    """The gallery's embeddings become an index; searching it answers a
    song as embedding the gallery records does (song_search's CSV)."""
    import subprocess
    import sys
    from conftest import REPO_ROOT
    train_dir = chunk_export.split("/export/")[0]
    serialized, _ = _records_and_batch(exported.config,
                                       f"{tiny_frame_data}/validate-*")
    songs = song_search / "songs.tfrecord"
    videos = song_search / "videos.tfrecord"
    _inference(f"--train_dir={train_dir}", f"--input_data_pattern={videos}",
               "--query_modality=video",
               f"--embeddings_file={tmp_path}/gallery.npz")
    built = subprocess.run(
        [sys.executable, "-m", "yt8m_xmodal.cli.index", "build",
         f"--embeddings_file={tmp_path}/gallery.npz",
         f"--index_dir={tmp_path}/index"], capture_output=True, text=True,
        timeout=300, cwd=REPO_ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    _inference(f"--train_dir={train_dir}", f"--input_data_pattern={songs}",
               f"--index_dir={tmp_path}/index", "--query_modality=audio",
               "--top_k=5", f"--output_file={tmp_path}/indexed.csv")
    indexed, exact = _csv_rows(tmp_path / "indexed.csv"), _csv_rows(
        song_search / "songs.csv")
    assert indexed.keys() == exact.keys() and len(indexed) == len(serialized)
    for key in exact:
        got, want = indexed[key].split(), exact[key].split()
        assert got[0::2] == want[0::2]
        np.testing.assert_allclose(np.float64(got[1::2]),
                                   np.float64(want[1::2]), atol=1e-5)


def test_inference_ranks_by_the_models_csls_when_it_has_one(
        chunk_export, exported, tiny_frame_data, tmp_path):
    """With --csls_k the CSV is CSLS's ranking, checked against a numpy
    float64 CSLS of the same embeddings."""
    train_dir = chunk_export.split("/export/")[0]
    serialized, _ = _records_and_batch(exported.config,
                                       f"{tiny_frame_data}/validate-*")
    both = _write(tmp_path / "both.tfrecord", serialized)
    _inference(f"--train_dir={train_dir}", f"--input_data_pattern={both}",
               "--query_modality=audio", "--top_k=3", "--csls_k=4",
               f"--output_file={tmp_path}/csls.csv",
               f"--embeddings_file={tmp_path}/e.npz")
    saved = np.load(tmp_path / "e.npz")
    q = saved["audio"].astype(np.float64)
    assert "video" not in saved.files  # one modality was asked for
    emb = exported.embed_records(serialized)
    g = emb["video"].astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    cos = q @ g.T
    r_g = np.sort(cos.T, axis=1)[:, ::-1][:, :4].mean(axis=1)
    want = np.argsort(-(cos - r_g[None, :] / 2), axis=1, kind="stable")[:, :3]
    rows = _csv_rows(tmp_path / "csls.csv")
    ids = emb["id"].astype(str)
    for i, query in enumerate(saved["ids"]):
        got = rows[(query, "audio")].split()[0::2]
        assert got == [ids[j] for j in want[i]], query
