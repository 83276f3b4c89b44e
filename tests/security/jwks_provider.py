"""An identity provider for tests: a JWKS endpoint on a loopback port, the keys behind it, and
tokens shaped like those of Firebase, Auth0, Cognito and Keycloak.

The endpoint is a plain ``http.server`` in a thread. It counts every request (so a test can
bound the fetches a server makes), answers with ``Cache-Control``, and can be stopped and
started again on the same port (a provider that goes down), or made to serve any body.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsguard.processes import free_port

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PrivateKeyT = TypeVar("PrivateKeyT", rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksProvider:
    """``url`` serves the public halves of ``keys`` (by kid) as a JWKS, or ``body`` when set."""

    def __init__(self, port: int | None = None, cache_control: str = "public, max-age=300") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.cache_control = cache_control
        self.keys: dict[str, PrivateKey] = {}
        self.body: bytes | None = None
        self.requests: list[float] = []
        """When each request came (monotonic)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, kid: str, key: PrivateKeyT | None = None) -> PrivateKeyT | rsa.RSAPrivateKey:
        """Serve ``key`` (a new RSA key when None) under ``kid``; the key."""
        added = key or rsa_key()
        self.keys[kid] = added
        return added

    def document(self) -> dict[str, Any]:
        entries = []
        for kid, key in self.keys.items():
            if isinstance(key, rsa.RSAPrivateKey):
                entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                entry["alg"] = "RS256"
            else:
                entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
                entry["alg"] = "ES256"
            entries.append({**entry, "kid": kid, "use": "sig"})
        return {"keys": entries}

    def sign(self, claims: dict[str, Any], kid: str, *, algorithm: str = "RS256") -> str:
        return jwt.encode(claims, self.keys[kid], algorithm=algorithm, headers={"kid": kid})

    @property
    def fetches(self) -> int:
        return len(self.requests)

    def start(self) -> Self:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.requests.append(time.monotonic())
                body = (
                    provider.body if provider.body is not None else json.dumps(provider.document()).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", provider.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """A token with ``alg: none`` and no signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(claims)}."


def _times(ttl: float = 600) -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "exp": now + int(ttl)}


@dataclass(frozen=True)
class Provider:
    """How one identity provider's tokens look, and the flags that accept them."""

    name: str
    issuer: str
    audience: str | None
    """What ``--jwt-audience`` is set to; None when its tokens are taken without one."""
    flags: tuple[str, ...]
    """Besides ``--jwks-url``, ``--jwt-issuer`` and ``--jwt-audience``."""

    def claims(self, user: str, *, admin: bool = False) -> dict[str, Any]:
        """A token of this provider for ``user`` (the id wsguard must name it by)."""
        return CLAIMS[self.name](self, user, admin)

    def server_flags(self, jwks_url: str) -> list[str]:
        flags = ["--jwks-url", jwks_url, "--jwt-issuer", self.issuer, *self.flags]
        return [*flags, "--jwt-audience", self.audience] if self.audience else flags


def _firebase(provider: Provider, user: str, admin: bool) -> dict[str, Any]:
    project = provider.issuer.rsplit("/", 1)[1]
    claims: dict[str, Any] = {
        "iss": provider.issuer,
        "aud": project,
        "auth_time": int(time.time()),
        "user_id": user,
        "sub": user,
        "email": f"{user}@example.com",
        "email_verified": True,
        "firebase": {"identities": {"email": [f"{user}@example.com"]}, "sign_in_provider": "password"},
        **_times(),
    }
    if admin:
        claims["admin"] = True  # a custom claim set with the Admin SDK
    return claims


def _auth0(provider: Provider, user: str, admin: bool) -> dict[str, Any]:
    return {
        "iss": provider.issuer,
        "sub": user,
        "aud": [provider.audience, f"{provider.issuer}userinfo"],
        "azp": "Vn1pCwQ8ZzRk3Lq0sYx2",
        "scope": "openid profile email",
        "permissions": ["read:events", *(["publish:events"] if admin else [])],
        **_times(),
    }


def _cognito(provider: Provider, user: str, admin: bool) -> dict[str, Any]:
    return {
        "sub": str(uuid.uuid4()),
        "cognito:groups": ["users", *(["admin"] if admin else [])],
        "iss": provider.issuer,
        "version": 2,
        "client_id": "3n4b5urk1ft4fl3mg5e62d9ado",
        "origin_jti": str(uuid.uuid4()),
        "event_id": str(uuid.uuid4()),
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin openid",
        "auth_time": int(time.time()),
        "jti": str(uuid.uuid4()),
        "username": user,
        **_times(),
    }


def _keycloak(provider: Provider, user: str, admin: bool) -> dict[str, Any]:
    return {
        "jti": str(uuid.uuid4()),
        "iss": provider.issuer,
        "aud": [provider.audience, "account"],
        "sub": str(uuid.uuid4()),
        "typ": "Bearer",
        "azp": provider.audience,
        "session_state": str(uuid.uuid4()),
        "realm_access": {"roles": ["offline_access", "uma_authorization", *(["admin"] if admin else [])]},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid email profile",
        "preferred_username": user,
        **_times(),
    }


CLAIMS = {"firebase": _firebase, "auth0": _auth0, "cognito": _cognito, "keycloak": _keycloak}

PROVIDERS = [
    Provider("firebase", "https://securetoken.google.com/wsguard-test", "wsguard-test", ()),
    Provider(
        "auth0",
        "https://wsguard-test.eu.auth0.com/",
        "https://api.wsguard.example",
        ("--jwt-admin-claim", "permissions=publish:events"),
    ),
    Provider(
        "cognito",
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
        None,
        ("--jwt-user-claim", "username", "--jwt-admin-claim", "cognito:groups=admin"),
    ),
    Provider(
        "keycloak",
        "https://sso.wsguard.example/realms/wsguard",
        "wsguard-app",
        ("--jwt-user-claim", "preferred_username", "--jwt-admin-claim", "realm_access.roles=admin"),
    ),
]
