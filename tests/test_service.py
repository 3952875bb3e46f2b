"""The search service: its answers are inference.py's, concurrent answers
agree, bad input gets a 4xx JSON line and the service stays up, and the page
shows cards in a real headless Chromium.

The gallery is the videos of the tiny set's validate and test splits (audio
removed), indexed from their embeddings; the queries are the test split's
songs (rgb removed). The served process is the real command on 127.0.0.1.
"""

import asyncio
import concurrent.futures
import csv
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
import prewarmed

pytest.importorskip("fastapi", reason="the service needs the serve extra")
httpx = pytest.importorskip("httpx")

from yt8m_xmodal import index as index_lib  # noqa: E402
from yt8m_xmodal import inference  # noqa: E402
from yt8m_xmodal import modeling  # noqa: E402
from yt8m_xmodal import readers  # noqa: E402
from yt8m_xmodal.service import app as app_lib  # noqa: E402
from yt8m_xmodal.service import engine as engine_lib  # noqa: E402
from yt8m_xmodal.service import uploads  # noqa: E402

TOP_K = 10
# inference.py's CSV has 6 decimals; the service embeds in blocks of
# BLOCK_ROWS records where inference embeds the file's batch, and float32
# kernels differ in the last bit between batch sizes.
SCORE_ATOL = 1e-6


def _without(serialized, feature):
    out = []
    for record in serialized:
        example = tf.train.SequenceExample.FromString(record)
        del example.feature_lists.feature_list[feature]
        out.append(example.SerializeToString())
    return out


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def _records(pattern):
    return [r.numpy() for r in tf.data.TFRecordDataset(
        readers.resolve_files(pattern))]


@pytest.fixture(scope="module")
def setup(chunk_export, tiny_frame_data, tmp_path_factory):
    """Record files, the video index, inference.py's own answer, and the
    service's process."""
    out = tmp_path_factory.mktemp("service")
    both = _records(f"{tiny_frame_data}/validate-*,{tiny_frame_data}/test-*")
    videos = _write(out / "videos.tfrecord", _without(both, "audio"))
    song_records = _without(_records(f"{tiny_frame_data}/test-*"), "rgb")
    songs = _write(out / "songs.tfrecord", song_records)
    exported = modeling.load_export(chunk_export)
    fingerprint = index_lib.model_fingerprint(chunk_export)
    inference.run_inference(exported.signatures, str(videos),
                            query_modality="video",
                            embeddings_file=str(out / "gallery.npz"),
                            model_fingerprint=fingerprint)
    gallery = np.load(out / "gallery.npz")
    index_lib.build_index(gallery["ids"], gallery["video"], str(out / "index"),
                          fingerprint, kind="exact", modality="video")
    # The service starts while inference.py runs: two processes, two cores.
    port = _free_port()
    log = open(out / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "yt8m_xmodal.cli.serve",
         f"--export_dir={chunk_export}", f"--index_dir={out / 'index'}",
         f"--gallery_data_pattern={videos}", f"--port={port}",
         "--max_upload_mb=1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        ran = prewarmed.run(
            [sys.executable, str(REPO_ROOT / "inference.py"),
             f"--train_dir={chunk_export.split('/export/')[0]}",
             f"--input_data_pattern={songs}", f"--index_dir={out / 'index'}",
             "--query_modality=audio", f"--top_k={TOP_K}",
             f"--output_file={out / 'inference.csv'}",
             f"--embeddings_file={out / 'songs.npz'}"],
            timeout=300, cwd=REPO_ROOT)
        assert ran.returncode == 0, ran.stderr[-3000:]
        with open(out / "inference.csv") as f:
            expected = {r["QueryId"]: r["MatchScorePairs"].split()
                        for r in csv.DictReader(f)}
        assert len(expected) == len(song_records) == 16
        yield {"dir": out, "export": chunk_export, "songs": songs,
               "videos": videos, "song_records": song_records,
               "expected": expected, "gallery": gallery,
               "song_npz": np.load(out / "songs.npz"),
               "process": process, "port": port, "log": log}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(setup):
    """The URL of `python -m yt8m_xmodal.cli.serve` (started by `setup`)
    on 127.0.0.1, once it answers /health."""
    url = f"http://127.0.0.1:{setup['port']}"
    process = setup["process"]
    for _ in range(240):  # 120 s at most
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.5)
    setup["log"].seek(0)
    pytest.fail(f"the service did not answer /health (exit code "
                f"{process.poll()}): {setup['log'].read()[-3000:]}")


