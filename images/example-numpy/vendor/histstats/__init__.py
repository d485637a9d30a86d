"""histstats: a pure-Python module vendored into a job image (no pip, no network)."""


def bucket(n, width=10):
    """Returns the lower bound of n's bucket of the given width."""
    return (int(n) // width) * width
