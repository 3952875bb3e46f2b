"""Why a match was made: the chunk attention behind each top match.

A chunk-attention tower pools a video's chunks with learned weights; the
weights say which seconds of the song and which seconds of the video carried
the embedding. `write_html` draws, for every query, its own attention over
its seconds beside that of each of its top matches, with the match scores,
as one self-contained HTML page (inline SVG, no scripts or downloads).
"""

import html

import numpy as np

from yt8m_xmodal.errors import DataError

# Matches drawn per query: the page is for reading, the CSV has all of them.
MATCHES_SHOWN = 5
_WIDTH, _HEIGHT, _PAD = 320, 70, 4


def valid_chunks(weights):
    """The chunks of a video's attention row that hold frames: the weights
    up to the last positive one (padding chunks weigh exactly 0)."""
    return int(np.max(np.flatnonzero(np.asarray(weights) > 0),
                      initial=-1)) + 1


def _curve(weights, chunk_seconds, colour):
    """An SVG bar chart of chunk weights over seconds (valid chunks only)."""
    weights = np.asarray(weights, np.float64)
    valid = valid_chunks(weights)
    if valid == 0:
        return "<svg></svg>"
    top = max(weights[:valid].max(), 1e-12)
    bar = (_WIDTH - 2 * _PAD) / valid
    rects = []
    for c in range(valid):
        h = (_HEIGHT - 2 * _PAD - 12) * weights[c] / top
        start, stop = c * chunk_seconds, (c + 1) * chunk_seconds
        rects.append(
            f'<rect x="{_PAD + c * bar:.1f}" y="{_HEIGHT - 12 - h:.1f}" '
            f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{start}-{stop} s: weight {weights[c]:.3f}</title></rect>")
    axis = (f'<text x="{_PAD}" y="{_HEIGHT - 1}" font-size="10">0 s</text>'
            f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 1}" font-size="10" '
            f'text-anchor="end">{valid * chunk_seconds} s</text>')
    return (f'<svg width="{_WIDTH}" height="{_HEIGHT}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(rects)}{axis}</svg>')


_COLOURS = {"audio": "#d95f02", "video": "#1b9e77"}


def write_html(path, matches, queries, gallery, chunk_seconds):
    """Writes the page for `inference.top_matches` rows.

    Args:
      path: the .html file to write.
      matches: (query row, query modality, gallery rows, scores) tuples.
      queries, gallery: `inference.SpooledEmbeddings` with attention arrays.
      chunk_seconds: seconds per chunk (the model's chunk_size).

    Raises:
      DataError: when the embeddings carry no attention (the model pools
        without chunk attention, so there is nothing to show).
    """
    needed = {f"attention_{m}" for _, m, _, _ in matches[:1]}
    missing = [n for n in needed if n not in queries.widths]
    if missing or not chunk_seconds:
        raise DataError(
            "the model has no chunk attention to explain its matches "
            "(explanations need ChunkAttentionModel)")
    sections = []
    for row, modality, indices, scores in matches:
        other = "video" if modality == "audio" else "audio"
        query_weights = queries.array(f"attention_{modality}")[row]
        cells = [f"<td><b>{html.escape(queries.ids[row])}</b> ({modality}, "
                 f"the query)<br>{_curve(query_weights, chunk_seconds, _COLOURS[modality])}</td>"]
        for i, score in list(zip(indices, scores))[:MATCHES_SHOWN]:
            weights = gallery.array(f"attention_{other}")[i]
            cells.append(
                f"<td>{html.escape(gallery.ids[i])} ({other}), score "
                f"{score:.3f}<br>{_curve(weights, chunk_seconds, _COLOURS[other])}</td>")
        sections.append(f"<tr>{''.join(cells)}</tr>")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>yt8m-xmodal: why these matches</title>
<style>body{{font-family:sans-serif}} td{{vertical-align:top;padding:6px;
border-bottom:1px solid #ddd;font-size:12px}}</style></head><body>
<h2>Why these matches</h2>
<p>Each row: a query and its top {MATCHES_SHOWN} matches by cosine score in
the CCA subspace. Bars are the chunk attention weights over the seconds of
each video (one chunk = {chunk_seconds} s): the seconds of the song and of
the video that carried the match.</p>
<table>{''.join(sections)}</table></body></html>
"""
    with open(path, "w") as f:
        f.write(page)
    return path
