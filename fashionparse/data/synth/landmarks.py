"""Landmark order of the synthetic garments, per category, and its left/right flip permutation.

Every category's landmarks are named points on the garment outline; ``neck_back`` is the centre of the
back neckline, drawn only in back views (in front, side and flat views it is flagged hidden).
Names with an ``r_`` / ``l_`` prefix belong to the garment's own right / left side (in a frontal view the
garment's right side is on the image's left). The order is always

    top-centre points, the right side from top to bottom, bottom-centre points, the left side from bottom
    to top

i.e. one walk around the outline, so the counts match DeepFashion2 (reference §1) and the order is the
same for every item of a category. The synthetic order is *not* DF2's own numbering (which is only
published as a figure); :data:`FLIP_PERM` maps each index to its mirror index for flip augmentation.

Per category (count): right-side chain; centre points

* short sleeve top (25): neck 6 + ``shoulder sleeve_out cuff_out cuff_in armpit side_upper waist
  side_lower hem``; ``hem_center``
* long sleeve top (33): neck 6 + ``shoulder sleeve_out_1 elbow_out sleeve_out_3 cuff_out cuff_in
  sleeve_in_3 elbow_in armpit side_upper waist side_lower hem``; ``hem_center``
* short / long sleeve outwear (31 / 39): lapel neck 7 + the top's sleeve and side chain, then the front
  opening ``hem_in placket_lower placket_upper`` on each side (no ``hem_center``)
* vest (15): neck 6 + ``shoulder armpit waist hem``; ``hem_center``
* sling (15): ``edge_mid strap_in strap_top strap_out armpit waist hem``; ``hem_center``
* shorts (10): ``waist_center`` + ``waist hip leg_out leg_in``; ``crotch``
* trousers (14): ``waist_center`` + ``waist hip knee_out leg_out leg_in knee_in``; ``crotch``
* skirt (8): ``waist_center`` + ``waist hip hem``; ``hem_center``
* short / long sleeve dress (29 / 37): neck 6 + the sleeve chain + ``side_upper waist hip skirt_mid
  skirt_low hem``; ``hem_center``
* vest dress (19): neck 6 + ``shoulder armpit waist hip skirt_mid hem``; ``hem_center``
* sling dress (19): the sling's strap chain + ``waist hip skirt_mid hem``; ``hem_center``

The neck block is ``neck_back r_neck r_neck_front neck_front l_neck_front l_neck``; the outwear's lapel
neck block is ``neck_back r_neck r_lapel r_neck_front l_neck_front l_lapel l_neck``.
"""

from __future__ import annotations

from fashionparse.categories import BY_ID, CATEGORIES

_NECK = ("neck_back", "r_neck", "r_neck_front", "neck_front", "l_neck_front", "l_neck")
_LAPEL_NECK = ("neck_back", "r_neck", "r_lapel", "r_neck_front", "l_neck_front", "l_lapel", "l_neck")
_SHORT_SLEEVE = ("shoulder", "sleeve_out", "cuff_out", "cuff_in", "armpit")
_LONG_SLEEVE = ("shoulder", "sleeve_out_1", "elbow_out", "sleeve_out_3", "cuff_out", "cuff_in",
                "sleeve_in_3", "elbow_in", "armpit")
_NO_SLEEVE = ("shoulder", "armpit")
_STRAPS = ("edge_mid", "strap_in", "strap_top", "strap_out", "armpit")
_TOP_SIDE = ("side_upper", "waist", "side_lower", "hem")
_SHORT_SIDE = ("waist", "hem")
_DRESS_SIDE = ("side_upper", "waist", "hip", "skirt_mid", "skirt_low", "hem")
_SHORT_DRESS_SIDE = ("waist", "hip", "skirt_mid", "hem")
_OPENING = ("hem_in", "placket_lower", "placket_upper")

# category id -> (top-centre names, right-side chain, bottom-centre names)
_LAYOUT: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    1: (_NECK, _SHORT_SLEEVE + _TOP_SIDE, ("hem_center",)),
    2: (_NECK, _LONG_SLEEVE + _TOP_SIDE, ("hem_center",)),
    3: (_LAPEL_NECK, _SHORT_SLEEVE + _TOP_SIDE + _OPENING, ()),
    4: (_LAPEL_NECK, _LONG_SLEEVE + _TOP_SIDE + _OPENING, ()),
    5: (_NECK, _NO_SLEEVE + _SHORT_SIDE, ("hem_center",)),
    6: ((), _STRAPS + _SHORT_SIDE, ("hem_center",)),
    7: (("waist_center",), ("waist", "hip", "leg_out", "leg_in"), ("crotch",)),
    8: (("waist_center",), ("waist", "hip", "knee_out", "leg_out", "leg_in", "knee_in"), ("crotch",)),
    9: (("waist_center",), ("waist", "hip", "hem"), ("hem_center",)),
    10: (_NECK, _SHORT_SLEEVE + _DRESS_SIDE, ("hem_center",)),
    11: (_NECK, _LONG_SLEEVE + _DRESS_SIDE, ("hem_center",)),
    12: (_NECK, _NO_SLEEVE + _SHORT_DRESS_SIDE, ("hem_center",)),
    13: ((), _STRAPS + _SHORT_DRESS_SIDE, ("hem_center",)),
}


def _names(category_id: int) -> tuple[str, ...]:
    top, chain, bottom = _LAYOUT[category_id]
    return top + tuple(f"r_{n}" for n in chain) + bottom + tuple(f"l_{n}" for n in reversed(chain))


def _mirror(name: str) -> str:
    if name.startswith("r_"):
        return "l_" + name[2:]
    if name.startswith("l_"):
        return "r_" + name[2:]
    return name


LANDMARK_NAMES: dict[int, tuple[str, ...]] = {c.id: _names(c.id) for c in CATEGORIES}
"""category id -> landmark names in annotation order (length = the category's ``num_landmarks``)."""

FLIP_PERM: dict[int, tuple[int, ...]] = {
    cid: tuple(names.index(_mirror(n)) for n in names) for cid, names in LANDMARK_NAMES.items()
}
"""category id -> for each landmark index, the index of its mirror image under a horizontal flip."""

for _cid, _names_of in LANDMARK_NAMES.items():  # the table above must match the DF2 counts
    if len(_names_of) != BY_ID[_cid].num_landmarks:
        raise AssertionError(f"category {_cid}: {len(_names_of)} landmark names, "
                             f"expected {BY_ID[_cid].num_landmarks}")
