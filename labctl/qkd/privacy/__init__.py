"""Privacy amplification: Toeplitz hashing over GF(2), by FFT and bit-sliced kernels."""
