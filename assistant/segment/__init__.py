"""The heart-cycle segmenter: Springer envelopes, the emission models (TCN and logistic), the HSMM decoder and
the Segmenter that ties them.

May import assistant.data.
"""
