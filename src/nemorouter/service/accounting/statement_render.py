"""Statements (and usage) as CSV, HTML and PDF: pure functions of a report, no I/O.

Every amount is printed with `format_usd`, the same exact text the JSON carries, so each
rendering shows the very figures of the JSON statement (to the last pico-dollar).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from nemorouter import jsonx
from nemorouter.money import Prices, format_usd
from nemorouter.money.prices import per_million_text
from nemorouter.service.accounting.reports import Statement, StatementLine, Tally, UsageGroup, statement_json

if TYPE_CHECKING:  # fpdf loads in ~0.3 s: imported by the one function that draws a PDF, so that
    # every CLI command and server start that renders none (nearly all) does not pay for it
    from fpdf import FPDF
    from fpdf.fonts import FontFace

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
TALLY_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
STATEMENT_CSV_COLUMNS = (
    "type",
    "date",
    "description",
    "model",
    "provider",
    "price_version_id",
    *TALLY_COLUMNS,
    "input_per_1m",
    "output_per_1m",
    "unit",  # a model priced per unit: what it was billed in, how many, and USD per one
    "units",
    "unit_price",
    "amount",
)


def month_title(st: Statement) -> str:
    return f"{_MONTHS[st.start.month - 1]} {st.start.year}"


def _counts(t: Tally) -> list[str]:
    return [str(getattr(t, name)) for name in TALLY_COLUMNS]


def _cell(text: str) -> str:
    """A free-text CSV cell that a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _price_text(prices: Prices | None, unit: str | None = None, units: int = 0) -> str:
    if prices is None:
        return "-"
    parts = [f"in {per_million_text(prices.input)}", f"out {per_million_text(prices.output)}"]
    if unit:  # priced per unit: the unit is what the line bills; tokens only where they cost
        unit_part = f"{units} x {unit} at {format_usd(prices.unit_rate(unit))} each"
        parts = [unit_part] + (parts if prices.input or prices.output else [])
    if prices.cache_read is not None:
        parts.append(f"cached {per_million_text(prices.cache_read)}")
    if prices.cache_write is not None:
        parts.append(f"cache write {per_million_text(prices.cache_write)}")
    if prices.request:
        parts.append(f"+ {format_usd(prices.request)}/request")
    return ", ".join(parts)


def _line_label(line: StatementLine) -> str:
    return f"{line.model} via {line.provider or 'unknown provider'}"


# -- CSV -----------------------------------------------------------------------------------------


def usage_csv(groups: list[UsageGroup], group_by: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["group", *(["name"] if group_by == "key" else []), *TALLY_COLUMNS, "cost"])
    for g in groups:
        named = [_cell(g.name or "")] if group_by == "key" else []
        writer.writerow([g.group or "", *named, *_counts(g.tally), format_usd(g.tally.cost)])
    return out.getvalue()


def statement_csv(st: Statement) -> str:
    """A header row, then the opening balance, each credit, each usage line (its cost in `amount`),
    and the totals: `total_credits`, `total_usage`, `closing_balance`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(STATEMENT_CSV_COLUMNS)
    blank = [""] * len(TALLY_COLUMNS)

    def total(kind: str, day: str, text: str, amount: int) -> None:
        writer.writerow([kind, day, text, "", "", "", *blank, "", "", "", "", "", format_usd(amount)])

    total("opening_balance", st.start.isoformat(), "balance at the start of the month", st.opening_balance)
    for c in st.credits:
        writer.writerow(
            ["credit", c.at, _cell(c.reason), "", "", "", *blank, "", "", "", "", "", format_usd(c.amount)]
        )
    for line in st.lines:
        prices = line.prices
        writer.writerow(
            [
                "usage",
                line.first_day,
                _cell(f"{_line_label(line)}, {line.first_day} to {line.last_day}"),
                _cell(line.model),
                _cell(line.provider or ""),
                "" if line.price_version_id is None else str(line.price_version_id),
                *_counts(line.tally),
                per_million_text(prices.input) if prices else "",
                per_million_text(prices.output) if prices else "",
                line.unit or "",
                str(line.tally.units) if line.unit else "",
                format_usd(prices.unit_rate(line.unit)) if prices and line.unit else "",
                format_usd(line.tally.cost),
            ]
        )
    end = st.end.isoformat()
    total("total_credits", end, "credits added during the month", st.total_credits)
    total("total_usage", end, "usage charged during the month", st.total_usage)
    total("closing_balance", end, "opening balance + credits - usage", st.closing_balance)
    return out.getvalue()


# -- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d2430;margin:2.5rem auto;
max-width:64rem;padding:0 1.5rem;line-height:1.45}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
.meta{color:#5b6474;margin:0 0 1.5rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{padding:.4rem .6rem;border-bottom:1px solid #e1e5eb;text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}tr.total td{font-weight:600;border-top:2px solid #1d2430}
table.summary{width:auto;min-width:24rem}.note{color:#5b6474;font-size:.85rem;margin-top:2rem}
.empty{color:#5b6474;font-style:italic}
"""


