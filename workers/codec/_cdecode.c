/* _cdecode: the lean validating Avro reader of the ingest path, in C.
 *
 * The C twin of the readers `workers/codec/pyreader.py` generates in Python: it walks one
 * single-object-encoded event field by field and validates all of it (varints well formed
 * and in range for their type, lengths inside the body, strings UTF-8, enum and union
 * indexes in range, booleans 0 or 1, the body consumed exactly), keeping only the key
 * fields.  The schema arrives compiled by `workers/codec/program.py` (the one schema
 * compiler, which also feeds the Python reader) into a flat array of int32 opcodes (below);
 * one `Reader` per writer schema fingerprint.
 *
 * Invariants (tested against the Python readers and fastavro with hypothesis):
 *   - a Reader accepts exactly the bytes the Python reader of the same schema accepts, and
 *     returns the same (session_id, seq, ts_ms, agent, model, producer);
 *   - every rejection is `error(reason, detail)` (the codec's DecodeError) with reason
 *     truncated, malformed, invalid_utf8, key_too_long or trailing_bytes, as the Python path
 *     names them;
 *   - `decode_items` appends to `events` in item order, handing every item it does not
 *     accept to `fallback` at its place in that order (the Python path names the reason).
 *
 * Program: a sequence of nodes, one per field.  A node is an opcode and its operands:
 *   NULL | BOOL | INT | LONG | FLOAT | DOUBLE | STRING | BYTES
 *   FIXED size
 *   ENUM count table                  (table: the kept enum's symbols; -1: not kept)
 *   KEY max table                     (a string of at most max bytes, else key_too_long;
 *                                      table: a 1-tuple of the field's name, for the detail)
 *   UNION count (length node)*count   (length: the node's size in int32s, to skip it)
 *   KEEP slot node                    (the node's value goes to slot 0..5)
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
    OP_NULL = 0,
    OP_BOOL = 1,
    OP_INT = 2,
    OP_LONG = 3,
    OP_FLOAT = 4,
    OP_DOUBLE = 5,
    OP_FIXED = 6,
    OP_STRING = 7,
    OP_BYTES = 8,
    OP_ENUM = 9,
    OP_UNION = 10,
    OP_KEEP = 11,
    OP_KEY = 12,
};

#define NSLOTS 6 /* session_id, seq, ts_ms, agent, model, producer (program.SLOTS) */
#define HEADER 10 /* C3 01 + 8-byte fingerprint */
#define DEPTH_MAX 32

typedef struct {
    PyObject_HEAD
    int32_t *ops;
    Py_ssize_t nops;
    PyObject *symbols;  /* tuple of tuples of str: kept enums' symbols, key fields' names */
    PyObject *defaults; /* tuple of NSLOTS values for fields the schema lacks */
    PyObject *error;    /* called as error(reason, detail) */
} Reader;

/* Where a walk is, and why it stopped: `reason` set means the bytes are bad (no Python
 * exception pending); a return of -1 without `reason` means a Python exception is set. */
typedef struct {
    const unsigned char *b;
    Py_ssize_t p, n;
    PyObject **slots;
    const char *reason;
    char detail[120];
} Walk;

static int
bad(Walk *w, const char *reason, const char *detail)
{
    w->reason = reason;
    snprintf(w->detail, sizeof w->detail, "%s at byte %zd", detail, w->p);
    return -1;
}

static inline void
keep(PyObject **slot, PyObject *value)
{
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

/* A varint of at most max_bytes (5 for int, 10 for long); the last byte may only carry
 * the bits that fit the type (the Python readers and their regexes check the same). */
static inline int
varint(Walk *w, int max_bytes, uint64_t *out)
{
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (w->p >= w->n)
            return bad(w, "truncated", "varint runs past the body");
        unsigned c = w->b[w->p++];
        if (i == max_bytes - 1 && c > (max_bytes == 10 ? 0x01u : 0x0Fu))
            return bad(w, "malformed", "varint out of range");
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
        shift += 7;
    }
    return bad(w, "malformed", "varint too long"); /* not reached: the range check stops it */
}

static inline int64_t
zigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Strict UTF-8 as CPython's decoder sees it: no overlong forms, no surrogates, nothing
 * past U+10FFFF.  ASCII, most of every payload, goes eight bytes at a time. */
