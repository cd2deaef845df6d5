/* The native Avro decoder behind schemas/avro_decoder.py's compile_decoder.

   compile_decoder turns a record schema into a plan (one op per field, in the schema's order)
   and builds a Decoder from it: a callable (buf, pos) -> (record, end) that runs the ops in a
   loop. It reads exactly what the generated Python decoder reads and refuses what it refuses
   (one documented exception: a varint of more than 64 bits, see read_long); anything the
   generated decoder would not be called with here (not bytes, an odd position, keywords) is
   passed to it unchanged. Every read is bounds-checked: corrupt input raises ValueError (the
   caller then asks fastavro), it never reads past the buffer. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The ops; the names are the Python plan's (avro_decoder._OPS). */
enum {
    OP_OFFSET,        /* the position before the next field, as an int */
    OP_SKIP_SIZED,    /* a string, bytes or decimal stepped over, bounds checked */
    OP_SKIP_LONG,     /* an int, long or timestamp stepped over */
    OP_SKIP_MAP,      /* a map of strings stepped over */
    OP_STRING,        /* str (UTF-8, strict); `cache`: dict bytes -> str */
    OP_BYTES,
    OP_INT,           /* range-checked to 32 bits */
    OP_LONG,
    OP_TIMESTAMP_RAW, /* int of microseconds, range-checked as a datetime */
    OP_TIMESTAMP,     /* datetime in timezone.utc, the last one remembered */
    OP_DECIMAL,       /* maker(bytes), cached in `cache` */
    OP_MAP,           /* dict of str -> str */
    OP_COUNT
};

enum { OUT_DICT, OUT_NAMEDTUPLE, OUT_CALL };

#define CACHE_LIMIT 4096 /* entries per cache before it is cleared, as avro_decoder._CACHE_LIMIT */
#define LOCAL_SLOTS 64   /* values held on the stack; more are allocated */
#define MICROS_PER_DAY 86400000000LL

typedef struct {
    int op;
    int nullable;       /* a ["null", X] union: its index byte first (0: null, 2: X) */
    Py_ssize_t slot;    /* where the value goes, -1: checked, not kept */
    PyObject *cache;    /* dict or NULL */
    PyObject *maker;    /* OP_DECIMAL: bytes -> Decimal */
    int have_last;      /* OP_TIMESTAMP: the last value read and its datetime */
    int64_t last_n;
    PyObject *last;
} Op;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Op *ops;
    Py_ssize_t nops;
    Py_ssize_t nslots;
    int mode;
    PyObject *keys;        /* OUT_DICT: tuple of str, key i is slot i */
    Py_ssize_t *order;     /* OUT_NAMEDTUPLE, OUT_CALL: the slot of each value */
    Py_ssize_t norder;
    PyObject *row;         /* the named tuple type, or the callable */
    PyObject *fallback;    /* the generated Python decoder */
    int64_t lo, hi;        /* the timestamps a datetime can hold (MIN_MICROS, MAX_MICROS) */
} Decoder;

static PyObject *
corrupt(const char *why)
{
    PyErr_Format(PyExc_ValueError, "Avro body does not decode on the native path: %s", why);
    return NULL;
}

/* The zig-zag long at *pos. A varint of 10 bytes whose last holds more than the 64th bit is
   refused: the Python decoder reads it as an int beyond 64 bits, fastavro truncates it; either
   way no writer produces it, and refusing sends it to fastavro. */
static int
read_long(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, int64_t *out)
{
    uint64_t r = 0;
    Py_ssize_t p = *pos;
    for (int i = 0; i < 10; i++) {
        if (p >= len) {
            corrupt("varint past the end");
            return -1;
        }
        unsigned int b = buf[p++];
        if (i == 9 && b > 1) {
            corrupt(b & 128 ? "varint longer than 10 bytes" : "varint beyond 64 bits");
            return -1;
        }
        r |= (uint64_t)(b & 127) << (7 * i);
        if (b < 128) {
            *pos = p;
            *out = (int64_t)(r >> 1) ^ -(int64_t)(r & 1);
            return 0;
        }
    }
    corrupt("varint longer than 10 bytes");
    return -1;
}

/* A length-prefixed value: its bytes at *start, *size of them; *pos moves past it. */
static int
read_sized(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos,
           const char **start, Py_ssize_t *size)
{
    int64_t n;
    if (read_long(buf, len, pos, &n) < 0)
        return -1;
    if (n < 0 || n > (int64_t)(len - *pos)) {
        corrupt("past the end");
        return -1;
    }
    *start = (const char *)buf + *pos;
    *size = (Py_ssize_t)n;
    *pos += (Py_ssize_t)n;
    return 0;
}