def _row(cells: list[str], numeric: set[int], cls: str = "", tag: str = "td") -> str:
    parts = [
        f"<{tag}{' class=n' if i in numeric else ''}>{escape(text)}</{tag}>" for i, text in enumerate(cells)
    ]
    return f"<tr{f' class={cls}' if cls else ''}>{''.join(parts)}</tr>"


def _table(head: list[str], rows: list[list[str]], numeric: set[int], total: list[str] | None) -> str:
    body = [_row(r, numeric) for r in rows]
    if total is not None:
        body.append(_row(total, numeric, "total"))
    return f"<table><thead>{_row(head, numeric, tag='th')}</thead><tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True, slots=True)
class _Section:
    """One table of the statement, shared by the HTML and the PDF."""

    title: str
    head: list[str]
    rows: list[list[str]]
    numeric: set[int]  # right-aligned columns
    total: list[str] | None = None


def _sections(st: Statement) -> list[_Section]:
    usage = st.usage
    credits = _Section(
        "Credits",
        ["Date (UTC)", "Reason", "Amount (USD)"],
        [[c.at, c.reason, format_usd(c.amount)] for c in st.credits],
        {2},
        ["Total credits", "", format_usd(st.total_credits)],
    )
    lines = _Section(
        "Usage",
        [
            "Model",
            "Provider",
            "Unit prices (USD per 1M tokens, or per unit)",
            "Days",
            "Requests",
            "Prompt tokens",
            "Completion tokens",
            "Amount (USD)",
        ],
        [
            [
                line.model,
                line.provider or "-",
                _price_text(line.prices, line.unit, line.tally.units),
                f"{line.first_day} to {line.last_day}",
                *_counts(line.tally)[:3],
                format_usd(line.tally.cost),
            ]
            for line in st.lines
        ],
        {4, 5, 6, 7},
        ["Total usage", "", "", "", *_counts(usage)[:3], format_usd(st.total_usage)],
    )
    keys = _Section(
        "Usage by key",
        ["Key", "Name", "Requests", "Prompt tokens", "Completion tokens", "Amount (USD)"],
        [[k.key_id, k.name or "", *_counts(k.tally)[:3], format_usd(k.tally.cost)] for k in st.keys],
        {2, 3, 4, 5},
    )
    return [credits, lines, keys]


def _summary(st: Statement) -> list[list[str]]:
    return [
        [f"Opening balance ({st.start.isoformat()})", format_usd(st.opening_balance)],
        ["+ Credits", format_usd(st.total_credits)],
        ["- Usage", format_usd(st.total_usage)],
        [f"Closing balance ({'end of month' if st.final else 'to date'})", format_usd(st.closing_balance)],
    ]


def _meta(st: Statement) -> str:
    period = f"{st.start.isoformat()} to {st.end.isoformat()} (UTC, end excluded)"
    status = "" if st.final else "; the month is not over: figures to date"
    return (
        f"Account {st.account_name} ({st.account_id}). Period {period}{status}. Generated {st.generated_at}."
    )


# The statement page's one inline stylesheet, allowed by its hash in the page's
# Content-Security-Policy (app/headers.py allows no inline style otherwise).
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode() + "'"

