"""A cache prefetch hint for numba kernels (LLVM's ``llvm.prefetch``).

A batch kernel steps E environments one after another, and at E = 256 each environment's rows
have left the core's caches by its next turn (KVAdmission-v0: ~200 KiB of state per env). While
one environment steps, hinting the first cache lines of the next one's rows (counters, the
running list, the observation's working memory) overlaps their loads with the work instead of
stalling on each in turn. A hint changes no value: results are bit for bit the same with or without it.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to load the cache line of ``arr[idx]`` (``idx``: a tuple of integers, one per
    dimension, in bounds; not checked: a prefetch of any address is harmless) for reading, kept in
    all cache levels. Compiles only for an array and a tuple of its rank."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.BaseTuple) or len(idx) != arr.ndim:
        return None

    def codegen(context, builder, sig, args):
        aryty, idxty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        inds = [context.cast(builder, v, t, types.intp)
                for v, t in zip(cgutils.unpack_tuple(builder, args[1], len(idxty)), idxty)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), high locality (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen
