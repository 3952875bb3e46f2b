"""The search behind the service: one export and one index, loaded once.

Concurrent uploads are answered by one worker thread, in passes: a pass
takes every upload waiting in the queue (up to `MAX_ROWS_PER_STEP`
records). The embedding is `inference.embed_batch` over the export's
one-modality signature and the search is the index's `search_rows`, the
calls `inference.py --index_dir` makes, so the ids and scores are
inference's.

Answers are bit-identical for the same upload, whatever else is in the
pass. Each upload's records are embedded in their own signature calls: the
chunk RNN packs the valid chunks of the whole batch into one matrix, so a
record's float32 embedding changes in its last bits with its neighbours. The
index search, whose cost grows with the gallery, is shared by all the
uploads of a pass, in blocks of exactly `BLOCK_ROWS` queries (a short block
padded with copies of its first row): BLAS picks its kernels by the number
of rows, and a fixed number keeps each query's scores the same.
"""

import concurrent.futures
import logging
import queue
import threading

import numpy as np
import tensorflow as tf

from yt8m_xmodal import explain
from yt8m_xmodal import index as index_lib
from yt8m_xmodal import inference
from yt8m_xmodal import modeling
from yt8m_xmodal.errors import DataError

log = logging.getLogger("yt8m_xmodal")

BLOCK_ROWS = 16
# Records answered in one pass of the worker, and the most records of one
# upload embedded in one call: inference.py's default batch size.
MAX_ROWS_PER_STEP = 256


