"""Plain utilities at the bottom of the library: they import nothing of vtc."""
