"""The built-in engine: arranger, synthesiser, drums and the Piper singer."""
