"""The session-signing key: one that every instance of a Redis backend shares, whatever their
token settings, so that ``resume`` works on whichever instance a client reaches.

An instance signs with a key of its own (derived from ``--jwt-secret`` when there is one, else
random) until it has read the shared key, which the first instance to ask sets (with its own
key). It reads it at start and again at every sweep: an instance that started while Redis was
down switches within a sweep of Redis answering, and a Redis that lost the key (a restart
without persistence) gets it back from the instances, which all come back to one key.
"""

import hashlib
import logging

from wsguard.backends.base import Backend, BackendUnavailable
from wsguard.ids import SessionSigner

logger = logging.getLogger("wsguard")

SESSION_KEY = "session"
"""The shared key's name in the backend (``wsguard:key:session`` on Redis)."""


class SharedSessionKey:
    """Keeps ``signer`` on the backend's shared key (the previous keys still verify)."""

    def __init__(self, signer: SessionSigner, backend: Backend, local: bytes) -> None:
        self._signer = signer
        self._backend = backend
        self._local = local
        self._shared: bytes | None = None
        self._wanted = True
        """False once the backend said it has nothing to share (one process)."""
        self._warned = False

    @classmethod
    def from_secret(cls, secret: str, backend: Backend) -> "SharedSessionKey":
        """A new signer on this instance's own key, derived from ``secret`` (``--jwt-secret``, else
        a random one), until :meth:`refresh` reads the key every instance of a shared backend
        signs with."""
        local = hashlib.sha256(b"wsguard session\x00" + secret.encode()).digest()
        return cls(SessionSigner(local), backend, local)

    @property
    def signer(self) -> SessionSigner:
        """What signs and checks the session ids, on whichever key is in use."""
        return self._signer

    @property
    def shared(self) -> bool:
        """Whether sessions are signed with the key every instance shares."""
        return self._shared is not None

    async def refresh(self, now: float = 0.0) -> None:
        """Read the shared key (setting it to ours if there is none) and sign with it."""
        if not self._wanted:
            return
        try:
            key = await self._backend.shared_key(SESSION_KEY, self._shared or self._local)
        except (BackendUnavailable, ValueError) as error:
            if self._shared is None and not self._warned:
                self._warned = True
                logger.warning(
                    "session ids are signed with this instance's own key until the backend answers "
                    "(%s): a session made meanwhile resumes only on this instance",
                    type(error).__name__ if isinstance(error, BackendUnavailable) else error,
                )
            return
        if key is None:
            self._wanted = False
            return
        if key == self._shared:
            return
        previous, self._shared = self._shared, key
        self._signer.use(key)
        if previous is not None:
            logger.warning(
                "the shared session key changed in the backend (Redis lost it?): sessions signed "
                "with the former one resume only on the instances that knew it"
            )
        elif self._warned:
            logger.warning("session ids are now signed with the key every instance shares")
