"""The song library: files, indexing, access rules, timed lyrics, the media server."""
