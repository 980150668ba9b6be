"""Load generators: wrk for raw throughput, an aiohttp client where each answer matters.

Every run is bounded in count and in time, and talks to loopback only.
"""

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent


@dataclass
class Answer:
    index: int
    sent_at: float  # monotonic seconds since the run started
    latency: float | None  # seconds; None when no answer came
    http_status: int | None
    body: dict | None
    error: str = ""
    location: str = ""

    @property
    def accepted(self) -> bool:
        return self.http_status == 200 and bool(self.body) and self.body.get("status") == 1


def _loopback(url: str) -> str:
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"loopback only: {url}")
    return url


async def _one(session, index: int, url: str, started: float, timeout: float) -> Answer:
    sent = time.monotonic()
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            return Answer(
                index,
                sent - started,
                time.monotonic() - sent,
                response.status,
                body,
                location=response.headers.get("Location", ""),
            )
    except TimeoutError:
        return Answer(index, sent - started, None, None, None, "timeout")
    except aiohttp.ClientError as exc:
        return Answer(index, sent - started, None, None, None, exc.__class__.__name__)


async def _run(urls, *, rate, concurrency, timeout, max_seconds) -> list[Answer]:
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    answers: list[Answer] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        if rate:
            # Open loop: request i leaves at i/rate whatever the server does, as
            # advertisers' servers do; the connector bounds open connections.
            tasks = []
            for i, url in enumerate(urls):
                due = started + i / rate
                if due - started > max_seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(_one(session, i, url, started, timeout)))
            answers = list(await asyncio.gather(*tasks))
        else:
            queue = iter(enumerate(urls))

            async def client():
                for i, url in queue:
                    if time.monotonic() - started > max_seconds:
                        return
                    answers.append(await _one(session, i, url, started, timeout))

            await asyncio.gather(*(client() for _ in range(concurrency)))
    return sorted(answers, key=lambda a: a.index)


def fire(
    urls: Sequence[str],
    *,
    rate: float | None = None,
    concurrency: int = 64,
    timeout: float = 10.0,
    max_seconds: float = 120.0,
) -> list[Answer]:
    """Send each url once (GET): at ``rate`` per second (open loop) or as fast as
    ``concurrency`` connections allow (closed loop). Stops sending after ``max_seconds``."""
    for url in urls[:1]:
        _loopback(url)
    return asyncio.run(
        _run(urls, rate=rate, concurrency=concurrency, timeout=timeout, max_seconds=max_seconds)
    )


async def _run_sequences(sequences, *, rate, timeout, max_seconds) -> list[list[Answer]]:
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=256, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_after_another(urls: list[str]) -> list[Answer]:
            return [await _one(session, j, url, started, timeout) for j, url in enumerate(urls)]

        tasks = []
        for i, urls in enumerate(sequences):
            due = started + i / rate
            if due - started > max_seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one_after_another(urls)))
        return list(await asyncio.gather(*tasks))


def fire_sequences(
    sequences: Sequence[list[str]],
    *,
    rate: float,
    timeout: float = 10.0,
    max_seconds: float = 120.0,
) -> list[list[Answer]]:
    """Send each sequence's urls in order, each once the one before was answered (or given
    up), as one advertiser's server reports one conversion; sequences start at ``rate``
    per second. Returns the answers of each sequence started within ``max_seconds``."""
    for urls in sequences[:1]:
        _loopback(urls[0])
    return asyncio.run(
        _run_sequences(sequences, rate=rate, timeout=timeout, max_seconds=max_seconds)
    )


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (make bench does it)")
    return path


def wrk(url: str, *, seconds: int, connections: int = 64, threads: int = 2, **env: str) -> dict:
    """One wrk run against ``url``; returns requests/s, p50/p99 ms, errors (see bench/wrk.lua)."""
    out = subprocess.run(
        [
            wrk_path(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk.lua"),
            _loopback(url),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        env={**os.environ, **env},
    )
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["p50_ms"] = result.pop("p50_us") / 1000
    result["p99_ms"] = result.pop("p99_us") / 1000
    return result
