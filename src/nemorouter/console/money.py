"""Money on the console's pages, from exact pico-USD integers (never a float).

Summaries show cents: the amount is rounded to the nearest cent, halves away from zero (so
$0.005 shows as $0.01), and the page carries the exact amount beside it (a tooltip). Detail
views (one request, a key's figures, credit history) show the exact amount to the
pico-dollar, the very text of the API's JSON and the statements (`format_usd`).
"""

from __future__ import annotations

from nemorouter.money import PICO_PER_USD, format_usd

PICO_PER_CENT = PICO_PER_USD // 100


def cents(pico: int) -> str:
    """`$1,234.57`: rounded to the cent, halves away from zero."""
    sign = "-" if pico < 0 else ""
    rounded = (abs(pico) + PICO_PER_CENT // 2) // PICO_PER_CENT
    return f"{sign}${rounded // 100:,}.{rounded % 100:02d}"


def exact(pico: int) -> str:
    """`$0.000123456789`: the exact amount."""
    text = format_usd(pico)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"