def _search(url, path_or_bytes, top_k=None, name="songs.tfrecord"):
    data = (path_or_bytes if isinstance(path_or_bytes, bytes)
            else open(path_or_bytes, "rb").read())
    form = {} if top_k is None else {"top_k": str(top_k)}
    return httpx.post(f"{url}/search", files={"file": (name, data)},
                      data=form, timeout=120)


def _assert_as_inference(queries, expected):
    assert [q["id"] for q in queries] == list(expected)
    for query in queries:
        want = expected[query["id"]]
        assert query["modality"] == "audio"
        assert [m["id"] for m in query["matches"]] == want[0::2]
        np.testing.assert_allclose([m["score"] for m in query["matches"]],
                                   np.float64(want[1::2]), atol=SCORE_ATOL,
                                   rtol=0)


def test_health_and_a_search_answer_as_inference_does(setup, server):
    health = httpx.get(f"{server}/health").json()
    assert health == {"status": "ok", "gallery": 32, "modality": "video",
                      "model": index_lib.model_fingerprint(setup["export"])}
    answer = _search(server, setup["songs"])  # top_k: its default, 10
    assert answer.status_code == 200, answer.text
    result = answer.json()
    _assert_as_inference(result["queries"], setup["expected"])
    # Attention: the query's and each match's, as inference's npz has them
    # (trimmed to the chunks that hold frames).
    assert result["chunk_seconds"] == 8
    songs, gallery = setup["song_npz"], setup["gallery"]
    row_of = {str(i): r for r, i in enumerate(gallery["ids"])}
    for query, weights in zip(result["queries"], songs["attention_audio"]):
        np.testing.assert_allclose(query["attention"],
                                   weights[:len(query["attention"])],
                                   atol=1e-6)
        assert not weights[len(query["attention"]):].any()
        for match in query["matches"]:
            full = gallery["attention_video"][row_of[match["id"]]]
            np.testing.assert_allclose(match["attention"],
                                       full[:len(match["attention"])],
                                       atol=1e-6)
    video = httpx.get(f"{server}/videos/{result['queries'][0]['matches'][0]['id']}")
    assert video.status_code == 200
    assert set(video.json()) == {"id", "modality", "row", "attention",
                                 "chunk_seconds"}
    docs = httpx.get(f"{server}/openapi.json").json()
    assert {"/health", "/search", "/videos/{video_id}"} <= set(docs["paths"])


def test_fifty_concurrent_searches_are_answered_identically(setup, server):
    """50 uploads at once, of three files (all the songs, and two single
    songs): every upload of a file gets the same bits. A song's answer
    alone and within the file agree in ids and to float32 rounding (each
    upload is embedded in its own batch; see engine.py)."""
    singles = [_write(setup["dir"] / f"song{i}.tfrecord",
                      [setup["song_records"][i]]) for i in (0, 5)]
    files = [setup["songs"], *singles]
    jobs = [files[n % 3] for n in range(50)]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda path: _search(server, path, 7), jobs))
    assert all(a.status_code == 200 for a in answers), answers[0].text
    by_file = {}
    for path, answer in zip(jobs, answers):
        by_file.setdefault(path, []).append(answer.json())
    for path, got in by_file.items():
        assert all(g == got[0] for g in got), path
    whole = by_file[setup["songs"]][0]["queries"]
    _assert_as_inference(whole, {k: v[:14]
                                 for k, v in setup["expected"].items()})
    for path in singles:
        alone, = by_file[path][0]["queries"]
        within = next(q for q in whole if q["id"] == alone["id"])
        assert [m["id"] for m in alone["matches"]] == [
            m["id"] for m in within["matches"]]
        np.testing.assert_allclose([m["score"] for m in alone["matches"]],
                                   [m["score"] for m in within["matches"]],
                                   atol=SCORE_ATOL, rtol=0)


