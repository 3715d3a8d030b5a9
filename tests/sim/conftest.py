"""Fixtures: a real sim process on a free loopback port, plus SDK clients pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import nemorouter

SRC = str(Path(nemorouter.__file__).resolve().parent.parent)


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(timeout=timeout)
    return lines[0] if lines else ""


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    """``run_sim(port=0)`` in a subprocess; the URL comes from the line it prints once listening."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    code = "from nemorouter.sim.server import run_sim; run_sim(port=0)"
    # stderr goes to a file, not a pipe: an unread pipe could fill up and block the sim
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        try:
            line = _first_line(proc, timeout=15)
            if "http://" not in line:
                pytest.fail(f"sim did not start: {line!r}")
            yield line[line.index("http://") :].strip()
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            log.seek(0)
            errors = log.read()
        assert "Traceback" not in errors and "Exception" not in errors, errors


@pytest.fixture(scope="session")
def client(sim_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-test", max_retries=0, timeout=10) as c:
        yield c


Chat = Callable[..., ChatCompletion]
StreamChat = Callable[..., Iterator[ChatCompletionChunk]]


@pytest.fixture
def chat(client: OpenAI) -> Chat:
    """``client.chat.completions.create`` without the SDK's TypedDict overloads (tests pass plain dicts)."""

    def call(**kwargs: Any) -> ChatCompletion:
        completion: ChatCompletion = client.chat.completions.create(**kwargs)
        return completion

    return call


@pytest.fixture
def stream(client: OpenAI) -> StreamChat:
    """A streamed create, as a lazy iterator of chunks (so tests can see what came before an error)."""

    def call(**kwargs: Any) -> Iterator[ChatCompletionChunk]:
        return iter(client.chat.completions.create(stream=True, **kwargs))

    return call


@pytest.fixture
def in_thread_sim() -> Iterator[Callable[[set[str] | None], str]]:
    """Start ``create_sim_app(keys)`` under uvicorn in a thread; yields a starter returning the base URL."""
    import uvicorn

    from nemorouter.sim.server import create_sim_app, sim_config

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(accepted_keys: set[str] | None) -> str:
        server = uvicorn.Server(sim_config(create_sim_app(accepted_keys), "127.0.0.1", 0))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("in-thread sim did not start")
            time.sleep(0.01)
        servers.append((server, thread))
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
