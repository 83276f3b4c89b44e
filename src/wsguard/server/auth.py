"""Who is connecting: JWT bearer tokens (and, through :class:`Identity`, any embedding's own auth)."""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from wsguard import jwt_algorithms
from wsguard.claims import AdminClaim, ClaimRules
from wsguard.errors import WSGuardError
from wsguard.server.jwks_url import JwksUrl
from wsguard.server.jwt_keys import JwksFile, KeySource, PublicKeyFile, SecretKey, VerificationKey
from wsguard.settings import Settings

logger = logging.getLogger("wsguard")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``expires_at`` (epoch seconds) ends a session when it passes."""

    user_id: str
    expires_at: float | None = None
    admin: bool = False


class Unauthorized(WSGuardError):
    """Credentials are missing or invalid; the request is answered with 401."""


class UnknownKey(Unauthorized):
    """No source has the key the token names (yet): a JWKS URL may have it after a fetch."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(f"no key for this token (alg {algorithm})")
        self.algorithm = algorithm


Authenticate = Callable[[HTTPConnection], Awaitable[Identity]]
"""Turn an upgrade or HTTP request into an :class:`Identity`, or raise :class:`Unauthorized`."""


VERIFIED_TOKENS = 4096
"""How many verified tokens are remembered at most (the oldest verification goes first)."""

RECHECK_SECONDS = 60.0
"""How long a verified token is remembered before its signature is checked again."""

MAX_TOKEN_BYTES = 8192
"""Longer tokens are refused before any parsing (a header line is at most that long anyway)."""


