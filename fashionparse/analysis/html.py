"""Building blocks of the self-contained report pages: escaped tables, embedded images, one inline stylesheet.

Cells are text (escaped here) unless wrapped in ``Raw`` (HTML made by these helpers). Pages need no
script, font or stylesheet from elsewhere: images are data URIs and the favicon request is disabled.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; background: #fafafa; }
h1 { font-size: 24px; margin: 24px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid #ddd; }
h3 { font-size: 16px; margin: 22px 0 6px; }
h4 { font-size: 14px; margin: 14px 0 4px; }
nav { position: sticky; top: 0; background: #fafafa; padding: 8px 0; border-bottom: 1px solid #ddd; z-index: 1; }
nav a { margin-right: 14px; color: #0b57d0; text-decoration: none; }
p.meta, p.note { color: #555; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; background: white; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f0f0f3; text-align: center; }
td.num { text-align: right; }
td.ref { color: #6b6b6b; background: #f7f7f9; }
td.best { font-weight: 700; background: #e3f2e5; }
td.best::after { content: " \\2605"; color: #2e7d32; }
img.figure { max-width: 100%; border: 1px solid #ddd; background: white; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 420px; background: white; border: 1px solid #ddd; padding: 6px; }
figure img { width: 100%; display: block; }
figcaption { font-size: 12px; color: #333; margin-top: 4px; }
"""


class Raw(str):
    """HTML that is inserted as is."""


def esc(value: object) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value))


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(data: bytes, mime: str, alt: str, css_class: str = "figure") -> Raw:
    return Raw(f'<img class="{css_class}" src="{data_uri(data, mime)}" alt="{esc(alt)}">')


def table(header: Sequence[object], rows: Sequence[Sequence[object]], *, text_columns: Sequence[int] = (0,),
          marked: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset(),
          reference_columns: Sequence[int] = ()) -> Raw:
    """A table; columns other than ``text_columns`` are numbers (right-aligned); ``marked`` (row, column)
    cells are flagged as best; ``reference_columns`` are shaded (published numbers next to ours)."""
    lines = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            classes = [name for name, on in (("num", c not in text_columns), ("ref", c in reference_columns),
                                             ("best", (r, c) in marked)) if on]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{esc(cell)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return Raw("\n".join(lines))


def best_indices(values: Sequence[float | None], higher_is_better: bool = True) -> set[int]:
    """Indices of the best defined value (all of them on a tie); empty when fewer than two are defined or
    all defined values are equal (nothing to tell apart)."""
    defined = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(defined) < 2 or len({v for _, v in defined}) == 1:
        return set()
    target = (max if higher_is_better else min)(v for _, v in defined)
    return {i for i, v in defined if v == target}


def section(anchor: str, title: str, *parts: object) -> Raw:
    return Raw(f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n' + "\n".join(esc(p) for p in parts)
               + "\n</section>")


def paragraph(text: object, css_class: str = "note") -> Raw:
    return Raw(f'<p class="{css_class}">{esc(text)}</p>')


def heading(text: str, level: int = 3) -> Raw:
    return Raw(f"<h{level}>{esc(text)}</h{level}>")


def figure(jpeg: bytes, caption: str) -> Raw:
    return Raw(f"<figure>{image(jpeg, 'image/jpeg', caption, css_class='')}"
               f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], sections: Sequence[Raw]) -> str:
    """The whole HTML document."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<h1>{esc(title)}</h1>\n<p class=\"meta\">{esc(subtitle)}</p>\n<nav>{links}</nav>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
