"""DF2 annotations computed from what was drawn: visible polygons, boxes, landmark flags, attributes.

For each garment layer, the *visible* region is its silhouette minus everything drawn after it, clipped
to the image, then opened (shrunk and regrown by ``OPEN_RADIUS`` with mitred corners) so that slivers
under one pixel wide peeking out from under a later layer are dropped. Its outer rings, rounded to
integer pixel corners, are the ``segmentation`` (a region with a hole is cut through the hole, since DF2
polygons have no holes; a polygon that rasterizes to no pixel is left out); ``bounding_box`` is the
extent of that segmentation as pycocotools rasterizes it.

Attributes (thresholds chosen so that shares land near the DF2 statistics of reference §5):

* ``scale``: box area / image area < ``SCALE_THRESHOLDS[0]`` small (1), < ``[1]`` moderate (2), else
  large (3).
* ``occlusion``: hidden fraction of the full silhouette (covered by later layers or outside the image)
  < ``OCCLUSION_THRESHOLDS[0]`` slight (1), < ``[1]`` medium (2), else heavy (3).
* ``zoom_in``: 1 if the silhouette keeps at least one pixel from the image border (so its rounded
  outline cannot touch it); otherwise 2, or 3 when the fraction outside the image is >= ``ZOOM_LARGE``.
* ``viewpoint``: 1 flat-lay (no wearer), 2 frontal, 3 side or back.

A garment whose visible area is under ``MIN_VISIBLE_FRACTION`` of its silhouette or under
``MIN_VISIBLE_PIXELS`` (scaled to a 512-pixel image) is not annotated and is counted as hidden.
Landmarks: v=2 visible (within ``OPEN_RADIUS`` of the visible region, and its pixel in or next to the
item's mask); v=1 inside the image but covered by a later layer or facing away; outside the image
x=y=v=0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pycocotools import mask as mask_utils

from fashionparse.categories import BY_ID
from fashionparse.data.synth.scene import Scene

SCALE_THRESHOLDS = (0.07, 0.26)
OCCLUSION_THRESHOLDS = (0.07, 0.74)
ZOOM_LARGE = 0.3
MIN_VISIBLE_FRACTION = 0.03
MIN_VISIBLE_PIXELS = 100
OPEN_RADIUS = 0.5  # px: visible parts narrower than twice this are slivers, not drawn garment


@dataclass(frozen=True)
class ItemFacts:
    """Areas (pixels) behind one annotated item's attributes."""

    silhouette_area: float
    visible_area: float
    outside_area: float


@dataclass(frozen=True)
class Annotation:
    """The DF2 annotation dict, facts per item (same order), and the garments left out as hidden."""

    data: dict
    facts: tuple[ItemFacts, ...]
    hidden_items: int


def _level(value: float, thresholds: tuple[float, ...]) -> int:
    return 1 + int(np.searchsorted(np.asarray(thresholds), value, side="right"))


def _without_holes(poly: shapely.Polygon) -> list[shapely.Polygon]:
    """Split a polygon by vertical cuts through its holes until none is left."""
    if not poly.interiors:
        return [poly]
    x = shapely.Polygon(poly.interiors[0]).representative_point().x
    minx, miny, maxx, maxy = poly.bounds
    halves = (shapely.box(minx - 1, miny - 1, x, maxy + 1), shapely.box(x, miny - 1, maxx + 1, maxy + 1))
    out = []
    for half in halves:
        for piece in _polygon_parts(poly.intersection(half)):
            out += _without_holes(piece)
    return out


def _polygon_parts(geom: shapely.Geometry) -> list[shapely.Polygon]:
    return [g for g in shapely.get_parts(geom) if isinstance(g, shapely.Polygon) and not g.is_empty]