_NOTE = (
    "Amounts are exact US dollars, to the pico-dollar (12 decimal places), as charged: each request is "
    "billed at the list price in force when it was made (unit prices are per 1M tokens)."
)


def statement_html(st: Statement) -> str:
    """A self-contained page: inline style, no scripts, nothing loaded from elsewhere."""
    summary = _summary(st)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>NemoRouter statement {escape(st.month)} {escape(st.account_id)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Statement for {escape(month_title(st))}</h1>",
        f"<p class=meta>{escape(_meta(st))}</p>",
        "<table class=summary><tbody>",
        *(_row(r, {1}, "total" if i == len(summary) - 1 else "") for i, r in enumerate(summary)),
        "</tbody></table>",
    ]
    for section in _sections(st):
        parts.append(f"<h2>{escape(section.title)}</h2>")
        if section.rows:
            parts.append(_table(section.head, section.rows, section.numeric, section.total))
        else:
            parts.append(f"<p class=empty>No {escape(section.title.lower())} this month.</p>")
    parts.append(f"<p class=note>{escape(_NOTE)}</p></body></html>\n")
    return "".join(parts)


# -- PDF -----------------------------------------------------------------------------------------

# Relative column widths of each PDF table (landscape A4), in the order of `_sections`.
_PDF_WIDTHS = ((40, 100, 50), (54, 22, 62, 42, 18, 26, 32, 45), (62, 60, 25, 35, 35, 45))


def _latin1(text: str) -> str:
    """The core PDF fonts cover Latin-1 only; anything else is shown as `?`."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _pdf_table(pdf: FPDF, section: _Section, widths: tuple[int, ...], heading: FontFace) -> None:
    from fpdf.fonts import FontFace

    bold = FontFace(emphasis="BOLD")
    with pdf.table(col_widths=widths, headings_style=heading, line_height=5, align="LEFT") as table:
        for cells, style in [
            (section.head, None),
            *((r, None) for r in section.rows),
            *([(section.total, bold)] if section.total else []),
        ]:
            row = table.row(style=style)
            for j, text in enumerate(cells):
                row.cell(_latin1(text), align="RIGHT" if j in section.numeric else "LEFT")


def statement_pdf(st: Statement) -> bytes:
    """The statement as PDF, with the built-in Helvetica (no font files, nothing fetched)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_title(f"NemoRouter statement {st.month} {st.account_id}")
    pdf.set_author("NemoRouter")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, _latin1(f"Statement for {month_title(st)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, _latin1(_meta(st)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    heading = FontFace(emphasis="BOLD", fill_color=(236, 239, 243))
    with pdf.table(
        col_widths=(70, 50), width=120, align="LEFT", first_row_as_headings=False, line_height=6
    ) as table:
        for i, (label, amount) in enumerate(_summary(st)):
            style = FontFace(emphasis="BOLD") if i == 3 else None
            row = table.row(style=style)
            row.cell(_latin1(label))
            row.cell(amount, align="RIGHT")
    for section, widths in zip(_sections(st), _PDF_WIDTHS, strict=True):
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, section.title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        if not section.rows:
            pdf.cell(0, 6, f"No {section.title.lower()} this month.", new_x="LMARGIN", new_y="NEXT")
            continue
        _pdf_table(pdf, section, widths, heading)
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4, _NOTE)
    return bytes(pdf.output())


# -- one entry point for the API and the CLI ------------------------------------------------------

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


def render_statement(st: Statement, fmt: str) -> bytes:
    """The statement in `fmt` (json, csv, html or pdf) as bytes."""
    if fmt == "json":
        return jsonx.dumps(statement_json(st))
    if fmt == "csv":
        return statement_csv(st).encode()
    if fmt == "html":
        return statement_html(st).encode()
    if fmt == "pdf":
        return statement_pdf(st)
    raise ValueError(f"unknown statement format {fmt!r}")


def statement_filename(st: Statement, fmt: str) -> str:
    return f"nemorouter-statement-{st.account_id}-{st.month}.{fmt}"
