"""Issue 12's attacks, replayed against the real server (HTTP + socket.io); each must be refused
and leave the database as it was.

Wrong passwords are sent with their own ``X-Forwarded-For`` address (uvicorn trusts it from
127.0.0.1, as behind a local proxy), so throttling here never pauses the other tests' sign-ins.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import socketio
from sqlalchemy import create_engine, text

from chat_client import ChatClient
from conftest import USERS

pytestmark = pytest.mark.slow
EVIL = "https://evil.example"


def run(coro):
    with ThreadPoolExecutor(1) as pool:           # keeps asyncio away from Playwright's loop
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def db(ui_settings):
    engine = create_engine(ui_settings.resolved_database_url)
    yield engine
    engine.dispose()


def rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(map(str, r)) for r in conn.execute(text(f"SELECT * FROM {table}")))


def snapshot(engine) -> dict[str, list[tuple]]:
    return {t: rows(engine, t) for t in ("threads", "elements", "element_files", "feedbacks", "reviews", "accounts")}


def files(settings) -> list[str]:
    root = settings.data_dir / "chainlit_files"
    return sorted(str(p) for p in root.rglob("*")) if root.exists() else []


async def _signed_in(base: str, name: str, password: str, profile: str = "Sherlock Holmes",
                     connect: bool = True) -> ChatClient:
    client = ChatClient(base, name, password, profile)
    async with httpx.AsyncClient(timeout=30) as http:
        await client.login(http)
    if connect:
        await client.connect()
    return client


# ---------------------------------------------------------------- ownership and sizes

async def _tamper(base: str, engine, settings) -> dict:
    ed = await _signed_in(base, "ed", USERS["ed"][1])
    rita = await _signed_in(base, "rita", USERS["rita"][1])
    out: dict = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        turn = await ed.ask("What is the science of deduction?")
        await rita.ask("Who is Sherlock Holmes?")
        await asyncio.sleep(1.0)                       # Chainlit persists in background tasks
        element = next(e for e in turn.elements if e.get("name") == "StepReview")
        answer = turn.messages[-1]
        ed_h = {"Cookie": ed.cookie_header}
        r = await http.put("/feedback", headers=ed_h, json={
            "feedback": {"forId": answer["id"], "value": 1, "comment": "good"}, "sessionId": ed.session_id})
        out["ed_feedback"] = r.status_code
        feedback_id = r.json()["feedbackId"]
        await asyncio.sleep(0.3)
        before, before_files = snapshot(engine), files(settings)
        rh = {"Cookie": rita.cookie_header}
        forged = {**element, "props": {**element["props"], "step_name": "FORGED"}}
        calls = {
            "put_element": ("PUT", "/project/element", {"element": forged, "sessionId": rita.session_id}),
            "put_element_own_thread": ("PUT", "/project/element", {
                "element": {**forged, "threadId": rita.thread_id}, "sessionId": rita.session_id}),
            "delete_element": ("DELETE", "/project/element", {"element": element, "sessionId": rita.session_id}),
            "put_feedback": ("PUT", "/feedback", {"feedback": {"forId": answer["id"], "id": feedback_id,
                                                               "value": 0, "comment": "forged"},
                                                  "sessionId": rita.session_id}),
            "put_feedback_new": ("PUT", "/feedback", {"feedback": {"forId": answer["id"], "value": 0},
                                                      "sessionId": rita.session_id}),
            "delete_feedback": ("DELETE", "/feedback", {"feedbackId": feedback_id}),
            "use_eds_session": ("POST", "/project/action", {"sessionId": ed.session_id, "action": {
                "name": "review_step", "payload": {"step_id": element["props"]["step_id"], "kind": "editor",
                                                   "rating": -1}}}),
            "rename_thread": ("PUT", "/project/thread", {"threadId": ed.thread_id, "name": "forged"}),
            "delete_thread": ("DELETE", "/project/thread", {"threadId": ed.thread_id}),
            "huge_element": ("PUT", "/project/element", {
                "element": {**forged, "id": str(uuid.uuid4()), "threadId": rita.thread_id,
                            "props": {"blob": "x" * 2_000_000}}, "sessionId": rita.session_id}),
            "large_props": ("PUT", "/project/element", {
                "element": {**forged, "id": str(uuid.uuid4()), "threadId": rita.thread_id,
                            "props": {"blob": "x" * 100_000}}, "sessionId": rita.session_id}),
            "long_comment": ("PUT", "/feedback", {"feedback": {"forId": rita.thread_id, "value": 1,
                                                               "comment": "x" * 5000},
                                                  "sessionId": rita.session_id}),
        }
        for key, (method, path, body) in calls.items():
            r = await http.request(method, path, headers=rh, json=body)
            out[key] = (r.status_code, r.json().get("detail", ""))
        for key, path in {"get_thread": f"/project/thread/{ed.thread_id}",
                          "get_element": f"/project/thread/{ed.thread_id}/element/{element['id']}",
                          "get_shared": f"/project/share/{ed.thread_id}",
                          "get_missing": f"/project/thread/{uuid.uuid4()}"}.items():
            r = await http.get(path, headers=rh)
            out[key] = (r.status_code, "FORGED" in r.text or "deduction" in r.text)
        await asyncio.sleep(0.5)
        out["unchanged"] = snapshot(engine) == before
        out["files_unchanged"] = files(settings) == before_files
        spy = socketio.AsyncClient(reconnection=False)
        try:
            await spy.connect(base, socketio_path="/ws/socket.io", transports=["websocket"],
                              headers={"Cookie": rita.cookie_header}, wait_timeout=10,
                              auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()),
                                    "threadId": ed.thread_id, "userEnv": "{}", "chatProfile": ""})
            out["resume_other"] = "connected"
        except socketio.exceptions.ConnectionError as exc:
            out["resume_other"] = f"refused: {exc}"
        finally:
            await spy.disconnect()
    await ed.close()
    await rita.close()
    return out


def test_other_users_threads_elements_and_feedback_are_refused_and_nothing_changes(ui_server, db, ui_settings):
    out = run(_tamper(ui_server, db, ui_settings))
    assert out["ed_feedback"] == 200                                 # the owner may
    for key in ("put_element", "put_element_own_thread", "delete_element", "put_feedback",
                "put_feedback_new", "delete_feedback"):
        assert out[key][0] == 403, (key, out[key])
    assert out["use_eds_session"][0] == 403
    assert out["rename_thread"][0] in (401, 403) and out["delete_thread"][0] in (401, 403)
    assert out["huge_element"][0] == 413 and out["large_props"][0] == 413, out
    assert "limit" in out["large_props"][1]
    assert out["long_comment"][0] == 413
    for key in ("get_thread", "get_element", "get_shared"):
        status, leaked = out[key]
        assert status in (401, 403, 404) and not leaked, (key, out[key])
    assert out["get_missing"][0] == 404
    assert out["resume_other"].startswith("refused")
    assert out["unchanged"] and out["files_unchanged"]


# ---------------------------------------------------------------- sign-in

async def _sign_in_timings(base: str, known: list[str], rounds: int) -> tuple[list[float], list[float]]:
    known_ms, unknown_ms = [], []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for i in range(rounds):
            for name, bucket in ((known[i], known_ms), (f"nobody-{uuid.uuid4().hex[:8]}", unknown_ms)):
                t0 = time.perf_counter()
                r = await http.post("/login", data={"username": name, "password": "wrong password!"},
                                    headers={"X-Forwarded-For": f"10.77.{i}.{len(bucket) % 2 + 1}"})
                bucket.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 401 and r.json()["detail"] == "credentialssignin"
    return known_ms, unknown_ms


def test_sign_in_costs_the_same_for_unknown_names(ui_server, ui_store):
    rounds = 12
    known = [f"timing-{i}-{uuid.uuid4().hex[:6]}" for i in range(rounds + 1)]
    for name in known:
        ui_store.add_user(name, "right password 1", "reader")
    run(_sign_in_timings(ui_server, known[-1:], 1))                  # warm-up
    known_ms, unknown_ms = run(_sign_in_timings(ui_server, known, rounds))
    k, u = statistics.median(known_ms), statistics.median(unknown_ms)
    print(f"\nsign-in, wrong password, median of {rounds}: known {k:.1f} ms, unknown {u:.1f} ms")
    assert 0.67 < k / u < 1.5, (known_ms, unknown_ms)


async def _throttle(base: str, name: str, password: str) -> dict:
    out: dict = {"account": [], "address": []}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(7):
            r = await http.post("/login", data={"username": name, "password": "not it at all"},
                                headers={"X-Forwarded-For": "10.66.0.1"})
            out["account"].append((r.status_code, r.json()["detail"], r.headers.get("retry-after")))
        t0 = time.perf_counter()
        r = await http.post("/login", data={"username": name, "password": password},
                            headers={"X-Forwarded-For": "10.66.0.2"})
        out["right_while_paused"] = (r.status_code, r.json()["detail"], (time.perf_counter() - t0) * 1000)
        for i in range(21):                                          # one address, many names
            r = await http.post("/login", data={"username": f"guess-{i}", "password": "x"},
                                headers={"X-Forwarded-For": "10.66.0.3"})
            out["address"].append(r.status_code)
        r = await http.post("/login", data={"username": "rita", "password": USERS["rita"][1]},
                            headers={"X-Forwarded-For": "10.66.0.3"})
        out["rita_from_paused_address"] = r.status_code
        r = await http.post("/login", data={"username": "rita", "password": USERS["rita"][1]},
                            headers={"X-Forwarded-For": "10.66.0.4"})
        out["rita_elsewhere"] = r.status_code
    return out


def test_sign_in_is_throttled_per_account_and_per_address_with_429(ui_server, ui_store, db):
    name = f"victim-{uuid.uuid4().hex[:6]}"
    ui_store.add_user(name, "victim password", "reader")
    before = rows(db, "accounts")
    out = run(_throttle(ui_server, name, "victim password"))
    statuses = [s for s, _, _ in out["account"]]
    assert statuses == [401] * 5 + [429, 429], out["account"]
    status, detail, retry = out["account"][5]
    assert detail.startswith("too many attempts, try again in ") and detail.endswith(" s")
    assert 1 <= int(retry) <= 30 and detail == f"too many attempts, try again in {retry} s"
    assert out["right_while_paused"][0] == 429                      # even the right password waits
    assert out["address"][:20] == [401] * 20 and out["address"][20] == 429
    assert out["rita_from_paused_address"] == 429 and out["rita_elsewhere"] == 200
    assert rows(db, "accounts") == before                            # nothing about the accounts changed
    with db.connect() as conn:
        keys = {k for (k,) in conn.execute(text("SELECT key FROM sign_in_throttle"))}
    assert f"account:{name}" in keys and "address:10.66.0.3" in keys


# ---------------------------------------------------------------- origins

async def _origins(base: str) -> dict:
    client = await _signed_in(base, "rita", USERS["rita"][1], connect=False)
    out = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.options("/project/threads", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        out["preflight"] = (r.status_code, r.headers.get("access-control-allow-origin"))
        r = await http.get("/user", headers={"Origin": EVIL, "Cookie": client.cookie_header})
        out["evil_get"] = (r.status_code, r.headers.get("access-control-allow-origin"), "rita" in r.text)
        r = await http.post("/login", data={"username": "rita", "password": USERS["rita"][1]},
                            headers={"Origin": EVIL})
        out["evil_login"] = r.status_code
        own = base.replace("http://", "")
        r = await http.get("/user", headers={"Origin": base, "Host": own, "Cookie": client.cookie_header})
        out["own_origin"] = r.status_code
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await sio.connect(base, socketio_path="/ws/socket.io", transports=["websocket"], wait_timeout=10,
                          headers={"Cookie": client.cookie_header, "Origin": EVIL},
                          auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()), "threadId": "",
                                "userEnv": "{}", "chatProfile": ""})
        out["evil_socket"] = "connected"
    except socketio.exceptions.ConnectionError:
        out["evil_socket"] = "refused"
    finally:
        await sio.disconnect()
    return out


def test_cross_origin_requests_are_refused(ui_server):
    out = run(_origins(ui_server))
    assert out["preflight"][0] == 403 and out["preflight"][1] is None
    assert out["evil_get"] == (403, None, False)
    assert out["evil_login"] == 403
    assert out["own_origin"] == 200
    assert out["evil_socket"] == "refused"


# ---------------------------------------------------------------- tokens

async def _tokens(base: str, store, name: str, password: str, secret: str) -> dict:
    import jwt

    out: dict = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async def login() -> dict[str, str]:
            r = await http.post("/login", data={"username": name, "password": password})
            r.raise_for_status()
            out.setdefault("cookie", r.headers.get("set-cookie", ""))
            return {"Cookie": "; ".join(f"{k}={v}" for k, v in r.cookies.items())}

        async def profiles(h) -> tuple[int, list]:
            r = await http.get("/project/settings?language=en-US", headers=h)
            return r.status_code, [p["name"] for p in r.json().get("chatProfiles", [])] if r.status_code == 200 else []

        http.cookies.clear()
        first = await login()
        out["editor_profiles"] = await profiles(first)
        await asyncio.to_thread(store.set_role, name, "reader")       # demoted
        out["after_demotion"] = await profiles(first)
        out["after_demotion_detail"] = (await http.get("/user", headers=first)).json().get("detail")
        http.cookies.clear()
        second = await login()
        out["reader_profiles"] = await profiles(second)
        await asyncio.to_thread(store.set_password, name, password + "!")
        out["after_password_change"] = (await http.get("/user", headers=second)).status_code
        password_now = password + "!"
        http.cookies.clear()
        r = await http.post("/login", data={"username": name, "password": password_now})
        third = {"Cookie": "; ".join(f"{k}={v}" for k, v in r.cookies.items())}
        out["before_logout"] = (await http.get("/user", headers=third)).status_code
        r = await http.post("/logout", headers=third, json={})
        out["logout"] = r.status_code
        out["after_logout"] = (await http.get("/user", headers=third)).status_code
        sio = socketio.AsyncClient(reconnection=False)
        try:
            await sio.connect(base, socketio_path="/ws/socket.io", transports=["websocket"], wait_timeout=10,
                              headers=third, auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()),
                                                   "threadId": "", "userEnv": "{}", "chatProfile": ""})
            out["socket_after_logout"] = "connected"
        except socketio.exceptions.ConnectionError:
            out["socket_after_logout"] = "refused"
        finally:
            await sio.disconnect()
        http.cookies.clear()
        r = await http.post("/login", data={"username": name, "password": password_now})
        claims = jwt.decode(r.cookies["access_token"], secret, algorithms=["HS256"])
        out["lifetime_s"] = claims["exp"] - claims["iat"]
        claims.update(iat=int(time.time()) - 9 * 3600, exp=int(time.time()) + 3600)   # old, but not "exp"ired
        old = jwt.encode(claims, secret, algorithm="HS256")
        out["old_token"] = (await http.get("/user", headers={"Cookie": f"access_token={old}"})).status_code
        fresh = {"Cookie": "; ".join(f"{k}={v}" for k, v in r.cookies.items())}
        out["fresh_token"] = (await http.get("/user", headers=fresh)).status_code
    # an open chat whose account signs out elsewhere: the next message is not answered
    client = await _signed_in(base, name, password_now)
    await asyncio.to_thread(store.end_sessions, name)
    timing = await client.ask("Who is Sherlock Holmes?", timeout=30)
    out["socket_after_end"] = (timing.first_step_s, [m.get("output", "") for m in timing.messages])
    await client.close()
    return out


def test_tokens_end_on_logout_role_and_password_change_and_are_short_lived(ui_server, ui_store, ui_settings):
    name = f"demoted-{uuid.uuid4().hex[:6]}"
    ui_store.add_user(name, "editor password", "editor")
    secret = (ui_settings.data_dir / "auth_secret").read_text().strip()
    out = run(_tokens(ui_server, ui_store, name, "editor password", secret))
    assert out["editor_profiles"][0] == 200 and "Review desk" in out["editor_profiles"][1]
    assert out["after_demotion"][0] == 401 and "ended" in out["after_demotion_detail"]
    assert out["reader_profiles"][0] == 200 and "Review desk" not in out["reader_profiles"][1]
    assert out["after_password_change"] == 401
    assert out["before_logout"] == 200 and out["logout"] == 200 and out["after_logout"] == 401
    assert out["socket_after_logout"] == "refused"
    assert out["lifetime_s"] == 8 * 3600 and "Max-Age=28800" in out["cookie"]
    assert out["old_token"] == 401 and out["fresh_token"] == 200
    first_step, replies = out["socket_after_end"]
    assert first_step is None and any("sign-in has ended" in r for r in replies), replies


# ---------------------------------------------------------------- input edge cases

async def _inputs(base: str) -> dict:
    rita = await _signed_in(base, "rita", USERS["rita"][1])
    out: dict = {}
    for key, message in {"surrogate": "Who is Holmes? \ud83d", "zero_width": "\u200b\u200b\u2060\ufeff\u200b",
                         "huge": "Holmes " * 15_000, "controls": "\x00\x07\x1b\x7f\x08\u202e"}.items():
        timing = await rita.ask(message, timeout=60)
        out[key] = (timing.first_step_s, " ".join(m.get("output", "") for m in timing.messages))
    timing = await rita.ask("Who is Sherlock\u200b Holmes, the cafe\u0301 detective?", timeout=60)
    out["normalised"] = timing.first_step_s is not None
    out["thread_id"] = rita.thread_id
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        h = {"Cookie": rita.cookie_header}
        action = {"name": "review_step", "payload": {}, "id": str(uuid.uuid4()), "label": ""}
        bad = {
            "payload_list": {"sessionId": rita.session_id, "action": {**action, "payload": [1, 2]}},
            "payload_string": {"sessionId": rita.session_id, "action": {**action, "payload": "x"}},
            "payload_missing": {"sessionId": rita.session_id, "action": {"name": "ask_starter"}},
            "action_not_object": {"sessionId": rita.session_id, "action": "review_step"},
            "unknown_field": {"sessionId": rita.session_id, "action": {**action, "evil": 1}},
            "no_session": {"action": action},
            "unknown_session": {"sessionId": str(uuid.uuid4()), "action": action},
            "body_list": [1, 2, 3],
        }
        out["actions"] = {}
        for key, body in bad.items():
            r = await http.post("/project/action", headers=h, json=body)
            out["actions"][key] = (r.status_code, r.json().get("detail", ""))
        r = await http.post("/project/action", headers={**h, "Content-Type": "application/json"}, content=b"{nope")
        out["actions"]["not_json"] = (r.status_code, r.json().get("detail", ""))
        out["other"] = {}
        for key, (method, path, body) in {
            "element_list": ("PUT", "/project/element", {"element": [], "sessionId": rita.session_id}),
            "element_no_type": ("PUT", "/project/element", {"element": {"id": "x"}, "sessionId": rita.session_id}),
            "feedback_no_for": ("PUT", "/feedback", {"feedback": {"value": 1}, "sessionId": rita.session_id}),
            "feedback_bad_value": ("PUT", "/feedback", {"feedback": {"forId": "x", "value": 7},
                                                        "sessionId": rita.session_id}),
            "session_cookie_list": ("POST", "/set-session-cookie", ["x"]),
            "rename_long": ("PUT", "/project/thread", {"threadId": rita.thread_id or "x", "name": "n" * 5000}),
        }.items():
            r = await http.request(method, path, headers=h, json=body)
            out["other"][key] = r.status_code
    await rita.close()
    return out


def test_input_edge_cases_are_refused_clearly_and_not_stored_in_full(ui_server, db):
    reviews_before = rows(db, "reviews")
    out = run(_inputs(ui_server))
    first, reply = out["surrogate"]
    assert first is None and "broken character" in reply and "U+D83D" in reply
    assert "Sorry" not in reply and "codec" not in reply
    for key in ("zero_width", "controls"):
        first, reply = out[key]
        assert first is None and "empty" in reply, (key, reply)
    first, reply = out["huge"]
    assert first is None and "limit is 4,000" in reply
    assert out["normalised"]
    with db.connect() as conn:
        steps = conn.execute(text('SELECT "type", "name", "input", "output" FROM steps WHERE "threadId" = :t'),
                             {"t": out["thread_id"]}).all()
        name = conn.execute(text('SELECT "name" FROM threads WHERE "id" = :t'), {"t": out["thread_id"]}).scalar()
    user_messages = [o for t, _, _, o in steps if t == "user_message"]
    assert any("refused message of 105,000 characters" in o for o in user_messages)
    assert max(len(i or "") + len(o or "") for _, _, i, o in steps) < 20_000   # the 105 KB text is nowhere
    assert not any("\ud83d" in (o or "") or "\x00" in (o or "") for o in user_messages)
    assert "Who is Sherlock Holmes, the café detective?" in user_messages
    assert name is None or len(name) <= 200
    for key, (status, detail) in out["actions"].items():
        assert 400 <= status < 500 and detail, (key, status, detail)
    assert out["actions"]["payload_list"] == (400, "malformed action: 'payload' must be a JSON object")
    assert out["actions"]["unknown_session"][0] == 404
    assert all(400 <= s < 500 for s in out["other"].values()), out["other"]
    assert rows(db, "reviews") == reviews_before


async def _correction(base: str, limit: int) -> dict:
    ed = await _signed_in(base, "ed", USERS["ed"][1])
    timing = await ed.ask("What did Holmes observe about Watson?")
    step_id = next(e for e in timing.elements if e.get("name") == "StepReview")["props"]["step_id"]
    async with httpx.AsyncClient(timeout=30) as http:
        too_long = await ed.call_action(http, "review_step", {"step_id": step_id, "kind": "editor", "rating": -1,
                                                              "correction": "x" * (limit + 1)})
        at_limit = await ed.call_action(http, "review_step", {"step_id": step_id, "kind": "editor", "rating": -1,
                                                              "correction": "y" * limit})
    await ed.close()
    return {"step_id": step_id, "too_long": too_long["response"], "at_limit": at_limit["response"]}


def test_correction_limit_is_the_documented_one(ui_server, ui_store):
    from pathlib import Path

    from app.review.models import MAX_CORRECTION_CHARS
    from app.ui.present import MAX_CORRECTION_CHARS as UI_LIMIT

    assert UI_LIMIT == MAX_CORRECTION_CHARS == 8000
    docs = Path(__file__).resolve().parents[2] / "docs" / "reviews.md"
    assert "8,000" in docs.read_text()
    out = run(_correction(ui_server, MAX_CORRECTION_CHARS))
    assert out["too_long"]["ok"] is False and "limit is 8,000" in out["too_long"]["error"]
    assert out["at_limit"]["ok"] is True, out["at_limit"]
    (stored,) = [r for r in ui_store.reviews_for_step(out["step_id"]) if r.reviewer == "ed"]
    assert len(stored.correction) == 8000


def test_sign_in_page_shows_the_pause_in_the_browser(ui_server, ui_store, browser):
    """The login form itself only knows "Unable to sign in"; public/signin.js shows the server's words."""
    name = f"browser-{uuid.uuid4().hex[:6]}"
    ui_store.add_user(name, "browser password", "reader")
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "10.55.0.1"})
    page = context.new_page()
    try:
        page.goto(ui_server + "/")
        for _ in range(6):
            page.fill("#email", name)
            page.fill("#password", "not the password")
            with page.expect_response(lambda r: r.url.endswith("/login")) as response:
                page.click("button[type=submit]")
            status = response.value.status
        assert status == 429
        notice = page.locator("#bookbot-signin-notice")
        notice.wait_for(timeout=10_000)
        assert re.fullmatch(r"Sign-in paused: too many attempts, try again in \d+ s\.", notice.inner_text())
    finally:
        context.close()
