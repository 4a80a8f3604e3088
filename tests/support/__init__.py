"""Test support: paths, recorded hardware answers (``fixtures/``) and the NVML stand-in."""
