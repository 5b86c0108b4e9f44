"""The one murmurscope command: a typer group per package (data, segment, predict, consult, serve, finetune,
index, eval).

The only part of assistant/ that may import finetune/ and eval/.
"""
