/* _cframe: the C speed-up of workers/hotlog/frame.py (CPython C API only, one file).
 *
 * Owns two drop-in replacements for functions of frame.py, which binds them when this module
 * is built and not disabled (workers/speedups.py):
 *
 *   encode_batch(payloads, offset, /) -> (bytes, list[int])     as frame._py_encode_batch
 *   locations(cls, segment, start, lens, /) -> list[cls]        as frame._py_locations
 *
 * Bad arguments raise what the Python versions raise (see frame.py).
 *
 * CRC-32C: this module has no CRC engine.  A frame is a few hundred bytes, where the call
 * into the crc32c package (`crc32c.crc32c` over a view of the frame, hardware on x86_64 and
 * ARMv8) costs more than the CRC itself (figures: docs/DEVELOPING.md).  So on x86_64 with SSE4.2 the frames' CRCs
 * come from a minimal serial loop of the crc32 instruction; everywhere else, and when
 * `set_hardware(False)` says so (for the tests), from the package.  `hardware` says which.
 *
 * Invariants:
 * - every result equals the Python version's, byte for byte / value for value, and so do the
 *   exception types raised for bad input (tests/hotlog/test_cframe.py checks both);
 * - a frame's CRC is CRC-32C (reflected polynomial 0x82F63B78, initial value and final xor
 *   0xFFFFFFFF), the crc32c package's value whichever code computes it;
 * - the only process-wide state is the crc32c function (looked up once at import), the
 *   choice of CRC code, and a cache of int objects for short payload lengths, all under
 *   the GIL;
 * - the GIL is held throughout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define HEAD 12                  /* length u32 + offset u64 */
#define OVERHEAD 16              /* HEAD + crc u32 trailer */
#define MAX_PAYLOAD (64 << 20)   /* frame.MAX_PAYLOAD: a longer frame would read back as bad */

/* crc32c.crc32c, set at import */
static PyObject *crc32c_fn;

/* 1 when frame CRCs come from the SSE4.2 loop below, 0: from the package */
static int use_hardware;

#if defined(__x86_64__)
/* Compiled for SSE4.2 whatever the build flags say; only called once the CPU is known to
 * have it (PyInit__cframe). */
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(const unsigned char *p, size_t n)
{
    uint64_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c ^ 0xFFFFFFFFu;
}
#endif

/* The CRC-32C of n bytes at p; -1 with an error set on failure. */
static int64_t
frame_crc(unsigned char *p, Py_ssize_t n)
{
#if defined(__x86_64__)
    if (use_hardware)
        return crc_sse42(p, (size_t)n);
#endif
    PyObject *view = PyMemoryView_FromMemory((char *)p, n, PyBUF_READ);
    if (view == NULL)
        return -1;
    PyObject *crc = PyObject_CallOneArg(crc32c_fn, view);
    /* the view points into a bytes object still being built: nothing may keep it */
    if (crc != NULL && Py_REFCNT(view) != 1) {
        Py_CLEAR(crc);
        PyErr_SetString(PyExc_RuntimeError, "crc32c kept a view of the frame");
    }
    Py_DECREF(view);
    if (crc == NULL)
        return -1;
    unsigned long v = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    return (int64_t)(uint32_t)v;
}

/* ------------------------------------------------------------------ encode_batch() */

/* The int objects for payload lengths below LEN_CACHE, made on first use and kept for the
 * life of the process (shared like CPython's small ints; ints are immutable).  Lengths repeat
 * across a stream, and an int allocated and freed per frame was a fifth of encode_batch. */
#define LEN_CACHE 4096
static PyObject *len_cache[LEN_CACHE];

static inline PyObject *
len_object(Py_ssize_t len)
{
    if (len >= LEN_CACHE)
        return PyLong_FromSsize_t(len);
    PyObject *o = len_cache[len];
    if (o == NULL) {
        o = PyLong_FromSsize_t(len);
        if (o == NULL)
            return NULL;
        len_cache[len] = o;
    }
    Py_INCREF(o);
    return o;
}

static inline void
store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The bytes of payload i of ``seq``: a bytes object directly, any other object through a
 * C-contiguous buffer export (what bytes.join, and so the Python version, accepts).  Returns 1
 * with ``view`` to release, 0 for a bytes object (nothing to release), -1 with an error set. */
