"""Garment surface appearance: colour palettes, patterns and their per-pixel texture.

A :class:`Look` is sampled once per garment (so the shop and user images of one paired garment share
it). :func:`texture` evaluates it on body-frame coordinates, so stripes and checks follow the garment's
rotation and scale; :func:`shading` adds soft light falloff and fabric folds.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

PATTERNS = ("solid", "stripes", "checks", "dots", "heather", "denim")

_NEUTRALS = ((20, 20, 22), (40, 42, 48), (90, 90, 95), (150, 150, 152), (215, 215, 210), (245, 245, 240),
             (30, 40, 80), (200, 185, 160), (120, 100, 80), (85, 95, 60), (110, 30, 40))
SKIN_TONES = ((255, 224, 196), (241, 194, 158), (224, 172, 128), (198, 134, 90), (150, 100, 66), (100, 66, 44))
HAIR_COLOURS = ((20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 160, 100), (130, 50, 30), (90, 90, 90))

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """Colours and pattern of one surface. ``period`` is in body units, ``angle`` in radians."""

    pattern: str
    base: RGB
    second: RGB
    trim: RGB
    period: float = 0.3
    angle: float = 0.0
    duty: float = 0.5


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def random_colour(rng: np.random.Generator, neutral_p: float = 0.4) -> RGB:
    """A clothing colour: a neutral (black, grey, navy, beige...) or a random hue."""
    if rng.random() < neutral_p:
        base = np.array(_NEUTRALS[rng.integers(len(_NEUTRALS))], dtype=float)
        return tuple(int(c) for c in np.clip(base + rng.normal(0, 8, 3), 0, 255))  # type: ignore[return-value]
    return _hsv(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.3, 0.95))


def contrasting(rng: np.random.Generator, colour: RGB, min_dist: float = 90.0) -> RGB:
    """A random colour at least ``min_dist`` (RGB distance) away from ``colour``."""
    for _ in range(20):
        c = random_colour(rng)
        if np.linalg.norm(np.subtract(c, colour)) >= min_dist:
            return c
    return tuple(255 - v for v in colour)  # type: ignore[return-value]


def sample_look(rng: np.random.Generator, category_id: int) -> Look:
    """A garment look; trousers and shorts are often denim, outwear more often neutral."""
    if category_id in (7, 8) and rng.random() < 0.35:
        base = _hsv(rng.uniform(0.56, 0.64), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.7))
        return Look("denim", base, tuple(min(255, c + 45) for c in base), (190, 150, 70), 0.05, np.pi / 4)
    base = random_colour(rng, 0.7 if category_id in (3, 4) else 0.4)
    weights = np.array([0.42, 0.18, 0.12, 0.1, 0.18, 0.0])
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=weights / weights.sum())]
    second = contrasting(rng, base, 70.0)
    trim = base if rng.random() < 0.5 else contrasting(rng, base, 60.0)
    angle = float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4], p=[0.5, 0.3, 0.1, 0.1]))
    return Look(pattern, base, second, trim, float(rng.uniform(0.12, 0.5)), angle, float(rng.uniform(0.25, 0.6)))


def flat_look(colour: RGB) -> Look:
    """A plain surface (skin, hair, shoes, bags)."""
    return Look("solid", colour, colour, colour)


def texture(look: Look, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB float texture (h, w, 3) in 0..255 at body coordinates ``u, v`` (each (h, w))."""
    base, second = np.asarray(look.base, np.float32), np.asarray(look.second, np.float32)
    out = np.broadcast_to(base, u.shape + (3,)).astype(np.float32)
    ca, sa = float(np.cos(look.angle)), float(np.sin(look.angle))
    along = (u * ca + v * sa) / look.period
    if look.pattern == "stripes":
        out = np.where(((along % 1.0) < look.duty)[..., None], second, out)
    elif look.pattern == "checks":
        across = (-u * sa + v * ca) / look.period
        bands = ((along % 1.0) < look.duty).astype(np.float32) + ((across % 1.0) < look.duty)
        out = out + (second - base) * (bands[..., None] * 0.45)
    elif look.pattern == "dots":
        row = np.floor(v / look.period)
        du = ((u / look.period + 0.5 * row) % 1.0) - 0.5
        dv = ((v / look.period) % 1.0) - 0.5
        out = np.where((du * du + dv * dv < (look.duty * 0.45) ** 2)[..., None], second, out)
    elif look.pattern in ("heather", "denim"):
        noise = rng.normal(0.0, 1.0, u.shape).astype(np.float32)
        out = out * (1.0 + 0.09 * noise[..., None])
        if look.pattern == "denim":
            twill = 0.5 + 0.5 * np.sin(2 * np.pi * along)
            out = out + (second - base) * (twill[..., None] * 0.35)
    return out


def shading(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, folds: bool) -> np.ndarray:
    """Multiplicative light field (h, w): a soft directional falloff plus, for cloth, a few folds."""
    lx, ly = (float(x) for x in rng.uniform(-0.05, 0.05, 2))
    field = 1.0 + lx * u + ly * (v - 2.5)
    if folds:
        for _ in range(int(rng.integers(1, 4))):
            freq, phase, amp, tilt = (float(x) for x in (rng.uniform(1.2, 3.5), rng.uniform(0, 2 * np.pi),
                                                         rng.uniform(0.03, 0.09), rng.normal(0, 0.25)))
            field = field + amp * np.sin(freq * (u + tilt * v) + phase)
    return np.clip(field, 0.55, 1.35).astype(np.float32)