/* The number of entries of a map block (its byte size skipped when the count is negative). */
static int
read_block_count(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, uint64_t *count)
{
    int64_t n, ignored;
    if (read_long(buf, len, pos, &n) < 0)
        return -1;
    if (n < 0) {
        *count = (uint64_t)0 - (uint64_t)n;
        return read_long(buf, len, pos, &ignored);
    }
    *count = (uint64_t)n;
    return 0;
}

/* A map of strings as a dict (keys and values UTF-8 decoded), or NULL. Every entry reads at
   least two bytes, so a huge count ends at the buffer's end. */
static PyObject *
read_map(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos)
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (;;) {
        uint64_t count;
        if (read_block_count(buf, len, pos, &count) < 0)
            goto error;
        if (count == 0)
            return out;
        for (uint64_t i = 0; i < count; i++) {
            const char *s;
            Py_ssize_t n;
            if (read_sized(buf, len, pos, &s, &n) < 0)
                goto error;
            PyObject *key = PyUnicode_DecodeUTF8(s, n, NULL);
            if (key == NULL)
                goto error;
            if (read_sized(buf, len, pos, &s, &n) < 0) {
                Py_DECREF(key);
                goto error;
            }
            PyObject *value = PyUnicode_DecodeUTF8(s, n, NULL);
            if (value == NULL) {
                Py_DECREF(key);
                goto error;
            }
            int failed = PyDict_SetItem(out, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (failed)
                goto error;
        }
    }
error:
    Py_DECREF(out);
    return NULL;
}

static int
skip_map(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos)
{
    for (;;) {
        uint64_t count;
        if (read_block_count(buf, len, pos, &count) < 0)
            return -1;
        if (count == 0)
            return 0;
        for (uint64_t i = 0; i < count; i++) {
            const char *s;
            Py_ssize_t n;
            if (read_sized(buf, len, pos, &s, &n) < 0 || read_sized(buf, len, pos, &s, &n) < 0)
                return -1;
        }
    }
}

/* The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's civil_from_days). */
static void
civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)((int64_t)yoe + era * 400 + (*month <= 2));
}

/* _EPOCH + timedelta(microseconds=n): the same datetime, in the same timezone.utc object. The
   caller has checked n against lo..hi, so the year is 1..9999. */
