"""User tests (SDK only): PQCOperation runs off the kernel thread; async results."""

from __future__ import annotations

import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.host import run
from aios.sdk import Context
from aios.sdk import syscalls as sc


def test_mlkem_and_mldsa_through_syscalls() -> None:
    async def main(ctx: Context):
        kp = await ctx.pqc("mlkem768.keygen")
        enc = await ctx.pqc("mlkem768.encapsulate", public_key=kp["public_key"])
        dec = await ctx.pqc("mlkem768.decapsulate", private_key=kp["private_key"], ciphertext=enc["ciphertext"])
        sk = await ctx.pqc("mldsa65.keygen")
        sig = await ctx.pqc("mldsa65.sign", private_key=sk["private_key"], message=b"m", context=b"aios")
        ok = await ctx.pqc("mldsa65.verify", public_key=sk["public_key"], message=b"m",
                           signature=sig["signature"], context=b"aios")
        bad = await ctx.pqc("mldsa65.verify", public_key=sk["public_key"], message=b"x",
                            signature=sig["signature"], context=b"aios")
        with pytest.raises(InvalidArgument):
            await ctx.pqc("rsa.sign")
        with pytest.raises(InvalidArgument):
            await ctx.pqc("mldsa65.sign", private_key=sk["private_key"], message=b"m", context=b"c" * 256)
        with pytest.raises(NoSuchObject):
            await sc.get_async_result(987654)
        return enc["shared_secret"] == dec["shared_secret"], ok["valid"], bad["valid"], len(sig["signature"])

    (r,) = run(main).values()
    assert r["fault"] is None, r["fault"]
    assert r["exit"] == (True, True, False, 3309)
