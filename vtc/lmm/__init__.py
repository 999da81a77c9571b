"""The video LLM: encoder -> compressor -> projector -> language model, and its answer formats."""
