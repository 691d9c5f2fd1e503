"""Session cookies, the login limiter, the signing key, and request hygiene of the API."""

from __future__ import annotations

from typing import Any

from canary.dashboard.auth import LoginLimiter, SessionCodec, SessionData, load_secret


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_round_trip_forgery_and_expiry() -> None:
    clock = Clock()
    codec = SessionCodec(b"k" * 32, max_age=3600, clock=clock)
    data = SessionData(csrf="c", issued=clock.now, user_id=7, fingerprint="f")
    cookie = codec.dumps(data)
    assert codec.loads(cookie) == data
    body, signature = cookie.rsplit(".", 1)
    assert codec.loads(body + "." + signature[::-1]) is None
    other = SessionCodec(b"x" * 32, clock=clock)
    assert other.loads(cookie) is None
    forged_body = other.dumps(SessionData(csrf="c", issued=clock.now, user_id=1)).split(".")[0]
    assert codec.loads(f"{forged_body}.{signature}") is None
    assert codec.loads("garbage") is None and codec.loads(None) is None
    clock.now += 3601
    assert codec.loads(cookie) is None


def test_limiter_window_and_per_address_cap() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_name=3, per_address=5, window=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("1.2.3.4", "Alice") is None
        limiter.failed("1.2.3.4", "Alice")
    assert limiter.retry_after("1.2.3.4", "alice") is not None  # names fold case
    assert limiter.retry_after("5.6.7.8", "alice") is None  # another address may try
    limiter.failed("1.2.3.4", "bob")
    limiter.failed("1.2.3.4", "carol")
    assert limiter.retry_after("1.2.3.4", "dave") is not None  # the address is capped
    clock.now += 61
    assert limiter.retry_after("1.2.3.4", "alice") is None


def test_secret_is_created_once_and_private(tmp_path: Any) -> None:
    path = tmp_path / "data" / "dashboard.key"
    first = load_secret(path)
    assert len(first) == 32
    assert load_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_repeated_api_parameter_is_refused_not_guessed(client: Any, alice: Any) -> None:
    """``?q=a&q=b`` could mean either; a proxy reading the last would disagree with us."""
    headers = {"Authorization": f"Bearer {alice.token}"}
    once = await client.get("/api/v1/trace?q=x", headers=headers)
    assert once.status == 200
    twice = await client.get("/api/v1/trace?q=x&q=y", headers=headers)
    assert twice.status == 400
    assert (await twice.json())["error"] == {
        "code": "invalid_input",
        "message": "query parameter 'q' given twice",
    }
    anonymous = await client.get("/api/v1/trace?q=x&q=y")
    assert anonymous.status == 401  # who is asking is decided first
