"""The murmur models: log-mel front-ends, encoders (CNN, M2D), the multi-site and feature heads, cycle-
synchronous features and MurmurModel.

May import assistant.data and assistant.segment.
"""
