/* The native Avro decoder and encoder behind schemas/avro_decoder.py's compile_decoder and
   schemas/avro_encoder.py's compile_encoder (the encoder: further down).

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
   redone (a batch repeats its customers, models and amounts). `maker` (else UTF-8) on a miss. */
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

/* ---- The encoder behind schemas/avro_encoder.py's compile_encoder ----

   Encoder(ops, fallback_exc, decimal_type): a callable record -> Avro body bytes, the same
   bytes as fastavro's schemaless_writer and the generated Python encoder. Like that encoder it
   raises (fallback_exc, KeyError, TypeError, UnicodeEncodeError) for any value it does not
   encode itself, and compile_encoder's wrapper then asks fastavro; what is rare but valid (a
   datetime in another zone than timezone.utc, a Decimal beyond 38 digits or with an odd
   exponent) is passed to the Python encoder of that field (`helper`), which decides. A field
   this file does not write at all (an array) is E_HELPER: always its Python encoder. */

enum { E_STRING, E_LONG, E_INT, E_TIMESTAMP, E_DECIMAL, E_MAP, E_HELPER, E_COUNT };

typedef struct {
    int op;
    int nullable;
    PyObject *key;     /* the field's name */
    PyObject *helper;  /* E_TIMESTAMP, E_DECIMAL, E_HELPER: the Python encoder of the value, value -> bytes */
    int precision, scale;
} EncOp;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    EncOp *ops;
    Py_ssize_t nops;
    PyObject *fallback_exc;
    PyObject *decimal_type;
} Encoder;

/* The bytes being written: on the stack until they outgrow it. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char local[1024];
} Out;

static int
out_write(Out *o, const char *p, Py_ssize_t n)
{
    if (o->len + n > o->cap) {
        Py_ssize_t cap = o->cap * 2 > o->len + n ? o->cap * 2 : o->len + n;
        char *data = o->data == o->local ? PyMem_Malloc((size_t)cap) : PyMem_Realloc(o->data, (size_t)cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (o->data == o->local)
            memcpy(data, o->local, (size_t)o->len);
        o->data = data;
        o->cap = cap;
    }
    memcpy(o->data + o->len, p, (size_t)n);
    o->len += n;
    return 0;
}

static int
out_byte(Out *o, char c)
{
    return out_write(o, &c, 1);
}

/* An Avro long: zig-zag, then base-128 little-endian groups. */
static int
out_long(Out *o, int64_t value)
{
    uint64_t n = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    char bytes[10];
    int size = 0;
    while (n > 127) {
        bytes[size++] = (char)((n & 127) | 128);
        n >>= 7;
    }
    bytes[size++] = (char)n;
    return out_write(o, bytes, size);
}

static int
fallback(Encoder *self)
{
    PyErr_SetNone(self->fallback_exc);
    return -1;
}

/* A str as its UTF-8 bytes with their length; another type falls back (as `type(v) is not str`). */
static int
out_string(Encoder *self, Out *o, PyObject *v)
{
    if (!PyUnicode_CheckExact(v) || PyUnicode_READY(v) < 0)
        return PyErr_Occurred() ? -1 : fallback(self);
    if (PyUnicode_IS_COMPACT_ASCII(v)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(v);
        return out_long(o, n) < 0 ? -1 : out_write(o, (const char *)PyUnicode_DATA(v), n);
    }
    PyObject *utf8 = PyUnicode_AsUTF8String(v);  /* a lone surrogate: UnicodeEncodeError, as v.encode() */
    if (utf8 == NULL)
        return -1;
    int failed = out_long(o, PyBytes_GET_SIZE(utf8)) < 0
        || out_write(o, PyBytes_AS_STRING(utf8), PyBytes_GET_SIZE(utf8)) < 0;
    Py_DECREF(utf8);
    return failed ? -1 : 0;
}

/* An int in [lo, hi] (bool and other types fall back, as `type(v) is not int`). */
static int
out_int(Encoder *self, Out *o, PyObject *v, int64_t lo, int64_t hi)
{
    if (!PyLong_CheckExact(v))
        return fallback(self);
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (overflow || n < lo || n > hi)
        return fallback(self);
    return out_long(o, n);
}

/* The helper's bytes for a value this file leaves to Python. */
static int
out_helper(Out *o, PyObject *helper, PyObject *v)
{
    PyObject *b = PyObject_CallOneArg(helper, v);
    if (b == NULL)
        return -1;
    int failed = !PyBytes_Check(b) ? (PyErr_SetString(PyExc_TypeError, "helper did not return bytes"), -1)
                                   : out_write(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return failed;
}

/* Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* timestamp-micros: a datetime in timezone.utc computed here, in another zone by the helper
   (its utcoffset), a naive one falls back (fastavro reads it in local time); an int is the
   microseconds themselves. */
static int
out_timestamp(Encoder *self, Out *o, EncOp *op, PyObject *v)
{
    if (PyLong_CheckExact(v))
        return out_int(self, o, v, INT64_MIN, INT64_MAX);
    if (!PyDateTime_CheckExact(v))
        return fallback(self);
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz == Py_None)
        return fallback(self);
    if (tz != PyDateTime_TimeZone_UTC)
        return out_helper(o, op->helper, v);
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
    int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 + PyDateTime_DATE_GET_MINUTE(v) * 60
        + PyDateTime_DATE_GET_SECOND(v);
    return out_long(o, secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(v));
}

