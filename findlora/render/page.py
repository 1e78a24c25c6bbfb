"""The results as one self-contained HTML page: images inlined as data: URIs, one inline style
sheet, no script, and a Content-Security-Policy that forbids loading anything else. Every string
from the catalog is escaped; a link is a link only when it is http(s)."""

from __future__ import annotations

import base64
from html import escape
from string import Template

from findlora.render.view import Picture, ResultsView, Row

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #fafaf8; color: #191919; }
header { padding: 12px 20px; border-bottom: 1px solid #ddd; }
h1 { font-size: 20px; margin: 0; }
.meta, .muted { color: #666; font-size: 13px; margin: 2px 0; }
.layout { display: grid; grid-template-columns: 280px 1fr; gap: 20px; padding: 16px 20px; }
.queries figure { margin: 0 0 12px; position: sticky; top: 12px; }
.query-image { width: 256px; height: auto; display: block; }
ol.results { list-style: none; margin: 0; padding: 0; }
.result { display: grid; grid-template-columns: 48px 340px 1fr; gap: 12px;
  padding: 10px 0; border-bottom: 1px solid #e4e4e0; }
.rank { font-size: 26px; font-weight: 600; }
.name { font-size: 18px; margin: 0 0 4px; overflow-wrap: anywhere; }
.scores { margin: 4px 0; padding: 0; list-style: none; }
.link { overflow-wrap: anywhere; font-size: 13px; }
.transfers { display: flex; gap: 10px; flex-wrap: wrap; }
.transfers figure { margin: 0; }
.transfers img { width: 160px; height: 160px; object-fit: contain; display: block; background: #eee; }
figcaption { font-size: 12px; color: #666; }
code { background: #eee; padding: 0 3px; }
@media (max-width: 900px) {
  .layout { grid-template-columns: 1fr; }
  .result { grid-template-columns: 48px 1fr; }
  .transfers { grid-column: 1 / -1; }
}
"""

PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="$csp">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$style</style>
</head>
<body>
<header>
<h1>$title</h1>
<p class="meta">search $search_id$pseudo_prompt</p>
</header>
<main class="layout">
<section class="queries" aria-label="query">
$queries
</section>
<ol class="results">
$rows
</ol>
</main>
</body>
</html>
"""
)


def data_uri(picture: Picture) -> str:
    return f"data:{picture.mime_type};base64,{base64.b64encode(picture.data).decode('ascii')}"


def _img(picture: Picture, alt: str, css_class: str, element_id: str = "") -> str:
    id_attr = f' id="{element_id}"' if element_id else ""
    return f'<img{id_attr} class="{css_class}" src="{data_uri(picture)}" alt="{escape(alt)}">'


def _row(row: Row) -> str:
    name = escape(row.name)
    url = row.safe_url
    if url is not None:
        heading = f'<a href="{escape(url)}" rel="noopener noreferrer">{name}</a>'
        link = f'<a class="link" href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>'
    else:  # shown, never followed: a javascript: or data: link must not become a live href
        heading = name
        link = f'<span class="link muted">{escape(row.url)}</span>' if row.url else ""
    detail = escape(row.slug) + (f" · {escape(row.base_model)}" if row.base_model else "")
    scores = "".join(f"<li>{escape(line)}</li>" for line in row.score_lines)
    triggers = (
        '<p class="muted">trigger words: '
        + ", ".join(f"<code>{escape(word)}</code>" for word in row.trigger_words)
        + "</p>"
        if row.trigger_words
        else ""
    )
    prompt = f'<p class="muted">prompt: {escape(row.suggested_prompt)}</p>' if row.suggested_prompt else ""
    transfers = "".join(
        "<figure>"
        + _img(t.picture, f"{row.slug} {t.sample_id}", "transfer")
        + f"<figcaption>{escape(t.sample_id)} · {t.distance:.3f}</figcaption></figure>"
        for t in row.transfers
    )
    return (
        f'<li class="result" data-rank="{row.rank}">'
        f'<div class="rank">#{row.rank}</div>'
        f'<div class="info"><h2 class="name">{heading}</h2><p class="meta">{detail}</p>{link}'
        f'<ul class="scores">{scores}</ul>{triggers}{prompt}</div>'
        f'<div class="transfers">{transfers}</div></li>'
    )


def render_html(view: ResultsView) -> str:
    queries = []
    for i, query in enumerate(view.queries):
        caption = f"<figcaption>query: {escape(query.name)}</figcaption>"
        if query.picture is None:
            body = '<p class="muted">this image cannot be shown here</p>'
        else:
            body = _img(query.picture, f"query {query.name}", "query-image", f"query-{i}")
        queries.append(f"<figure>{body}{caption}</figure>")
    pseudo = f" · pseudo-prompt: {escape(view.pseudo_prompt)}" if view.pseudo_prompt else ""
    return PAGE.substitute(
        csp=CSP,
        title=escape(f"findlora · {view.title}"),
        style=STYLE,
        search_id=escape(view.search_id),
        pseudo_prompt=pseudo,
        queries="\n".join(queries),
        rows="\n".join(_row(row) for row in view.rows) or '<li class="muted">no LoRA matched</li>',
    )
