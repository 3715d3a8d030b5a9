"""Array parameters as the text of a PostgreSQL array, cast by the server (`$1::text::bigint[]`).

asyncpg's own array encoding checks every element against three abstract base classes: ~50k
instructions an array of a few elements (a sixth of the gateway's instructions per request under
load, callgrind, when the reserve and settle batches sent their columns that way), and ~470k for
one of the ledger sealer's rounds of a thousand entries. The text costs a few hundred
instructions an element and PostgreSQL's array_in parses it in C.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg


def array_text(values: Iterable[Any]) -> str:
    """PostgreSQL's text of a one-dimensional array of these values (NULL, booleans, integers,
    strings: every string quoted, its backslashes and double quotes escaped, so any text goes
    through exactly). Anything else is refused here, as the driver refused it."""
    out = []
    for value in values:
        if value is None:
            out.append("NULL")
        elif value is True or value is False:
            out.append("t" if value else "f")
        elif isinstance(value, int):
            out.append(str(int(value)))
        elif isinstance(value, str):
            out.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            raise asyncpg.DataError(f"cannot store a {type(value).__name__} in an array")
    return "{" + ",".join(out) + "}"