class SearchEngine:
    """An export and an index of its embeddings, answering uploads.

    Args:
      export_dir: the model export (`train_dir/export/step_N`).
      index_dir: an index built from this model's embeddings
        (`yt8m-xmodal-index build`); its modality is the gallery's, the
        queries are of the other one.
      gallery_data_pattern: optional records of the gallery, embedded once
        at start-up for their chunk attention (shown beside each match).

    Raises:
      DataError: an index of another model, unreadable files or records.
    """

    def __init__(self, export_dir, index_dir, gallery_data_pattern=""):
        exported = modeling.load_export(export_dir)
        self.export_dir = export_dir
        self.fingerprint = index_lib.model_fingerprint(export_dir)
        self.index = index_lib.load_index(
            index_dir, expected_fingerprint=self.fingerprint)
        self.gallery_modality = self.index.modality
        self.query_modality = ("audio" if self.gallery_modality == "video"
                               else "video")
        self.data_config = exported.config.data
        self.chunk_seconds = getattr(exported.config.model_config,
                                     "chunk_size", None)
        self._signature = exported.signatures[f"embed_{self.query_modality}"]
        self._rows = {str(i): row for row, i in enumerate(self.index.ids)}
        self._gallery_attention = {}
        if gallery_data_pattern:
            self._load_gallery_attention(
                exported.signatures[f"embed_{self.gallery_modality}"],
                gallery_data_pattern)
        # Passes of the worker and uploads answered: under load, fewer passes.
        self.passes = self.uploads = 0
        self._queue = queue.Queue()
        self._worker = threading.Thread(target=self._serve, daemon=True,
                                        name="yt8m-xmodal-search")
        self._worker.start()

    def __len__(self):
        return len(self.index)

    @property
    def has_gallery_attention(self):
        return bool(self._gallery_attention)

    def _load_gallery_attention(self, signature, pattern):
        name = f"attention_{self.gallery_modality}"
        unknown = 0
        for ids, arrays in inference.embed_records(
                signature, pattern, modalities=(self.gallery_modality,)):
            if name not in arrays:
                raise DataError(
                    f"{pattern}: the model has no chunk attention to show "
                    "(attention needs ChunkAttentionModel)")
            for video_id, weights in zip(ids, arrays[name]):
                if video_id in self._rows:
                    self._gallery_attention[video_id] = self._weights(weights)
                else:
                    unknown += 1
        if unknown:
            log.warning("%d records of %s are not in the index %s: no "
                        "attention for them", unknown, pattern,
                        self.index.index_dir)
        log.info("chunk attention of %d of the index's %d %ss from %s",
                 len(self._gallery_attention), len(self.index),
                 self.gallery_modality, pattern)

    def _weights(self, weights):
        """The chunk weights of a video's valid chunks, as a JSON list."""
        return [float(w) for w in weights[:explain.valid_chunks(weights)]]

    def video(self, video_id):
        """What the service knows of one gallery item, or None."""
        row = self._rows.get(video_id)
        if row is None:
            return None
        return {"id": video_id, "modality": self.gallery_modality,
                "row": row, "attention": self._gallery_attention.get(video_id),
                "chunk_seconds": self.chunk_seconds}

    # -- answering ------------------------------------------------------------

    def submit(self, serialized, top_k):
        """Queues one upload's records; returns a Future of its answer: a
        list, per record, of {"id", "modality", "matches": [{"id", "score"}],
        "attention"}. A bad record fails the Future with a DataError."""
        future = concurrent.futures.Future()
        self._queue.put((list(serialized), int(top_k), future))
        return future

    def search(self, serialized, top_k):
        """`submit` and wait."""
        return self.submit(serialized, top_k).result()

    def close(self):
        self._queue.put(None)
        self._worker.join()

    def _serve(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, rows = [job], len(job[0])
            while rows < MAX_ROWS_PER_STEP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
                rows += len(job[0])
            self.passes += 1
            self.uploads += len(jobs)
            self._answer_all(jobs)

    def _answer_all(self, jobs):
        embedded = []
        for job in jobs:
            try:
                embedded.append((job, self._embed(job[0])))
            except Exception as e:  # noqa: BLE001 - only its sender's error
                if not isinstance(e, DataError):
                    log.exception("embedding an upload failed")
                job[2].set_exception(e)
        if not embedded:
            return
        try:
            answers = self._answer(embedded)
        except Exception as e:  # noqa: BLE001 - the worker must live on
            log.exception("search failed")
            for (_, _, future), _ in embedded:
                future.set_exception(e)
            return
        for ((_, _, future), _), answer in zip(embedded, answers):
            future.set_result(answer)

    def _answer(self, embedded):
        """Answers for [(job, (ids, arrays))]: one shared index search."""
        jobs = [job for job, _ in embedded]
        ids = np.concatenate([i for _, (i, _) in embedded])
        embeddings = np.concatenate([a[self.query_modality]
                                     for _, (_, a) in embedded])
        name = f"attention_{self.query_modality}"
        attention = None
        if name in embedded[0][1][1]:
            attention = np.concatenate([a[name] for _, (_, a) in embedded])
        found = {}
        for k in {top_k for _, top_k, _ in jobs}:
            rows = np.concatenate([
                np.full(len(serialized), top_k == k)
                for serialized, top_k, _ in jobs])
            found[k] = self._search(embeddings[rows], k)
        answers, start, taken = [], 0, dict.fromkeys(found, 0)
        for serialized, top_k, _ in jobs:
            indices, scores = found[top_k]
            answer = []
            for i in range(len(serialized)):
                row, hit = start + i, taken[top_k] + i
                matches = [{"id": str(self.index.ids[g]), "score": float(s)}
                           for g, s in zip(indices[hit], scores[hit])]
                if self._gallery_attention:
                    for match in matches:
                        match["attention"] = self._gallery_attention.get(
                            match["id"])
                answer.append({
                    "id": str(ids[row]), "modality": self.query_modality,
                    "matches": matches,
                    "attention": (None if attention is None
                                  else self._weights(attention[row]))})
            answers.append(answer)
            start += len(serialized)
            taken[top_k] += len(serialized)
        return answers

    def _embed(self, records):
        """inference.embed_batch of one upload's records."""
        parts = [inference.embed_batch(
            self._signature,
            tf.constant(records[start:start + MAX_ROWS_PER_STEP], tf.string),
            (self.query_modality,), where="the upload")
            for start in range(0, len(records), MAX_ROWS_PER_STEP)]
        ids = np.concatenate([p[0] for p in parts])
        arrays = {k: np.concatenate([p[1][k] for p in parts])
                  for k in parts[0][1]}
        return ids, arrays

    def _search(self, embeddings, k):
        """Index.search_rows over fixed blocks of BLOCK_ROWS queries."""
        indices, scores = [], []
        for start in range(0, len(embeddings), BLOCK_ROWS):
            block = embeddings[start:start + BLOCK_ROWS]
            n = len(block)
            padded = np.repeat(block[:1], BLOCK_ROWS, axis=0)
            padded[:n] = block
            i, s = self.index.search_rows(padded, k)
            indices.append(i[:n])
            scores.append(s[:n])
        return np.concatenate(indices), np.concatenate(scores)
