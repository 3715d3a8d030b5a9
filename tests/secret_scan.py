"""The suite-wide secret scan: after every test has run, no provider secret, customer key or
operator token may appear in plaintext in any log line the suite's gateways wrote or in any
database the suite made (the vault's ciphertext is not plaintext, so it never matches).

What is scanned, all under one session directory tree (pytest's base temp dir):
- every `*.log` file (test gateways, simulators and CLI runs write their standard error there;
  in-process log records and captured standard error are appended to `secret-scan/*.log`);
- every SQLite database file and its WAL/journal (read raw, so freed pages count too);
- a text dump of every PostgreSQL database, taken just before the suite drops it.

What counts as a secret: every secret registered by the fixtures that create one (customer and
management keys, provider secrets, admin tokens), plus anything shaped like a whole NemoRouter key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# A whole NemoRouter key (the contract's format: prefix, >= 43 base62 characters). A redacted or
# truncated key does not match; a real one always does, registered or not.
KEY_SHAPE = re.compile(rb"sk-nemo-(?:mgmt-)?v1-[0-9A-Za-z]{43,}")
SQLITE_HEADER = b"SQLite format 3\x00"
MIN_LENGTH = 6  # shorter strings are too common to mean anything


@dataclass(frozen=True)
class Hit:
    path: Path
    what: str  # the kind of secret; never the secret itself (the report would leak it)
    offset: int

    def __str__(self) -> str:
        return f"{self.path}: {self.what} at byte {self.offset}"


class Registry:
    """The secrets the suite made, by kind."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}

    def add(self, secret: str | None, kind: str) -> None:
        if secret and len(secret.strip()) >= MIN_LENGTH:
            self.secrets.setdefault(secret.strip(), kind)


def _is_sqlite(path: Path) -> bool:
    if path.name.endswith(("-wal", "-journal", "-shm")):
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_HEADER
    except OSError:
        return False


def files_to_scan(root: Path) -> list[Path]:
    """Every log file and database file under `root`."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if path.suffix == ".log" or path.name.endswith(".pgdump") or _is_sqlite(path):
            found.append(path)
    return found


# A node of a trie of byte strings: the next byte -> its node; None -> a string ends here.
Trie = dict[int | None, "Trie"]


def _one_pattern(secrets: Iterable[bytes]) -> re.Pattern[bytes]:
    """One regular expression matching any of `secrets`, written as their trie: `re` tries the
    branches of an alternation one by one at every byte, so ~1,200 secrets side by side cost ~70 s
    over a run's ~120 MB of files, and their trie (at most one branch per next byte) ~3.5 s. Where
    one secret is the start of another, the longer is tried first, so it is reported as itself."""
    trie: Trie = {}
    for secret in secrets:
        node = trie
        for byte in secret:
            node = node.setdefault(byte, {})
        node[None] = {}  # a secret ends here

    def written(node: Trie) -> bytes:
        branches = []
        for byte, child in node.items():
            if byte is None:
                continue
            # A chain of single children is written as one literal, so the recursion goes as deep
            # as the branchings, not the bytes (a service account's JSON key is ~2 KB).
            run = bytearray([byte])
            while len(child) == 1 and None not in child:
                ((following, child),) = child.items()
                assert following is not None
                run.append(following)
            branches.append(re.escape(bytes(run)) + written(child))
        if not branches:
            return b""
        either = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + either + b")?" if None in node else either

    return re.compile(written(trie))


def scan(paths: Iterable[Path], registry: Registry) -> list[Hit]:
    """Every place a registered secret or a key-shaped string appears in these files."""
    by_bytes = {secret.encode(): kind for secret, kind in registry.secrets.items()}
    pattern = _one_pattern(by_bytes) if by_bytes else None
    hits: list[Hit] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if pattern is not None:
            hits += [Hit(path, by_bytes[m.group()], m.start()) for m in pattern.finditer(data)]
        hits += [
            Hit(path, "a NemoRouter key", m.start())
            for m in KEY_SHAPE.finditer(data)
            if m.group().decode() not in registry.secrets
        ]
    return hits


def report(hits: list[Hit], scanned: int) -> str:
    lines = [f"SECRET SCAN: {len(hits)} plaintext secret(s) in {scanned} log/database file(s) scanned:"]
    lines += [f"  {hit}" for hit in hits[:50]]
    if len(hits) > 50:
        lines.append(f"  ... and {len(hits) - 50} more")
    return "\n".join(lines)


def dump_postgres(url: str, dest: Path) -> None:
    """Every row of every table of the database at `url` as text, into `dest` (scanned at the end)."""
    import asyncpg

    async def run() -> None:
        con = await asyncpg.connect(url, timeout=10)
        try:
            tables = await con.fetch(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
            with dest.open("a") as out:
                for (table,) in tables:
                    for (row,) in await con.fetch(f'SELECT t::text FROM "{table}" t'):
                        out.write(f"{table}\t{row}\n")
        finally:
            await con.close()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever pytest-asyncio runs
        pool.submit(asyncio.run, run()).result()


class Session:
    """The scan of this test session: where its files live and what it must not find.

    Under pytest-xdist each worker process has a Session of its own (its files under the worker's
    base temp dir); the controller runs no test, merges what every worker registered and scans
    every worker's files with all of it (`add_worker`)."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.registry = Registry()
        self.worker_roots: list[Path] = []

    def for_controller(self) -> dict[str, object]:
        """What a worker hands the controller when it finishes: its root and its secrets."""
        return {"root": str(self.root), "secrets": dict(self.registry.secrets)}

    def add_worker(self, finished: dict[str, object]) -> None:
        root, found = finished["root"], finished["secrets"]
        assert isinstance(root, str) and isinstance(found, dict)
        self.worker_roots.append(Path(root))
        for secret, kind in found.items():
            self.registry.add(secret, kind)

    def roots(self) -> list[Path]:
        """The directory trees to scan: this process's, or else the one every worker's is in
        (a worker that crashed and was replaced reported nothing, but its files are there too)."""
        return [self.root] if self.root is not None else sorted({r.parent for r in self.worker_roots})

    @property
    def own_dir(self) -> Path:
        assert self.root is not None
        path = self.root / "secret-scan"
        path.mkdir(exist_ok=True)
        return path

    def before_dropping_postgres(self, url: str) -> None:
        """Called just before a test drops a PostgreSQL database: keep a dump to scan at the end."""
        if self.root is not None:
            dump_postgres(url, self.own_dir / f"{url.rsplit('/', 1)[-1]}.pgdump")


SESSION = Session()
