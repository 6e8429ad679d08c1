"""Post-quantum crypto: ML-KEM/ML-DSA (``pqc``) and the hybrid ML-KEM+X25519 channel (``hybrid``)."""