/* decimal bytes: the unscaled integer (the value moved `scale` places), big-endian two's
   complement in the fewest bytes that hold its sign. The Decimal is read from its str, which
   is exact ([-]digits[.digits][E[+-]digits]): sign, coefficient, exponent. Computed here when
   the coefficient has at most `precision` (<= 38) digits, so nothing rounds and 128 bits hold
   it; as the Python encoder, a value with more places than `scale`, or `precision` digits or
   more before them, falls back. Anything else (NaN, Infinity, a longer coefficient, a huge
   exponent) goes to the helper. */
static int
out_decimal(Encoder *self, Out *o, EncOp *op, PyObject *v)
{
    if (Py_TYPE(v) != (PyTypeObject *)self->decimal_type)
        return fallback(self);
    if (op->precision < 1 || op->precision > 38)
        return out_helper(o, op->helper, v);
    PyObject *text = PyObject_Str(v);
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        Py_DECREF(text);
        return -1;
    }
    const char *end = s + n;
    int negative = 0, digits = 0, places = 0, dot = 0, usual = 1;
    unsigned __int128 coefficient = 0;
    int64_t exponent = 0;
    if (s < end && *s == '-') {
        negative = 1;
        s++;
    }
    if (s == end)
        usual = 0;
    for (; s < end && usual && *s != 'E' && *s != 'e'; s++) {
        if (*s == '.' && !dot) {
            dot = 1;
        } else if (*s >= '0' && *s <= '9') {
            places += dot;
            if (coefficient == 0 && *s == '0')
                continue;  /* a leading zero: not a digit of the coefficient */
            if (++digits > op->precision)
                usual = 0;
            coefficient = coefficient * 10 + (unsigned)(*s - '0');
        } else {
            usual = 0;  /* NaN, sNaN, Infinity */
        }
    }
    if (usual && s < end) {  /* the exponent: E, a sign, at most 4 digits */
        s++;
        int exp_negative = s < end && *s == '-';
        if (s < end && (*s == '-' || *s == '+'))
            s++;
        if (s == end || end - s > 4)
            usual = 0;
        for (; s < end && usual; s++) {
            if (*s < '0' || *s > '9')
                usual = 0;
            else
                exponent = exponent * 10 + (*s - '0');
        }
        if (exp_negative)
            exponent = -exponent;
    }
    Py_DECREF(text);
    if (!usual)
        return out_helper(o, op->helper, v);
    /* the value is coefficient * 10**(exponent - places); moved `scale` places: */
    int64_t shift = exponent - places + op->scale;
    if (coefficient == 0) {
        shift = 0;
    } else if (shift >= 0) {
        if (digits + shift > op->precision)
            return fallback(self);  /* |unscaled| >= 10**precision: too large */
    } else {
        for (; shift < 0; shift++) {
            if (coefficient % 10 != 0)
                return fallback(self);  /* more places than the scale */
            coefficient /= 10;
        }
    }
    for (; shift > 0; shift--)
        coefficient *= 10;
    int bits = 0;
    for (unsigned __int128 m = coefficient; m != 0; m >>= 1)
        bits++;
    int size = (bits + 8) / 8;
    unsigned __int128 twos = negative ? (unsigned __int128)0 - coefficient : coefficient;
    char bytes[17];
    for (int i = size - 1; i >= 0; i--) {
        bytes[i] = (char)(unsigned char)(twos & 0xFF);
        twos >>= 8;
    }
    return out_long(o, size) < 0 ? -1 : out_write(o, bytes, size);
}

/* map of strings: blocks of one count, then the count's keys and values, then 0. */
static int
out_map(Encoder *self, Out *o, PyObject *v)
{
    if (!PyDict_CheckExact(v))
        return fallback(self);
    if (PyDict_GET_SIZE(v) == 0)
        return out_byte(o, 0);
    if (out_long(o, PyDict_GET_SIZE(v)) < 0)
        return -1;
    Py_ssize_t i = 0;
    PyObject *key, *item;
    while (PyDict_Next(v, &i, &key, &item))  /* nothing below runs Python code: the dict stays as it is */
        if (out_string(self, o, key) < 0 || out_string(self, o, item) < 0)
            return -1;
    return out_byte(o, 0);
}

