"""Authentication of Huawei pushes: the ``X-AKSK`` and legacy ``X-WSSE`` UsernameToken headers.

Three digests are accepted (see docs/huawei-notifications.md §2):

=============  ====================================================================  =========
scheme         PasswordDigest                                                        paths
=============  ====================================================================  =========
``aksk``       Base64(HMAC-SHA256(secret, Nonce + Created))                          both
``aksk-voice`` Base64(HMAC-SHA256(secret, url + "\\n" + Nonce + "\\n" + Created))     voice
``wsse``       Base64(SHA256(Nonce + Created + secret))                              both
=============  ====================================================================  =========

The signer owns the push: a body that names an ``appKey`` other than the one whose secret signed it
(:func:`check_owner`, 403 ``app_key_mismatch``) is refused, so one app's secret cannot write rows that
claim to be another app's. The digest does not cover the body, so a nonce that already got a 200 inside the skew window is refused
(:class:`ingest.nonces.NonceCache`); the caller records the nonce only after the 200, so a re-push after
a 503 goes through, and two copies of one request racing each other may both be accepted (downstream
deduplication absorbs that). ``Created`` must lie within ``auth_max_skew_s`` of server time either way.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from core.errors import AppKeyMismatch, AuthError
from ingest.nonces import NonceCache

Scheme = Literal["aksk", "aksk-voice", "wsse"]
ALL_SCHEMES: tuple[str, ...] = ("aksk", "aksk-voice", "wsse")
AKSK_AUTHORIZATION = 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"'
WSSE_AUTHORIZATION = 'WSSE realm="SDP",profile="UsernameToken",type="Appkey"'
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_TOKEN_CHARS = 4096

_TOKEN_PREFIX = "UsernameToken"
_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')
_FIELDS = ("Username", "PasswordDigest", "Nonce", "Created")
# The exact shape the platform sends; anything else goes through the general parser.
_CANONICAL = re.compile(
    r'UsernameToken Username="([^"]+)", ?PasswordDigest="([^"]+)", ?Nonce="([^"]+)", ?Created="([^"]+)"'
)


def check_owner(signer: str, body_app_keys: tuple[str, ...]) -> None:
    """Refuse a push whose body names an appKey other than ``signer`` (no check when auth is off)."""
    if not signer:
        return
    others = [key for key in body_app_keys if key != signer]
    if others:
        shown = ", ".join(repr(key[:64]) for key in others[:3])
        raise AppKeyMismatch(
            f"signed by appKey {signer!r} but the body names appKey {shown}: each app's push must be "
            "signed with that app's own secret"
        )


class UsernameToken(NamedTuple):
    username: str
    digest: str
    nonce: str
    created: str


class Identity(NamedTuple):
    """Who sent an accepted push: ``app_key`` and the ``scheme`` that verified it, plus the nonce to record."""

    app_key: str
    scheme: str
    nonce: str = ""


def parse_token(value: str) -> UsernameToken:
    """Parse ``UsernameToken Username="..", PasswordDigest="..", Nonce="..", Created=".."``.

    Raises :class:`AuthError` (reason ``malformed_header``) on anything else.
    """
    if len(value) > MAX_TOKEN_CHARS:
        raise AuthError("UsernameToken header is too long", reason="malformed_header")
    canonical = _CANONICAL.fullmatch(value)
    if canonical is not None:
        return UsernameToken(*canonical.groups())
    text = value.strip()
    if not text.startswith(_TOKEN_PREFIX):
        raise AuthError("UsernameToken header must start with 'UsernameToken'", reason="malformed_header")
    rest = text[len(_TOKEN_PREFIX) :]
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PAIR.match(rest, pos)
        if match is None or match.end() == pos:
            raise AuthError('UsernameToken header: expected Name="value" pairs', reason="malformed_header")
        fields[match.group(1)] = match.group(2)
        pos = match.end()
    missing = [name for name in _FIELDS if not fields.get(name)]
    if missing:
        raise AuthError(f"UsernameToken header lacks {', '.join(missing)}", reason="malformed_header")
    return UsernameToken(fields["Username"], fields["PasswordDigest"], fields["Nonce"], fields["Created"])


def parse_created(created: str) -> float:
    """``Created`` (``2018-02-12T15:30:20Z``; fractions and offsets tolerated) as a UTC epoch."""
    try:
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise AuthError(
            f"Created {created[:40]!r} is not a time like 2018-02-12T15:30:20Z", reason="malformed_header"
        ) from None


def _digest_bytes(scheme: str, secret: bytes, nonce: str, created: str, url: str) -> bytes:
    """The PasswordDigest as base64 bytes (no newline)."""
    if scheme == "aksk":
        raw = hmac.digest(secret, (nonce + created).encode(), "sha256")
    elif scheme == "aksk-voice":
        raw = hmac.digest(secret, f"{url}\n{nonce}\n{created}".encode(), "sha256")
    elif scheme == "wsse":
        raw = hashlib.sha256((nonce + created).encode() + secret).digest()
    else:
        raise ValueError(f"unknown auth scheme {scheme!r}: use one of {', '.join(ALL_SCHEMES)}")
    return binascii.b2a_base64(raw, newline=False)


def digest(scheme: str, secret: str, nonce: str, created: str, url: str = "") -> str:
    """The PasswordDigest the platform computes for ``scheme``."""
    return _digest_bytes(scheme, secret.encode(), nonce, created, url).decode("ascii")


def sign_headers(
    app_key: str,
    secret: str,
    *,
    scheme: str = "aksk",
    url: str = "",
    nonce: str | None = None,
    created: str | None = None,
) -> dict[str, str]:
    """Authorization plus X-AKSK (or X-WSSE) headers exactly as the platform sends them."""
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    created = created if created is not None else datetime.now(UTC).strftime(CREATED_FORMAT)
    token = (
        f'UsernameToken Username="{app_key}", PasswordDigest="{digest(scheme, secret, nonce, created, url)}", '
        f'Nonce="{nonce}", Created="{created}"'
    )
    if scheme == "wsse":
        return {"Authorization": WSSE_AUTHORIZATION, "X-WSSE": token}
    return {"Authorization": AKSK_AUTHORIZATION, "X-AKSK": token}


class Authenticator:
    """Verifies the UsernameToken headers of one request against the configured app secrets."""

    def __init__(
        self,
        apps: dict[str, str],
        *,
        schemes: str | tuple[str, ...] = ALL_SCHEMES,
        max_skew_s: float = 900,
        nonce_cache_entries: int = 100_000,
    ) -> None:
        names = tuple(s.strip() for s in schemes.split(",")) if isinstance(schemes, str) else schemes
        unknown = [s for s in names if s and s not in ALL_SCHEMES]
        if unknown:
            raise ValueError(f"unknown auth scheme(s) {unknown}: CALLSTREAM_AUTH_SCHEMES takes {','.join(ALL_SCHEMES)}")
        self.apps = dict(apps)
        self._secrets: dict[str, bytes] = {}  # secret -> its bytes, encoded once
        self._created: dict[str, float] = {}  # Created text -> epoch; pushes of one second share it
        self.schemes = frozenset(s for s in names if s)
        self.max_skew_s = max_skew_s
        # the schemes tried per header, most likely first (voice pushes use the voice digest)
        self._aksk_voice = tuple(s for s in ("aksk-voice", "aksk") if s in self.schemes)
        self._aksk = tuple(s for s in ("aksk",) if s in self.schemes)
        self._wsse = tuple(s for s in ("wsse",) if s in self.schemes)
        self.nonces = NonceCache(ttl_s=2 * max_skew_s, max_entries=nonce_cache_entries)

    def verify(
        self, service: str, authorization: str, aksk: str, wsse: str, url: str, now: float
    ) -> Identity:
        """Check the headers (empty string = absent); returns the identity or raises :class:`AuthError`."""
        if aksk and (authorization.startswith("AKSK") or not wsse):
            allowed = self._aksk_voice if service == "voice" else self._aksk
            token_text = aksk
        elif wsse:
            allowed = self._wsse
            token_text = wsse
        else:
            raise AuthError("missing X-AKSK (or X-WSSE) header", reason="missing_header")
        if not allowed:
            raise AuthError("this auth scheme is disabled here (CALLSTREAM_AUTH_SCHEMES)", reason="scheme_disabled")
        token = parse_token(token_text)
        secret_text = self.apps.get(token.username)
        if secret_text is None:
            raise AuthError("unknown appKey", reason="unknown_app")
        secret = self._secrets.get(secret_text)
        if secret is None:
            secret = self._secrets[secret_text] = secret_text.encode()
        created_at = self._created.get(token.created)
        if created_at is None:
            created_at = parse_created(token.created)
            if len(self._created) >= 256:
                self._created.clear()
            self._created[token.created] = created_at
        if abs(now - created_at) > self.max_skew_s:
            raise AuthError(
                f"Created is more than {int(self.max_skew_s)} s away from server time", reason="skewed_created"
            )
        presented = token.digest.encode()
        scheme_ok = ""
        for scheme in allowed:
            if hmac.compare_digest(_digest_bytes(scheme, secret, token.nonce, token.created, url), presented):
                scheme_ok = scheme
                break
        if not scheme_ok:
            raise AuthError("PasswordDigest does not match", reason="bad_digest")
        nonce_key = f"{token.username}\x00{token.nonce}"
        if self.nonces.seen(nonce_key, now):
            raise AuthError("nonce already used", reason="replayed_nonce")
        return Identity(token.username, scheme_ok, nonce_key)

    def accepted(self, identity: Identity, now: float) -> None:
        """Record the nonce of a request that got its 200."""
        if identity.nonce:
            self.nonces.add(identity.nonce, now)
