"""A block move inside a 1-D array for numba kernels (LLVM's ``llvm.memmove``).

Shifting a run of entries one place (KVAdmission's insertion sort, ``envs.kv_admission.kernels``)
written as a loop ``a[k - 1] = a[k]`` compiles to one scalar load and store per entry: numba's
handling of negative indices keeps LLVM from vectorizing it. ``move`` copies the run with one
``memmove`` (overlap allowed), the same values in the same places.
"""

from __future__ import annotations

from numba.core import cgutils, types
from numba.core.extending import intrinsic


@intrinsic
def move(typingctx, arr, dst, src, count):
    """``arr[dst:dst + count] = arr[src:src + count]`` as the values stood before (the two runs may
    overlap), for a contiguous 1-D ``arr`` and integers with both runs in bounds and ``count`` >= 0:
    not checked (the caller's loop bounds guarantee it)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and all(isinstance(t, types.Integer) for t in (dst, src, count))):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        d, s, n = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:]))
        pd = cgutils.get_item_pointer(context, builder, aryty, ary, [d], wraparound=False)
        ps = cgutils.get_item_pointer(context, builder, aryty, ary, [s], wraparound=False)
        cgutils.raw_memmove(builder, pd, ps, n, context.get_abi_sizeof(context.get_data_type(aryty.dtype)))
        return context.get_dummy_value()

    return types.none(arr, dst, src, count), codegen
