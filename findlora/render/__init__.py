"""Search results as pictures people can look at: a PNG sheet and a self-contained HTML page.
Torch-free: PIL and the standard library only, so the thin CLI can render them."""

from findlora.render.page import render_html
from findlora.render.sheet import SheetLayout, render_sheet, sheet_layout
from findlora.render.view import ResultsView, results_view

__all__ = ["ResultsView", "SheetLayout", "render_html", "render_sheet", "results_view", "sheet_layout"]
