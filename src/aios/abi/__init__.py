"""The ABI: what the kernel, the SDK, sandboxes and kernel modules share.

A leaf package: it imports the standard library and msgpack, nothing of
``aios``.  An isolated agent process imports this and the SDK and nothing of
the kernel.  Everything here is a fact both sides of the trap must agree on:
syscall numbers (:mod:`.sysno`), the one trap entry (:mod:`.trap`), the wire
codec (:mod:`.wire`), :class:`~.message.Message`, rights and object kinds
(:mod:`.rights`), well-known capability slots (:mod:`.slots`), fault causes
and exit records (:mod:`.faults`), every limit (:mod:`.limits`), the error
taxonomy (:mod:`.errors`), kernel and audited event topics (:mod:`.topics`)
and where ``$AIOS_HOME`` is (:mod:`.home`).
"""