static int
utf8_valid(const unsigned char *s, Py_ssize_t len)
{
    Py_ssize_t i = 0;
    while (i < len) {
        if (i + 8 <= len) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (!(word & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
        }
        else if (c < 0xC2) {
            return 0;
        }
        else if (c < 0xE0) {
            if (i + 1 >= len || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        }
        else if (c < 0xF0) {
            if (i + 2 >= len)
                return 0;
            unsigned c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))
                return 0;
            i += 3;
        }
        else if (c < 0xF5) {
            if (i + 3 >= len)
                return 0;
            unsigned c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))
                return 0;
            i += 4;
        }
        else {
            return 0;
        }
    }
    return 1;
}

static int
sized(Walk *w, const char *what, Py_ssize_t *start, Py_ssize_t *len)
{
    uint64_t raw;
    if (varint(w, 10, &raw) < 0)
        return -1;
    int64_t n = zigzag(raw);
    if (n < 0)
        return bad(w, "malformed", what);
    if (n > w->n - w->p)
        return bad(w, "truncated", "value runs past the body");
    *start = w->p;
    *len = (Py_ssize_t)n;
    w->p += (Py_ssize_t)n;
    return 0;
}

/* Walk the node at ops[*pc] over the bytes; store its value in *slot when slot != NULL.
 * The program passed check() at init: operands, branch lengths and nesting are trusted. */
static int
node(Reader *r, Walk *w, Py_ssize_t *pc, PyObject **slot)
{
    int32_t op = r->ops[(*pc)++];
    switch (op) {
    case OP_NULL:
        if (slot)
            keep(slot, Py_NewRef(Py_None));
        return 0;
    case OP_BOOL: {
        if (w->p >= w->n)
            return bad(w, "truncated", "boolean runs past the body");
        unsigned c = w->b[w->p];
        if (c > 1)
            return bad(w, "malformed", "boolean byte over 1");
        w->p++;
        if (slot)
            keep(slot, PyBool_FromLong(c));
        return 0;
    }
    case OP_INT:
    case OP_LONG: {
        uint64_t raw;
        if (varint(w, op == OP_INT ? 5 : 10, &raw) < 0)
            return -1;
        if (slot) {
            PyObject *v = PyLong_FromLongLong(zigzag(raw));
            if (v == NULL)
                return -1;
            keep(slot, v);
        }
        return 0;
    }
    case OP_FLOAT:
    case OP_DOUBLE:
    case OP_FIXED: {
        Py_ssize_t size = op == OP_FLOAT ? 4 : op == OP_DOUBLE ? 8 : r->ops[(*pc)++];
        if (size > w->n - w->p)
            return bad(w, "truncated", "fixed-size value runs past the body");
        w->p += size;
        if (slot)
            keep(slot, Py_NewRef(Py_None)); /* never kept: compile_schema() refuses it */
        return 0;
    }
    case OP_STRING:
    case OP_KEY: {
        Py_ssize_t at, len;
        if (sized(w, "negative string length", &at, &len) < 0)
            return -1;
        if (op == OP_KEY) {
            int32_t max = r->ops[(*pc)++];
            int32_t table = r->ops[(*pc)++];
            if (len > max) {
                PyObject *name = PyTuple_GET_ITEM(PyTuple_GET_ITEM(r->symbols, table), 0);
                const char *field = PyUnicode_AsUTF8(name);
                if (field == NULL)
                    return -1;
                w->reason = "key_too_long";
                /* worded as workers.codec.program.key_too_long_detail */
                snprintf(w->detail, sizeof w->detail,
                         "%s is %zd bytes, over the %d-byte limit of a key",
                         field, len, (int)max);
                return -1;
            }
        }
        if (slot) {
            PyObject *s = PyUnicode_DecodeUTF8((const char *)w->b + at, len, NULL);
            if (s == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    return -1;
                PyErr_Clear();
                w->p = at;
                return bad(w, "invalid_utf8", "string is not UTF-8");
            }
            keep(slot, s);
        }
        else if (!utf8_valid(w->b + at, len)) {
            w->p = at;
            return bad(w, "invalid_utf8", "string is not UTF-8");
        }
        return 0;
    }
    case OP_BYTES: {
        Py_ssize_t at, len;
        if (sized(w, "negative bytes length", &at, &len) < 0)
            return -1;
        if (slot) {
            PyObject *v = PyBytes_FromStringAndSize((const char *)w->b + at, len);
            if (v == NULL)
                return -1;
            keep(slot, v);
        }
        return 0;
    }
    case OP_ENUM: {
        int32_t count = r->ops[(*pc)++];
        int32_t symbols = r->ops[(*pc)++];
        if (w->p >= w->n)
            return bad(w, "truncated", "enum index runs past the body");
        /* a valid index is one byte (zigzag 2k, k < 64): an overlong varint is rejected */
        unsigned c = w->b[w->p];
        if ((c & 1) || c >= 2u * (unsigned)count)
            return bad(w, "malformed", "enum index out of range");
        w->p++;
        if (slot) {
            PyObject *names = PyTuple_GET_ITEM(r->symbols, symbols);
            keep(slot, Py_NewRef(PyTuple_GET_ITEM(names, c >> 1)));
        }
        return 0;
    }
    case OP_UNION: {
        int32_t count = r->ops[(*pc)++];
        if (w->p >= w->n)
            return bad(w, "truncated", "union index runs past the body");
        unsigned c = w->b[w->p];
        if ((c & 1) || c >= 2u * (unsigned)count)
            return bad(w, "malformed", "union index out of range");
        w->p++;
        Py_ssize_t at = *pc, branch = -1;
        for (int32_t k = 0; k < count; k++) {
            if ((unsigned)k == c >> 1)
                branch = at + 1;
            at += 1 + r->ops[at];
        }
        *pc = at;
        return node(r, w, &branch, slot);
    }
    case OP_KEEP: {
        int32_t s = r->ops[(*pc)++];
        return node(r, w, pc, &w->slots[s]);
    }
    default: /* not reached: check() let only the opcodes above through */
        PyErr_SetString(PyExc_SystemError, "corrupt reader program");
        return -1;
    }
}

