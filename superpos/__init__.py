"""superpos: soft prompt tuning on frozen language models, as in SuperPos-Prompt (and its baselines)."""
__version__ = "0.1.0"
