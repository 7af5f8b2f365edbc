"""Auth header parsing, digests of the three schemes, skew, replay cache (no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import AuthError
from ingest.auth import Authenticator, digest, parse_created, parse_token, sign_headers
from ingest.nonces import NonceCache

APP, SECRET = "app-1", "s3cret"
URL = "https://edge.example.com/notify/voice"


def _auth(**kw: object) -> Authenticator:
    return Authenticator({APP: SECRET}, **kw)  # type: ignore[arg-type]


def _verify(a: Authenticator, headers: dict[str, str], service: str = "privacy", url: str = "", now: float | None = None):
    return a.verify(
        service,
        headers.get("Authorization", ""),
        headers.get("X-AKSK", ""),
        headers.get("X-WSSE", ""),
        url,
        time.time() if now is None else now,
    )


def test_digest_formulas_match_the_documented_ones() -> None:
    nonce, created = "66C92B11FF8A425FB8D4CCFE0ED9ED1F", "2018-02-12T15:30:20Z"
    aksk = base64.b64encode(hmac.new(SECRET.encode(), (nonce + created).encode(), hashlib.sha256).digest()).decode()
    voice = base64.b64encode(
        hmac.new(SECRET.encode(), f"{URL}\n{nonce}\n{created}".encode(), hashlib.sha256).digest()
    ).decode()
    wsse = base64.b64encode(hashlib.sha256((nonce + created + SECRET).encode()).digest()).decode()
    assert digest("aksk", SECRET, nonce, created) == aksk
    assert digest("aksk-voice", SECRET, nonce, created, URL) == voice
    assert digest("wsse", SECRET, nonce, created) == wsse
    headers = sign_headers(APP, SECRET, nonce=nonce, created=created)
    assert headers["Authorization"].startswith("AKSK realm=\"SDP\"")
    assert headers["X-AKSK"] == (
        f'UsernameToken Username="{APP}", PasswordDigest="{aksk}", Nonce="{nonce}", Created="{created}"'
    )
    assert sign_headers(APP, SECRET, scheme="wsse", nonce=nonce, created=created)["X-WSSE"].count(wsse) == 1


@pytest.mark.parametrize(
    ("scheme", "service", "url"),
    [("aksk", "privacy", ""), ("aksk", "voice", URL), ("aksk-voice", "voice", URL), ("wsse", "privacy", ""),
     ("wsse", "voice", URL)],
)
def test_each_scheme_is_accepted(scheme: str, service: str, url: str) -> None:
    identity = _verify(_auth(), sign_headers(APP, SECRET, scheme=scheme, url=url), service, url)
    assert (identity.app_key, identity.scheme) == (APP, scheme)


def test_voice_digest_is_not_accepted_on_privacy_nor_with_another_url() -> None:
    headers = sign_headers(APP, SECRET, scheme="aksk-voice", url=URL)
    with pytest.raises(AuthError) as caught:
        _verify(_auth(), headers, "privacy")
    assert caught.value.reason == "bad_digest"
    with pytest.raises(AuthError) as caught:
        _verify(_auth(), headers, "voice", URL + "x")
    assert caught.value.reason == "bad_digest"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_header"),
        ({"Authorization": "AKSK x", "X-AKSK": "Basic abc"}, "malformed_header"),
        ({"X-AKSK": 'UsernameToken Username="app-1", Nonce="n", Created="2020-01-01T00:00:00Z"'}, "malformed_header"),
        (sign_headers("other-app", SECRET), "unknown_app"),
        (sign_headers(APP, "wrong-secret"), "bad_digest"),
        (sign_headers(APP, SECRET, created="yesterday"), "malformed_header"),
    ],
)
def test_failures_have_reasons(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(AuthError) as caught:
        _verify(_auth(), headers)
    assert caught.value.reason == reason
    assert caught.value.status == 401


@pytest.mark.parametrize("minutes", [-16, 16])
def test_skewed_created_is_refused_both_ways(minutes: int) -> None:
    created = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(AuthError) as caught:
        _verify(_auth(max_skew_s=900), sign_headers(APP, SECRET, created=created))
    assert caught.value.reason == "skewed_created"
    created = (datetime.now(UTC) + timedelta(minutes=minutes // 2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _verify(_auth(max_skew_s=900), sign_headers(APP, SECRET, created=created)).app_key == APP


def test_nonce_is_refused_only_after_it_was_accepted() -> None:
    auth = _auth()
    headers = sign_headers(APP, SECRET)
    first = _verify(auth, headers)
    again = _verify(auth, headers)  # the first did not get its 200 (e.g. 503): a retry passes
    auth.accepted(again, time.time())
    with pytest.raises(AuthError) as caught:
        _verify(auth, headers)
    assert caught.value.reason == "replayed_nonce"
    assert first.nonce == again.nonce
    # the same nonce under another app is a different nonce
    auth.apps["app-2"] = SECRET
    _verify(auth, sign_headers("app-2", SECRET, nonce=headers["X-AKSK"].split('Nonce="')[1].split('"')[0]))


def test_disabled_scheme_is_refused() -> None:
    auth = _auth(schemes="aksk")
    with pytest.raises(AuthError) as caught:
        _verify(auth, sign_headers(APP, SECRET, scheme="wsse"))
    assert caught.value.reason == "scheme_disabled"
    with pytest.raises(ValueError, match="unknown auth scheme"):
        _auth(schemes="aksk,md5")


def test_nonce_cache_expires_and_stays_bounded() -> None:
    cache = NonceCache(ttl_s=10, max_entries=3)
    for i in range(5):
        cache.add(f"n{i}", now=100.0 + i)
    assert len(cache) == 3
    assert not cache.seen("n0", 105.0) and cache.seen("n4", 105.0)
    assert not cache.seen("n4", 114.5)
    cache.add("late", now=200.0)
    assert len(cache) == 1


def test_parse_created_accepts_the_documented_form() -> None:
    assert parse_created("2018-02-12T15:30:20Z") == datetime(2018, 2, 12, 15, 30, 20, tzinfo=UTC).timestamp()
    assert parse_created("2018-02-12T15:30:20.123Z") > parse_created("2018-02-12T15:30:20Z")


@given(st.text(max_size=300))
def test_parse_token_raises_only_auth_errors(text: str) -> None:
    try:
        token = parse_token(text)
    except AuthError as exc:
        assert exc.reason == "malformed_header"
    else:
        assert token.username and token.digest and token.nonce and token.created


@given(
    st.text(alphabet=st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.text(alphabet="abcdefABCDEF0123456789", min_size=1, max_size=128),
)
def test_parse_token_round_trips_signed_headers(app_key: str, nonce: str) -> None:
    header = sign_headers(app_key, "k", nonce=nonce, created="2020-01-01T00:00:00Z")["X-AKSK"]
    token = parse_token(header)
    assert (token.username, token.nonce, token.created) == (app_key, nonce, "2020-01-01T00:00:00Z")


@given(st.text(max_size=200), st.text(max_size=200), st.text(max_size=200), st.sampled_from(["voice", "privacy"]))
def test_verify_raises_only_auth_errors(authorization: str, aksk: str, wsse: str, service: str) -> None:
    try:
        _verify(_auth(), {"Authorization": authorization, "X-AKSK": aksk, "X-WSSE": wsse}, service, URL)
    except AuthError:
        pass
