from cassetted.lyrics.safety import clean, explicit_words, is_child_safe


def test_clean_text_passes():
    for text in ("My cat is sleeping in the sun", "a class act in Scunthorpe", "Hello, assistant",
                 "cucumber and cumin", "the shell on the shore"):
        assert is_child_safe(text), text


def test_explicit_words_are_caught_in_their_forms():
    for text in ("what the fuck", "FUCKING great", "motherfucker", "sh1t happens", "f*ck it",
                 "a glass of whiskey", "kill them all", "you bastard", "bullshit!"):
        assert not is_child_safe(text), text


def test_clean_masks_only_the_bad_words_and_keeps_layout():
    text = "[Verse]\nWhat the fuck, my cat\nA glass of wine"
    cleaned = clean(text)
    assert cleaned == "[Verse]\nWhat the ****, my cat\nA glass of ****"
    assert is_child_safe(cleaned)
    assert explicit_words(text) == ["fuck", "wine"]
