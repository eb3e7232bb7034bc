"""Render a report folder's ``report.html`` to a PNG with MuPDF's HTML engine (how docs/report.png
is made, on a machine without a browser). Needs PyMuPDF, which seedsweep itself does not:

    pip install pymupdf
    python docs/screenshot.py reports/quickstart docs/report.png [--width 800] [--dpi 96]

The page is ``--width`` points wide and as long as the report: the PNG holds all of it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def render(folder: Path, out: Path, width: int = 800, dpi: int = 96) -> tuple[int, int]:
    """``folder/report.html`` (its images read from ``folder``) -> ``out``; returns the PNG's size."""
    import pymupdf

    story = pymupdf.Story((folder / "report.html").read_text(encoding="utf-8"), archive=pymupdf.Archive(str(folder)))
    page = pymupdf.Rect(0, 0, width, 20000)  # one tall page: the whole report, no page breaks
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "report.pdf"
        writer = pymupdf.DocumentWriter(str(pdf))
        device = writer.begin_page(page)
        more, filled = story.place(page + (20, 20, -20, -20))
        story.draw(device)
        writer.end_page()
        writer.close()
        if more:
            raise SystemExit(f"{folder}/report.html is longer than one {page.height:.0f}-point page")
        pix = pymupdf.open(pdf)[0].get_pixmap(dpi=dpi, clip=pymupdf.Rect(0, 0, width, filled[3] + 20))
        pix.save(str(out))
    return pix.width, pix.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a report folder (seedsweep report ... --out FOLDER)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=800, help="page width in points")
    parser.add_argument("--dpi", type=int, default=96)
    args = parser.parse_args()
    if not (args.folder / "report.html").is_file():
        raise SystemExit(f"no report.html in {args.folder}")
    w, h = render(args.folder, args.out, args.width, args.dpi)
    print(f"{args.out}: {w} x {h} px")


if __name__ == "__main__":
    main()
