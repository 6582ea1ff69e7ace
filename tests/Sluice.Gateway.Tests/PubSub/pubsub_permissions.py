"""A python client of the gateway's pubsub handler: each principal kind of `permissions`, denied and allowed.

Usage: pubsub_permissions.py BASE_WS_URL JWT_SECRET. Prints one line per step; the test compares them."""
import asyncio, base64, hashlib, hmac, json, sys, time

import websockets

BASE, SECRET = sys.argv[1], sys.argv[2]


def jwt(claims):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(dict(claims, exp=int(time.time()) + 600)).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


INBOX = {}


async def ask(ws, op, topic, data=None):
    frame = {"op": op, "topic": topic}
    if op == "publish":
        frame["data"] = data
    await ws.send(json.dumps(frame))
    while True:
        try:
            # A publish is answered only when refused: wait briefly for an error.
            answer = json.loads(await asyncio.wait_for(ws.recv(), 1.0 if op == "publish" else 10))
        except asyncio.TimeoutError:
            if op == "publish":
                return {"op": "published"}
            raise
        if answer.get("op") == "message":
            INBOX.setdefault(id(ws), []).append(answer["data"])
            continue
        return answer


def show(answer):
    if "error" in answer:
        return f"{answer['error']['status']}"
    return answer["op"]


async def main():
    anon = await websockets.connect(BASE + "/anon")
    bob = await websockets.connect(BASE + "/key?apikey=k-bob")
    alice = await websockets.connect(BASE + "/key?apikey=k-alice")
    carol = await websockets.connect(BASE + "/jwt?access_token=" + jwt({"sub": "carol", "role": "admin"}))
    dave = await websockets.connect(BASE + "/jwt?access_token=" + jwt({"sub": "dave", "role": "user"}))
    steps = [
        ("anon subscribe public.news", anon, "subscribe", "public.news"),
        ("anon publish public.news", anon, "publish", "public.news"),
        ("anon subscribe user.bob", anon, "subscribe", "user.bob"),
        ("anon subscribe other", anon, "subscribe", "other"),
        ("bob subscribe user.bob", bob, "subscribe", "user.bob"),
        ("bob subscribe user.alice", bob, "subscribe", "user.alice"),
        ("bob publish public.news", bob, "publish", "public.news"),
        ("alice publish public.news", alice, "publish", "public.news"),
        ("dave publish public.news", dave, "publish", "public.news"),
        ("carol publish public.news", carol, "publish", "public.news"),
        ("alice publish user.bob", alice, "publish", "user.bob"),
        ("bob publish user.bob", bob, "publish", "user.bob"),
    ]
    for name, ws, op, topic in steps:
        print(name, show(await ask(ws, op, topic, name)), flush=True)
    # What reached the anonymous subscriber of public.news, and bob on user.bob.
    for who, ws in (("anon", anon), ("bob", bob)):
        got = INBOX.get(id(ws), [])
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0))["data"])
        except asyncio.TimeoutError:
            pass
        print(who, "received", "; ".join(got), flush=True)
    for ws in (anon, bob, alice, carol, dave):
        await ws.close()


asyncio.run(main())
