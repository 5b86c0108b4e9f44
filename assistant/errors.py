"""Typed errors whose message is the one line a user sees."""


class MurmurScopeError(Exception):
    """Base class: `str(err)` is a complete one-line message for the user."""


class ConfigError(MurmurScopeError):
    """A setting that cannot be used: a bad value, an unknown key or an unreadable --config file."""


class AudioError(MurmurScopeError):
    """A recording that cannot be used."""


class MissingFileError(AudioError):
    pass


class NotAudioError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class TooShortError(AudioError):
    pass


class TooLongError(AudioError):
    pass


class NonFiniteError(AudioError):
    pass


class UnsupportedAudioError(AudioError):
    """A sample rate or channel count outside the supported range."""


class AudioTooLargeError(AudioError):
    """A file that would decode to more samples than the decoding limit allows."""


class SilentError(AudioError):
    pass


class DatasetError(MurmurScopeError):
    """A folder that is not a CirCor layout, or a malformed header or annotation."""


class KnowledgeError(MurmurScopeError):
    """The guidance corpus, its index or a query cannot be used."""


class CorpusError(KnowledgeError):
    """A guidance document that does not parse, or a section without known sources."""


class EmptyQueryError(KnowledgeError):
    pass


class IndexMissingError(KnowledgeError):
    pass


class IndexCorruptError(KnowledgeError):
    pass


class StaleIndexError(KnowledgeError):
    """The corpus changed after the index was built."""


class EmbeddingModelError(KnowledgeError):
    pass
