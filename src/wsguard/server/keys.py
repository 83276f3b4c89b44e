"""Where token verification keys come from: an HS256 secret, a PEM public key, or a JWKS file.

A JWKS file is read again whenever it changes on disk, so keys rotate without a restart.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

logger = logging.getLogger("wsguard")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: Any
    algorithms: tuple[str, ...]


class KeySource(Protocol):
    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        """The key that may verify a token with this header, or None if this source has none."""
        ...


class SecretKey:
    def __init__(self, secret: str) -> None:
        self.key = VerificationKey(secret, ("HS256",))

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        return self.key if header.get("alg") == "HS256" else None


def _algorithms_of(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256",)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ES256",)
    raise ValueError("the public key must be RSA (RS256) or EC P-256 (ES256)")


class PublicKeyFile:
    def __init__(self, path: str) -> None:
        key = load_pem_public_key(Path(path).read_bytes())
        self.key = VerificationKey(key, _algorithms_of(key))

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        return self.key if header.get("alg") in self.key.algorithms else None


class JwksFile:
    """Keys by ``kid``; a token without ``kid`` is tried against a set of exactly one key."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._mtime = -1.0
        self._keys: dict[str | None, VerificationKey] = {}
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        mtime = os.stat(self._path).st_mtime
        if mtime == self._mtime:
            return
        keys: dict[str | None, VerificationKey] = {}
        for jwk in jwt.PyJWKSet.from_json(Path(self._path).read_text()).keys:
            algorithm = jwk.algorithm_name
            keys[jwk.key_id] = VerificationKey(jwk.key, (algorithm,))
        self._keys, self._mtime = keys, mtime

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        try:
            self._reload_if_changed()
        except (OSError, ValueError, jwt.PyJWKSetError) as error:
            logger.warning("keeping the previous keys: cannot read %s: %s", self._path, error)
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)