@pytest.fixture(scope="module")
def engine(setup):
    engine = engine_lib.SearchEngine(setup["export"],
                                     str(setup["dir"] / "index"))
    yield engine
    engine.close()


def test_uploads_queued_together_are_answered_in_fewer_passes(setup, engine):
    records = setup["song_records"]
    alone = [engine.search([r], TOP_K) for r in records]
    before = engine.passes
    futures = [engine.submit([r], TOP_K) for r in records]
    together = [f.result(timeout=120) for f in futures]
    assert together == alone
    assert engine.passes - before < len(records)
    # A bad record fails only its own upload.
    bad = _without([records[0]], "audio")
    futures = [engine.submit([records[1]], 3), engine.submit(bad, 3),
               engine.submit([records[2]], 3)]
    assert futures[0].result(timeout=120) == engine.search([records[1]], 3)
    with pytest.raises(ValueError, match="records without frames in 'audio'"):
        futures[1].result(timeout=120)
    assert futures[2].result(timeout=120) == engine.search([records[2]], 3)


def _bad_inputs(setup):
    songs = open(setup["songs"], "rb").read()
    flipped = bytearray(songs)
    flipped[40] ^= 0xFF  # inside the first record: its data checksum fails
    videos = open(setup["videos"], "rb").read()
    mixed = _write(setup["dir"] / "mixed.tfrecord", [
        setup["song_records"][0],
        _without([setup["song_records"][1]], "audio")[0]])
    return {
        "not a TFRecord": (b"QueryId,QueryModality\nabc,audio\n", None, 400,
                           "neither a TFRecord"),
        "empty": (b"", None, 400, "is empty"),
        "media without extraction": (b"ID3\x04\x00\x00\x00\x00\x00\x00mp3",
                                     None, 415, "media file (MP3)"),
        "truncated TFRecord": (songs[:50], None, 400, "truncated TFRecord"),
        "corrupt TFRecord": (bytes(flipped), None, 400, "corrupt"),
        "the gallery's modality": (videos, None, 400,
                                   "the gallery's own modality"),
        "a record without audio": (open(mixed, "rb").read(), None, 400,
                                   "records without frames in 'audio'"),
        "over max_upload_mb": (os.urandom((1 << 20) + 4096), None, 413,
                               "over the limit"),
        "far over max_upload_mb": (os.urandom(3 << 20), None, 413,
                                   "over the limit"),
        "top_k 0": (songs, 0, 422, "top_k=0 is out of range"),
        "top_k 1001": (songs, 1001, 422, "top_k=1001 is out of range"),
        "top_k not a number": (songs, "ten", 422, "top_k"),
    }


BAD_INPUTS = ("not a TFRecord", "empty", "media without extraction",
              "truncated TFRecord", "corrupt TFRecord",
              "the gallery's modality", "a record without audio",
              "over max_upload_mb", "far over max_upload_mb", "top_k 0",
              "top_k 1001", "top_k not a number")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_a_4xx_json_line_and_the_service_stays_up(
        setup, server, case):
    data, top_k, status, words = _bad_inputs(setup)[case]
    answer = _search(server, data, top_k, name="upload.bin")
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert words in error and "\n" not in error
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_requests_without_a_file_or_for_unknown_videos(server):
    missing = httpx.post(f"{server}/search", data={"top_k": "3"})
    assert missing.status_code == 422
    assert missing.json() == {"error": "file: Field required"}
    unknown = httpx.get(f"{server}/videos/no-such-video")
    assert unknown.status_code == 404
    assert "not in the gallery" in unknown.json()["error"]
    assert httpx.get(f"{server}/health").status_code == 200


class _FakeExtractor:
    """Stands in for yt8m_xmodal.extraction.FeatureExtractor: returns a
    fixed song record for any media file, to check the plumbing."""

    def __init__(self, record):
        self.record = record
        self.paths = []

    def extract(self, path):
        self.paths.append(path)
        assert open(path, "rb").read(3) == b"ID3"
        return self.record


