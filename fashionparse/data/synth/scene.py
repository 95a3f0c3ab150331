"""Lay out one image: who wears what, from which side, how the camera frames it, what occludes what.

:func:`compose_scene` turns an :class:`~fashionparse.data.synth.plan.ImagePlan` into a :class:`Scene`: an
ordered list of opaque :class:`Layer` s in image pixels (later layers cover earlier ones). Shop images
are flat-lays (viewpoint 1) or a model on a plain backdrop; user images show one or two worn outfits in
front of clutter, sometimes with hair or a bag over the clothes. Framings range from a small full
figure to close-ups that cut garments at the image border.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from fashionparse.categories import NUM_CATEGORIES
from fashionparse.data.synth.appearance import HAIR_COLOURS, SKIN_TONES, Look, flat_look, random_colour, sample_look
from fashionparse.data.synth.body import SIDES, Pose, body_shapes, sample_pose
from fashionparse.data.synth.garments import BOTTOMS, DRESSES, Detail, GarmentGeometry, build_garment
from fashionparse.data.synth.geometry import Camera, to_geometry
from fashionparse.data.synth.plan import (SECOND_PERSON_P, GarmentSpec, ImagePlan, category_weights,
                                          sample_garment, sample_outfit, target_weights)

VIEWPOINT = {"flat": 1, "front": 2, "side": 3, "back": 3}
# vertical extent (body units) of each framing: full figure, to the knees, upper body, torso to knees, legs
FRAMINGS = {"full": (-1.5, 7.3), "knee": (-1.5, 5.3), "upper": (-1.5, 3.7), "mid": (-0.2, 5.0), "lower": (1.9, 7.3)}
_FRAMING_P = {  # framing weights by the slot of the outfit's target garment
    "upper": {"full": 0.3, "knee": 0.25, "upper": 0.3, "mid": 0.15},
    "bottom": {"full": 0.4, "knee": 0.1, "mid": 0.2, "lower": 0.3},
    "dress": {"full": 0.45, "knee": 0.25, "upper": 0.1, "mid": 0.2},
}
BAG_P = 0.2


@dataclass(frozen=True)
class Garment:
    """Annotation facts of a drawn garment: landmarks (n, 2) in pixels and back-facing flags (n,)."""

    category_id: int
    style: int
    viewpoint: int
    landmarks: np.ndarray
    hidden: np.ndarray


@dataclass(frozen=True)
class Layer:
    """One opaque surface in image pixels; ``camera`` maps its texture; ``garment`` is set for clothes."""

    geom: shapely.Geometry
    look: Look
    camera: Camera
    details: tuple[Detail, ...] = ()
    garment: Garment | None = None
    cloth: bool = False


@dataclass(frozen=True)
class Scene:
    """One image to paint and annotate: ``size`` x ``size`` pixels, its DF2 image-level fields, the
    backdrop style and the layers in drawing order."""

    size: int
    source: str
    pair_id: int
    backdrop: str  # plain | flatlay | clutter
    layers: tuple[Layer, ...] = field(default=())


def image_rng(plan: ImagePlan) -> np.random.Generator:
    """The per-image generator, seeded by ``(seed, image_id)`` only."""
    return np.random.default_rng(np.random.SeedSequence([plan.seed, 2, plan.image_id]))


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _distinct_garment(rng: np.random.Generator, category_id: int, others: list[GarmentSpec]) -> GarmentSpec:
    """A fresh garment whose colour differs from the others in the outfit (so a top and skirt never
    read as one dress)."""
    spec = sample_garment(rng, category_id)
    for _ in range(6):
        if all(np.linalg.norm(np.subtract(spec.look.base, o.look.base)) > 70 for o in others):
            break
        spec = GarmentSpec(category_id, spec.cut, sample_look(rng, category_id))
    return spec


def _dress_up(rng: np.random.Generator, fixed: list[tuple[int, GarmentSpec]],
              p: np.ndarray) -> list[tuple[int, GarmentSpec]]:
    """Complete an outfit around the fixed garments; (style, garment) in drawing order."""
    by_cat = {g.category_id: (s, g) for s, g in fixed}
    outfit = []
    for cid in sample_outfit(rng, tuple(by_cat), p):
        if cid not in by_cat:
            by_cat[cid] = (0, _distinct_garment(rng, cid, [g for _, g in by_cat.values()]))
        outfit.append(by_cat[cid])
    return outfit


def _slot(category_id: int) -> str:
    return "bottom" if category_id in BOTTOMS else "dress" if category_id in DRESSES else "upper"


def _view(rng: np.random.Generator, shop: bool) -> str:
    return _choice(rng, {"front": 0.8, "side": 0.1, "back": 0.1} if shop else
                   {"front": 0.86, "side": 0.07, "back": 0.07})


def _camera(rng: np.random.Generator, size: int, view: str, *, framing: str, fill: float,
            anchor: tuple[float, float]) -> Camera:
    """Camera that maps the ``framing`` band to ``fill`` of the image height, centred at ``anchor``
    (fractions of the image), with a small tilt, keystone and the view's warp."""
    top, bottom = FRAMINGS[framing]
    scale = fill * size / (bottom - top)
    angle = float(np.radians(rng.normal(0, 3)))
    offset = (anchor[0] * size, anchor[1] * size - (top + bottom) / 2 * scale)
    squash = (1.0, 1.0)
    if view == "side":
        near, far = rng.uniform(0.62, 0.85), rng.uniform(0.35, 0.55)
        squash = (near, far) if rng.random() < 0.5 else (far, near)
    persp = tuple(float(x) for x in rng.uniform(-0.12, 0.12, 2) / size)
    return Camera(scale, angle, offset, (size / 2, size / 2), squash, view == "back", persp)


