"""Topic matching of the router (the rest of the router is exercised end to end)."""

from cassetted.mqtt.router import match


def test_match_extracts_wildcards() -> None:
    assert match("c/song/create", "c/song/create") == []
    assert match("c/job/+/cancel", "c/job/abc/cancel") == ["abc"]
    assert match("c/song/+/vote", "c/song/create") is None
    assert match("hermes/intent/#", "hermes/intent/a/b") == ["a/b"]
    assert match("c/job/+/cancel", "c/job/abc") is None
    assert match("c/job/+", "c/job/abc/cancel") is None
