"""Integer helpers shared by the envelope and the heat autotune (no floats on any runtime)."""


def isqrt(n):
    """Floor of the square root of a non-negative integer (Newton's method); 0 for n <= 0."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x
