/* _cframe: the C speed-up of workers/hotlog/frame.py (CPython C API only, one file).
 *
 * Owns three drop-in replacements for functions of frame.py, which binds them when this
 * module is built and not disabled (workers/speedups.py):
 *
 *   crc32c(data, crc=0, /) -> int            CRC-32C (Castagnoli), as crc32c.crc32c(data, crc)
 *   encode_batch(payloads, offset, /) -> (bytes, list[int])     as frame._py_encode_batch
 *   locations(cls, segment, start, lens, /) -> list[cls]        as frame._py_locations
 *
 * plus crc32c_portable(), crc32c() by the table-driven code whatever the CPU has, so the tests
 * check that fallback on machines that take the SSE4.2 path, and ``hardware`` (1 when crc32c()
 * uses SSE4.2).  Bad arguments raise what the Python versions raise (see frame.py).
 *
 * Invariants:
 * - every result equals the Python version's, byte for byte / value for value, and so do the
 *   exception types raised for bad input (tests/hotlog/test_cframe.py checks both);
 * - the CRC is CRC-32C: reflected polynomial 0x82F63B78, initial value and final xor
 *   0xFFFFFFFF, chained like the crc32c package: crc32c(b, crc32c(a)) == crc32c(a + b);
 * - the only process-wide state is the CRC tables and the choice of CRC code (SSE4.2 or the
 *   table), set once at import and read-only afterwards, and a cache of int objects for
 *   short payload lengths, filled under the GIL;
 * - the GIL is held throughout, except while crc32c() runs over a large buffer: the buffer
 *   export it holds keeps the memory alive and unresizable meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u         /* CRC-32C, reflected */
#define HEAD 12                  /* length u32 + offset u64 */
#define OVERHEAD 16              /* HEAD + crc u32 trailer */
#define MAX_PAYLOAD (64 << 20)   /* frame.MAX_PAYLOAD: a longer frame would read back as bad */
#define RELEASE_GIL_AT (64 << 10) /* below this, dropping the GIL costs more than it frees */

/* A CRC update over the raw register (no pre/post inversion: the callers do it once). */
typedef uint32_t (*crc_fn)(uint32_t crc, const unsigned char *p, size_t n);

/* ------------------------------------------------------------------ portable CRC */

/* slicing-by-8: table[k][b] is the register after byte b followed by k zero bytes */
static uint32_t table[8][256];

static void
build_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
}

/* Little-endian loads spelled out byte by byte, so the code is endian-neutral; compilers
 * turn them into one load on little-endian machines. */
static inline uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t
crc_portable(uint32_t crc, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = crc ^ load_le32(p), hi = load_le32(p + 4);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff]
              ^ table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff]
              ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* ------------------------------------------------------------------ SSE4.2 CRC (x86_64) */

#if defined(__x86_64__)
/* Three independent CRC streams over three consecutive blocks of a buffer are joined with
 * the linearity of CRCs: crc(c, A|B) = shift(crc(c, A), |B|) ^ crc(0, B), where shift(x, n)
 * feeds n zero bytes to the register.  For fixed n it is a linear map of 32 bits, applied
 * byte by byte through four 256-entry tables (M. Adler's scheme, as in the crc32c package). */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t shift_long[4][256], shift_short[4][256];

