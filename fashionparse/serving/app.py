"""The HTTP service: ``POST /v1/parse``, ``GET /v1/categories``, ``GET /healthz``, the web page at ``/`` and
OpenAPI docs (``/docs``, ``/openapi.json``).

The model loads once, in the app's lifespan. Every refusal is a JSON error ``{"error": {"code", "message"}}``:

=====  ==============================  ====================================================================
413    ``upload_too_large``            request body over ``max_upload_bytes`` (refused from Content-Length
                                       before reading, or as soon as a streamed body passes the limit)
413    ``too_many_pixels``             width x height over ``max_pixels``, read from the header (bombs)
415    ``not_an_image``                not an image
415    ``unsupported_image_format``    a format outside ``images.ACCEPTED_FORMATS``
415    ``unsupported_image_mode``      16/32-bit or float pixels (``data.images.UNSUPPORTED_MODES``)
422    ``image_corrupt``               the header is fine, the pixel data is not
422    ``invalid_request``             no ``file`` field, ...
503    ``busy``                        ``workers`` running and ``max_waiting`` waiting (with ``Retry-After``)
504    ``timeout``                     waiting + inference took longer than ``timeout_s``
=====  ==============================  ====================================================================
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fashionparse import __version__
from fashionparse.categories import CATEGORIES
from fashionparse.serving.http_errors import ServiceError, error_response
from fashionparse.serving.images import decode_upload, open_upload
from fashionparse.serving.inference_queue import InferenceQueue, QueueFull
from fashionparse.serving.predictor import Predictor, describe_predictor, load_predictor
from fashionparse.serving.records import instances_json
from fashionparse.serving.schemas import Category, ErrorResponse, Health, ParseResponse
from fashionparse.visualize import CATEGORY_COLORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    max_upload_bytes: int = 16 * 2**20  # whole request body, multipart overhead included
    max_pixels: int = 40_000_000  # a 12 MP phone photo passes; PIL's own bomb guard starts at 89 MP
    workers: int = 1  # concurrent inferences (each already uses all cores through torch/onnxruntime)
    max_waiting: int = 8  # requests queued behind the workers; one more gets 503
    timeout_s: float = 30.0  # per request: waiting + inference


ERROR_RESPONSES = {status: {"model": ErrorResponse} for status in (413, 415, 422, 503, 504)}


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, "upload_too_large", f"the request body exceeds the limit of {limit} bytes")


class DeclaredSizeLimit:
    """ASGI middleware: refuse a body whose declared Content-Length exceeds ``max_bytes`` before reading it.

    Bodies without a length (chunked) are cut off by the route's ``max_body_size`` (Starlette) as they stream;
    Starlette answers declared ones in plain text, hence this JSON front door.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                await _too_large(self.max_bytes)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _parse_job(predictor: Predictor, image: Image.Image) -> dict:
    """Decode, parse and serialise one upload (runs on an inference worker thread)."""
    rgb = decode_upload(image)
    start = time.perf_counter()
    instances = predictor.predict(rgb)
    elapsed_ms = (time.perf_counter() - start) * 1000
    return {"width": rgb.width, "height": rgb.height, "inference_ms": elapsed_ms,
            "instances": instances_json(instances, rgb.height, rgb.width)}


def _install_error_handlers(app: FastAPI, limits: ServiceLimits) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:  # Starlette's request body limit
            return _too_large(limits.max_upload_bytes)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", f"{type(exc).__name__} while handling the request")


def create_app(model: str | Path | Predictor, *, device: str = "auto", score_threshold: float = 0.5,
               limits: ServiceLimits = ServiceLimits()) -> FastAPI:
    """The service for ``model``: a checkpoint, a ``.onnx`` export (loaded at startup with
    :func:`load_predictor`) or a ready predictor (``device`` and ``score_threshold`` then do not apply)."""
    page = files("fashionparse.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if isinstance(model, (str, Path)):
            predictor = await asyncio.to_thread(load_predictor, model, device, score_threshold)
        else:
            predictor = model
        app.state.predictor = predictor
        app.state.queue = InferenceQueue(limits.workers, limits.max_waiting, limits.timeout_s)
        log.info("model loaded: %s", describe_predictor(predictor))
        try:
            yield
        finally:
            app.state.queue.close()

    app = FastAPI(title="fashionparse", version=__version__, lifespan=lifespan,
                  description="Detect, classify and segment every garment in a photo (13 DeepFashion2 "
                              "categories). Upload an image to `POST /v1/parse`.")
    _install_error_handlers(app, limits)
    app.add_middleware(DeclaredSizeLimit, max_bytes=limits.max_upload_bytes)

    @app.post("/v1/parse", response_model=ParseResponse, responses=ERROR_RESPONSES,
              max_body_size=limits.max_upload_bytes, summary="Parse the garments in one image")
    async def parse(request: Request,
                    file: UploadFile = File(description="JPEG, PNG, WebP, BMP, GIF or TIFF; EXIF orientation is "
                                                        "applied")) -> dict:
        image = open_upload(await file.read(), limits.max_pixels)
        state = request.app.state
        try:
            result = await state.queue.run(_parse_job, state.predictor, image)
        except QueueFull:
            retry = str(max(1, math.ceil(limits.timeout_s / 4)))
            raise ServiceError(503, "busy", f"{state.queue.capacity} requests are already running or waiting; "
                                            "retry later", headers={"Retry-After": retry}) from None
        except TimeoutError:
            raise ServiceError(504, "timeout", f"no result within {limits.timeout_s:g} s") from None
        info = describe_predictor(state.predictor)
        return {**result, "backend": info["backend"], "score_threshold": state.predictor.score_threshold}

    @app.get("/v1/categories", response_model=list[Category], summary="Categories and their overlay colours")
    def categories() -> list[dict]:
        return [{"id": c.id, "name": c.name, "color": "#{:02x}{:02x}{:02x}".format(*CATEGORY_COLORS[c.id])}
                for c in CATEGORIES]

    @app.get("/healthz", response_model=Health, summary="Liveness, backend and queue state")
    def healthz(request: Request) -> dict:
        state = request.app.state
        queue = state.queue
        return {"status": "ok", **describe_predictor(state.predictor),
                "score_threshold": state.predictor.score_threshold,
                "queue": {"workers": queue.workers, "pending": queue.pending, "capacity": queue.capacity}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    return app
