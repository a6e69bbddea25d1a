"""ACE-Step 1.5: in-process (torch) and remote (its API server) engines."""
