"""The embeddings file contract: one writer, one reader, local and gfile."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_xmodal import embeddings
from yt8m_xmodal.errors import DataError


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 2)).astype(np.float32)


@pytest.mark.parametrize("root", ["local", "ram://"])
def test_round_trip(tmp_path, arrays, root):
    """Written and read back bit for bit, on disk and through tf.io.gfile
    (ram://, which takes the gs:// code path: no local file)."""
    a = arrays
    base = str(tmp_path) if root == "local" else f"ram://emb-{tmp_path.name}"
    tf.io.gfile.makedirs(base)
    attention = np.full((3, 4), 0.25, np.float32)
    embeddings.save_embeddings(f"{base}/e-0.npz", ["a", "b", "c"], audio=a,
                               video=a + 1, attention_audio=attention,
                               model_fingerprint="fp")
    embeddings.save_embeddings(f"{base}/e-1.npz", ["d"], audio=a[:1],
                               video=a[:1], model_fingerprint="fp")
    # An empty shard (the pipeline writes them) adds no rows.
    embeddings.save_embeddings(f"{base}/e-2.npz", [],
                               audio=np.zeros((0, 2), np.float32),
                               video=np.zeros((0, 2), np.float32),
                               model_fingerprint="fp")
    both = embeddings.read_embeddings(f"{base}/e-*.npz")
    assert list(both.ids) == ["a", "b", "c", "d"]
    assert both.ids.dtype.kind == "U"
    np.testing.assert_array_equal(both.audio, np.concatenate([a, a[:1]]))
    np.testing.assert_array_equal(both.video, np.concatenate([a + 1, a[:1]]))
    assert both.video.dtype == np.float32
    assert both.fingerprint == "fp"
    assert both.files == tuple(f"{base}/e-{i}.npz" for i in range(3))
    one = embeddings.read_embeddings(f"{base}/e-1.npz,{base}/e-0.npz",
                                     ("video",), optional=("audio",))
    assert list(one.ids) == ["d", "a", "b", "c"]
    np.testing.assert_array_equal(one.audio, np.concatenate([a[:1], a]))
    with tf.io.gfile.GFile(f"{base}/e-0.npz", "rb") as f, np.load(f) as npz:
        np.testing.assert_array_equal(npz["attention_audio"], attention)
        assert str(npz["model_fingerprint"]) == "fp"


def test_bad_files_are_named(tmp_path, arrays):
    a = arrays
    good = str(tmp_path / "good.npz")
    embeddings.save_embeddings(good, ["a", "b", "c"], audio=a, video=a + 1)

    def saved(name, ids, **values):
        path = str(tmp_path / name)
        np.savez(path, ids=np.asarray(ids), **values)
        return path

    cases = [
        ([saved("x.npz", ["a"], audio=a[:1])],
         r"x\.npz: not an embeddings file: keys \['video'\] missing"),
        ([good, saved("y.npz", ["z"], audio=a[:1, :1], video=a[:1, :1])],
         r"y\.npz: audio embeddings are 1-d but .*good\.npz's are 2-d"),
        ([saved("rows.npz", ["a", "b"], audio=a, video=a)],
         r"rows\.npz: `audio` has shape \(3, 2\), expected \[2, k\]"),
        ([saved("ints.npz", [1, 2, 3], audio=a, video=a)],
         r"ints\.npz: `ids` must be a 1-D string array"),
        ([saved("nan.npz", ["a", "b", "c"], audio=a,
                video=np.where([[0], [0], [1]], np.nan, a))],
         r"nan\.npz: `video` has NaN or infinite values in 1 "
         r"row\(s\), first at row 2 \(id 'c'\)"),
        ([good, good], r"id 'a' occurs 2 times, in .*good\.npz, .*good\.npz"),
        ([str(tmp_path / "absent.npz")], r"absent\.npz: no such embeddings "
                                         "file"),
        ([good, saved("fp.npz", ["z"], audio=a[:1], video=a[:1],
                      model_fingerprint=np.asarray("other"))],
         r"fp\.npz has model_fingerprint=other.*good\.npz has no|"
         r"good\.npz has no model_fingerprint but .*fp\.npz has one"),
    ]
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    cases.append(([str(tmp_path / "junk.npz")],
                  r"junk\.npz: cannot read the embeddings file"))
    for paths, message in cases:
        with pytest.raises(DataError, match=message):
            embeddings.read_embeddings(paths)


def test_check_finite_names_the_ids():
    values = np.ones((4, 2), np.float32)
    values[2, 1] = np.inf
    embeddings.check_finite("set", ["a", "b", "c", "d"], {"audio": values[:2]})
    with pytest.raises(DataError, match=r"^set: `audio` has NaN or "
                       r"infinite values in 1 row\(s\), first at row 2 "
                       r"\(id 'c'\)$"):
        embeddings.check_finite("set", ["a", "b", "c", "d"], {"audio": values})
