"""Recordings and datasets as typed values: audio I/O, the CirCor reader, labels, segmentations and their .tsv
files, the split, upload decoding, synthetic PCG.

Imports no other stage of assistant/ (only assistant.errors): every other stage builds on it.
"""
