"""Load on real chat servers: 1 and 2 instances on one PostgreSQL and one Chroma server.

Sets up what a scaled-out deployment runs: a fresh PostgreSQL database, a `chroma run`
server, and `bookbot serve` instances with their own data dirs (the opening chapters of
*A Study in Scarlet*, embedded once with the real MiniLM model into the shared catalog
and Chroma server).  Simulated users speak Chainlit's own protocol (HTTP login +
socket.io, tests/ui/chat_client.py); with two instances each user sticks to one of them,
as behind a proxy with sticky sessions.  Each user signs in, opens a Sherlock Holmes chat
and asks questions one after another (offline backend).  On PostgreSQL every instance
answers in an engine process of its own (the setting's default; `--engine-processes 0`
measures turns computed in the server's threads instead).

Printed per (instances, concurrent chats): time to the first reasoning step and to the
full answer (p50 / p95), failed answers, answers/s, and the machine's ceiling measured in
the same run: cores ÷ CPU-seconds per answer, where the CPU is what the app servers, the
Chroma server and this database's PostgreSQL backends used during that level (the load
generator's own CPU is reported apart: it runs on the same cores).

Then reviews on PostgreSQL: 20 editors rate steps at once through the servers
(`review_step` actions) — writes/s and p95 latency — and, single-threaded in this process,
`ReviewStore.record_review` against a bare INSERT + COMMIT on the same database.

    python benchmarks/ui_load.py                       # 1 session baseline, then 20 and 40; 1 and 2 instances
    python benchmarks/ui_load.py --sessions 20 --instances 2 --questions 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ui"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chat_client import ChatClient  # noqa: E402
from machine_meter import MachineMeter  # noqa: E402
from server_harness import (prepare_data, process_parents, start_chroma, start_server,  # noqa: E402
                            stop_server)

QUESTIONS = ["How did you know Watson had been in Afghanistan?",
             "What is the science of deduction?",
             "Why did Stamford bring Watson to the laboratory?",
             "What did Holmes know about literature and philosophy?"]
PROFILE = "Sherlock Holmes"
PASSWORD = "bench-password"
TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK       # utime + stime


def _pg_backends(database: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {database} " in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _with_descendants(pids: set[int]) -> set[int]:
    """`pids` and every process below them (an app server's engine processes)."""
    parent_of = process_parents()
    found, grew = set(pids), True
    while grew:
        below = {pid for pid, parent in parent_of.items() if parent in found} - found
        found |= below
        grew = bool(below)
    return found


def _is_backend_of(pid: int, database: str) -> bool:
    try:
        return f" {database} " in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def machine_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


class CpuMeter:
    """CPU seconds used by the servers (app instances with their engine processes, Chroma, this
    database's backends)."""

    def __init__(self, pids: list[int], database: str):
        self.pids, self.database = pids, database

    def read(self) -> dict[int, float]:
        return {pid: _cpu(pid) for pid in {*_with_descendants(set(self.pids)), *_pg_backends(self.database)}}

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(t - before.get(pid, 0.0) for pid, t in after.items())


async def one_user(base: str, name: str, questions: list[str], ready: asyncio.Queue,
                   start: asyncio.Event) -> tuple[list[float], list[float], int]:
    client = ChatClient(base, name, PASSWORD, PROFILE)
    first, full, failures = [], [], 0
    async with httpx.AsyncClient(timeout=60) as http:
        try:
            await client.login(http)
            await client.connect(timeout=120)
        except Exception as exc:  # noqa: BLE001 - a user who cannot connect fails every question
            print(f"  {name} could not connect: {exc!r}", flush=True)
            return [], [], len(questions)
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


def _open_gate() -> asyncio.Event:
    gate = asyncio.Event()
    gate.set()
    return gate


async def level(bases: list[str], n: int, questions: int, meter: CpuMeter) -> dict:
    start, ready = asyncio.Event(), asyncio.Queue()
    tasks = [asyncio.create_task(one_user(bases[i % len(bases)], f"bench{i}",
                                          [QUESTIONS[(i + k) % len(QUESTIONS)] for k in range(questions)],
                                          ready, start)) for i in range(n)]
    for _ in range(n):                      # every user connected before the clock starts
        await ready.get()
    servers = sorted(_with_descendants(set(meter.pids)))        # app servers with their engine processes
    whole = MachineMeter(servers, lambda pid: _is_backend_of(pid, meter.database))
    whole.start()
    cpu0, me0, load0, machine0 = meter.read(), time.process_time(), os.getloadavg()[0], machine_times()
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    server_cpu, client_cpu = CpuMeter.used(cpu0, meter.read()), time.process_time() - me0
    accounted = whole.stop()
    machine1 = machine_times()
    idle = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
    first = [x for r in results for x in r[0]]
    full = [x for r in results for x in r[1]]
    cpu_per_answer = server_cpu / len(full) if full else float("nan")
    ceiling = (os.cpu_count() or 1) / cpu_per_answer if full else float("nan")
    return {"instances": len(bases), "sessions": n, "answers": len(full),
            "failures": sum(r[2] for r in results), "wall_s": wall,
            "first_p50": pct(first, 0.5), "first_p95": pct(first, 0.95),
            "full_p50": pct(full, 0.5), "full_p95": pct(full, 0.95),
            "answers_per_s": len(full) / wall if wall else float("nan"),
            "cpu_per_answer": cpu_per_answer, "ceiling": ceiling, "client_cpu_s": client_cpu,
            "server_cpu_s": server_cpu, "load": (load0, os.getloadavg()[0]), "idle": idle,
            "share": server_cpu / (wall * (os.cpu_count() or 1)), "machine": accounted}


async def reviews_through_servers(bases: list[str], editors: int, per_editor: int) -> dict:
    """`editors` editors at once, each rating the steps of one answer it was given, `per_editor` times."""

    async def editor(i: int) -> list[float]:
        client = ChatClient(bases[i % len(bases)], f"editor{i}", PASSWORD, PROFILE)
        async with httpx.AsyncClient(timeout=60) as http:
            try:
                await client.login(http)
                await client.connect(timeout=120)
                timing = await client.ask(QUESTIONS[i % len(QUESTIONS)], timeout=300)
                steps = [e["props"]["step_id"] for e in timing.elements if e["name"] == "StepReview"]
            finally:
                await ready.put(i)              # has an answer to review (or failed): the clock may start
        await gate.wait()
        took = []
        async with httpx.AsyncClient(timeout=60) as http:   # fresh: the server closes idle keep-alives
            for k in range(per_editor):
                t = time.perf_counter()
                try:
                    out = await client.call_action(http, "review_step", {
                        "step_id": steps[k % len(steps)], "kind": "editor", "rating": (1, 0, -1, 1)[k % 4],
                        "correction": "fix" if k % 4 == 2 else "", "fault_tags": []})
                except httpx.HTTPError as exc:
                    print(f"  review failed: {exc!r}")
                    continue
                if out.get("response", {}).get("ok"):
                    took.append(time.perf_counter() - t)
        await client.close()
        return took

    gate, ready = asyncio.Event(), asyncio.Queue()
    tasks = [asyncio.create_task(editor(i)) for i in range(editors)]
    for _ in range(editors):
        await ready.get()
    await asyncio.sleep(1.0)                    # the answers' background writes settle
    t0 = time.perf_counter()
    gate.set()
    took = [x for r in await asyncio.gather(*tasks) for x in r]
    wall = time.perf_counter() - t0
    return {"editors": editors, "writes": len(took), "expected": editors * per_editor,
            "writes_per_s": len(took) / wall, "p50_s": pct(took, 0.5), "p95_s": pct(took, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 20, 40])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--questions", type=int, default=2, help="questions per user, asked in sequence")
    parser.add_argument("--editors", type=int, default=20)
    parser.add_argument("--reviews", type=int, default=10, help="review writes per editor")
    parser.add_argument("--engine-processes", type=int, default=None,
                        help="BOOKBOT_ENGINE_PROCESSES of every instance (default: the setting's own, 1 on "
                             "PostgreSQL; 0: engine threads in the server)")
    parser.add_argument("--model-dir", type=Path,
                        default=Path.home() / ".cache" / "bookbot" / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--book", type=Path, default=ROOT.parent / "shared" / "books" / "study_in_scarlet_244.txt")
    args = parser.parse_args()
    if shutil.which("chroma") is None:
        sys.exit("the chroma CLI is missing (it comes with the chromadb package)")
    from review_store import bench_writes, pg_create, pg_drop

    users = {f"bench{i}": ("reader", PASSWORD) for i in range(max(args.sessions))}
    users.update({f"editor{i}": ("editor", PASSWORD) for i in range(args.editors)})
    url = pg_create()
    database = url.rsplit("/", 1)[1]
    rows, review_row, procs = [], None, []
    with tempfile.TemporaryDirectory(prefix="bookbot-ui-load-") as tmp:
        tmp = Path(tmp)
        chroma, chroma_url = start_chroma(tmp / "chroma", tmp / "chroma.log")
        try:
            t = time.perf_counter()
            settings = [prepare_data(tmp / f"i{n}", args.model_dir, args.book if n == 0 else None, users,
                                     database_url=url, chroma_url=chroma_url) for n in range(max(args.instances))]
            settings = [s.model_copy(update={"engine_processes": args.engine_processes}) for s in settings]
            print(f"shared data ready in {time.perf_counter() - t:.1f}s (book opening imported once, "
                  f"{len(users)} users); {os.cpu_count()} cores")
            for n, s in enumerate(settings):
                procs.append(start_server(s, tmp / f"server{n}.log", timeout=180))
            for _, base in procs:      # steady state: each process builds its sentence-vector cache first
                asyncio.run(one_user(base, "bench0", QUESTIONS, asyncio.Queue(), _open_gate()))
            for count in args.instances:
                bases = [base for _, base in procs[:count]]
                meter = CpuMeter([chroma.pid] + [p.pid for p, _ in procs[:count]], database)
                for n in args.sessions:
                    row = asyncio.run(level(bases, n, args.questions, meter))
                    rows.append(row)
                    print(f"  {count} instance(s), {n} chat(s): {row['answers']} answers in {row['wall_s']:.1f}s; "
                          f"{row}", flush=True)
            review_row = asyncio.run(reviews_through_servers([b for _, b in procs[:max(args.instances)]],
                                                             args.editors, args.reviews))
        finally:
            for proc, _ in procs:
                stop_server(proc)
            stop_server(chroma)
            pg_drop(url)
    store_rows = []
    for _ in range(3):                 # three fresh databases: the machine's load moves between runs
        store_url = pg_create()
        try:
            store_rows.append(bench_writes(store_url, 300))
        finally:
            pg_drop(store_url)

    print()
    print(f"{'inst':>4} {'chats':>5} {'answers':>7} {'fail':>4} {'first step p50/p95 (s)':>23} "
          f"{'full answer p50/p95 (s)':>24} {'answers/s':>9} {'CPU-s/answer':>12} {'ceiling/s':>9} "
          f"{'of ceiling':>10} {'servers got':>11} {'idle':>5} {'load 1m':>11}")
    for r in rows:
        print(f"{r['instances']:>4} {r['sessions']:>5} {r['answers']:>7} {r['failures']:>4} "
              f"{r['first_p50']:>11.2f} / {r['first_p95']:<9.2f} {r['full_p50']:>11.2f} / {r['full_p95']:<10.2f} "
              f"{r['answers_per_s']:>9.2f} {r['cpu_per_answer']:>12.3f} {r['ceiling']:>9.2f} "
              f"{r['answers_per_s'] / r['ceiling']:>9.0%} {r['share']:>11.0%} {r['idle']:>5.0%} "
              f"{r['load'][0]:>5.1f}→{r['load'][1]:<4.1f}")
    print("(ceiling = cores / CPU-s per answer of the app servers + Chroma + this database's PostgreSQL "
          "backends in that level; 'servers got' = their CPU-s / (wall × cores), 'idle' = the whole machine's "
          "idle time; the load generator used "
          + ", ".join(f"{r['client_cpu_s']:.1f}" for r in rows) + " CPU-s on the same cores)")
    print("where the machine's CPU went in each level (sampled every second, every process): "
          + "; ".join(f"{r['instances']}×{r['sessions']}: " + ", ".join(
              f"{k} {v / r['machine']['machine']:.0%}" for k, v in r["machine"].items() if k != "machine")
              for r in rows))
    print(f"reviews through the servers, {review_row['editors']} editors at once: "
          f"{review_row['writes']}/{review_row['expected']} stored, {review_row['writes_per_s']:.1f} writes/s, "
          f"p50 {review_row['p50_s'] * 1000:.0f} ms, p95 {review_row['p95_s'] * 1000:.0f} ms")
    for row in store_rows:
        ratio = row["record_review_per_s"] / row["bare_insert_commit_per_s"]
        print(f"ReviewStore.record_review on PostgreSQL, one writer: {row['record_review_per_s']}/s vs bare "
              f"INSERT + COMMIT {row['bare_insert_commit_per_s']}/s = {ratio:.2f}x")


if __name__ == "__main__":
    main()
