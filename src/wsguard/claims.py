"""What a verified token's claims must hold, and who they name: the rules of an identity provider.

Providers put the user and the roles in different places (``sub``, ``username``,
``realm_access.roles``, ``permissions``), so both are named by a claim path: dot-separated, each
step the longest key present (so a namespaced claim such as ``https://example.com/roles`` is
one step). Pure Python: settings validation parses these rules without loading PyJWT.
"""

import json
from dataclasses import dataclass, field
from typing import Any

MISSING = object()


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The value at ``path`` (``realm_access.roles``), or :data:`MISSING`."""
    parts, node, index = path.split("."), claims, 0
    while index < len(parts):
        if not isinstance(node, dict):
            return MISSING
        for end in range(len(parts), index, -1):
            key = ".".join(parts[index:end])
            if key in node:
                node, index = node[key], end
                break
        else:
            return MISSING
    return node


def put_claim(claims: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``claims``, creating the objects on the way (for ``--dev`` tokens)."""
    *parents, last = path.split(".")
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def check_path(path: str) -> str | None:
    """Why ``path`` is not a claim path, or None."""
    if not path or any(not part for part in path.split(".")):
        return f"{path!r} is not a claim path (NAME or NAME.NAME...)"
    return None


@dataclass(frozen=True, slots=True)
class AdminClaim:
    """``PATH=VALUE``: admin when the claim equals VALUE, or is a list that contains it."""

    path: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "AdminClaim":
        """ValueError, saying why, for anything but ``PATH=VALUE``."""
        path, equals, value = text.partition("=")
        problem = check_path(path.strip()) if equals else f"{text!r} is not PATH=VALUE"
        if problem is None and not value:
            problem = f"{text!r} has no VALUE after '='"
        if problem is not None:
            raise ValueError(problem)
        return cls(path.strip(), value)

    def holds(self, claims: dict[str, Any]) -> bool:
        found = claim_at(claims, self.path)
        if isinstance(found, list):
            return any(self._equal(item) for item in found)
        return self._equal(found)

    def _equal(self, item: Any) -> bool:
        """A string equals VALUE as it is; true, false and numbers as their JSON text."""
        if isinstance(item, str):
            return item == self.value
        if isinstance(item, bool | int | float):
            return json.dumps(item) == self.value
        return False

    def example(self) -> Any:
        """A claim value that holds (what a ``--dev`` admin token carries)."""
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return self.value
        return parsed if isinstance(parsed, bool | int | float) else self.value


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """``--jwt-audience``, ``--jwt-issuer``, ``--jwt-user-claim`` and ``--jwt-admin-claim``."""

    audiences: tuple[str, ...] = ()
    issuer: str | None = None
    user_claim: str = "sub"
    admin_claim: AdminClaim = field(default_factory=lambda: AdminClaim("admin", "true"))

    def required(self) -> list[str]:
        """The registered claims PyJWT must find: ``exp`` always; ``aud`` and ``iss`` when set."""
        return ["exp", *(["aud"] if self.audiences else []), *(["iss"] if self.issuer else [])]

    def user_of(self, claims: dict[str, Any]) -> str:
        """The user id; ValueError when the claim is missing or not a non-empty string."""
        user = claim_at(claims, self.user_claim)
        if not isinstance(user, str) or not user:
            raise ValueError(f"{self.user_claim} must be a non-empty string")
        return user

    def stamp(self, claims: dict[str, Any], user_id: str, admin: bool) -> None:
        """Make ``claims`` pass these rules (a ``--dev`` token): user, audience, issuer, admin."""
        put_claim(claims, self.user_claim, user_id)
        if self.audiences:
            claims["aud"] = self.audiences[0]
        if self.issuer:
            claims["iss"] = self.issuer
        if admin:
            put_claim(claims, self.admin_claim.path, self.admin_claim.example())
