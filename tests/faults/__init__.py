"""Fault injection on the local stack: crashes, duplicates, throttling, slow steps, the soak."""
