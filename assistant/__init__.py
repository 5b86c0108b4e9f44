"""MurmurScope consultation-time package: audio, data model, models, tools, agent, servers."""

__version__ = "0.1.0"
