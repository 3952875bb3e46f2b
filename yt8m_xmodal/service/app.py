"""The HTTP service: a FastAPI app over a `SearchEngine` (`pip install
".[serve]"`), documented at /docs (OpenAPI).

    GET  /health         {"status", "gallery", "modality", "model"}
    POST /search         multipart `file` (+ `top_k`) -> {"queries": [...]}
    GET  /videos/{id}    what the service knows of one gallery item
    GET  /               the page: drop a song, see the videos that fit it

Bad input is answered with a 4xx and {"error": "<one line>"}; the service
stays up. Media uploads go through `extractor.extract(path)` (one serialized
record) when the service has one.
"""

import asyncio
import os
import pathlib
import tempfile
from typing import List, Optional

import fastapi
from fastapi import responses
from fastapi import staticfiles
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
import pydantic
from starlette.exceptions import HTTPException as StarletteHTTPException

from yt8m_xmodal import __version__
from yt8m_xmodal.errors import DataError
from yt8m_xmodal.service import uploads

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
# Multipart framing around the file: a body this much over the limit is
# refused before it is read.
_MULTIPART_SLACK = 64 * 1024
_READ_BYTES = 1 << 20


class UploadError(ValueError):
    """Bad input with its HTTP status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Error(pydantic.BaseModel):
    error: str = pydantic.Field(description="What is wrong, in one line.")


class Health(pydantic.BaseModel):
    status: str
    gallery: int = pydantic.Field(description="Items in the index.")
    modality: str = pydantic.Field(description="The gallery's modality "
                                   "(queries are of the other one).")
    model: str = pydantic.Field(description="The export's fingerprint.")


class Match(pydantic.BaseModel):
    id: str
    score: float = pydantic.Field(description="Cosine similarity in the "
                                  "subspace, as inference.py --index_dir.")
    attention: Optional[List[float]] = pydantic.Field(
        None, description="The match's chunk attention over its seconds "
        "(one weight per chunk_seconds), with --gallery_data_pattern.")


class Query(pydantic.BaseModel):
    id: str
    modality: str
    matches: List[Match]
    attention: Optional[List[float]] = pydantic.Field(
        None, description="The query's chunk attention over its seconds.")


class SearchResult(pydantic.BaseModel):
    queries: List[Query]
    chunk_seconds: Optional[int] = pydantic.Field(
        None, description="Seconds per attention weight.")


class Video(pydantic.BaseModel):
    id: str
    modality: str
    row: int = pydantic.Field(description="Row in the index.")
    attention: Optional[List[float]] = None
    chunk_seconds: Optional[int] = None


_ERRORS = {code: {"model": Error} for code in (400, 404, 413, 415, 422)}


def _one_line(text):
    return " ".join(str(text).split()) or "bad request"


def _error(status, message):
    return responses.JSONResponse({"error": _one_line(message)},
                                  status_code=status)


def create_app(engine, max_upload_bytes=50 << 20, extractor=None,
               extractor_missing="media files need feature extraction: "
               "start the service with --weights_dir"):
    """The app. `extractor`: an object with `.extract(path) -> bytes` (one
    serialized record) for media uploads; without one they get a 415 saying
    `extractor_missing`."""
    app = fastapi.FastAPI(
        title="yt8m-xmodal search", version=__version__,
        description="Drop a song, see the videos that fit it: cross-modal "
        "search over a YouTube-8M index.")

    @app.exception_handler(UploadError)
    async def _upload_error(request, error):
        return _error(error.status, str(error))

    @app.exception_handler(DataError)
    async def _data_error(request, error):
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, error):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, error):
        return _error(error.status_code, error.detail)

    @app.middleware("http")
    async def _refuse_huge_bodies(request, call_next):
        length = request.headers.get("content-length", "")
        if (request.url.path == "/search" and length.isdigit()
                and int(length) > max_upload_bytes + _MULTIPART_SLACK):
            return _error(413, f"the upload ({int(length)} bytes) is over "
                          f"the limit of {max_upload_bytes} bytes "
                          "(--max_upload_mb)")
        return await call_next(request)

    @app.get("/health", response_model=Health)
    def health():
        return {"status": "ok", "gallery": len(engine),
                "modality": engine.gallery_modality,
                "model": engine.fingerprint}

    @app.post("/search", response_model=SearchResult,
              response_model_exclude_none=True, responses=_ERRORS)
    async def search(
            file: fastapi.UploadFile = fastapi.File(
                ..., description="A TFRecord of one-modality YT8M records "
                "(audio-only records query a video gallery, video-only "
                "records an audio one), or a media file."),
            top_k: int = fastapi.Form(
                DEFAULT_TOP_K, description=f"Matches per query, 1 to "
                f"{MAX_TOP_K}.")):
        if not 1 <= top_k <= MAX_TOP_K:
            raise UploadError(422, f"top_k={top_k} is out of range: 1 to "
                              f"{MAX_TOP_K}")
        data = await _read_limited(file, max_upload_bytes)
        name = f"the upload {file.filename!r}" if file.filename else (
            "the upload")
        serialized = await run_in_threadpool(_records, data, name,
                                             file.filename)
        uploads.check_query_records(serialized, engine.data_config,
                                    engine.query_modality,
                                    engine.gallery_modality, name)
        queries = await asyncio.wrap_future(engine.submit(serialized, top_k))
        return {"queries": queries, "chunk_seconds": engine.chunk_seconds}

    def _records(data, name, filename):
        kind = uploads.kind_of(data, name)
        if kind == uploads.TFRECORD:
            return uploads.read_records(data, name)
        if extractor is None:
            raise UploadError(415, f"{name} is a media file ("
                              f"{uploads.media_container(data[:16])}); "
                              f"{extractor_missing}")
        suffix = os.path.splitext(filename or "")[1]
        with tempfile.TemporaryDirectory(prefix="yt8m_xmodal_media_") as tmp:
            path = os.path.join(tmp, f"upload{suffix}")
            with open(path, "wb") as f:
                f.write(data)
            try:
                return [extractor.extract(path)]
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - decoders raise anything
                raise UploadError(400, f"{name}: no features could be "
                                  f"extracted ({type(e).__name__}: {e})"
                                  ) from None

    @app.get("/videos/{video_id}", response_model=Video,
             response_model_exclude_none=True, responses=_ERRORS)
    def video(video_id: str):
        found = engine.video(video_id)
        if found is None:
            raise UploadError(404, f"{video_id!r} is not in the gallery")
        return found

    @app.get("/", include_in_schema=False)
    def page():
        return responses.FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", staticfiles.StaticFiles(directory=STATIC_DIR),
              name="static")
    return app


async def _read_limited(upload, max_bytes):
    """The upload's bytes; a 413 as soon as they pass `max_bytes`."""
    chunks, total = [], 0
    while True:
        chunk = await upload.read(_READ_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise UploadError(413, f"the upload is over the limit of "
                              f"{max_bytes} bytes (--max_upload_mb)")
        chunks.append(chunk)
