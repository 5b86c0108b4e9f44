"""The OpenAI-compatible HTTP API: the wire protocol (pydantic) and the FastAPI app with its routes.

May import assistant.data and assistant.consult, not the models' internals.
"""
