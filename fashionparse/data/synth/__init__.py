"""Synthetic DeepFashion2-format data: garment photos with exact masks, landmarks and attributes.

Real DF2 is password-protected, so tests, benchmarks and the demo run on this generator. Modules:
``landmarks`` (per-category landmark order, flip permutation), ``body`` (the figure), ``garments``
(silhouette templates), ``appearance`` (colours, patterns), ``plan`` (outfits, shop/user pairs,
category distribution), ``scene`` (layout, camera, occluders), ``annotate`` (DF2 fields from the
geometry), ``render`` (painting) and ``writer`` (the split on disk).
"""

from fashionparse.data.synth.landmarks import FLIP_PERM, LANDMARK_NAMES
from fashionparse.data.synth.plan import ImagePlan, plan_split
from fashionparse.data.synth.writer import GENERATOR_VERSION, SynthSummary, generate_split, render_image

__all__ = ["FLIP_PERM", "GENERATOR_VERSION", "LANDMARK_NAMES", "ImagePlan", "SynthSummary", "generate_split", "plan_split",
           "render_image"]
