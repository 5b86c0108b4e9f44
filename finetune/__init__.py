"""Training: segmenter emission model, murmur classifier, audio-LLM SFT and export."""