def _bag(rng: np.random.Generator, pose: Pose) -> list[np.ndarray]:
    """A handbag at one hip, with a strap over the same or the opposite shoulder (body units)."""
    side = int(rng.integers(2))
    sign = SIDES[side]
    c = np.array([sign * (pose.hip + rng.uniform(0.1, 0.5)), rng.uniform(2.6, 3.6)])
    w, h = rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.6)
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    body = c + np.stack([w * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.4,
                         h * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.4], axis=1)
    cross = rng.random() < 0.5
    top = np.array([(-sign if cross else sign) * pose.shoulder * 0.55, 0.05])
    end = c - np.array([0.0, h])
    d = (end - top) / np.linalg.norm(end - top)
    n = np.array([d[1], -d[0]]) * 0.05
    return [body, np.array([top + n, end + n, end - n, top - n])]


def _garment_layer(geo: GarmentGeometry, cam: Camera, spec: GarmentSpec, style: int, viewpoint: int) -> Layer:
    """The layer of a garment built in body units, placed by ``cam``."""
    placed = geo.placed(cam)
    garment = Garment(spec.category_id, style, viewpoint, placed.landmarks, placed.hidden)
    return Layer(to_geometry(list(placed.parts)), spec.look, cam, placed.details, garment, cloth=True)


