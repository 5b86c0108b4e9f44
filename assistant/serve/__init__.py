"""The OpenAI-compatible HTTP API: the wire protocol (pydantic) and the FastAPI app with its routes.

May import assistant.data, assistant.consult and assistant.report, not the models' internals.
"""
