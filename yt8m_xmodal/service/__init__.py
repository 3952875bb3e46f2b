"""A search service and a page: drop a song, see the videos that fit it.

`engine.SearchEngine` holds an export and an index of its embeddings and
answers uploads in micro-batches; `app.create_app` puts FastAPI in front of
it, with the page in `static/`; `uploads` tells TFRecords from media files.
The command is `yt8m-xmodal-serve` (yt8m_xmodal/cli/serve.py).
"""
