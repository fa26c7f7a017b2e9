"""Simulated developer machines for bench/bench_fleet.py: many per process, each on its own.

    python bench/fleet_machines.py --first 0 --count 50 --root DIR --broker HOST:PORT,...
        --start-at EPOCH --warmup S --seconds S [--seed N]

Each machine has its own spool directory (`<root>/m<index>`), its own real
`Shipper` (workers/shipper/shipper.py, following the spool like `kaizen-stream
ship --follow`, holding the spool's shipper.lock as that command does) and its
own agent sessions. One process runs `count` machines, each shipper on a
thread and event loop of its own (200 shipper processes, each importing
aiokafka, would not fit beside three brokers and the workers on 2 shared
cores; one loop for all would let one machine's fsyncs hold up the others,
which separate machines never do), and a scheduler thread fires every
machine's hooks on a small pool through the real hook code
(`workers.hooks.hook.record`, which redacts, maps, assigns the seq under the
spool's flock and appends the fsynced frame; then `spawn_shipper`, whose
lock probe finds the machine's shipper running, as a hook does in steady use).
Not measured here: the hook's own process start (bench/bench_hook.py) and a
shipper's cold start (it is kept running, as in a busy hour).

Pace (one agent session per machine at a time, walking the bundled Claude Code
sample session): a tool call's PostToolUse follows its PreToolUse after the
tool ran (exponential, mean TOOL_S); other hooks follow after the model thought
(mean THINK_S); after Stop the developer reads and types (mean READ_S); after
SessionEnd a new session starts (mean BREAK_S). Every machine's first hook
falls in the warm-up window, so shippers have connected before the measured
window; warm-up events still count for losses.

Output, one line each on stdout (parsed by bench_fleet.py):

    H <session> <seq> <t_call_ns>    a hook call and the seq it spooled (- when the spool was full)
    D <hooks>                        hooks stopped (start_at + warmup + seconds)
    S <p50> <p99> <lag p50> <lag p99>  seconds: a shipper round that sent events; how late
                                     this process's event loop woke from a 50 ms sleep
    E <shipped>                      every spool drained; the process exits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import heapq
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_hook import pct  # noqa: E402

from workers.hooks.hook import record, spawn_shipper  # noqa: E402
from workers.hooks.samples import sample_payloads  # noqa: E402
from workers.hooks.spool import Spool  # noqa: E402
from workers.shipper.shipper import Shipper  # noqa: E402

TOOL_S = 1.0
THINK_S = 4.0
READ_S = 15.0
BREAK_S = 30.0
HOOK_THREADS = 8


def gap_after(event: str, rng: random.Random) -> float:
    """Seconds until a session's next hook, after a hook of kind `event`."""
    if event == "PreToolUse":
        return rng.expovariate(1 / TOOL_S)
    if event in ("Stop", "StopFailure"):
        return rng.expovariate(1 / READ_S)
    if event == "SessionEnd":
        return rng.expovariate(1 / BREAK_S)
    return rng.expovariate(1 / THINK_S)


def mean_gap(payloads: list[dict[str, Any]]) -> float:
    """The mean seconds between one session's hooks under this pace (for the report)."""
    names = [str(p["hook_event_name"]) for p in payloads]
    total = sum(
        TOOL_S
        if n == "PreToolUse"
        else READ_S
        if n in ("Stop", "StopFailure")
        else BREAK_S
        if n == "SessionEnd"
        else THINK_S
        for n in names
    )
    return total / len(names)


class TimedShipper(Shipper):
    """The real shipper; the wall time of each round that sent events is noted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds: list[float] = []

    async def round(self) -> int:
        t0 = time.monotonic()
        n = await super().round()
        if n:
            self.rounds.append(time.monotonic() - t0)
        return n


async def loop_lag(lags: list[float], every: float = 0.05) -> None:
    """How late the event loop wakes (blocking calls and CPU starvation both show here)."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(every)
        lags.append(time.monotonic() - t0 - every)


