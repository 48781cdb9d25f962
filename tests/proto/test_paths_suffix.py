"""paths.with_suffix: STOU's suffixed names stay within the name and path limits (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyftps.proto.paths import MAX_NAME_BYTES, MAX_PATH_BYTES, encoded_size, with_suffix

names = st.text(st.characters(blacklist_characters="/\x00"), min_size=0, max_size=255).filter(
    lambda name: encoded_size(name) <= MAX_NAME_BYTES
)
directories = (
    st.lists(st.sampled_from(["a", "dir", "é" * 80, "x" * 255]), max_size=20)
    .map(lambda parts: "/" + "/".join(parts) if parts else "")
    .filter(lambda head: encoded_size(head) <= MAX_PATH_BYTES - 2)
)


@given(directories, names, st.sampled_from([".0123abcd", ".ff"]))
def test_the_suffixed_name_fits_and_keeps_a_prefix_of_the_name(head: str, name: str, suffix: str) -> None:
    result = with_suffix(f"{head}/{name}", suffix)
    new_head, _, new_name = result.rpartition("/")
    assert new_head == head and new_name.endswith(suffix)
    kept = new_name[: -len(suffix)]
    assert name.startswith(kept)
    assert encoded_size(new_name) <= MAX_NAME_BYTES
    if encoded_size(f"{head}/{suffix}") <= MAX_PATH_BYTES:  # else no name is short enough: nothing to keep
        assert encoded_size(result) <= MAX_PATH_BYTES
    fits = encoded_size(name + suffix) <= MAX_NAME_BYTES
    if fits and encoded_size(f"{head}/{name}{suffix}") <= MAX_PATH_BYTES:
        assert kept == name  # within both limits: nothing is cut


def test_a_name_at_the_limit_loses_just_enough() -> None:
    assert with_suffix("/d/" + "n" * 255, ".0123abcd") == "/d/" + "n" * 246 + ".0123abcd"
    assert with_suffix("/d/" + "é" * 127, ".0123abcd") == "/d/" + "é" * 123 + ".0123abcd"  # 246 -> 123 chars
