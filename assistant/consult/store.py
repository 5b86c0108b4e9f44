"""Recordings attached to a conversation, referred to by id.

The agent's tools only ever see these ids: a path typed in a chat message is never opened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from assistant.data.audio import Recording
from assistant.errors import MurmurScopeError


class UnknownRecordingError(MurmurScopeError):
    pass


class TooManyRecordingsError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class Attached:
    id: str
    recording: Recording

    def describe(self) -> str:
        return f"{self.id} (site {self.recording.site or 'unknown'}, {self.recording.duration:.1f} s)"


class RecordingStore:
    """Thread-safe map conversation id -> recording id -> Recording."""

    def __init__(self, max_per_conversation: int = 16):
        self.max_per_conversation = max_per_conversation
        self._data: dict[str, dict[str, Attached]] = {}
        self._lock = threading.Lock()

    def attach(self, conversation_id: str, recording: Recording) -> str:
        with self._lock:
            recs = self._data.setdefault(conversation_id, {})
            if len(recs) >= self.max_per_conversation:
                raise TooManyRecordingsError(f"at most {self.max_per_conversation} recordings per conversation")
            rid = f"rec{len(recs) + 1}"
            recs[rid] = Attached(rid, recording)
            return rid

    def get(self, conversation_id: str, recording_id: str) -> Attached:
        with self._lock:
            recs = self._data.get(conversation_id, {})
            if recording_id not in recs:
                known = ", ".join(recs) or "none"
                raise UnknownRecordingError(f"no recording {recording_id!r} in this conversation (attached: {known})")
            return recs[recording_id]

    def all(self, conversation_id: str) -> list[Attached]:
        with self._lock:
            return list(self._data.get(conversation_id, {}).values())

    def drop(self, conversation_id: str) -> None:
        with self._lock:
            self._data.pop(conversation_id, None)