static PyObject *
utc_datetime(int64_t n)
{
    int64_t days = n / MICROS_PER_DAY, rem = n % MICROS_PER_DAY;
    if (rem < 0) {
        rem += MICROS_PER_DAY;
        days -= 1;
    }
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    int usec = (int)(rem % 1000000);
    int64_t secs = rem / 1000000;
    return PyDateTimeAPI->DateTime_FromDateAndTime(
        year, month, day, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), usec,
        PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

/* bytes -> value through a cache dict: the decoding of a repeated value is looked up, not
   redone (a batch repeats its customers, models and amounts). `make` is called on a miss. */
static PyObject *
cached(PyObject *cache, const char *s, Py_ssize_t n, PyObject *maker)
{
    PyObject *key = PyBytes_FromStringAndSize(s, n);
    if (key == NULL)
        return NULL;
    PyObject *value = PyDict_GetItemWithError(cache, key);
    if (value != NULL) {
        Py_INCREF(value);
    } else if (!PyErr_Occurred()) {
        value = maker != NULL ? PyObject_CallOneArg(maker, key) : PyUnicode_DecodeUTF8(s, n, NULL);
        if (value != NULL) {
            if (PyDict_GET_SIZE(cache) >= CACHE_LIMIT)
                PyDict_Clear(cache);
            if (PyDict_SetItem(cache, key, value) < 0)
                Py_CLEAR(value);
        }
    }
    Py_DECREF(key);
    return value;
}

/* One field's value (a new reference) at *pos, union index already read; for a field checked
   and not kept, Py_None once the checks pass. NULL with an exception on corrupt input. */
static PyObject *
read_value(Decoder *self, Op *op, const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos)
{
    const char *s;
    Py_ssize_t size;
    int64_t n;
    PyObject *value;

    switch (op->op) {
    case OP_SKIP_SIZED:
        if (read_sized(buf, len, pos, &s, &size) < 0)
            return NULL;
        Py_RETURN_NONE;
    case OP_SKIP_LONG:
        if (read_long(buf, len, pos, &n) < 0)
            return NULL;
        Py_RETURN_NONE;
    case OP_SKIP_MAP:
        if (skip_map(buf, len, pos) < 0)
            return NULL;
        Py_RETURN_NONE;
    case OP_STRING:
        if (read_sized(buf, len, pos, &s, &size) < 0)
            return NULL;
        if (op->cache != NULL)
            return cached(op->cache, s, size, NULL);
        return PyUnicode_DecodeUTF8(s, size, NULL);
    case OP_BYTES:
        if (read_sized(buf, len, pos, &s, &size) < 0)
            return NULL;
        return PyBytes_FromStringAndSize(s, size);
    case OP_INT:
        if (read_long(buf, len, pos, &n) < 0)
            return NULL;
        if (n < INT32_MIN || n > INT32_MAX)
            return corrupt("int out of range");
        return PyLong_FromLongLong(n);
    case OP_LONG:
        if (read_long(buf, len, pos, &n) < 0)
            return NULL;
        return PyLong_FromLongLong(n);
    case OP_TIMESTAMP_RAW:
        if (read_long(buf, len, pos, &n) < 0)
            return NULL;
        if (n < self->lo || n > self->hi)
            return corrupt("timestamp out of range");
        return PyLong_FromLongLong(n);
    case OP_TIMESTAMP:
        /* a batch shares its received_at and rated_at: remember the last value */
        if (read_long(buf, len, pos, &n) < 0)
            return NULL;
        if (op->have_last && n == op->last_n)
            return Py_NewRef(op->last);
        if (n < self->lo || n > self->hi)
            return corrupt("timestamp out of range");
        value = utc_datetime(n);
        if (value == NULL)
            return NULL;
        Py_XSETREF(op->last, Py_NewRef(value));
        op->last_n = n;
        op->have_last = 1;
        return value;
    case OP_DECIMAL:
        if (read_sized(buf, len, pos, &s, &size) < 0)
            return NULL;
        return cached(op->cache, s, size, op->maker);
    case OP_MAP:
        return read_map(buf, len, pos);
    }
    PyErr_SetString(PyExc_SystemError, "unknown op");
    return NULL;
}

/* The record out of the values: a dict of the kept fields, or a row. */
static PyObject *
build(Decoder *self, PyObject **values)
{
    if (self->mode == OUT_DICT) {
        Py_ssize_t n = PyTuple_GET_SIZE(self->keys);
        PyObject *out = _PyDict_NewPresized(n);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (PyDict_SetItem(out, PyTuple_GET_ITEM(self->keys, i), values[i]) < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
        return out;
    }
    /* A named tuple is built as its own __new__ builds it (tuple.__new__), without the call,
       as the generated decoder does; any other row is called with the values. */
    PyObject *out = self->mode == OUT_NAMEDTUPLE
        ? ((PyTypeObject *)self->row)->tp_alloc((PyTypeObject *)self->row, self->norder)
        : PyTuple_New(self->norder);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->norder; i++)
        PyTuple_SET_ITEM(out, i, Py_NewRef(values[self->order[i]]));
    if (self->mode == OUT_NAMEDTUPLE)
        return out;
    PyObject *result = PyObject_Call(self->row, out, NULL);
    Py_DECREF(out);
    return result;
}

static PyObject *
decode(Decoder *self, PyObject *data, Py_ssize_t pos)
{
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    PyObject *local[LOCAL_SLOTS];
    PyObject **values = local;
    PyObject *record = NULL, *result = NULL;

    if (self->nslots > LOCAL_SLOTS) {
        values = PyMem_Calloc((size_t)self->nslots, sizeof(PyObject *));
        if (values == NULL)
            return PyErr_NoMemory();
    } else {
        memset(local, 0, sizeof(local));
    }
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Op *op = &self->ops[i];
        PyObject *value;
        if (op->op == OP_OFFSET) {
            value = PyLong_FromSsize_t(pos);
        } else if (op->nullable && pos >= len) {
            value = corrupt("union index past the end");
        } else if (op->nullable && buf[pos] == 0) {
            pos++;
            value = Py_NewRef(Py_None);
        } else if (op->nullable && buf[pos] != 2) {
            value = corrupt("union index");
        } else {
            pos += op->nullable;
            value = read_value(self, op, buf, len, &pos);
        }
        if (value == NULL)
            goto done;
        if (op->slot >= 0)
            Py_XSETREF(values[op->slot], value);
        else
            Py_DECREF(value);
    }
    record = build(self, values);
    if (record != NULL)
        result = Py_BuildValue("(Nn)", record, pos);
done:
    for (Py_ssize_t i = 0; i < self->nslots; i++)
        Py_XDECREF(values[i]);
    if (values != local)
        PyMem_Free(values);
    return result;
}

static PyObject *
Decoder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Decoder *self = (Decoder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 2 && kwnames == NULL && PyBytes_CheckExact(args[0]) && PyLong_CheckExact(args[1])) {
        Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
        if (pos == -1 && PyErr_Occurred())
            PyErr_Clear();
        else if (pos >= 0 && pos <= PyBytes_GET_SIZE(args[0]))
            return decode(self, args[0], pos);
    }
    /* not what the callers pass: the generated decoder answers as it always did */
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static void
clear_ops(Decoder *self)
{
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Py_CLEAR(self->ops[i].cache);
        Py_CLEAR(self->ops[i].maker);
        Py_CLEAR(self->ops[i].last);
    }
}

