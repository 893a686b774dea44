"""Chainlit entry point: ``chainlit run app/ui/main.py`` (``bookbot serve`` does it for you).

Owns only the Chainlit callbacks and their wiring: the request guard in front of
Chainlit's server (``guard``: origins, token versions, throttled sign-in answers,
malformed requests), password sign-in against the review store's accounts
(throttled per name and address; the token carries the account's token
version), sign-out ending every token of the account, the data layer, one chat
profile per character card (plus the editors' review desk, offered by the role
stored now), the greeting and the offline notice, message checks (a chat whose
sign-in has ended is not answered), and the ``review_step`` / desk action
callbacks.  The work itself lives
in ``render`` (streaming turns), ``actions`` (recording reviews), ``desk``
(review queue) and ``services`` (engine, store, cards).  Nothing runs at import
time except registering callbacks and the guard with Chainlit (settings are read
from the environment; no database or model is opened).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import chainlit as cl
from chainlit.server import app as _server_app
from chainlit.session import WebsocketSession

from app.settings import Settings
from app.ui import actions, desk, guard, present
from app.ui.services import get_services

DESK_PROFILE = desk.DESK_PROFILE
STARTER = "ask_starter"     # the card's starter questions, as buttons under the greeting


guard.install(_server_app, Settings(), account_state=lambda name: get_services().store.account_state(name))


def _session_config(_session: Any) -> Any:
    """Every chat session's config is the global one: Bookbot's chat profiles carry no
    ``config_overrides``.  Chainlit 2.12 finds that out by running the profile callback inside
    the running event loop (nest_asyncio), once per socket connect; each simultaneous connect
    nested another loop, and at 40 readers opening a chat at once the nesting passed Python's
    recursion limit and their sign-ins failed (tests/ui/test_many_chats.py)."""
    from chainlit.config import config

    return config


WebsocketSession.get_config = _session_config


@cl.data_layer
def _data_layer() -> Any:
    from app.ui.datalayer import BookbotDataLayer

    services = get_services()
    settings = services.settings
    return BookbotDataLayer(settings.resolved_database_url,
                            control_props=lambda author, props: actions.control_props(services.store,
                                                                                      author, props))


@cl.on_app_startup
async def _warm_up() -> None:
    """Open the library (index, embedder) and start the engine processes while the server starts,
    not on the first question."""
    from app.review.accounts import warm_up

    services = get_services()
    await asyncio.to_thread(warm_up)          # the first sign-in costs what every other one does
    processes = services.engine_processes()
    if processes is not None:
        await asyncio.to_thread(processes.start)
    try:
        await asyncio.to_thread(services.library)
    except Exception as exc:  # the chat still starts; the first question will report the problem
        import logging

        logging.getLogger("bookbot.ui").warning("library not opened at start-up: %s", exc)


@cl.password_auth_callback
async def _login(username: str, password: str) -> Optional[cl.User]:
    from app.review.accounts import Throttle

    settings = get_services().settings
    attempt = guard.current_sign_in()
    throttle = Throttle(account_failures=settings.sign_in_account_failures,
                        address_failures=settings.sign_in_address_failures,
                        window_s=settings.sign_in_window_s, block_s=settings.sign_in_block_s)
    result = await asyncio.to_thread(get_services().store.sign_in, username, password,
                                     attempt.address if attempt else None, throttle)
    if result.retry_after_s is not None and attempt is not None:
        attempt.retry_after_s = result.retry_after_s          # the guard answers 429
    if result.user is None:
        return None
    user = result.user
    return cl.User(identifier=user.name, display_name=user.name,
                   metadata={"role": user.role.value, "account_id": user.id,
                             "token_version": result.token_version})


@cl.on_logout
async def _logout(request: Any, response: Any) -> dict:
    """Signing out ends every token of the account, not only this browser's cookie."""
    from chainlit.auth import get_token_from_cookies

    services = get_services()
    token = get_token_from_cookies(request.cookies)
    if token:
        check = await guard.check_token(token, services.settings.token_lifetime_s,
                                        services.store.account_state, _auth_secret())
        if check.name:
            await asyncio.to_thread(services.store.end_sessions, check.name)
    return {"success": True}


def _auth_secret() -> Optional[str]:
    from chainlit.auth.jwt import get_jwt_secret

    return get_jwt_secret()