def _person(rng: np.random.Generator, outfit: list[tuple[int, GarmentSpec]], size: int, *, shop: bool,
            target: int | None, bag: bool, safe: bool = False) -> list[Layer]:
    """Layers of one dressed figure: hair behind, skin, shoes, face, hair, clothes, hair in front, bag.

    The camera frames the ``target`` garment's slot; ``target=None`` makes a small background figure;
    ``safe`` is a centred frontal full figure (every garment in view).
    """
    view = "front" if safe else _view(rng, shop)
    pose = sample_pose(rng, flat=False)
    shapes = body_shapes(pose, rng, view == "back")
    if safe:
        cam = _camera(rng, size, view, framing="full", fill=0.85, anchor=(0.5, 0.5))
    elif target is None:
        cam = _camera(rng, size, view, framing="full", fill=rng.uniform(0.3, 0.6),
                      anchor=(rng.choice([rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9)]), rng.uniform(0.3, 0.6)))
    else:
        framing = _choice(rng, _FRAMING_P[_slot(target)])
        far = not shop and framing == "full" and rng.random() < 0.3
        close_up = rng.uniform(1.1, 1.6) if rng.random() < 0.35 else 1.0
        fill = rng.uniform(0.5, 0.8) if far else rng.uniform(0.8, 1.05) * close_up
        jitter = 0.25 if far else 0.08
        cam = _camera(rng, size, view, framing=framing, fill=fill,
                      anchor=(0.5 + rng.uniform(-jitter, jitter), 0.5 + rng.uniform(-0.05, 0.05)))
    skin = flat_look(SKIN_TONES[rng.integers(len(SKIN_TONES))])
    hair = flat_look(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))])
    shoes = flat_look(random_colour(rng, 0.8))

    def layer(polys, look: Look, **kw) -> list[Layer]:
        """A layer from body-frame polygons (empty when there are none)."""
        return [Layer(to_geometry([cam(p) for p in polys]), look, cam, **kw)] if len(polys) else []

    marks = tuple(Detail("fill", cam(m)) for m in shapes.face_marks)
    layers = layer(shapes.back_hair, hair) + layer(shapes.skin, skin, details=marks) + layer(shapes.shoes, shoes)
    layers += layer(shapes.hair_cap, hair)
    for style, spec in outfit:
        layers.append(_garment_layer(build_garment(spec.category_id, spec.cut, pose, view), cam, spec, style,
                                     VIEWPOINT[view]))
    layers += layer(shapes.front_hair, hair)
    if bag:
        layers += layer(_bag(rng, pose), flat_look(random_colour(rng, 0.7)), cloth=True)
    return layers


def _flat_lay(rng: np.random.Generator, style: int, spec: GarmentSpec, size: int) -> list[Layer]:
    """One garment laid flat, filling most of the frame, slightly rotated, sometimes cut."""
    pose = sample_pose(rng, flat=True)
    geo = build_garment(spec.category_id, spec.cut, pose, "flat")
    x0, y0, x1, y1 = to_geometry(list(geo.parts)).bounds
    fill = rng.uniform(0.5, 0.92) if rng.random() < 0.85 else rng.uniform(1.0, 1.3)
    scale = fill * size / max(x1 - x0, y1 - y0)
    angle = float(np.radians(rng.uniform(-12, 12)))
    c, s = np.cos(angle), np.sin(angle)
    mid = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    slack = max(0.0, 1 - fill) * size / 2
    target = np.array([size / 2, size / 2]) + rng.uniform(-slack, slack, 2) * 0.8
    offset = target - np.array([[c, -s], [s, c]]) @ mid * scale
    cam = Camera(scale, angle, (float(offset[0]), float(offset[1])), (size / 2, size / 2))
    return [_garment_layer(geo, cam, spec, style, VIEWPOINT["flat"])]


def compose_scene(plan: ImagePlan, size: int, rng: np.random.Generator, *, safe: bool = False) -> Scene:
    """All layers of image ``plan.image_id`` at ``size`` x ``size`` pixels.

    ``safe`` drops the random framing, side/back views, the second person and the bag, so that every
    garment of the outfit is in view (the fallback when a shared garment ended up hidden).
    """
    p = category_weights(plan.balanced)
    fixed = list(plan.shared) or [(0, sample_garment(rng, plan.target))]
    shop = plan.source == "shop"
    if plan.flat:
        return Scene(size, plan.source, plan.pair_id, "flatlay", tuple(_flat_lay(rng, *fixed[0], size)))
    layers: list[Layer] = []
    if not shop and not safe and rng.random() < SECOND_PERSON_P:
        other = int(rng.choice(NUM_CATEGORIES, p=target_weights(p))) + 1
        outfit = _dress_up(rng, [(0, sample_garment(rng, other))], p)
        layers += _person(rng, outfit, size, shop=False, target=None, bag=False)
    outfit = _dress_up(rng, fixed, p)
    bag = not shop and not safe and rng.random() < BAG_P
    layers += _person(rng, outfit, size, shop=shop, target=plan.target, bag=bag, safe=safe)
    return Scene(size, plan.source, plan.pair_id, "plain" if shop else "clutter", tuple(layers))
