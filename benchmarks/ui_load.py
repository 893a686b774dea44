"""Load on the real chat server: N simulated users at once, offline backend.

Starts `bookbot serve` on a free loopback port over a fresh data dir (the
opening chapters of *A Study in Scarlet*, embedded with the real MiniLM model),
then runs simulated users that speak Chainlit's own protocol (HTTP login +
socket.io, tests/ui/chat_client.py): each signs in, opens a Sherlock Holmes
chat and asks questions one after another.  Prints, per concurrency level, the
time to the first reasoning step and to the full answer (p50 / p95) and the
server's resident memory.  The 1-session run is the in-run baseline.

    python benchmarks/ui_load.py                 # 1 and 20 sessions, 3 questions each
    python benchmarks/ui_load.py --sessions 1 5 20 --questions 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from chat_client import ChatClient  # noqa: E402
from server_harness import prepare_data, start_server, stop_server  # noqa: E402

QUESTIONS = ["How did you know Watson had been in Afghanistan?",
             "What is the science of deduction?",
             "Why did Stamford bring Watson to the laboratory?",
             "What did Holmes know about literature and philosophy?"]
PROFILE = "Sherlock Holmes"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.every)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def one_user(base: str, name: str, password: str, questions: list[str],
                   ready: asyncio.Queue, start: asyncio.Event) -> tuple[list[float], list[float], int]:
    client = ChatClient(base, name, password, PROFILE)
    first, full, failures = [], [], 0
    async with httpx.AsyncClient(timeout=60) as http:
        try:
            await client.login(http)
            await client.connect(timeout=120)
        finally:
            await ready.put(name)           # signed in and greeted (or failed): the run may start
        await start.wait()
        for q in questions:
            try:
                t = await client.ask(q, timeout=300, settle=0.02)
            except (asyncio.TimeoutError, TimeoutError):
                failures += 1
                continue
            if t.first_step_s is None or len(t.steps) == 0:
                failures += 1
                continue
            first.append(t.first_step_s)
            full.append(t.answer_s)
        await client.close()
    return first, full, failures


async def level(base: str, n: int, questions: int, password: str) -> dict:
    start, ready = asyncio.Event(), asyncio.Queue()
    tasks = [asyncio.create_task(one_user(base, f"bench{i}", password,
                                          [QUESTIONS[(i + k) % len(QUESTIONS)] for k in range(questions)],
                                          ready, start)) for i in range(n)]
    for _ in range(n):                      # every user connected before the clock starts
        await ready.get()
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    first = [x for r in results for x in r[0]]
    full = [x for r in results for x in r[1]]
    return {"sessions": n, "answers": len(full), "failures": sum(r[2] for r in results), "wall_s": wall,
            "first_p50": pct(first, 0.5), "first_p95": pct(first, 0.95),
            "full_p50": pct(full, 0.5), "full_p95": pct(full, 0.95),
            "answers_per_s": len(full) / wall if wall else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--questions", type=int, default=3, help="questions per user, asked in sequence")
    parser.add_argument("--model-dir", type=Path,
                        default=Path.home() / ".cache" / "bookbot" / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--book", type=Path, default=ROOT.parent / "shared" / "books" / "study_in_scarlet_244.txt")
    args = parser.parse_args()

    password = "bench-password"
    users = {f"bench{i}": ("reader", password) for i in range(max(args.sessions))}
    with tempfile.TemporaryDirectory(prefix="bookbot-ui-load-") as tmp:
        t = time.perf_counter()
        settings = prepare_data(Path(tmp), args.model_dir, args.book, users)
        print(f"data dir ready in {time.perf_counter() - t:.1f}s (book opening imported, {len(users)} users)")
        proc, base = start_server(settings, Path(tmp) / "server.log", timeout=180)
        try:
            idle = rss_mb(proc.pid)
            print(f"server {base} pid {proc.pid}: RSS idle {idle:.0f} MB")
            rows = []
            for n in args.sessions:
                sampler = RssSampler(proc.pid)
                sampler.start()
                row = asyncio.run(level(base, n, args.questions, password))
                row["rss_peak_mb"] = sampler.stop()
                row["rss_after_mb"] = rss_mb(proc.pid)
                rows.append(row)
                print(f"  {n} session(s) done in {row['wall_s']:.1f}s")
        finally:
            stop_server(proc)
    print()
    print(f"{'sessions':>8} {'answers':>7} {'fail':>4} {'first step p50/p95 (s)':>23} "
          f"{'full answer p50/p95 (s)':>24} {'answers/s':>9} {'RSS peak (MB)':>13}")
    for r in rows:
        print(f"{r['sessions']:>8} {r['answers']:>7} {r['failures']:>4} "
              f"{r['first_p50']:>11.2f} / {r['first_p95']:<9.2f} {r['full_p50']:>11.2f} / {r['full_p95']:<10.2f} "
              f"{r['answers_per_s']:>9.2f} {r['rss_peak_mb']:>13.0f}")
    base_row = rows[0]
    for r in rows[1:]:
        print(f"{r['sessions']} sessions vs baseline {base_row['sessions']}: full-answer p50 x"
              f"{r['full_p50'] / base_row['full_p50']:.1f}, throughput x"
              f"{r['answers_per_s'] / base_row['answers_per_s']:.1f}")
    print(f"server RSS: idle {idle:.0f} MB, after load {rows[-1]['rss_after_mb']:.0f} MB")


if __name__ == "__main__":
    main()