def test_media_uploads_go_through_the_extractor(setup, engine):
    extractor = _FakeExtractor(setup["song_records"][3])
    app = app_lib.create_app(engine, extractor=extractor)

    async def post():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service") as client:
            return await client.post("/search", files={"file": (
                "song.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00frames")},
                data={"top_k": "5"})
    answer = asyncio.run(post())
    assert answer.status_code == 200, answer.text
    assert extractor.paths[0].endswith(".mp3")
    assert answer.json()["queries"] == engine.search(
        [setup["song_records"][3]], 5)


def test_upload_kinds():
    record = tf.train.SequenceExample().SerializeToString() + b"x"
    framed = open(_write_tmp_record(record), "rb").read()
    assert uploads.kind_of(framed) == uploads.TFRECORD
    for head in (b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00\x00\x00\x20ftypM4A ",
                 b"OggS\x00\x02", b"\xff\xfb\x90\x00", b"fLaC\x00\x00"):
        assert uploads.kind_of(head + b"\x00" * 16) == uploads.MEDIA
    with pytest.raises(ValueError, match="neither"):
        uploads.kind_of(b"<html></html>" * 4)


def _write_tmp_record(record):
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "one.tfrecord")
    return _write(path, [record])


def _browser():
    """(chromium, chromedriver) paths, or a reason to skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (the test extra)"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        return None, ("no headless browser: apt-get install chromium "
                      "chromium-driver")
    return (chromium, driver), ""


def test_the_page_shows_cards_in_a_real_browser(setup, server, tmp_path):
    found, reason = _browser()
    if not found:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1200,900",
                # Only 127.0.0.1: any other host fails to resolve, so the
                # page's YouTube look-ups take their offline path.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(f"{server}/")
        wait.until(lambda b: "32 videos in the gallery"
                   in b.find_element(By.ID, "gallery").text)
        # A bad file: an error line, no cards.
        bad = tmp_path / "notes.txt"
        bad.write_text("not records\n")
        browser.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(lambda b: b.find_element(By.ID, "error").text)
        assert "neither a TFRecord" in browser.find_element(By.ID,
                                                            "error").text
        assert not browser.find_elements(By.CSS_SELECTOR, ".card")
        # The songs, 3 matches each; then 5, the search started by keyboard.
        top_k = browser.find_element(By.ID, "top_k")
        top_k.clear()
        top_k.send_keys("3")
        browser.find_element(By.ID, "file").send_keys(str(setup["songs"]))
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR,
                                                 ".card")) == 16 * 3)
        top_k.clear()
        top_k.send_keys("5")
        browser.find_element(By.ID, "go").send_keys(Keys.ENTER)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR,
                                                 ".card")) == 16 * 5)
        assert "16 queries" in browser.find_element(By.ID, "status").text
        assert browser.find_element(By.ID, "error").text == ""
        first_query = next(iter(setup["expected"]))
        heading = browser.find_element(By.CSS_SELECTOR, ".query h2").text
        assert heading.startswith(first_query)
        card = browser.find_element(By.CSS_SELECTOR, ".card")
        best, score = setup["expected"][first_query][:2]
        assert "#1" in card.text and best in card.text
        assert f"{float(score):.4f}" in card.text
        # The song's strip beside the video's, with bars.
        strips = card.find_elements(By.CSS_SELECTOR, ".strip")
        assert [s.get_attribute("class") for s in strips] == [
            "strip audio", "strip video"]
        assert all(s.find_elements(By.TAG_NAME, "rect") for s in strips)
        link = card.find_element(By.TAG_NAME, "a")
        assert "youtube8m" in link.get_attribute("href")
        assert card.get_attribute("tabindex") == "0"
        shot = tmp_path / "serve.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        target = os.environ.get("YT8M_SERVE_SCREENSHOT")
        if target:
            shutil.copyfile(shot, target)
    finally:
        browser.quit()
