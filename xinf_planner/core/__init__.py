"""The pure core: data in, data out. Nothing here imports ``shell`` or ``cli``, opens a file
(other than this package's own data), or talks to a network; ``lint-imports`` enforces it."""
