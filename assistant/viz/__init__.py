"""Every figure a user sees (segmentation, spectrogram, murmur probabilities), drawn in one colour scheme
(colors.py).

May import assistant.data and assistant.consult's findings.
"""
