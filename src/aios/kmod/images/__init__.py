"""Signed agent images: the format and its verification (``signed``) and the verified store
the kernel starts ``image:`` entries from (``store``, whose ``install`` registers it)."""