/* GF(2) matrix (32 columns) times vector */
static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* the tables of shift(., len) for len a power of two >= 1 */
static void
build_shift(uint32_t tables[4][256], size_t len)
{
    uint32_t op[32], sq[32];
    /* one zero bit: the register shifts right, the polynomial comes in on a set low bit */
    op[0] = POLY;
    for (int n = 1; n < 32; n++)
        op[n] = 1u << (n - 1);
    /* square up to one zero byte (8 bits), then once more per doubling of len */
    for (size_t bits = 1; bits < 8 * len; bits <<= 1) {
        gf2_square(sq, op);
        memcpy(op, sq, sizeof(op));
    }
    for (uint32_t n = 0; n < 256; n++) {
        tables[0][n] = gf2_times(op, n);
        tables[1][n] = gf2_times(op, n << 8);
        tables[2][n] = gf2_times(op, n << 16);
        tables[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t
shift(uint32_t tables[4][256], uint32_t crc)
{
    return tables[0][crc & 0xff] ^ tables[1][(crc >> 8) & 0xff] ^ tables[2][(crc >> 16) & 0xff]
           ^ tables[3][crc >> 24];
}

/* Compiled for SSE4.2 whatever the build flags say; only called once the CPU is known to
 * have it (see PyInit__cframe).  Unaligned 8-byte loads cost nothing extra on x86_64. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc_sse42_serial(uint64_t c, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return c;
}

/* The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle: a single
 * chain leaves the unit two-thirds idle.  This runs three chains over three consecutive
 * blocks of ``block`` bytes at a time, joins them with shift(), and advances *p and *n. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc_sse42_triple(uint64_t c0, const unsigned char **p, size_t *n, size_t block,
                 uint32_t tables[4][256])
{
    const unsigned char *q = *p;
    size_t left = *n;
    for (; left >= 3 * block; q += 3 * block, left -= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < block; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, q + i, 8);
            memcpy(&w1, q + block + i, 8);
            memcpy(&w2, q + 2 * block + i, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c0 = shift(tables, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(tables, (uint32_t)c0) ^ (uint32_t)c2;
    }
    *p = q;
    *n = left;
    return c0;
}

/* Long buffers go three chains at a time, first in long blocks (the join is rare), then in
 * short ones; what is left, and frames (~300 bytes, too short for it), in one chain. */
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;
    c = crc_sse42_triple(c, &p, &n, LONG_BLOCK, shift_long);
    c = crc_sse42_triple(c, &p, &n, SHORT_BLOCK, shift_short);
    return (uint32_t)crc_sse42_serial(c, p, n);
}
#endif

/* chosen once at import: the SSE4.2 version when the CPU has it, else the table */
static crc_fn crc_update = crc_portable;

/* ------------------------------------------------------------------ crc32c() */

static PyObject *
crc_call(crc_fn fn, PyObject *const *args, Py_ssize_t nargs, const char *name)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 1 or 2 positional arguments (%zd given)",
                     name, nargs);
        return NULL;
    }
    uint32_t crc = 0;
    if (nargs == 2) {
        /* like the crc32c package (format "I"): any integer, taken modulo 2**32 */
        unsigned long v = PyLong_AsUnsignedLongMask(args[1]);
        if (v == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        crc = (uint32_t)v;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = view.buf;
    size_t n = (size_t)view.len;
    if (n >= RELEASE_GIL_AT) {
        Py_BEGIN_ALLOW_THREADS
        crc = fn(crc ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
        Py_END_ALLOW_THREADS
    }
    else {
        crc = fn(crc ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *
crc32c(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return crc_call(crc_update, args, nargs, "crc32c");
}

static PyObject *
crc32c_portable(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return crc_call(crc_portable, args, nargs, "crc32c_portable");
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
        size_t n = HEAD + (size_t)sizes[i];
        store_be32(w + n, crc_update(0xFFFFFFFFu, w, n) ^ 0xFFFFFFFFu);
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

static PyMethodDef methods[] = {
    {"crc32c", (PyCFunction)(void (*)(void))crc32c, METH_FASTCALL,
     "crc32c(data, crc=0, /) -> int\n\nCRC-32C of a bytes-like object, continuing from crc "
     "(a previous result); the same value as crc32c.crc32c(data, crc)."},
    {"crc32c_portable", (PyCFunction)(void (*)(void))crc32c_portable, METH_FASTCALL,
     "crc32c_portable(data, crc=0, /) -> int\n\ncrc32c() by the table-driven code whatever the "
     "CPU has (for the tests)."},
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
    .m_doc = "C speed-ups of workers.hotlog.frame: crc32c, encode_batch, locations.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__cframe(void)
{
    build_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        build_shift(shift_long, LONG_BLOCK);
        build_shift(shift_short, SHORT_BLOCK);
        crc_update = crc_sse42;
    }
#endif
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "hardware", crc_update != crc_portable) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