/* Walk a whole event; slots hold new references on return (also on failure). */
static int
walk(Reader *r, const unsigned char *b, Py_ssize_t n, PyObject **slots, Walk *w)
{
    w->reason = NULL;
    if (r->defaults == NULL) {
        for (int i = 0; i < NSLOTS; i++)
            slots[i] = NULL;
        PyErr_SetString(PyExc_ValueError, "Reader is not initialized");
        return -1;
    }
    for (int i = 0; i < NSLOTS; i++)
        slots[i] = Py_NewRef(PyTuple_GET_ITEM(r->defaults, i));
    w->b = b;
    w->p = HEADER;
    w->n = n;
    w->slots = slots;
    w->reason = NULL;
    if (n < HEADER)
        return bad(w, "truncated", "event shorter than its header");
    Py_ssize_t pc = 0;
    while (pc < r->nops)
        if (node(r, w, &pc, NULL) < 0)
            return -1;
    if (w->p != n) {
        w->reason = "trailing_bytes";
        snprintf(w->detail, sizeof w->detail, "%zd bytes after the record", n - w->p);
        return -1;
    }
    return 0;
}

static void
clear_slots(PyObject **slots)
{
    for (int i = 0; i < NSLOTS; i++)
        Py_CLEAR(slots[i]);
}

static PyObject *
reader_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Reader *r = (Reader *)self;
    Py_buffer view;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Reader takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*:Reader", &view))
        return NULL;
    PyObject *slots[NSLOTS];
    Walk w;
    int rc = walk(r, view.buf, view.len, slots, &w);
    PyBuffer_Release(&view);
    if (rc < 0) {
        clear_slots(slots);
        if (w.reason != NULL) {
            PyObject *exc = PyObject_CallFunction(r->error, "ss", w.reason, w.detail);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        return NULL;
    }
    PyObject *out = PyTuple_New(NSLOTS);
    if (out == NULL) {
        clear_slots(slots);
        return NULL;
    }
    for (int i = 0; i < NSLOTS; i++)
        PyTuple_SET_ITEM(out, i, slots[i]);
    return out;
}

/* Check the structure of the node at ops[*pc] (operands, lengths, symbol tables), so that
 * walking it never reads outside the program. */
