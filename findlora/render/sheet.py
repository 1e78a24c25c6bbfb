"""The results as one PNG contact sheet: the query column on the left, one row per ranked LoRA
(rank, name, link, scores, then its nearest transfers)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from findlora.render.view import MAX_TRANSFERS, ResultsView, Row

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

MARGIN = 16
GAP = 12
HEADER_H = 44
QUERY_PX = 256  # the query column's width, and each query's box
THUMB_PX = 160
CAPTION_H = 20
ROW_H = THUMB_PX + CAPTION_H + GAP
TEXT_W = 360
BACKGROUND = (250, 250, 248)
INK = (25, 25, 25)
MUTED = (105, 105, 105)
LINK = (20, 80, 170)
RULE = (220, 220, 215)
PLACEHOLDER = (232, 232, 228)


@cache
def font(size: int) -> Font:
    """Pillow's bundled scalable font (Pillow >= 10.1 with FreeType), else its bitmap font: both
    exist on a clean machine, so the sheet never depends on installed fonts."""
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class SheetLayout:
    """Where things go; tests read the same boxes the renderer draws into."""

    n_queries: int
    n_rows: int
    n_thumbs: int

    @property
    def rows_x(self) -> int:
        return MARGIN + QUERY_PX + 2 * GAP

    @property
    def width(self) -> int:
        return self.rows_x + TEXT_W + self.n_thumbs * (THUMB_PX + GAP) - GAP + MARGIN

    @property
    def height(self) -> int:
        queries = self.n_queries * (QUERY_PX + CAPTION_H + GAP)
        rows = max(1, self.n_rows) * ROW_H
        return HEADER_H + max(queries, rows) + MARGIN

    def query_box(self, index: int) -> tuple[int, int, int, int]:
        top = HEADER_H + index * (QUERY_PX + CAPTION_H + GAP)
        return (MARGIN, top, MARGIN + QUERY_PX, top + QUERY_PX)

    def row_top(self, index: int) -> int:
        return HEADER_H + index * ROW_H

    def thumb_box(self, row: int, index: int) -> tuple[int, int, int, int]:
        left = self.rows_x + TEXT_W + index * (THUMB_PX + GAP)
        top = self.row_top(row)
        return (left, top, left + THUMB_PX, top + THUMB_PX)


def sheet_layout(view: ResultsView) -> SheetLayout:
    n_thumbs = max((len(row.transfers) for row in view.rows), default=0)
    return SheetLayout(len(view.queries), len(view.rows), max(1, min(MAX_TRANSFERS, n_thumbs)))


def fit_into(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """`image` scaled to fit `box` keeping its aspect ratio, and where to paste it (centred)."""
    width, height = box[2] - box[0], box[3] - box[1]
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    fitted = image.resize(size, Image.Resampling.LANCZOS)
    return fitted, (box[0] + (width - size[0]) // 2, box[1] + (height - size[1]) // 2)


def one_line(text: str) -> str:
    return " ".join(text.split())


def clipped(draw: ImageDraw.ImageDraw, text: str, face: Font, width: int) -> str:
    """`text` on one line, cut with an ellipsis to fit `width` pixels."""
    text = one_line(text)
    if draw.textlength(text, font=face) <= width:
        return text
    while text and draw.textlength(text + "…", font=face) > width:
        text = text[:-1]
    return text + "…"


def _draw_row(sheet: Image.Image, draw: ImageDraw.ImageDraw, layout: SheetLayout, i: int, row: Row) -> None:
    top = layout.row_top(i)
    x = layout.rows_x
    if i:
        draw.line((x, top - GAP // 2, layout.width - MARGIN, top - GAP // 2), fill=RULE, width=1)
    draw.text((x, top), f"#{row.rank}", font=font(26), fill=INK)
    text_x, text_w = x + 56, TEXT_W - 56 - GAP
    y = top + 2
    draw.text((text_x, y), clipped(draw, row.name, font(18), text_w), font=font(18), fill=INK)
    y += 26
    detail = f"{row.slug} · {row.base_model}" if row.base_model else row.slug
    draw.text((text_x, y), clipped(draw, detail, font(13), text_w), font=font(13), fill=MUTED)
    y += 20
    colour = LINK if row.safe_url else MUTED  # a javascript: or data: "link" is shown as plain text
    draw.text((text_x, y), clipped(draw, row.url, font(13), text_w), font=font(13), fill=colour)
    y += 26
    for line in row.score_lines:
        draw.text((text_x, y), line, font=font(15), fill=INK)
        y += 21
    if row.trigger_words:
        words = "trigger: " + ", ".join(row.trigger_words)
        draw.text((text_x, y + 4), clipped(draw, words, font(13), text_w), font=font(13), fill=MUTED)
    for j in range(layout.n_thumbs):
        box = layout.thumb_box(i, j)
        if j >= len(row.transfers):
            continue
        transfer = row.transfers[j]
        fitted, at = fit_into(transfer.picture.image, box)
        sheet.paste(fitted, at)
        caption = f"{transfer.sample_id} · {transfer.distance:.3f}"
        draw.text((box[0], box[3] + 3), clipped(draw, caption, font(12), THUMB_PX), font=font(12), fill=MUTED)


def render_sheet(view: ResultsView) -> bytes:
    """The sheet as PNG bytes."""
    layout = sheet_layout(view)
    sheet = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title = f"findlora · {view.title}"
    draw.text(
        (MARGIN, 10), clipped(draw, title, font(20), layout.width - 2 * MARGIN), font=font(20), fill=INK
    )
    for i, query in enumerate(view.queries):
        box = layout.query_box(i)
        if query.picture is None:
            draw.rectangle(box, fill=PLACEHOLDER)
            draw.text((box[0] + 8, box[1] + 8), "cannot show this image", font=font(13), fill=MUTED)
        else:
            fitted, at = fit_into(query.picture.image, box)
            sheet.paste(fitted, at)
        caption = clipped(draw, f"query: {query.name}", font(13), QUERY_PX)
        draw.text((box[0], box[3] + 3), caption, font=font(13), fill=MUTED)
    if not view.rows:
        draw.text((layout.rows_x, HEADER_H), "no LoRA matched", font=font(18), fill=MUTED)
    for i, row in enumerate(view.rows):
        _draw_row(sheet, draw, layout, i, row)
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()
