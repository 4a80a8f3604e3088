"""Units. Memory figures are GiB (2^30 bytes) throughout; bandwidths are GB/s (1e9 bytes/s)."""

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
