"""fashionparse: find every garment in a photo, name its DeepFashion2 category and draw its mask."""

__version__ = "0.1.0"
