"""Keys no storage may read: each is refused by the key rules before any I/O (tests of both storages)."""

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../secret.jpg",
    "a/../../b.jpg",
    "a/./b.jpg",
    "a//b.jpg",
    "a\\b.jpg",
    "C:/x.jpg",
    "a/b\x00.jpg",
    "line\nbreak.jpg",
    "x" * 2000,
]
