"""Spoken requests: the rule parser and its lexicon, the LLM fallback, Hermes intents."""