def segmentation(geom: shapely.Geometry, size: int) -> tuple[list[list[int]], dict | None]:
    """Closed integer polygons (flat ``x, y, ...``, first point repeated) of a region in a ``size``
    squared image, and the COCO RLE of their union (None without polygons); polygons that rasterize to no
    pixel are left out. Each polygon is rasterized once, for both."""
    rings = []
    for part in _polygon_parts(geom):
        for poly in _without_holes(part):
            ring = np.rint(np.asarray(poly.exterior.coords)).astype(int)
            keep = np.concatenate([[True], np.any(ring[1:] != ring[:-1], axis=1)])
            ring = ring[keep]
            if len(ring) < 4:
                continue
            if not np.array_equal(ring[0], ring[-1]):
                ring = np.vstack([ring, ring[:1]])
            rings.append(ring.ravel().tolist())
    rles = mask_utils.frPyObjects(rings, size, size) if rings else []
    kept = [(flat, rle) for flat, rle in zip(rings, rles) if mask_utils.area(rle) > 0]
    if not kept:
        return [], None
    return [flat for flat, _ in kept], mask_utils.merge([rle for _, rle in kept])


def _opened(region: shapely.Geometry) -> shapely.Geometry:
    """``region`` without its parts narrower than ``2 * OPEN_RADIUS`` (mitred offsets keep its corners)."""
    grown = region.buffer(-OPEN_RADIUS, join_style="mitre").buffer(OPEN_RADIUS, join_style="mitre")
    return shapely.intersection(grown, region)


def _landmarks(points: np.ndarray, hidden: np.ndarray, visible: shapely.Geometry, mask: np.ndarray,
               size: int) -> list[int]:
    """Flat ``x, y, v`` triples; v=2 needs the point within ``OPEN_RADIUS`` of the visible region and its
    rounded pixel in, or next to, a pixel of the written mask (not at the tip of a wedge that rasterizes
    to nothing)."""
    inside = np.all((points >= 0) & (points < size), axis=1)
    near = shapely.dwithin(visible, shapely.points(points), OPEN_RADIUS)
    xy = np.clip(np.rint(points), 0, size - 1).astype(int)
    out = []
    for (x, y), ok, vis, hid in zip(xy, inside, near, hidden):
        touches = bool(mask[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any())
        out += [int(x), int(y), 2 if vis and touches and not hid else 1] if ok else [0, 0, 0]
    return out


def annotate(scene: Scene) -> Annotation:
    """DF2 annotation of ``scene`` (items numbered in drawing order, hidden garments skipped)."""
    size = scene.size
    frame = shapely.box(0, 0, size, size)
    inner = shapely.box(1.0, 1.0, size - 1.0, size - 1.0)
    above = [shapely.Polygon()] * len(scene.layers)  # union of the layers drawn after each layer
    acc = shapely.Polygon()
    for i in range(len(scene.layers) - 1, -1, -1):
        above[i] = acc
        acc = shapely.union(acc, scene.layers[i].geom)
    data: dict = {"source": scene.source, "pair_id": scene.pair_id}
    facts: list[ItemFacts] = []
    hidden = 0
    min_px = MIN_VISIBLE_PIXELS * (size / 512) ** 2
    for layer, cover in zip(scene.layers, above):
        g = layer.garment
        if g is None:
            continue
        sil = layer.geom
        inside = shapely.intersection(sil, frame)
        visible = _opened(shapely.difference(inside, cover))
        polys, rle = segmentation(visible, size)
        vis_px = float(mask_utils.area(rle)) if rle is not None else 0.0
        if vis_px < min_px or visible.area < MIN_VISIBLE_FRACTION * sil.area:
            hidden += 1
            continue
        x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(rle))
        outside = sil.area - inside.area
        cut = not shapely.contains(inner, sil)
        facts.append(ItemFacts(sil.area, visible.area, outside))
        data[f"item{len(facts)}"] = {
            "category_id": g.category_id,
            "category_name": BY_ID[g.category_id].name,
            "style": g.style,
            "bounding_box": [x, y, x + w, y + h],
            "landmarks": _landmarks(g.landmarks, g.hidden, visible, mask_utils.decode(rle), size),
            "segmentation": polys,
            "scale": _level(w * h / size**2, SCALE_THRESHOLDS),
            "occlusion": _level(1.0 - visible.area / sil.area, OCCLUSION_THRESHOLDS),
            "zoom_in": (3 if outside >= ZOOM_LARGE * sil.area else 2) if cut else 1,
            "viewpoint": g.viewpoint,
        }
    return Annotation(data, tuple(facts), hidden)