async def _session_ended() -> bool:
    """True (and the reader is told) when this chat's sign-in no longer holds (signed out elsewhere,
    role or password changed, expired): socket.io messages do not pass the HTTP guard."""
    services = get_services()
    token = getattr(cl.context.session, "token", None)
    if not token:
        return False
    check = await guard.check_token(token, services.settings.token_lifetime_s,
                                    services.store.account_state, _auth_secret())
    if check.problem is None:
        return False
    await cl.Message(content=f"Not sent: {check.problem} (reload the page).", author="Bookbot").send()
    return True


def _role_of(user: Optional[cl.User]) -> str:
    """The role stored now (a token's metadata may predate a role change)."""
    if user is None:
        return "reader"
    account = get_services().store.get_user(user.identifier)
    return account.role.value if account is not None else "reader"


@cl.set_chat_profiles
async def _profiles(current_user: Optional[cl.User], language: Optional[str] = None) -> list[cl.ChatProfile]:
    services = get_services()
    characters = await asyncio.to_thread(services.cards.all)   # re-reads changed cards: new chats see them
    profiles = [
        cl.ChatProfile(name=c.name, markdown_description=c.description,
                       icon=present.icon_url(c.icon))
        for c in characters
    ]
    if present.can_edit(await asyncio.to_thread(_role_of, current_user)):
        profiles.append(cl.ChatProfile(name=DESK_PROFILE, icon="/public/avatars/review_desk.svg",
                                       markdown_description=desk.DESCRIPTION))
    return profiles


def _character_for_profile(profile: Optional[str]) -> Any:
    characters = get_services().cards.all()
    for c in characters:
        if c.name == profile:
            return c
    return characters[0] if characters else None


@cl.on_chat_start
async def _start() -> None:
    services = get_services()
    profile = cl.user_session.get("chat_profile")
    if profile == DESK_PROFILE:
        await desk.start(services)
        return
    character = await asyncio.to_thread(_character_for_profile, profile)
    if character is None:
        await cl.Message(content="No character cards were found in "
                         f"`{services.settings.characters_dir}`. A lab member can add one "
                         "(see `bookbot cards --help`).", author="Bookbot").send()
        return
    cl.user_session.set("character_id", character.id)
    cl.user_session.set("history", [])
    starters = [cl.Action(name=STARTER, payload={"question": q}, label=q if len(q) <= 70 else q[:67] + "…")
                for q in character.starters]
    await cl.Message(content=character.greeting, author=character.name, actions=starters).send()
    if services.offline:
        await cl.Message(content=actions.OFFLINE_NOTICE, author="Bookbot").send()
    present_ids = {b.id for b in await asyncio.to_thread(lambda: services.library().books())}
    missing = present.missing_books_notice(character.book_ids, present_ids)
    if missing:
        await cl.Message(content=missing, author="Bookbot").send()


@cl.on_chat_resume
async def _resume(thread: dict) -> None:
    await actions.resume(get_services(), thread)


@cl.on_message
async def _message(message: cl.Message) -> None:
    if await _session_ended():
        return
    services = get_services()
    if cl.user_session.get("chat_profile") == DESK_PROFILE:
        await desk.on_message(services, message.content)
        return
    await actions.answer(services, message.content, message.thread_id)


@cl.action_callback("review_step")
async def _review(action: cl.Action) -> dict:
    if await _session_ended():
        return {"ok": False, "error": "review refused: " + guard.ENDED}
    return await actions.record(get_services(), action.payload)


@cl.action_callback(desk.ACTION)
async def _desk(action: cl.Action) -> None:
    if await _session_ended():
        return
    await desk.on_action(get_services(), action.payload)


@cl.action_callback(STARTER)
async def _starter(action: cl.Action) -> None:
    if await _session_ended():
        return
    payload = action.payload if isinstance(action.payload, dict) else {}
    question = payload.get("question")
    if not isinstance(question, str):
        await cl.Message(content="That starter question could not be read; type your question instead.",
                         author="Bookbot").send()
        return
    user = cl.user_session.get("user")
    message = cl.Message(content=question, author=getattr(user, "identifier", "you"), type="user_message")
    await message.send()
    await actions.answer(get_services(), question, cl.context.session.thread_id)
