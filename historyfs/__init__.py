"""historyfs: your ElevenLabs speech-generation history as a filesystem."""

__version__ = "0.1.0"