static int
encode_field(Encoder *self, Out *o, EncOp *op, PyObject *v)
{
    if (op->nullable) {
        if (v == Py_None)
            return out_byte(o, 0);
        if (out_byte(o, 2) < 0)
            return -1;
    }
    switch (op->op) {
    case E_STRING:
        return out_string(self, o, v);
    case E_LONG:
        return out_int(self, o, v, INT64_MIN, INT64_MAX);
    case E_INT:
        return out_int(self, o, v, INT32_MIN, INT32_MAX);
    case E_TIMESTAMP:
        return out_timestamp(self, o, op, v);
    case E_DECIMAL:
        return out_decimal(self, o, op, v);
    case E_MAP:
        return out_map(self, o, v);
    case E_HELPER:
        return out_helper(o, op->helper, v);
    }
    PyErr_SetString(PyExc_SystemError, "unknown op");
    return -1;
}

static PyObject *
encode(Encoder *self, PyObject *record)
{
    Out o = {.len = 0, .cap = sizeof(o.local)};
    o.data = o.local;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        EncOp *op = &self->ops[i];
        PyObject *v;  /* record[name], as the generated encoder reads it */
        if (PyDict_CheckExact(record)) {
            v = PyDict_GetItemWithError(record, op->key);
            if (v == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, op->key);
                goto done;
            }
            Py_INCREF(v);
        } else {
            v = PyObject_GetItem(record, op->key);
            if (v == NULL)
                goto done;
        }
        int failed = encode_field(self, &o, op, v);
        Py_DECREF(v);
        if (failed)
            goto done;
    }
    result = PyBytes_FromStringAndSize(o.data, o.len);
done:
    if (o.data != o.local)
        PyMem_Free(o.data);
    return result;
}

static PyObject *
Encoder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "an Encoder takes one record");
        return NULL;
    }
    return encode((Encoder *)callable, args[0]);
}

static int
Encoder_clear(Encoder *self)
{
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Py_CLEAR(self->ops[i].key);
        Py_CLEAR(self->ops[i].helper);
    }
    Py_CLEAR(self->fallback_exc);
    Py_CLEAR(self->decimal_type);
    return 0;
}

static int
Encoder_traverse(Encoder *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        Py_VISIT(self->ops[i].key);
        Py_VISIT(self->ops[i].helper);
    }
    Py_VISIT(self->fallback_exc);
    Py_VISIT(self->decimal_type);
    return 0;
}

static void
Encoder_dealloc(Encoder *self)
{
    PyObject_GC_UnTrack(self);
    Encoder_clear(self);
    PyMem_Free(self->ops);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Encoder(ops, fallback_exc, decimal_type), an op being (op, nullable, name, helper, precision,
   scale): see avro_encoder.compile_encoder. */
static PyObject *
Encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ops, *fallback_exc, *decimal_type;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Encoder() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OO!", &PyTuple_Type, &ops, &fallback_exc, &PyType_Type, &decimal_type))
        return NULL;
    if (!PyExceptionClass_Check(fallback_exc)) {
        PyErr_SetString(PyExc_ValueError, "bad encoder plan");
        return NULL;
    }
    Encoder *self = (Encoder *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = Encoder_vectorcall;
    self->fallback_exc = Py_NewRef(fallback_exc);
    self->decimal_type = Py_NewRef(decimal_type);
    self->ops = PyMem_Calloc((size_t)PyTuple_GET_SIZE(ops) + 1, sizeof(EncOp));
    if (self->ops == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    self->nops = PyTuple_GET_SIZE(ops);
    for (Py_ssize_t i = 0; i < self->nops; i++) {
        EncOp *op = &self->ops[i];
        PyObject *key, *helper;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(ops, i),
                              "iiO!Oii;an encoder op is (op, nullable, name, helper, precision, scale)",
                              &op->op, &op->nullable, &PyUnicode_Type, &key, &helper, &op->precision, &op->scale))
            goto error;
        op->key = Py_NewRef(key);
        op->helper = Py_NewRef(helper);
        if (op->op < 0 || op->op >= E_COUNT || (op->nullable != 0 && op->nullable != 1)
            || ((op->op == E_TIMESTAMP || op->op == E_DECIMAL || op->op == E_HELPER) && !PyCallable_Check(helper))) {
            PyErr_SetString(PyExc_ValueError, "bad encoder plan op");
            goto error;
        }
    }
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro_native.Encoder",
    .tp_doc = "A compiled Avro record encoder: record -> body bytes.",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Encoder_new,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_traverse = (traverseproc)Encoder_traverse,
    .tp_clear = (inquiry)Encoder_clear,
    .tp_vectorcall_offset = offsetof(Encoder, vectorcall),
    .tp_call = PyVectorcall_Call,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "schemas._avro_native",
    .m_doc = "Native Avro decoding and encoding for schemas/avro_decoder.py and avro_encoder.py "
             "(optional: their pure-Python paths are the fallback).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__avro_native(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (PyType_Ready(&DecoderType) < 0 || PyType_Ready(&EncoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0
        || PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
