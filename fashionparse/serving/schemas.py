"""Response models of the HTTP service (they document the JSON in the OpenAPI schema and ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MaskRLE(BaseModel):
    """COCO run-length encoding (pycocotools ``encode``; ``counts`` compressed to a string) of the full mask."""

    size: list[int] = Field(description="[height, width]")
    counts: str


class ParsedInstance(BaseModel):
    category_id: int = Field(description="DeepFashion2 category id, 1..13")
    category_name: str
    score: float
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the EXIF-oriented image")
    area: int = Field(description="mask area in pixels")
    polygons: list[list[float]] = Field(description="outer contours as flat [x1, y1, x2, y2, ...] (no holes)")
    mask_rle: MaskRLE


class ParseResponse(BaseModel):
    width: int = Field(description="of the image after EXIF orientation")
    height: int
    backend: str
    score_threshold: float
    inference_ms: float
    instances: list[ParsedInstance]


class Category(BaseModel):
    id: int
    name: str
    color: str = Field(description="overlay colour, #rrggbb")


class QueueState(BaseModel):
    workers: int
    pending: int = Field(description="requests running or waiting")
    capacity: int = Field(description="pending requests beyond which the service answers 503")


class Health(BaseModel):
    status: str
    backend: str
    device: str
    score_threshold: float
    queue: QueueState


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