static int
payload_bytes(PyObject *seq, Py_ssize_t count, Py_ssize_t i, const char **buf, Py_ssize_t *len,
              Py_buffer *view)
{
    /* code run since the last call (a finalizer run by the GC on an allocation, a __buffer__
     * method on 3.12+) may have changed the list: index i must still be in it */
    if (PySequence_Fast_GET_SIZE(seq) != count) {
        PyErr_SetString(PyExc_RuntimeError, "payloads changed size during encode_batch");
        return -1;
    }
    PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
    if (PyBytes_CheckExact(item)) {
        *buf = PyBytes_AS_STRING(item);
        *len = PyBytes_GET_SIZE(item);
        return 0;
    }
    if (!PyObject_CheckBuffer(item)) {
        PyErr_Format(PyExc_TypeError, "payload %zd: expected a bytes-like object, %.80s found",
                     i, Py_TYPE(item)->tp_name);
        return -1;
    }
    Py_INCREF(item); /* the export may run code that drops the list's reference */
    if (PyObject_GetBuffer(item, view, PyBUF_SIMPLE) < 0) {
        /* bytes.join reports any failed export (a strided view: BufferError) as TypeError */
        PyErr_Format(PyExc_TypeError,
                     "payload %zd: expected a C-contiguous bytes-like object, %.80s found", i,
                     Py_TYPE(item)->tp_name);
        Py_DECREF(item);
        return -1;
    }
    Py_DECREF(item); /* the view holds its own reference */
    *buf = view->buf;
    *len = view->len;
    return 1;
}