class Machine:
    """One developer machine: a spool, its shipper, the current agent session."""

    def __init__(self, index: int, root: Path, broker: str) -> None:
        self.index = index
        self.spool = Spool(str(root / f"m{index:04d}"))
        self.spool.ensure()
        # held like `kaizen-stream ship` holds it, so the hooks' probe finds a shipper
        self.lock = os.open(self.spool.shipper_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.shipper = TimedShipper(self.spool, broker)
        self.session_no = 0
        self.step = 0

    @property
    def session(self) -> str:
        return f"fleet-m{self.index:04d}-s{self.session_no}"


def run_hooks(
    machines: list[Machine],
    payloads: list[dict[str, Any]],
    start_at: float,
    warmup: float,
    stop_at: float,
    rng: random.Random,
    out: Any,
) -> int:
    """Fire every machine's hooks on schedule until `stop_at`; the number of hook calls.

    Each call runs on a small thread pool (a hook is a process of its own beside the
    agent): one hook's fsyncs do not hold up another machine's hook.
    """
    due = [(start_at + rng.uniform(0, warmup), m.index) for m in machines]
    heapq.heapify(due)
    by_index = {m.index: m for m in machines}
    write = threading.Lock()

    def call(machine: Machine, payload: dict[str, Any]) -> None:
        t_call = time.time_ns()
        seq = record("claude", payload, machine.spool)
        spawn_shipper(machine.spool)  # the hook's probe: the shipper runs, nothing starts
        with write:
            out.write(f"H {payload['session_id']} {'-' if seq is None else seq} {t_call}\n")
            out.flush()

    calls = 0
    with ThreadPoolExecutor(HOOK_THREADS, thread_name_prefix="hook") as pool:
        futures = []
        while due:
            when, index = heapq.heappop(due)
            if when >= stop_at:
                break
            delay = when - time.time()
            if delay > 0:
                time.sleep(delay)
            machine = by_index[index]
            payload = dict(payloads[machine.step])
            payload["session_id"] = machine.session
            futures.append(pool.submit(call, machine, payload))
            calls += 1
            event = str(payload["hook_event_name"])
            machine.step += 1
            if machine.step == len(payloads):
                machine.step = 0
                machine.session_no += 1
            heapq.heappush(due, (when + gap_after(event, rng), index))
        for future in futures:
            future.result()  # a hook that raised fails the run
    return calls


async def ship_until_drained(
    machine: Machine, hooks_done: threading.Event, lags: list[float] | None
) -> None:
    """Run the machine's shipper; once the hooks stopped and its spool is empty, stop."""
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(machine.shipper.run(follow=True))]
    if lags is not None:
        tasks.append(asyncio.ensure_future(loop_lag(lags)))
    try:
        while not hooks_done.is_set() or machine.spool.pending():
            await asyncio.sleep(0.5)
            for task in tasks:
                if task.done():
                    task.result()  # the shipper died: raise why
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ship_all(machines: list[Machine], hooks_done: threading.Event) -> int:
    """Every machine's shipper on a thread and event loop of its own, as on its own machine
    (blocking fsyncs in one shipper's round never hold up another's); the events shipped."""
    lags: list[float] = []
    errors: list[BaseException] = []

    def ship(machine: Machine) -> None:
        try:
            watch = lags if machine is machines[0] else None  # one loop's lag is enough
            asyncio.run(ship_until_drained(machine, hooks_done, watch))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ship, args=(m,), name=f"ship{m.index}") for m in machines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rounds = [r for m in machines for r in m.shipper.rounds] or [0.0]
    lags = lags or [0.0]
    sys.stdout.write(
        f"S {pct(rounds, 0.5)} {pct(rounds, 0.99)} {pct(lags, 0.5)} {pct(lags, 0.99)}\n"
    )
    if errors:
        raise errors[0]
    return sum(m.shipper.shipped for m in machines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # live token capture reads transcripts; the sample's paths are not on this machine
    os.environ["KAIZEN_USAGE_CAPTURE"] = "0"
    payloads = [
        {k: v for k, v in p.items() if k != "transcript_path"} for p in sample_payloads("claude")
    ]
    machines = [
        Machine(i, args.root, args.broker) for i in range(args.first, args.first + args.count)
    ]
    rng = random.Random(args.seed * 1_000_003 + args.first)
    hooks_done = threading.Event()
    calls = [0]

    def hooks() -> None:
        try:
            stop_at = args.start_at + args.warmup + args.seconds
            calls[0] = run_hooks(
                machines, payloads, args.start_at, args.warmup, stop_at, rng, sys.stdout
            )
        finally:
            sys.stdout.write(f"D {calls[0]}\n")
            sys.stdout.flush()
            hooks_done.set()

    thread = threading.Thread(target=hooks, name="hooks", daemon=True)
    thread.start()
    shipped = ship_all(machines, hooks_done)
    thread.join()
    sys.stdout.write(f"E {shipped}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