static int
check(Reader *r, PyObject *symbols, Py_ssize_t *pc, int depth)
{
#define NEED(cond)                                                          \
    do {                                                                    \
        if (!(cond)) {                                                      \
            PyErr_Format(PyExc_ValueError, "bad reader program at %zd", *pc); \
            return -1;                                                      \
        }                                                                   \
    } while (0)
    NEED(*pc < r->nops && depth <= DEPTH_MAX);
    int32_t op = r->ops[(*pc)++];
    switch (op) {
    case OP_NULL:
    case OP_BOOL:
    case OP_INT:
    case OP_LONG:
    case OP_FLOAT:
    case OP_DOUBLE:
    case OP_STRING:
    case OP_BYTES:
        return 0;
    case OP_FIXED:
        NEED(*pc < r->nops && r->ops[*pc] >= 0);
        (*pc)++;
        return 0;
    case OP_ENUM: {
        NEED(*pc + 1 < r->nops);
        int32_t count = r->ops[*pc], table = r->ops[*pc + 1];
        NEED(count >= 1 && count <= 63 && table >= -1 && table < PyTuple_GET_SIZE(symbols));
        NEED(table < 0 || PyTuple_GET_SIZE(PyTuple_GET_ITEM(symbols, table)) == count);
        *pc += 2;
        return 0;
    }
    case OP_UNION: {
        NEED(*pc < r->nops);
        int32_t count = r->ops[(*pc)++];
        NEED(count >= 1 && count <= 63);
        for (int32_t k = 0; k < count; k++) {
            NEED(*pc < r->nops && r->ops[*pc] >= 1);
            Py_ssize_t end = *pc + 1 + r->ops[*pc];
            (*pc)++;
            if (check(r, symbols, pc, depth + 1) < 0)
                return -1;
            NEED(*pc == end);
        }
        return 0;
    }
    case OP_KEY: {
        NEED(*pc + 1 < r->nops);
        int32_t max = r->ops[*pc], table = r->ops[*pc + 1];
        NEED(max >= 0 && table >= 0 && table < PyTuple_GET_SIZE(symbols));
        PyObject *names = PyTuple_GET_ITEM(symbols, table);
        NEED(PyTuple_GET_SIZE(names) == 1 && PyUnicode_Check(PyTuple_GET_ITEM(names, 0)));
        *pc += 2;
        return 0;
    }
    case OP_KEEP:
        NEED(*pc < r->nops && r->ops[*pc] >= 0 && r->ops[*pc] < NSLOTS);
        (*pc)++;
        return check(r, symbols, pc, depth + 1);
    default:
        NEED(0);
    }
    return 0;
#undef NEED
}

static int
reader_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"ops", "tables", "defaults", "error", NULL};
    Reader *r = (Reader *)self;
    Py_buffer ops;
    PyObject *symbols, *defaults, *error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*O!O!O:Reader", kwlist, &ops,
                                     &PyTuple_Type, &symbols, &PyTuple_Type, &defaults, &error))
        return -1;
    if (ops.len % 4 != 0 || PyTuple_GET_SIZE(defaults) != NSLOTS) {
        PyBuffer_Release(&ops);
        PyErr_SetString(PyExc_ValueError, "ops: int32 array; defaults: 5 values");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(symbols); i++) {
        if (!PyTuple_Check(PyTuple_GET_ITEM(symbols, i))) {
            PyBuffer_Release(&ops);
            PyErr_SetString(PyExc_TypeError, "tables: a tuple of tuples");
            return -1;
        }
    }
    /* checked before it replaces anything: a failed re-init leaves the Reader as it was */
    Reader fresh = {.ops = PyMem_Malloc(ops.len ? ops.len : 1), .nops = ops.len / 4};
    if (fresh.ops == NULL) {
        PyBuffer_Release(&ops);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(fresh.ops, ops.buf, ops.len);
    PyBuffer_Release(&ops);
    Py_ssize_t pc = 0;
    while (pc < fresh.nops) {
        if (check(&fresh, symbols, &pc, 0) < 0) {
            PyMem_Free(fresh.ops);
            return -1;
        }
    }
    PyMem_Free(r->ops);
    r->ops = fresh.ops;
    r->nops = fresh.nops;
    Py_XSETREF(r->symbols, Py_NewRef(symbols));
    Py_XSETREF(r->defaults, Py_NewRef(defaults));
    Py_XSETREF(r->error, Py_NewRef(error));
    return 0;
}

static int
reader_traverse(PyObject *self, visitproc visit, void *arg)
{
    Reader *r = (Reader *)self;
    Py_VISIT(r->symbols);
    Py_VISIT(r->defaults);
    Py_VISIT(r->error);
    return 0;
}

static int
reader_clear(PyObject *self)
{
    Reader *r = (Reader *)self;
    Py_CLEAR(r->symbols);
    Py_CLEAR(r->defaults);
    Py_CLEAR(r->error);
    return 0;
}

static void
reader_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    PyMem_Free(((Reader *)self)->ops);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "workers.codec._cdecode.Reader",
    .tp_doc = "Reader(ops, tables, defaults, error): validate one event, keep its keys.\n\n"
              "Calling it with an event's bytes returns\n"
              "(session_id, seq, ts_ms, agent, model, producer)\n"
              "or raises error(reason, detail).",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = reader_init,
    .tp_call = reader_call,
    .tp_traverse = reader_traverse,
    .tp_clear = reader_clear,
    .tp_dealloc = reader_dealloc,
};