static PyObject *
encode_batch(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "encode_batch() takes 2 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *offset_obj = args[1];
    if (!PyLong_Check(offset_obj)) {
        PyErr_Format(PyExc_TypeError, "offset must be int, not %.80s",
                     Py_TYPE(offset_obj)->tp_name);
        return NULL;
    }
    /* OverflowError for a negative offset or one past u64, like int.to_bytes(offset, 8) */
    unsigned long long offset = PyLong_AsUnsignedLongLong(offset_obj);
    if (offset == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;

    PyObject *seq = PySequence_Fast(args[0], "payloads must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *data = NULL, *lens = NULL;
    /* payload lengths for passes 2 and 3; a message's batch fits the stack buffer */
    Py_ssize_t small[256], *sizes = small;
    if (count > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        sizes = PyMem_New(Py_ssize_t, count);
        if (sizes == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    lens = PyList_New(count);
    if (lens == NULL)
        goto fail;

    /* pass 1: lengths, the checks, the total size; no output exists yet to undo */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *buf;
        Py_ssize_t len;
        Py_buffer view;
        int kind = payload_bytes(seq, count, i, &buf, &len, &view);
        if (kind < 0)
            goto fail;
        if (kind)
            PyBuffer_Release(&view);
        if (len > MAX_PAYLOAD) {
            PyErr_Format(PyExc_ValueError, "payload %zd is %zd bytes, over the %d-byte limit", i,
                         len, MAX_PAYLOAD);
            goto fail;
        }
        /* a batch this big cannot exist in memory, but the sum must not wrap */
        if (total > PY_SSIZE_T_MAX - OVERHEAD - len) {
            PyErr_SetString(PyExc_OverflowError, "batch too large");
            goto fail;
        }
        total += len + OVERHEAD;
        sizes[i] = len;
        PyObject *n = len_object(len);
        if (n == NULL)
            goto fail;
        PyList_SET_ITEM(lens, i, n);
    }

    /* pass 2: one allocation, then every frame's head and payload copied into place */
    data = PyBytes_FromStringAndSize(NULL, total);
    if (data == NULL)
        goto fail;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    unsigned char head[HEAD];
    for (int k = 0; k < 8; k++)
        head[4 + k] = (unsigned char)(offset >> (56 - 8 * k));
    unsigned char *w = out;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *buf;
        Py_ssize_t len;
        Py_buffer view;
        int kind = payload_bytes(seq, count, i, &buf, &len, &view);
        if (kind < 0)
            goto fail;
        /* an exporter that changed size between the passes would overrun the output */
        if (len != sizes[i]) {
            if (kind)
                PyBuffer_Release(&view);
            PyErr_Format(PyExc_RuntimeError, "payload %zd changed size during encode_batch", i);
            goto fail;
        }
        store_be32(head, (uint32_t)len);
        memcpy(w, head, HEAD);
        memcpy(w + HEAD, buf, (size_t)len);
        if (kind)
            PyBuffer_Release(&view);
        w += len + OVERHEAD;
    }

    /* pass 3: the CRC trailers, over each frame's head and payload, now in place.  A pass of
     * its own: computing each CRC right after its copy measured a third slower (the loads hit
     * bytes still in flight from the stores) */
    w = out;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t n = HEAD + sizes[i];
        int64_t crc = frame_crc(w, n);
        if (crc < 0)
            goto fail;
        store_be32(w + n, (uint32_t)crc);
        w += n + 4;
    }

    Py_DECREF(seq);
    if (sizes != small)
        PyMem_Free(sizes);
    PyObject *result = PyTuple_Pack(2, data, lens);
    Py_DECREF(data);
    Py_DECREF(lens);
    return result;

fail:
    Py_DECREF(seq);
    if (sizes != small)
        PyMem_Free(sizes);
    Py_XDECREF(data);
    Py_XDECREF(lens); /* PyList_New's slots start NULL: a partly filled list frees cleanly */
    return NULL;
}

/* ------------------------------------------------------------------ locations() */

static PyObject *
locations(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "locations() takes 4 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *cls = args[0], *segment = args[1];
    /* instances are made the way tuple.__new__ makes them for a subclass: tp_alloc, then the
     * items; that is only right for a tuple subtype (a NamedTuple) */
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "locations(): cls must be a tuple subclass");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    /* positions are u32 in a packed Location; long long only has to hold the arithmetic, and
     * an out-of-range one raises OverflowError rather than wrapping */
    long long pos = PyLong_AsLongLong(args[2]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    PyObject *seq = PySequence_Fast(args[3], "lens must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(count);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        /* allocating a tracked object may run the GC, and a finalizer could change the list */
        if (PySequence_Fast_GET_SIZE(seq) != count) {
            PyErr_SetString(PyExc_RuntimeError, "lens changed size during locations");
            goto fail;
        }
        PyObject *len_obj = PySequence_Fast_GET_ITEM(seq, i);
        long long len = PyLong_AsLongLong(len_obj);
        if (len == -1 && PyErr_Occurred())
            goto fail;
        PyObject *pos_obj = PyLong_FromLongLong(pos);
        if (pos_obj == NULL)
            goto fail;
        /* segment and length are the caller's objects, shared like the Python version's */
        Py_INCREF(len_obj);
        PyObject *loc = tp->tp_alloc(tp, 3);
        if (loc == NULL) {
            Py_DECREF(pos_obj);
            Py_DECREF(len_obj);
            goto fail;
        }
        Py_INCREF(segment);
        PyTuple_SET_ITEM(loc, 0, segment);
        PyTuple_SET_ITEM(loc, 1, pos_obj);
        PyTuple_SET_ITEM(loc, 2, len_obj);
        PyList_SET_ITEM(out, i, loc);
        if (i + 1 < count && (__builtin_add_overflow(pos, len, &pos)
                              || __builtin_add_overflow(pos, OVERHEAD, &pos))) {
            PyErr_SetString(PyExc_OverflowError, "locations(): position out of range");
            goto fail;
        }
    }
    Py_DECREF(seq);
    return out;

fail:
    Py_DECREF(seq);
    Py_XDECREF(out); /* PyList_New's slots start NULL: a partly filled list frees cleanly */
    return NULL;
}

/* ------------------------------------------------------------------ module */

static int cpu_has_sse42;

static PyObject *
set_hardware(PyObject *module, PyObject *flag)
{
    int want = PyObject_IsTrue(flag);
    if (want < 0)
        return NULL;
    int previous = use_hardware;
    use_hardware = want && cpu_has_sse42;
    if (PyModule_AddIntConstant(module, "hardware", use_hardware) < 0)
        return NULL;
    return PyBool_FromLong(previous);
}


static PyMethodDef methods[] = {
    {"set_hardware", (PyCFunction)set_hardware, METH_O,
     "set_hardware(flag, /) -> bool\n\nCompute frame CRCs with the SSE4.2 loop (when the CPU "
     "has it) or, False, with the crc32c package; returns the previous choice (for the tests)."},
    {"encode_batch", (PyCFunction)(void (*)(void))encode_batch, METH_FASTCALL,
     "encode_batch(payloads, offset, /) -> (bytes, list[int])\n\nAll frames of one message "
     "as one buffer, plus each payload's length (see frame.encode_batch)."},
    {"locations", (PyCFunction)(void (*)(void))locations, METH_FASTCALL,
     "locations(cls, segment, start, lens, /) -> list\n\ncls(segment, position, length) for "
     "consecutive frames of payload lengths lens from start (see frame.locations)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_cframe",
    .m_doc = "C speed-ups of workers.hotlog.frame: encode_batch, locations.",
    .m_size = -1,
    .m_methods = methods,
};

/* the digest of this file's text, set by hatch_build.py; workers/speedups.py refuses a
   module built from other text than the source beside it (a stale build) */
#ifndef KAIZEN_SOURCE_DIGEST
#define KAIZEN_SOURCE_DIGEST ""
#endif

PyMODINIT_FUNC
PyInit__cframe(void)
{
    if (crc32c_fn == NULL) {
        PyObject *pkg = PyImport_ImportModule("crc32c");
        if (pkg == NULL)
            return NULL;
        crc32c_fn = PyObject_GetAttrString(pkg, "crc32c");
        Py_DECREF(pkg);
        if (crc32c_fn == NULL)
            return NULL;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    cpu_has_sse42 = __builtin_cpu_supports("sse4.2") != 0;
#endif
    use_hardware = cpu_has_sse42;
    PyObject *m = PyModule_Create(&module_def);
    if (m != NULL
        && (PyModule_AddIntConstant(m, "hardware", use_hardware) < 0
            || PyModule_AddStringConstant(m, "SOURCE_DIGEST", KAIZEN_SOURCE_DIGEST) < 0))
        Py_CLEAR(m);
    return m;
}