class TokenAuthority:
    """Verifies JWTs: signed by a configured key with an allowed algorithm, ``exp`` required, the
    user id in ``sub`` (or ``--jwt-user-claim``), audience and issuer checked when configured.
    In ``--dev`` it also issues HS256 tokens with a secret of its own."""

    def __init__(
        self,
        sources: list[KeySource],
        leeway: float,
        issuing_secret: str | None,
        clock: Callable[[], float] = time.monotonic,
        rules: ClaimRules | None = None,
        issuing_algorithm: str = "HS256",
    ) -> None:
        self._sources = sources
        self._clock = clock
        self._leeway = leeway
        self._issuing_secret = issuing_secret
        self._issuing_algorithm = issuing_algorithm
        self._rules = rules or ClaimRules()
        self._verified: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        """Token -> (when its signature was checked, monotonic; its identity), oldest first."""

    @classmethod
    def from_settings(cls, settings: Settings, dev_secret: str) -> "TokenAuthority":
        """Keys from the settings; with ``--dev`` and no secret, the random dev secret too."""
        public = jwt_algorithms.for_public(settings.jwt_algorithms)
        sources: list[KeySource] = []
        if settings.jwt_public_key:
            sources.append(PublicKeyFile(settings.jwt_public_key, public))
        if settings.jwks_file:
            sources.append(JwksFile(settings.jwks_file, public))
        sources.extend(JwksUrl(url, public) for url in settings.jwks_urls)
        secret = settings.jwt_secret or (dev_secret if settings.dev else None)
        hmac = jwt_algorithms.for_secret(settings.jwt_algorithms)
        if secret:
            sources.append(SecretKey(secret, hmac))
        rules = ClaimRules(
            settings.jwt_audiences,
            settings.jwt_issuer,
            settings.jwt_user_claim,
            AdminClaim.parse(settings.jwt_admin_claim),
        )
        issuing = secret if settings.dev else None
        return cls(sources, settings.jwt_leeway, issuing, rules=rules, issuing_algorithm=hmac[0])

    @property
    def _remote(self) -> list[JwksUrl]:
        return [source for source in self._sources if isinstance(source, JwksUrl)]

    def start(self) -> None:
        """Start fetching the keys of every JWKS URL (in the app's lifespan)."""
        for source in self._remote:
            source.start()

    async def stop(self) -> None:
        await asyncio.gather(*(source.stop() for source in self._remote))

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; a reconnect storm re-using one token verifies it once.

        Verified tokens are remembered for at most a minute (so a key removed from a JWKS file
        stops working within a minute); expiry is checked on every use. A token naming a key no
        source has yet raises :class:`UnknownKey`, and asks the JWKS URLs to fetch again.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"token over {MAX_TOKEN_BYTES} bytes")
        now = self._clock()
        remembered = self._verified.get(token)
        if remembered is not None and now - remembered[0] < RECHECK_SECONDS:
            identity = remembered[1]
        else:
            try:
                identity = self._verify_signature(token)
            except UnknownKey as unknown:
                for source in self._remote_for(unknown.algorithm):
                    source.want()
                raise
            self._verified[token] = (now, identity)
            self._verified.move_to_end(token)
            if len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        if identity.expires_at is not None and identity.expires_at <= time.time() - self._leeway:
            raise Unauthorized("Signature has expired")
        return identity

    async def verify_fetching(self, token: str) -> Identity:
        """:meth:`verify`; for a key no source has yet, once more after the JWKS URLs fetched
        again (if they may now: at most one fetch per few seconds, shared by every token)."""
        try:
            return self.verify(token)
        except UnknownKey as unknown:
            remote = self._remote_for(unknown.algorithm)
            if not remote:
                raise
            await asyncio.gather(*(source.refetch() for source in remote))
        return self.verify(token)

    def _remote_for(self, algorithm: str) -> list[JwksUrl]:
        return [source for source in self._remote if algorithm in source.algorithms]

    def prune(self, now: float) -> int:
        """Forget the tokens verified more than a minute ago (the sweeper's chore): a token in
        use is checked again anyway, and one no longer used is held by nothing."""
        stale = 0
        while self._verified:
            token, (checked_at, _) = next(iter(self._verified.items()))
            if now - checked_at < RECHECK_SECONDS:
                break
            del self._verified[token]
            stale += 1
        return stale

    def __len__(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._verified)

    def _verify_signature(self, token: str) -> Identity:
        if len(self._sources) == 1 and isinstance(self._sources[0], SecretKey | PublicKeyFile):
            return self._decode(token, self._sources[0].key)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from error
        algorithm = str(header.get("alg"))[:16]
        for source in self._sources:
            found = source.key_for(header)
            if found is not None:
                return self._decode(token, found)
        if not any(algorithm in source.algorithms for source in self._remote):
            raise Unauthorized(f"no key for a token signed with {algorithm}")
        raise UnknownKey(algorithm)

    def _decode(self, token: str, found: VerificationKey) -> Identity:
        rules = self._rules
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                found.key,
                algorithms=list(found.algorithms),
                leeway=self._leeway,
                audience=list(rules.audiences) or None,
                issuer=rules.issuer,
                options={"require": rules.required()},
            )
            user_id = rules.user_of(claims)
        except (jwt.PyJWTError, ValueError) as error:
            raise Unauthorized(str(error)) from error
        return Identity(user_id, float(claims["exp"]), rules.admin_claim.holds(claims))

    def issue(self, user_id: str, *, admin: bool = False, ttl: float = 3600.0) -> str:
        """A dev token, shaped to pass the configured claim rules; only a ``--dev`` server has a
        secret to sign with."""
        if self._issuing_secret is None:
            raise RuntimeError("tokens are issued only in --dev")
        now = time.time()
        claims: dict[str, Any] = {"sub": user_id, "iat": int(now), "exp": int(now + ttl)}
        self._rules.stamp(claims, user_id, admin)
        return jwt.encode(claims, self._issuing_secret, algorithm=self._issuing_algorithm)

    async def authenticate(self, connection: HTTPConnection) -> Identity:
        """The bearer token of ``Authorization``; a refusal's reason is logged at DEBUG."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("missing bearer token")
            return await self.verify_fetching(token.strip())
        except Unauthorized as error:
            logger.debug("token refused: %s", error)
            raise

    def verify_refresh(self, token: str, user_id: str) -> float | None:
        """A refresh token must be valid and for the same user."""
        try:
            identity = self.verify(token)
        except Unauthorized as error:
            raise PermissionError(str(error)) from error
        if identity.user_id != user_id:
            raise PermissionError("token is for another user")
        return identity.expires_at
