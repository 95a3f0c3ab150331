"""Paint a :class:`~fashionparse.data.synth.scene.Scene`: backdrop, textured and shaded layers, camera noise.

Layers are filled exactly inside their shapely geometry (so pixels agree with the annotations to
rounding), one bounding-box crop at a time: the texture and shading are computed with numpy on the crop
and pasted through the layer's mask with PIL. Pixel ``(i, j)`` is painted when its centre
``(i + 0.5, j + 0.5)`` is inside a polygon, the convention pycocotools rasterizes polygons with.
"""

from __future__ import annotations

import numpy as np
import shapely
from PIL import Image, ImageDraw, ImageFilter

from fashionparse.data.synth.appearance import random_colour, shading, texture
from fashionparse.data.synth.scene import Layer, Scene

SOFT_FOCUS_P = 0.5  # share of images softened by a slight blur (the rest keep crisp edges)

def _gradient(rng: np.random.Generator, size: int, a, b) -> Image.Image:
    """Linear RGB gradient from colour ``a`` to ``b`` in a random direction, ``size`` squared.

    The ramp is computed once as an 8-bit level image and coloured per channel with lookup tables.
    """
    t = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + t[None, :] * np.float32(np.cos(angle)) + t[:, None] * np.float32(np.sin(angle)), 0, 1)
    level = Image.fromarray((ramp * 255).astype(np.uint8))
    steps = np.linspace(0.0, 1.0, 256)
    return Image.merge("RGB", [level.point(np.clip(a[c] + (b[c] - a[c]) * steps, 0, 255).astype(np.uint8).tolist())
                               for c in range(3)])


def _random_shapes(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, count: int) -> None:
    """Rectangles, ellipses, polygons and thick lines in random colours (furniture, windows, props)."""
    for _ in range(count):
        colour = random_colour(rng, 0.5)
        x, y = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.5, 2) * size
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        elif kind == 2:
            pts = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * [w, h] + [x, y]
            draw.polygon([tuple(p) for p in pts], fill=colour)
        else:
            draw.line([x, y, x + w * rng.choice([-1, 1]), y + h], fill=colour, width=int(rng.integers(2, 12)))


