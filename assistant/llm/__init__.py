"""The audio-LLM at consultation time: the feature prompts and answer parser, the OpenAI-compatible client, the
vLLM launcher and vLLM's entry script.

May import assistant.data.
"""
