"""Small 2-D helpers for building outlines: curves, strips along a polyline, and the camera.

Points are float arrays of shape ``(k, 2)`` holding ``(x, y)`` with y pointing down. Image coordinates
use the COCO/pycocotools convention: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely


def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Point(s) a fraction ``t`` of the way from ``a`` to ``b``."""
    return np.asarray(a) + (np.asarray(b) - np.asarray(a)) * t


def bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    """``n`` points of the quadratic Bezier curve p0 -> p2 with control p1, ends included; (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def ellipse(center: np.ndarray, rx: float, ry: float, n: int = 24, angle: float = 0.0) -> np.ndarray:
    """Polygon approximating an ellipse rotated by ``angle`` radians; (n, 2)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * x - s * y, s * x + c * y], axis=1) + np.asarray(center)


def polyline_at(line: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Points at arc lengths ``dist`` (clamped; extrapolated past the end) along a polyline; (m, 2)."""
    seg = np.diff(line, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    dist = np.atleast_1d(np.asarray(dist, dtype=float))
    idx = np.clip(np.searchsorted(cum, dist, side="right") - 1, 0, len(seg) - 1)
    t = (dist - cum[idx]) / seg_len[idx]
    return line[idx] + seg[idx] * t[:, None]


def strip_edges(center: np.ndarray, half_width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two edges of a band of varying half width around a polyline.

    Returns ``(plus, minus)``, each (k, 2): ``center ± half_width * n`` with ``n = (dy, -dx)`` the unit
    normal of the local direction (averaged at inner vertices so that bends do not fold).
    """
    d = np.gradient(center, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    n = np.stack([d[:, 1], -d[:, 0]], axis=1)
    off = n * np.asarray(half_width, dtype=float)[:, None]
    return center + off, center - off


def to_geometry(parts: list[np.ndarray]) -> shapely.Geometry:
    """Union of polygons (each (k, 2)), repaired where an outline crosses itself."""
    polys = [shapely.make_valid(shapely.Polygon(p)) for p in parts if len(p) >= 3]
    return shapely.union_all(polys)


@dataclass(frozen=True)
class Camera:
    """Maps body-frame points (units ~ one head height) to image pixels.

    Steps: an optional view warp in the body frame (``mirror`` for a back view; ``squash`` scales x
    separately on the figure's right (x < 0) and left (x > 0) side for a side view), then a similarity
    (``scale`` pixels per unit, rotation ``angle`` radians, translation ``offset``), then a mild keystone
    perspective ``persp`` = (g, h) about the image centre ``center``.
    """

    scale: float
    angle: float
    offset: tuple[float, float]
    center: tuple[float, float]
    squash: tuple[float, float] = (1.0, 1.0)
    mirror: bool = False
    persp: tuple[float, float] = (0.0, 0.0)

    def warp(self, pts: np.ndarray) -> np.ndarray:
        """The body-frame view warp alone; (k, 2) -> (k, 2)."""
        pts = np.array(pts, dtype=float, copy=True).reshape(-1, 2)
        if self.mirror:
            pts[:, 0] = -pts[:, 0]
        pts[:, 0] *= np.where(pts[:, 0] < 0, self.squash[0], self.squash[1])
        return pts

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """Body frame -> image pixels; (k, 2) -> (k, 2)."""
        pts = self.warp(pts)
        c, s = np.cos(self.angle), np.sin(self.angle)
        xy = pts @ np.array([[c, s], [-s, c]]) * self.scale + np.asarray(self.offset)
        rel = xy - np.asarray(self.center)
        w = 1.0 + rel @ np.asarray(self.persp)
        return np.asarray(self.center) + rel / w[:, None]

    def to_body(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Approximate inverse of the similarity step (pixel -> body units) for texture coordinates."""
        c, s, k = float(np.cos(self.angle)), float(np.sin(self.angle)), 1.0 / self.scale
        dx, dy = (x - self.offset[0]) * k, (y - self.offset[1]) * k
        return c * dx + s * dy, -s * dx + c * dy