def _backdrop(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
    """Plain studio light, a flat-lay surface (plain, or planks/fabric with streaks), or clutter."""
    if kind in ("plain", "flatlay"):
        base = np.array(random_colour(rng, 1.0)) * 0.25 + rng.uniform(170, 245)
        textured = kind == "flatlay" and rng.random() < 0.3
        if textured:
            base = np.array(random_colour(rng, 0.3))
        img = _gradient(rng, size, base, base * rng.uniform(0.85, 1.0))
        if textured:
            draw = ImageDraw.Draw(img)
            for y in rng.uniform(0, size, int(rng.integers(10, 40))):
                draw.line([0, y, size, y + rng.normal(0, 4)], fill=_shade(base, rng.uniform(0.85, 1.1)),
                          width=int(rng.integers(1, 4)))
        return img
    img = _gradient(rng, size, random_colour(rng), random_colour(rng))
    horizon = int(size * rng.uniform(0.55, 0.85))
    floor = _gradient(rng, size, random_colour(rng), random_colour(rng))
    img.paste(floor.crop((0, horizon, size, size)), (0, horizon))
    _random_shapes(rng, ImageDraw.Draw(img), size, int(rng.integers(6, 22)))
    radius = int(rng.integers(0, 4))  # depth of field
    return img.filter(ImageFilter.BoxBlur(radius)) if radius else img


def layer_mask(geom: shapely.Geometry, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Boolean mask of the pixels in columns ``x0..x1-1``, rows ``y0..y1-1`` whose centre is inside
    ``geom`` (pycocotools' rule, so painted pixels match the rasterized annotations; PIL's polygon fill
    would also paint the outline pixels).

    A scanline fill: along each row of pixel centres, a pixel is inside when an odd number of ring
    edges cross the row to its left (even-odd rule, exact for valid polygons with holes).
    """
    rings = shapely.get_rings(shapely.get_parts(shapely.get_parts(geom)))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]  # consecutive vertices of one ring form an edge
    (ax, ay), (bx, by) = xy[:-1][same].T, xy[1:][same].T
    # rows whose centre y0 + r + 0.5 lies in [min(ay, by), max(ay, by)): each crossing counted once
    first = np.clip(np.ceil(np.minimum(ay, by) - y0 - 0.5), 0, y1 - y0).astype(int)
    stop = np.clip(np.ceil(np.maximum(ay, by) - y0 - 0.5), 0, y1 - y0).astype(int)
    count = stop - first
    edge = np.repeat(np.arange(len(count)), count)
    row = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    t = (y0 + row + 0.5 - ay[edge]) / (by[edge] - ay[edge])
    x_cross = ax[edge] + t * (bx[edge] - ax[edge])
    width = x1 - x0
    col = np.clip(np.ceil(x_cross - x0 - 0.5), 0, width).astype(int)  # first pixel right of the crossing
    toggles = np.bincount(row * (width + 1) + col, minlength=(y1 - y0) * (width + 1))
    return (np.cumsum(toggles.reshape(y1 - y0, width + 1), axis=1)[:, :width] % 2).astype(bool)


def _shade(colour: np.ndarray, factor: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.asarray(colour) * factor, 0, 255))  # type: ignore[return-value]


def _paint_details(img: Image.Image, layer: Layer, shift: tuple[float, float]) -> None:
    """Seams, bands, lapels, buttons, zips and prints of a layer, on its crop."""
    draw = ImageDraw.Draw(img)
    look = layer.look
    for d in layer.details:
        pts = [tuple(p) for p in d.points - np.asarray(shift) - 0.5]
        width = max(1, int(round(d.width)))
        if d.kind == "seam":
            draw.line(pts, fill=_shade(look.base, 0.62), width=width)
        elif d.kind == "band":
            draw.line(pts, fill=_shade(look.trim, 0.85), width=width, joint="curve")
        elif d.kind == "fill":
            draw.polygon(pts, fill=_shade(look.base, 0.72))
        elif d.kind == "logo":
            draw.polygon(pts, fill=tuple(look.trim) if look.trim != look.base else _shade(look.second, 1.0))
        elif d.kind == "zip":
            draw.line(pts, fill=(200, 200, 205), width=width)
        elif d.kind == "button":
            r = max(1.0, d.width / 2)
            for x, y in pts:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=_shade(look.trim, 0.6))


def _paint_layer(canvas: Image.Image, layer: Layer, rng: np.random.Generator, shadow: bool) -> None:
    """Paint one layer (textured, shaded, with details) through its exact mask, on its bounding crop."""
    size = canvas.size[0]
    margin = 8 if shadow else 1  # room for the blurred shadow
    x0, y0, x1, y1 = layer.geom.bounds
    x0, y0 = max(0, int(np.floor(x0)) - margin), max(0, int(np.floor(y0)) - margin)
    x1, y1 = min(size, int(np.ceil(x1)) + margin), min(size, int(np.ceil(y1)) + margin)
    if x1 <= x0 or y1 <= y0:
        return
    shift = (float(x0), float(y0))
    mask = Image.fromarray(layer_mask(layer.geom, x0, y0, x1, y1).astype(np.uint8) * 255)
    if shadow:  # soft drop shadow under a flat-laid garment
        blur = mask.filter(ImageFilter.BoxBlur(6))
        off = int(rng.integers(2, 6))
        dark = Image.new("RGB", mask.size, (0, 0, 0))
        canvas.paste(dark, (x0 + off, y0 + off), blur.point(lambda v: v * 0.35))
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5
    u, v = layer.camera.to_body(xs[None, :], ys[:, None])
    u, v = np.broadcast_arrays(u, v)
    rgb = texture(layer.look, u, v, rng) * shading(rng, u, v, layer.cloth)[..., None]
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    _paint_details(img, layer, shift)
    canvas.paste(img, (x0, y0), mask)


def render_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The RGB image of ``scene``: backdrop, layers in order, then blur, noise and exposure jitter."""
    canvas = _backdrop(rng, scene.backdrop, scene.size)
    for layer in scene.layers:
        _paint_layer(canvas, layer, rng, shadow=scene.backdrop == "flatlay")
    if rng.random() < SOFT_FOCUS_P:  # lens softness: a 3x3 blur, stronger for a smaller centre weight
        centre = float(rng.uniform(4, 12))
        canvas = canvas.filter(ImageFilter.Kernel((3, 3), [1, 2, 1, 2, centre, 2, 1, 2, 1]))
    gain, bias = rng.uniform(0.85, 1.12), rng.uniform(-12, 12)  # exposure
    canvas = canvas.point(np.clip(np.arange(256) * gain + bias, 0, 255).astype(np.uint8).tolist() * 3)
    amp = int(rng.integers(1, 7))  # sensor noise
    noise = rng.integers(-amp, amp + 1, (scene.size, scene.size, 3), dtype=np.int16)
    arr = np.asarray(canvas, dtype=np.int16) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