/* A new instance of the tuple subclass `cls` (a NamedTuple) holding `items` (stolen). */
static PyObject *
new_tuple_of(PyTypeObject *cls, PyObject **items, Py_ssize_t n)
{
    PyObject *t = cls->tp_alloc(cls, n);
    if (t == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
}

static PyObject *
decode_items(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_items(items, readers, max_bytes, decoded, events, fallback)");
        return NULL;
    }
    PyObject *items = args[0], *readers = args[1], *decoded = args[3], *events = args[4];
    PyObject *fallback = args[5];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_Check(items) || !PyDict_Check(readers) || !PyList_Check(events) ||
        !PyType_Check(decoded) || !PyType_IsSubtype((PyTypeObject *)decoded, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "items: list, readers: dict, decoded: a tuple subclass, events: list");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)decoded;
    unsigned char fingerprint[8];
    Reader *reader = NULL; /* the reader of `fingerprint`, a new reference */
    PyObject *slots[NSLOTS];
    Walk w;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_INCREF(item); /* the fallback may run any code */
        int accepted = 0;
        if (PyBytes_Check(item)) {
            const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(item);
            Py_ssize_t n = PyBytes_GET_SIZE(item);
            if (n >= HEADER && n <= limit && b[0] == 0xC3 && b[1] == 0x01) {
                if (reader == NULL || memcmp(fingerprint, b + 2, 8) != 0) {
                    Py_CLEAR(reader);
                    PyObject *key = PyBytes_FromStringAndSize((const char *)b + 2, 8);
                    if (key == NULL)
                        goto error;
                    PyObject *found = PyDict_GetItemWithError(readers, key);
                    Py_DECREF(key);
                    if (found == NULL && PyErr_Occurred())
                        goto error;
                    if (found != NULL && Py_IS_TYPE(found, &ReaderType)) {
                        reader = (Reader *)Py_NewRef(found);
                        memcpy(fingerprint, b + 2, 8);
                    }
                }
                if (reader != NULL) {
                    if (walk(reader, b, n, slots, &w) == 0) {
                        PyObject *sid = slots[0], *seq = slots[1];
                        accepted = PyUnicode_Check(sid) && PyUnicode_GET_LENGTH(sid) > 0 &&
                                   PyLong_Check(seq) && PyLong_AsLongLong(seq) >= 0;
                    }
                    else if (w.reason == NULL) {
                        clear_slots(slots);
                        goto error;
                    }
                    if (accepted) {
                        PyObject *fields[NSLOTS + 1];
                        memcpy(fields, slots, sizeof slots);
                        fields[NSLOTS] = Py_NewRef(item);
                        PyObject *ev = new_tuple_of(cls, fields, NSLOTS + 1);
                        if (ev == NULL)
                            goto error;
                        int rc = PyList_Append(events, ev);
                        Py_DECREF(ev);
                        if (rc < 0)
                            goto error;
                    }
                    else {
                        clear_slots(slots);
                    }
                }
            }
        }
        if (!accepted) {
            PyObject *res = PyObject_CallOneArg(fallback, item);
            if (res == NULL)
                goto error;
            Py_DECREF(res);
        }
        Py_DECREF(item);
        continue;
    error:
        Py_DECREF(item);
        Py_XDECREF(reader);
        return NULL;
    }
    Py_XDECREF(reader);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode_items", (PyCFunction)(void (*)(void))decode_items, METH_FASTCALL,
     "decode_items(items, readers, max_bytes, decoded, events, fallback)\n\n"
     "Append decoded(session_id, seq, ts_ms, agent, model, producer, item) to events for every item\n"
     "a Reader in readers (by fingerprint) accepts with a non-empty session_id and a seq\n"
     "of 0 or more; call fallback(item) for every other item, in item order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "workers.codec._cdecode",
    .m_doc = "The lean validating Avro reader of the ingest path, in C.",
    .m_size = -1,
    .m_methods = methods,
};

/* the digest of this file's text, set by hatch_build.py; workers/speedups.py refuses a
   module built from other text than the source beside it (a stale build) */
#ifndef KAIZEN_SOURCE_DIGEST
#define KAIZEN_SOURCE_DIGEST ""
#endif

PyMODINIT_FUNC
PyInit__cdecode(void)
{
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0
        || PyModule_AddStringConstant(m, "SOURCE_DIGEST", KAIZEN_SOURCE_DIGEST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
