"""A parametric standing figure (the "pose") that garments are cut around, and its skin/hair/shoe shapes.

Body frame: y points down, the origin is the base of the neck, one unit is about one head height. Side
index 0 is the figure's right (x < 0 in a frontal view), index 1 its left; ``SIDES`` holds their x signs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashionparse.data.synth.geometry import ellipse, strip_edges

SIDES = (-1.0, 1.0)

Y_SHOULDER, Y_ARMPIT, Y_WAIST, Y_HIP, Y_CROTCH = 0.18, 0.95, 2.3, 3.0, 3.45
UPPER_ARM, FOREARM, THIGH, SHIN = 1.45, 1.3, 1.7, 1.65


@dataclass(frozen=True)
class Pose:
    """Figure proportions and joints, in body units.

    ``arm`` and ``leg`` are (2, 3, 2) arrays: per side, the joint chain (root, elbow/knee,
    wrist/ankle). A flat pose (garment laid flat, no wearer) spreads the arms and keeps legs straight.
    """

    shoulder: float
    chest: float
    waist: float
    hip: float
    arm: np.ndarray
    leg: np.ndarray
    flat: bool

    def half_width(self, y: float | np.ndarray) -> np.ndarray:
        """Half width of the torso at height(s) ``y``."""
        return np.interp(y, [Y_SHOULDER, Y_ARMPIT, Y_WAIST, Y_HIP, Y_CROTCH],
                         [self.shoulder, self.chest, self.waist, self.hip, self.hip])


def _chain(root: np.ndarray, sign: float, angles: tuple[float, float], lengths: tuple[float, float]) -> np.ndarray:
    """Root plus two segments hanging at ``angles`` (radians from straight down, outwards); (3, 2)."""
    pts = [root]
    for a, length in zip(angles, lengths):
        pts.append(pts[-1] + length * np.array([sign * np.sin(a), np.cos(a)]))
    return np.stack(pts)


def sample_pose(rng: np.random.Generator, flat: bool) -> Pose:
    """Random proportions and limb angles; ``flat`` spreads sleeves and legs as on a flat-lay photo."""
    shoulder = rng.uniform(0.95, 1.1)
    chest = shoulder * rng.uniform(0.84, 0.92)
    waist = rng.uniform(0.62, 0.78)
    hip = rng.uniform(0.82, 0.98)
    base_arm = np.radians(rng.uniform(28, 62) if flat else rng.uniform(7, 26))
    base_leg = np.radians(rng.uniform(3, 9) if flat else rng.uniform(0, 8))
    arms, legs = [], []
    for sign in SIDES:
        upper = base_arm + np.radians(rng.normal(0, 2 if flat else 5))
        bend = np.radians(rng.uniform(-3, 6) if flat else rng.uniform(-6, 22))
        arms.append(_chain(np.array([sign * (shoulder - 0.22), 0.45]), sign, (upper, upper + bend),
                           (UPPER_ARM, FOREARM)))
        spread = max(0.0, base_leg + np.radians(rng.normal(0, 1.5)))
        legs.append(_chain(np.array([sign * 0.42, Y_HIP + 0.1]), sign, (spread, spread * 0.6), (THIGH, SHIN)))
    return Pose(shoulder, chest, waist, hip, np.stack(arms), np.stack(legs), flat)


@dataclass(frozen=True)
class BodyShapes:
    """Polygons of the figure in body units, grouped by drawing step.

    Drawing order: ``back_hair``, ``skin``, ``shoes``, ``face_marks``, ``hair_cap``, then the clothes,
    then ``front_hair`` (long hair falling over the shoulders, or down the back in a back view, which
    occludes the clothes).
    """

    back_hair: tuple[np.ndarray, ...]
    skin: tuple[np.ndarray, ...]
    shoes: tuple[np.ndarray, ...]
    face_marks: tuple[np.ndarray, ...]  # eyes and mouth (empty for a back view)
    hair_cap: tuple[np.ndarray, ...]
    front_hair: tuple[np.ndarray, ...]


HEAD_CENTER = np.array([0.0, -0.72])


def body_shapes(pose: Pose, rng: np.random.Generator, back_view: bool) -> BodyShapes:
    """Head, neck, torso, arms, hands, legs, shoes and hair of ``pose`` as polygons (body units)."""
    skin = [ellipse(HEAD_CENTER, 0.4, 0.55), np.array([[-0.2, -0.4], [0.2, -0.4], [0.24, 0.25], [-0.24, 0.25]])]
    ys = np.array([Y_SHOULDER, Y_ARMPIT, Y_WAIST, Y_HIP, Y_CROTCH + 0.15])
    right = np.stack([-pose.half_width(ys), ys], axis=1)
    right[0, 0] = -(pose.shoulder - 0.1)
    left = right[::-1] * np.array([-1.0, 1.0])
    skin.append(np.concatenate([[[-0.3, 0.0]], right, left, [[0.3, 0.0]]]))
    for s in range(2):
        arm_plus, arm_minus = strip_edges(pose.arm[s], np.array([0.27, 0.21, 0.16]))
        skin.append(np.concatenate([arm_plus, arm_minus[::-1]]))
        skin.append(ellipse(pose.arm[s, 0], 0.3, 0.3, n=12))  # shoulder joint
        d = pose.arm[s, 2] - pose.arm[s, 1]
        skin.append(ellipse(pose.arm[s, 2] + d / np.linalg.norm(d) * 0.18, 0.17, 0.24,
                            angle=float(np.arctan2(d[1], d[0]) - np.pi / 2), n=14))
        leg_plus, leg_minus = strip_edges(pose.leg[s], np.array([0.4, 0.27, 0.19]))
        skin.append(np.concatenate([leg_plus, leg_minus[::-1]]))
    shoes = tuple(ellipse(pose.leg[s, 2] + np.array([SIDES[s] * 0.08, 0.12]), 0.28, 0.16, n=14) for s in range(2))
    hair_len = rng.uniform(-0.6, 0.7)  # < 0: short hair
    back_hair = ()
    if hair_len > 0:
        back_hair = (np.array([[-0.46, -0.8], [0.46, -0.8], [0.52, 0.2 + hair_len], [-0.52, 0.2 + hair_len]]),)
    front_hair: tuple[np.ndarray, ...] = ()
    if back_view:  # long hair falls over the back of the clothes
        cap = (ellipse(HEAD_CENTER + [0, -0.03], 0.44, 0.6),)
        return BodyShapes((), tuple(skin), shoes, (), cap, back_hair)
    if hair_len > 0.3 and rng.random() < 0.6:
        front_hair = tuple(np.array([[sgn * 0.3, -0.35], [sgn * 0.5, -0.3], [sgn * 0.62, 0.45 + hair_len],
                                     [sgn * 0.36, 0.55 + hair_len]]) for sgn in SIDES)
    marks = (ellipse(HEAD_CENTER + [-0.15, -0.02], 0.05, 0.035, n=8),
             ellipse(HEAD_CENTER + [0.15, -0.02], 0.05, 0.035, n=8),
             ellipse(HEAD_CENTER + [0.0, 0.27], 0.1, 0.03, n=8))
    cap = (ellipse(HEAD_CENTER + [0, -0.36], 0.44, 0.3),)
    return BodyShapes(back_hair, tuple(skin), shoes, marks, cap, front_hair)
