"""Where token verification keys come from: a shared secret, a PEM public key, or a JWKS file.

A JWKS file is read again whenever it changes on disk, so keys rotate without a restart (a JWKS
URL is :mod:`wsguard.server.jwks_url`). Every key carries the algorithms it may verify: those of
its family that the allow-list has (:mod:`wsguard.jwt_algorithms`), never an HMAC one for a
public key, so a token's ``alg`` header can never turn a public key into a shared secret.
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from wsguard import jwt_algorithms

logger = logging.getLogger("wsguard")

CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "secp256k1"}
"""cryptography's curve names, as JWK ``crv`` names."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: Any
    algorithms: tuple[str, ...]


class KeySource(Protocol):
    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        """The key that may verify a token with this header, or None if this source has none."""
        ...


class SecretKey:
    def __init__(self, secret: str, algorithms: tuple[str, ...] = jwt_algorithms.DEFAULT_SECRET) -> None:
        self.key = VerificationKey(secret, algorithms)

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        return self.key if header.get("alg") in self.key.algorithms else None


def family_of(key: Any) -> tuple[str, ...]:
    """Every algorithm this public key object could verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return jwt_algorithms.RSA
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = jwt_algorithms.EC_BY_CURVE.get(CURVES.get(key.curve.name, ""))
        return (name,) if name else ()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return jwt_algorithms.EDDSA
    return ()


class PublicKeyFile:
    def __init__(self, path: str, algorithms: tuple[str, ...] = jwt_algorithms.DEFAULT_PUBLIC) -> None:
        """ValueError when the key is of no family the allow-list has."""
        key = load_pem_public_key(Path(path).read_bytes())
        usable = tuple(a for a in algorithms if a in family_of(key))
        if not usable:
            family = ", ".join(family_of(key)) or "none"
            raise ValueError(f"the key verifies {family}; the algorithms allowed are {', '.join(algorithms)}")
        self.key = VerificationKey(key, usable)

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        return self.key if header.get("alg") in self.key.algorithms else None


def _family_of_jwk(jwk: dict[str, Any]) -> tuple[str, ...]:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        return jwt_algorithms.RSA
    if kty == "EC" and isinstance(crv, str) and crv in jwt_algorithms.EC_BY_CURVE:
        return (jwt_algorithms.EC_BY_CURVE[crv],)
    if kty == "OKP" and crv in ("Ed25519", "Ed448"):
        return jwt_algorithms.EDDSA
    return ()  # "oct" (a shared secret) among them: never a public verification key


def signing_keys(document: Any, allowed: tuple[str, ...]) -> dict[str | None, VerificationKey]:
    """The verification keys of a JWKS document, by ``kid``: public signing keys whose algorithms
    the allow-list has. ValueError when there is none (a JWKS of only ``oct`` keys among them)."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('not a JWKS: no "keys" list')
    keys: dict[str | None, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        family = _family_of_jwk(entry)
        declared = entry.get("alg")
        usable = tuple(a for a in allowed if a in family and declared in (None, a))
        kid = entry.get("kid")
        if not usable or not isinstance(kid, str | None):
            continue
        try:
            key = jwt.PyJWK(entry, usable[0]).key
        except jwt.PyJWTError as error:
            logger.debug("skipping JWK %r: %s", kid, error)
            continue
        keys[kid] = VerificationKey(key, usable)
    if not keys:
        kinds = sorted({str(e.get("kty")) for e in entries if isinstance(e, dict)})
        raise ValueError(
            f"no public signing key for {', '.join(allowed)} among {len(entries)} "
            f"(key types: {', '.join(kinds) or 'none'})"
        )
    return keys


def key_by_header(keys: dict[str | None, VerificationKey], header: dict[str, Any]) -> VerificationKey | None:
    """The key a token's ``kid`` names; a token without one may use a set of exactly one key."""
    kid = header.get("kid")
    if kid is None and len(keys) == 1:
        only = next(iter(keys.values()))
        return only if header.get("alg") in only.algorithms else None
    return keys.get(kid) if isinstance(kid, str) else None


class JwksFile:
    """Keys by ``kid``; a token without ``kid`` is tried against a set of exactly one key."""

    def __init__(self, path: str, algorithms: tuple[str, ...] = jwt_algorithms.DEFAULT_PUBLIC) -> None:
        self._path = path
        self._algorithms = algorithms
        self._mtime = -1.0
        self._keys: dict[str | None, VerificationKey] = {}
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        mtime = os.stat(self._path).st_mtime
        if mtime == self._mtime:
            return
        document = json.loads(Path(self._path).read_text())
        self._keys, self._mtime = signing_keys(document, self._algorithms), mtime

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        try:
            self._reload_if_changed()
        except (OSError, ValueError) as error:
            logger.warning("keeping the previous keys: cannot read %s: %s", self._path, error)
        return key_by_header(self._keys, header)
