"""Parametric garment templates: per-category outline polygons, landmarks and drawn details.

A garment is cut around a :class:`~fashionparse.data.synth.body.Pose` (worn or flat-laid) from a
:class:`Cut` (its random proportions). :func:`build_garment` returns, in body units, the outline parts
(their union is the silhouette), the landmarks in the order of
:data:`~fashionparse.data.synth.landmarks.LANDMARK_NAMES`, which landmarks face away from the camera
(back view), and decorative details (seams, collar/cuff/waist bands, lapels, buttons, pockets).

The cues that separate the categories are in the outlines: sleeve length (none / short / long), thin
straps (sling), wide shoulders without sleeves (vest), a front opening with lapels and two panels
(outwear), hem length (top vs dress), and two short legs / two long legs / one trapezoid (shorts,
trousers, skirt).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fashionparse.data.synth.body import (FOREARM, SHIN, SIDES, THIGH, UPPER_ARM, Y_ARMPIT, Y_CROTCH, Y_HIP,
                                          Y_WAIST, Pose)
from fashionparse.data.synth.geometry import Camera, bezier, lerp, polyline_at, strip_edges
from fashionparse.data.synth.landmarks import LANDMARK_NAMES

TOPS, OUTWEAR, BOTTOMS, DRESSES = (1, 2, 5, 6), (3, 4), (7, 8, 9), (10, 11, 12, 13)
SHORT_SLEEVED, LONG_SLEEVED, SLEEVELESS, STRAPPED = (1, 3, 10), (2, 4, 11), (5, 12), (6, 13)
NECK_TOP = -0.06  # height of the neck points
BACK_NECK_DEPTH = 0.1  # height of the back neckline's centre (the drawn neckline in back views)


@dataclass(frozen=True)
class Cut:
    """Random proportions of one garment (body units; only the fields its category uses matter)."""

    ease: float = 0.1  # looseness: relative extra width over the body
    length: float = 3.0  # hem height (upper garments, skirts) or leg length (shorts, trousers)
    neck_width: float = 0.33
    neck_depth: float = 0.25  # front neckline depth; outwear: where the front opening starts
    v_neck: bool = False
    sleeve: float = 0.6  # sleeve length along the arm
    cuff: float = 0.3  # sleeve half width at the cuff
    strap: float = 0.3  # vest shoulder width / sling strap width
    strap_x: float = 0.42  # sling: inner edge of a strap where it meets the top edge
    edge_y: float = 0.95  # sling: height of the top edge
    flare: float = 0.3  # skirt part: widening towards the hem
    rise: float = 2.4  # bottoms and skirts: waistband height
    hem_width: float = 0.3  # shorts/trousers: half width of a leg opening
    gap_top: float = 0.2  # worn outwear: half width of the opening at its top and at the hem
    gap_hem: float = 0.3
    hem_curve: float = 0.04
    buttons: bool = True  # outwear: buttons (else a zip)
    pockets: bool = False
    logo: bool = False  # tops: a printed chest graphic
    belt: bool = False


def sample_cut(rng: np.random.Generator, category_id: int) -> Cut:
    """Random proportions for a garment of ``category_id``."""
    u = rng.uniform
    cid = category_id
    kw: dict = {"neck_width": u(0.26, 0.4), "hem_curve": u(-0.04, 0.12), "pockets": bool(rng.random() < 0.5)}
    v_neck = bool(rng.random() < 0.3)
    kw["v_neck"] = v_neck
    kw["neck_depth"] = u(0.45, 0.9) if v_neck else u(0.12, 0.35)
    if cid in TOPS:
        kw |= {"ease": u(0.02, 0.22), "length": u(2.55, 3.5), "logo": bool(rng.random() < 0.25)}
    if cid in OUTWEAR:
        long_coat = cid == 4 and rng.random() < 0.3
        kw |= {"ease": u(0.12, 0.3), "length": u(4.0, 5.4) if long_coat else u(2.8, 3.9),
               "neck_depth": u(0.5, 1.4), "gap_top": u(0.12, 0.35), "gap_hem": u(0.12, 0.6),
               "buttons": bool(rng.random() < 0.6)}
    if cid in DRESSES:
        kw |= {"ease": u(0.02, 0.18), "length": u(3.9, 6.3), "flare": u(0.0, 0.9), "belt": bool(rng.random() < 0.3)}
    if cid in SHORT_SLEEVED:
        kw |= {"sleeve": u(0.6, 1.15), "cuff": u(0.26, 0.4)}
    if cid in LONG_SLEEVED:
        kw |= {"sleeve": UPPER_ARM + FOREARM * u(0.85, 1.05), "cuff": u(0.15, 0.22)}
    if cid in OUTWEAR:
        kw["cuff"] = kw["cuff"] + 0.05
    if cid in SLEEVELESS:
        kw |= {"strap": u(0.22, 0.45), "ease": u(0.0, 0.15)}
    if cid in STRAPPED:
        kw |= {"strap": u(0.04, 0.09), "strap_x": u(0.3, 0.5), "edge_y": u(0.75, 1.15), "ease": u(0.0, 0.12)}
    if cid in (5, 6):
        kw["length"] = u(2.45, 3.4)
    if cid in (7, 8):
        kw |= {"ease": u(0.0, 0.3), "rise": u(2.2, 2.7), "belt": bool(rng.random() < 0.2)}
        kw |= ({"length": u(0.8, 1.35), "hem_width": u(0.27, 0.4)} if cid == 7 else
               {"length": THIGH + SHIN * u(0.85, 1.05), "hem_width": u(0.17, 0.42)})
    if cid == 9:
        kw |= {"ease": u(0.0, 0.2), "rise": u(2.1, 2.6), "length": u(3.6, 6.2), "flare": u(0.0, 1.0)}
    return Cut(**kw)


@dataclass(frozen=True)
class Detail:
    """A decoration drawn inside the garment (clipped to its silhouette).

    ``kind``: ``seam`` (thin dark polyline), ``band`` (thick polyline in the trim colour), ``fill``
    (polygon in a darker shade), ``logo`` (polygon in the trim colour), ``button`` (dots at the points),
    ``zip`` (thin light polyline). ``width`` is in the same units as ``points``.
    """

    kind: str
    points: np.ndarray
    width: float = 0.05


@dataclass(frozen=True)
class GarmentGeometry:
    """Outline parts (union = silhouette), landmarks (n, 2), back-facing flags (n,) and details."""

    parts: tuple[np.ndarray, ...]
    landmarks: np.ndarray
    hidden: np.ndarray
    details: tuple[Detail, ...] = field(default=())

    def placed(self, camera: Camera) -> GarmentGeometry:
        """The same garment mapped to image pixels by ``camera`` (widths scaled too)."""
        return GarmentGeometry(tuple(camera(p) for p in self.parts), camera(self.landmarks), self.hidden,
                               tuple(replace(d, points=camera(d.points), width=d.width * camera.scale)
                                     for d in self.details))


class _Builder:
    """Collects named landmark points, parts and details for one garment."""

    def __init__(self, category_id: int) -> None:
        self.category_id = category_id
        self.points: dict[str, np.ndarray] = {}
        self.hidden: set[str] = set()
        self.parts: list[np.ndarray] = []
        self.details: list[Detail] = []

    def put(self, name: str, point, hidden: bool = False) -> np.ndarray:
        self.points[name] = np.asarray(point, dtype=float)
        if hidden:
            self.hidden.add(name)
        return self.points[name]

    def detail(self, kind: str, points, width: float = 0.05) -> None:
        self.details.append(Detail(kind, np.asarray(points, dtype=float).reshape(-1, 2), width))

    def finish(self) -> GarmentGeometry:
        names = LANDMARK_NAMES[self.category_id]
        landmarks = np.stack([self.points[n] for n in names])
        hidden = np.array([n in self.hidden for n in names])
        return GarmentGeometry(tuple(self.parts), landmarks, hidden, tuple(self.details))


def _width(pose: Pose, cut: Cut, y: float) -> float:
    """Half width of an upper garment at height ``y``: the body plus ease, straighter when loose."""
    body = float(pose.half_width(y))
    return body * (1 + cut.ease) + cut.ease * 0.6 * max(pose.chest - body, 0.0) + 0.03


def _neckline(b: _Builder, cut: Cut, back: bool) -> np.ndarray:
    """Neckline from the garment's right neck point to its left (the back one in back views); registers
    the neck landmarks. ``neck_back`` sits on the back neckline's centre, which is only drawn in back views
    (elsewhere it is on the far side, behind the neck or under the front, and flagged hidden)."""
    nw = cut.neck_width
    b.put("neck_back", (0.0, BACK_NECK_DEPTH), hidden=not back)
    r, l = b.put("r_neck", (-nw, NECK_TOP)), b.put("l_neck", (nw, NECK_TOP))
    depth = BACK_NECK_DEPTH if back else cut.neck_depth
    if cut.v_neck and not back:
        curve = np.array([r, (0.0, depth), l])
        front = [lerp(r, curve[1], 0.5), curve[1], lerp(curve[1], l, 0.5)]
    else:
        theta = np.linspace(np.pi, 0.0, 9)
        curve = np.stack([nw * np.cos(theta), NECK_TOP + (depth - NECK_TOP) * np.sin(theta)], axis=1)
        front = [curve[2], curve[4], curve[6]]
    if back:  # the front neckline is on the far side: landmarks where it would be, flagged hidden
        front = [(-nw * 0.7, cut.neck_depth * 0.7), (0.0, cut.neck_depth), (nw * 0.7, cut.neck_depth * 0.7)]
    for name, p in zip(("r_neck_front", "neck_front", "l_neck_front"), front):
        b.put(name, p, hidden=back)
    return curve


def _sleeve(b: _Builder, pose: Pose, side: int, cut: Cut, long: bool) -> np.ndarray:
    """Sleeve polygon from the shoulder/armpit along the arm; registers the sleeve landmarks."""
    sign, pfx = SIDES[side], "rl"[side] + "_"
    shoulder, armpit = b.points[pfx + "shoulder"], b.points[pfx + "armpit"]
    length = cut.sleeve
    dists = np.array([0.0, UPPER_ARM / 2, UPPER_ARM, (UPPER_ARM + length) / 2, length] if long
                     else [0.0, length / 2, length])
    center = polyline_at(pose.arm[side], dists)
    w0 = np.linalg.norm(shoulder - armpit) / 2
    plus, minus = strip_edges(center, np.interp(dists, [0.0, length], [w0, cut.cuff * (1 + cut.ease)]))
    outer, inner = (plus, minus) if sign > 0 else (minus, plus)
    outer[0], inner[0] = shoulder, armpit
    names = (("sleeve_out_1", "elbow_out", "sleeve_out_3") if long else ("sleeve_out",))
    for i, name in enumerate(names, start=1):
        b.put(pfx + name, outer[i])
    if long:
        b.put(pfx + "sleeve_in_3", inner[3])
        b.put(pfx + "elbow_in", inner[2])
    b.put(pfx + "cuff_out", outer[-1])
    b.put(pfx + "cuff_in", inner[-1])
    b.detail("band", [lerp(outer[-1], outer[-2], 0.04), lerp(inner[-1], inner[-2], 0.04)], 0.1)
    b.detail("seam", [shoulder, armpit], 0.025)
    return np.concatenate([outer, inner[::-1]])


def _hem(b: _Builder, cut: Cut, right: np.ndarray, left: np.ndarray, name: str | None = "hem_center") -> np.ndarray:
    """Curved hem from the left hem corner to the right one (interior points only)."""
    mid = (right + left) / 2 + np.array([0.0, 2 * cut.hem_curve])
    curve = bezier(left, mid, right, 7)
    if name:
        b.put(name, curve[3])
    b.detail("band", curve, 0.06)
    return curve[1:-1]


def _shoulders(b: _Builder, pose: Pose, cut: Cut) -> None:
    """Shoulder tips (not for strapped garments) and armpits on both sides."""
    cid = b.category_id
    for side, sign in enumerate(SIDES):
        pfx = "rl"[side] + "_"
        if cid in STRAPPED:
            b.put(pfx + "armpit", (sign * _width(pose, cut, cut.edge_y + 0.1), cut.edge_y + 0.1))
        elif cid in SLEEVELESS:
            b.put(pfx + "shoulder", (sign * (cut.neck_width + cut.strap), 0.02))
            b.put(pfx + "armpit", (sign * _width(pose, cut, Y_ARMPIT) * 0.97, Y_ARMPIT + 0.22))
        else:
            b.put(pfx + "shoulder", (sign * pose.shoulder * (1 + 0.4 * cut.ease), 0.16))
            b.put(pfx + "armpit", (sign * _width(pose, cut, Y_ARMPIT), Y_ARMPIT + 0.08 + 0.5 * cut.ease))


def _side_levels(pose: Pose, cut: Cut, category_id: int, arm_y: float) -> list[tuple[str, float, float]]:
    """(name, height, half width) of the side-seam landmarks below the armpit, down to the hem."""
    hem_y = cut.length
    if category_id not in DRESSES:
        names = (("waist", Y_WAIST), ("hem", hem_y))
        if category_id not in SLEEVELESS + STRAPPED:
            names = (("side_upper", (arm_y + Y_WAIST) / 2), names[0], ("side_lower", (Y_WAIST + hem_y) / 2), names[1])
        return [(n, y, _width(pose, cut, y)) for n, y in names]
    waist_w = float(pose.half_width(Y_WAIST)) * (1 + 0.5 * cut.ease) + 0.03
    hip_w = float(pose.half_width(Y_HIP)) * (1 + cut.ease) + 0.03
    hem_w = hip_w + cut.flare * (hem_y - Y_HIP) * 0.45
    sleeved = category_id in (10, 11)
    skirt = [("skirt_mid", 1 / 3), ("skirt_low", 2 / 3)] if sleeved else [("skirt_mid", 0.5)]
    levels = [("side_upper", (arm_y + Y_WAIST) / 2, _width(pose, cut, (arm_y + Y_WAIST) / 2))] if sleeved else []
    levels += [("waist", Y_WAIST, waist_w), ("hip", Y_HIP, hip_w)]
    levels += [(n, Y_HIP + f * (hem_y - Y_HIP), hip_w + (hem_w - hip_w) * (f + 0.15 * np.sin(np.pi * f)))
               for n, f in skirt]
    return levels + [("hem", hem_y, hem_w)]


def _upper(b: _Builder, pose: Pose, cut: Cut, view: str) -> None:
    """Tops, outwear, vests, slings and all dresses."""
    cid = b.category_id
    back, worn = view == "back", view != "flat"
    outwear = cid in OUTWEAR
    _shoulders(b, pose, cut)
    levels = _side_levels(pose, cut, cid, float(b.points["r_armpit"][1]))
    side_names = [n for n, _, _ in levels]
    for side, sign in enumerate(SIDES):
        for name, y, w in levels:
            b.put("rl"[side] + "_" + name, (sign * w, y))
    if cid in DRESSES:
        b.detail("band" if cut.belt else "seam", [b.points["r_waist"], b.points["l_waist"]],
                 0.14 if cut.belt else 0.03)

    def side_chain(side: int) -> list[np.ndarray]:
        pfx = "rl"[side] + "_"
        top = [b.points[pfx + "shoulder"]] if cid not in STRAPPED else []
        return top + [b.points[pfx + "armpit"]] + [b.points[pfx + n] for n in side_names]

    right, left = side_chain(0), side_chain(1)
    if cid in SLEEVELESS:  # armholes curve inwards between the shoulder and the armpit
        for chain, sign in ((right, -1.0), (left, 1.0)):
            sh, ap = chain[0], chain[1]
            hole = bezier(sh, np.array([sign * (cut.neck_width + cut.strap) * 0.92, ap[1] - 0.15]), ap, 6)
            chain[1:1] = list(hole[1:-1])
            b.detail("band", hole, 0.06)
    if cid in STRAPPED:
        _straps(b, cut, worn)
        top = [b.points[n] for n in ("r_strap_out", "r_strap_in", "r_edge_mid")]
        top += [np.array([0.0, cut.edge_y + 0.08])]
        top += [b.points[n] for n in ("l_edge_mid", "l_strap_in", "l_strap_out")]
        b.detail("band", top, 0.05)
        neck = top
    else:
        neck = list(_neckline(b, cut, back))
        if not outwear:
            b.detail("band", neck, 0.08)
    if outwear:
        _outwear_panels(b, cut, neck, right, left, worn and not back, back)
    else:
        hem = _hem(b, cut, b.points["r_hem"], b.points["l_hem"])
        torso = np.concatenate([np.array(neck), np.array(left), hem, np.array(right[::-1])])
        b.parts.append(torso)
    if cid in SHORT_SLEEVED + LONG_SLEEVED:
        for side in range(2):
            b.parts.append(_sleeve(b, pose, side, cut, cid in LONG_SLEEVED))
    if cut.logo and cid in TOPS and not back:
        c = np.array([0.0, 1.3])
        b.detail("logo", c + np.array([[-0.35, -0.25], [0.35, -0.25], [0.35, 0.25], [-0.35, 0.25]]))


def _straps(b: _Builder, cut: Cut, worn: bool) -> None:
    """Thin shoulder straps of slings and sling dresses (one part each)."""
    for side, sign in enumerate(SIDES):
        pfx = "rl"[side] + "_"
        x_in, y = cut.strap_x, cut.edge_y
        inner = b.put(pfx + "strap_in", (sign * x_in, y + 0.02))
        outer = b.put(pfx + "strap_out", (sign * (x_in + cut.strap), y))
        b.put(pfx + "edge_mid", (sign * x_in * 0.5, y + 0.06))
        top_y = 0.03 if worn else y - 0.95
        top_x = sign * (x_in + cut.strap / 2 + (0.1 if worn else -0.02))
        top = b.put(pfx + "strap_top", (top_x, top_y))
        half = np.array([cut.strap / 2, 0.0])
        b.parts.append(np.array([inner, outer, top + sign * half, top - sign * half]))


def _outwear_panels(b: _Builder, cut: Cut, neck: list[np.ndarray], right: list, left: list, open_: bool,
                    back: bool) -> None:
    """Two front panels with a centre opening (gap when worn open), lapels, placket and pockets."""
    nw, hem_y, y0 = cut.neck_width, cut.length, cut.neck_depth
    g_top, g_hem = (cut.gap_top, cut.gap_hem) if open_ else (0.0, 0.0)
    ys = [y0, y0 + (hem_y - y0) / 3, y0 + 2 * (hem_y - y0) / 3, hem_y]
    gaps = np.interp(ys, [y0, hem_y], [g_top, g_hem])
    if back:  # seen from behind: a closed back, opening landmarks hidden on the centre line
        b.parts.append(np.concatenate([np.array(neck), np.array(left), _hem(b, cut, right[-1], left[-1], None),
                                       np.array(right[::-1])]))
    for side, sign in enumerate(SIDES):
        pfx = "rl"[side] + "_"
        neck_pt = b.points[pfx + "neck"]
        edge = [b.put(pfx + n, (sign * g, y), hidden=back)
                for n, g, y in zip(("neck_front", "placket_upper", "placket_lower", "hem_in"), gaps, ys)]
        lapel = lerp(neck_pt, edge[0], 0.55) + np.array([-sign * (0.0 if back else 0.12), 0.0])
        b.put(pfx + "lapel", lapel, hidden=back)
        if back:
            continue
        chain = right if side == 0 else left
        hem = bezier(chain[-1], lerp(chain[-1], edge[-1], 0.5) + [0, cut.hem_curve], edge[-1], 5)
        panel = [neck_pt, lapel] + edge + list(hem[-2:0:-1]) + list(chain[::-1])
        b.parts.append(np.array(panel))
        b.detail("fill", [neck_pt, lapel, edge[0], (sign * (nw + 0.22), y0 * 0.55)])
        b.detail("band", edge, 0.07)
        b.detail("band", hem, 0.07)
        if cut.pockets:
            py = min(Y_WAIST + 0.5, hem_y - 0.5)
            px = sign * (max(g_hem, g_top) + 0.25)
            b.detail("seam", [(px, py), (px + sign * 0.45, py), (px + sign * 0.45, py + 0.35), (px, py + 0.35),
                              (px, py)], 0.03)
        if side == 1:
            if cut.buttons:
                b.detail("button", np.stack(edge[:3]) + [sign * 0.1, 0.05], 0.08)
            elif not open_:
                b.detail("zip", [edge[0], edge[-1]], 0.04)


def _bottoms(b: _Builder, pose: Pose, cut: Cut) -> None:
    """Shorts and trousers: a waist/seat part plus two leg tubes along the legs."""
    waist_y = cut.rise
    crotch = b.put("crotch", (0.0, Y_CROTCH + 0.25 * cut.ease))
    b.put("waist_center", (0.0, waist_y + 0.03))
    long = b.category_id == 8
    knee_dist = THIGH
    dists = np.array([0.0, knee_dist, cut.length] if long else [0.0, cut.length])
    for side, sign in enumerate(SIDES):
        pfx = "rl"[side] + "_"
        waist = b.put(pfx + "waist", (sign * (float(pose.half_width(waist_y)) * (1 + 0.3 * cut.ease) + 0.04),
                                      waist_y))
        hip = b.put(pfx + "hip", (sign * (pose.hip * (1 + cut.ease) + 0.04), Y_HIP + 0.1))
        center = polyline_at(pose.leg[side], dists)
        thigh = np.linalg.norm(hip - crotch) / 2
        widths = ([thigh, 0.3 * (1 + cut.ease) + 0.04, cut.hem_width] if long else [thigh, cut.hem_width])
        plus, minus = strip_edges(center, np.array(widths))
        outer, inner = (plus, minus) if sign > 0 else (minus, plus)
        outer[0], inner[0] = hip, crotch
        if long:
            b.put(pfx + "knee_out", outer[1])
            b.put(pfx + "knee_in", inner[1])
        b.put(pfx + "leg_out", outer[-1])
        b.put(pfx + "leg_in", inner[-1])
        b.parts.append(np.concatenate([outer, inner[::-1]]))
        b.detail("band", [lerp(outer[-1], outer[-2], 0.03), lerp(inner[-1], inner[-2], 0.03)],
                 0.08 if long else 0.14)
        if long:
            b.detail("seam", [lerp(outer[0], inner[0], 0.5) + [0, 0.2], (outer[-1] + inner[-1]) / 2], 0.02)
        if cut.pockets:
            b.detail("seam", bezier(lerp(waist, b.points["waist_center"], 0.3), hip + [-sign * 0.25, -0.2],
                                    lerp(waist, hip, 0.8), 5), 0.03)
    r, l, wc = b.points["r_waist"], b.points["l_waist"], b.points["waist_center"]
    b.parts.append(np.array([r, wc, l, b.points["l_hip"], crotch, b.points["r_hip"]]))
    b.detail("band", [r, wc, l], 0.22 if cut.belt else 0.14)
    b.detail("seam", [wc + [0.05, 0.1], crotch + [0.05, -0.25]], 0.025)


def _skirt(b: _Builder, pose: Pose, cut: Cut) -> None:
    """A trapezoid from the waistband, over the hips, widening to a curved hem."""
    waist_y, hem_y = cut.rise, cut.length
    hip_w = pose.hip * (1 + cut.ease) + 0.05
    hem_w = hip_w + cut.flare * (hem_y - Y_HIP) * 0.5
    wc = b.put("waist_center", (0.0, waist_y + 0.03))
    for side, sign in enumerate(SIDES):
        pfx = "rl"[side] + "_"
        b.put(pfx + "waist", (sign * (float(pose.half_width(waist_y)) * (1 + 0.2 * cut.ease) + 0.04), waist_y))
        b.put(pfx + "hip", (sign * hip_w, max(Y_HIP, waist_y + 0.5)))
        b.put(pfx + "hem", (sign * hem_w, hem_y))
    p = b.points
    hem = _hem(b, cut, p["r_hem"], p["l_hem"])
    b.parts.append(np.array([p["r_waist"], wc, p["l_waist"], p["l_hip"], p["l_hem"], *hem, p["r_hem"], p["r_hip"]]))
    b.detail("band", [p["r_waist"], wc, p["l_waist"]], 0.14)
    if cut.pockets:  # pleats
        for f in (-0.5, -0.17, 0.17, 0.5):
            b.detail("seam", [(f * hip_w * 1.6, max(Y_HIP, waist_y + 0.5)), (f * hem_w * 1.8, hem_y)], 0.025)


def build_garment(category_id: int, cut: Cut, pose: Pose, view: str) -> GarmentGeometry:
    """Outline parts, landmarks and details of one garment in body units.

    ``view``: ``flat`` (laid flat, no wearer), ``front``, ``side`` (the camera squashes x) or ``back``
    (the camera mirrors x; necklines are shallow, outwear is closed and front-only landmarks are hidden).
    """
    b = _Builder(category_id)
    if category_id in (7, 8):
        _bottoms(b, pose, cut)
    elif category_id == 9:
        _skirt(b, pose, cut)
    else:
        _upper(b, pose, cut, view)
    return b.finish()