static int
Decoder_clear(Decoder *self)
{
    clear_ops(self);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->row);
    Py_CLEAR(self->fallback);
    return 0;
}

static int
Decoder_traverse(Decoder *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Py_VISIT(self->ops[i].cache);
        Py_VISIT(self->ops[i].maker);
        Py_VISIT(self->ops[i].last);
    }
    Py_VISIT(self->keys);
    Py_VISIT(self->row);
    Py_VISIT(self->fallback);
    return 0;
}

static void
Decoder_dealloc(Decoder *self)
{
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    PyMem_Free(self->ops);
    PyMem_Free(self->order);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Decoder(ops, nslots, mode, out, row, fallback, lo, hi): see avro_decoder._native_decoder.
   The plan is checked here so that no op or output can index outside the values. */
static PyObject *
Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ops, *out, *row, *fallback;
    Py_ssize_t nslots;
    int mode;
    long long lo, hi;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Decoder() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!niO!OOLL", &PyTuple_Type, &ops, &nslots, &mode, &PyTuple_Type, &out,
                          &row, &fallback, &lo, &hi))
        return NULL;
    if (nslots < 0 || mode < OUT_DICT || mode > OUT_CALL || !PyCallable_Check(fallback)
        || (mode == OUT_NAMEDTUPLE && !(PyType_Check(row) && PyType_IsSubtype((PyTypeObject *)row, &PyTuple_Type)))
        || (mode == OUT_CALL && !PyCallable_Check(row))) {
        PyErr_SetString(PyExc_ValueError, "bad decoder plan");
        return NULL;
    }
    Decoder *self = (Decoder *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = Decoder_vectorcall;
    self->nslots = nslots;
    self->mode = mode;
    self->lo = lo;
    self->hi = hi;
    self->row = Py_NewRef(row);
    self->fallback = Py_NewRef(fallback);
    /* tp_alloc has tracked self for the collector: nops counts only allocated, zeroed ops */
    char *written = PyMem_Calloc((size_t)nslots + 1, 1);
    self->ops = PyMem_Calloc((size_t)PyTuple_GET_SIZE(ops) + 1, sizeof(Op));
    if (written == NULL || self->ops == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    self->nops = PyTuple_GET_SIZE(ops);
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Op *op = &self->ops[i];
        PyObject *cache, *maker;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(ops, i), "iinOO;a plan op is (op, nullable, slot, cache, maker)",
                              &op->op, &op->nullable, &op->slot, &cache, &maker))
            goto error;
        if (op->op < 0 || op->op >= OP_COUNT || op->slot < -1 || op->slot >= nslots
            || (op->nullable != 0 && op->nullable != 1)
            || (cache != Py_None && !PyDict_CheckExact(cache))
            || (op->op == OP_DECIMAL && (cache == Py_None || !PyCallable_Check(maker)))) {
            PyErr_SetString(PyExc_ValueError, "bad decoder plan op");
            goto error;
        }
        op->cache = cache == Py_None ? NULL : Py_NewRef(cache);
        op->maker = maker == Py_None ? NULL : Py_NewRef(maker);
        if (op->slot >= 0)
            written[op->slot] = 1;
    }
    if (mode == OUT_DICT) {
        if (PyTuple_GET_SIZE(out) > nslots)
            goto bad_out;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(out); i++)
            if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(out, i)) || !written[i])
                goto bad_out;
        self->keys = Py_NewRef(out);
    } else {
        self->norder = PyTuple_GET_SIZE(out);
        self->order = PyMem_Calloc((size_t)self->norder + 1, sizeof(Py_ssize_t));
        if (self->order == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        for (Py_ssize_t i = 0; i < self->norder; i++) {
            Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(out, i));
            if (slot == -1 && PyErr_Occurred())
                goto error;
            if (slot < 0 || slot >= nslots || !written[slot])
                goto bad_out;
            self->order[i] = slot;
        }
    }
    PyMem_Free(written);
    return (PyObject *)self;
bad_out:
    PyErr_SetString(PyExc_ValueError, "bad decoder plan output");
error:
    PyMem_Free(written);
    Py_DECREF(self);
    return NULL;
}

static PyObject *
Decoder_get_fallback(Decoder *self, void *closure)
{
    return Py_NewRef(self->fallback);
}

static PyGetSetDef Decoder_getset[] = {
    {"fallback", (getter)Decoder_get_fallback, NULL, "the generated Python decoder", NULL},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro_native.Decoder",
    .tp_doc = "A compiled Avro record decoder: (buf, pos) -> (record, end).",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Decoder_new,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_vectorcall_offset = offsetof(Decoder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_getset = Decoder_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "schemas._avro_native",
    .m_doc = "Native Avro decoding for schemas/avro_decoder.py (optional: the pure-Python path is the fallback).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__avro_native(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
