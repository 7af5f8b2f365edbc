/* The flat-row Avro writer of schemas/avro_rows.py, and the raw envelope reader of
 * schemas/avro_envelope.py, in C.
 *
 * plan = make_plan(header, fields); write_row(plan, row) -> bytes | None
 * read_envelope(payload, prefix) -> the 10 fields | None
 *
 * fields is a tuple of (field name, kind, lo, hi) tuples (kinds as in avro_rows.py: 0 string, 1 int,
 * 2 long, 3 ["null", int], 4 ["null", long], 5 date, 6 int-or-str written as text). The body is the
 * header followed by each field: zig-zag varints and length-prefixed UTF-8, exactly what the Python
 * writer (and fastavro) write. None means "not for this writer" (a missing field, a value of another
 * type or out of range): the caller then takes the Python path, which raises fastavro's errors.
 *
 * read_envelope reads a raw_envelope record whose first bytes are `prefix` (marker + the writer schema's
 * fingerprint): nine strings with a long (received_at) second and bytes (body) last, as a tuple. None for
 * any other record and for any record it cannot read whole (another prefix, truncated, a varint longer
 * than 9 bytes, invalid UTF-8, trailing bytes are ignored as in Python): the Python reader then answers,
 * with its own errors, so both readers agree on every input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

enum { K_STR, K_INT, K_LONG, K_NULL_INT, K_NULL_LONG, K_DATE, K_TEXT };

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} buffer;

static int reserve(buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more) cap *= 2;
    char *grown = PyMem_Realloc(b->data, (size_t)cap);
    if (grown == NULL) { PyErr_NoMemory(); return -1; }
    b->data = grown;
    b->cap = cap;
    return 0;
}

static int put_long(buffer *b, long long value) {
    if (reserve(b, 10) < 0) return -1;
    uint64_t n = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    while (n > 0x7F) {
        b->data[b->len++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->data[b->len++] = (char)n;
    return 0;
}

static int put_bytes(buffer *b, const char *data, Py_ssize_t size) {
    if (put_long(b, (long long)size) < 0 || reserve(b, size) < 0) return -1;
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += size;
    return 0;
}

/* days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

/* 1 written, 0 not for this writer, -1 error */
static int put_int(buffer *b, PyObject *v, long long lo, long long hi) {
    if (!PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred())) { PyErr_Clear(); return 0; }
    if (n < lo || n > hi) return 0;
    return put_long(b, n) < 0 ? -1 : 1;
}

static int put_field(buffer *b, int kind, PyObject *v, long long lo, long long hi) {
    switch (kind) {
    case K_STR: {
        if (!PyUnicode_CheckExact(v)) return 0;
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &size);
        if (utf8 == NULL) { PyErr_Clear(); return 0; }  /* lone surrogates: the Python path decides */
        return put_bytes(b, utf8, size) < 0 ? -1 : 1;
    }
    case K_INT:
    case K_LONG:
        return put_int(b, v, lo, hi);
    case K_NULL_INT:
    case K_NULL_LONG:
        if (v == Py_None) {
            if (reserve(b, 1) < 0) return -1;
            b->data[b->len++] = 0;
            return 1;
        }
        if (!PyLong_CheckExact(v)) return 0;
        if (reserve(b, 1) < 0) return -1;
        b->data[b->len++] = 2;
        {
            int done = put_int(b, v, lo, hi);
            if (done == 0) b->len--;
            return done;
        }
    case K_DATE:
        if (PyDate_CheckExact(v)) {
            long long days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                             PyDateTime_GET_DAY(v));
            if (days < lo || days > hi) return 0;
            return put_long(b, days) < 0 ? -1 : 1;
        }
        return put_int(b, v, lo, hi);
    case K_TEXT: {
        if (PyUnicode_CheckExact(v)) return put_field(b, K_STR, v, lo, hi);
        if (!PyLong_CheckExact(v)) return 0;
        PyObject *text = PyObject_Str(v);
        if (text == NULL) return -1;
        int done = put_field(b, K_STR, text, lo, hi);
        Py_DECREF(text);
        return done;
    }
    default:
        return 0;
    }
}

typedef struct {
    PyObject *header;  /* bytes */
    Py_ssize_t count;
    PyObject **names;  /* str, owned */
    int *kinds;
    long long *lo, *hi;
} plan_t;

static void plan_free(PyObject *capsule) {
    plan_t *plan = PyCapsule_GetPointer(capsule, "avro_rows.plan");
    if (plan == NULL) return;
    for (Py_ssize_t i = 0; i < plan->count; i++) Py_XDECREF(plan->names[i]);
    Py_XDECREF(plan->header);
    PyMem_Free(plan->names);
    PyMem_Free(plan->kinds);
    PyMem_Free(plan->lo);
    PyMem_Free(plan->hi);
    PyMem_Free(plan);
}

static PyObject *make_plan(PyObject *self, PyObject *args) {
    PyObject *header, *fields;
    if (!PyArg_ParseTuple(args, "SO!", &header, &PyTuple_Type, &fields)) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    plan_t *plan = PyMem_Calloc(1, sizeof(plan_t));
    if (plan == NULL) return PyErr_NoMemory();
    plan->names = PyMem_Calloc((size_t)count + 1, sizeof(PyObject *));
    plan->kinds = PyMem_Calloc((size_t)count + 1, sizeof(int));
    plan->lo = PyMem_Calloc((size_t)count + 1, sizeof(long long));
    plan->hi = PyMem_Calloc((size_t)count + 1, sizeof(long long));
    PyObject *capsule = PyCapsule_New(plan, "avro_rows.plan", plan_free);
    if (capsule == NULL) { PyMem_Free(plan); return NULL; }
    if (!plan->names || !plan->kinds || !plan->lo || !plan->hi) { Py_DECREF(capsule); return PyErr_NoMemory(); }
    plan->header = Py_NewRef(header);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *spec = PyTuple_GET_ITEM(fields, i);
        PyObject *name;
        if (!PyArg_ParseTuple(spec, "UiLL", &name, &plan->kinds[i], &plan->lo[i], &plan->hi[i])) {
            Py_DECREF(capsule);
            return NULL;
        }
        plan->names[i] = Py_NewRef(name);
        plan->count = i + 1;
    }
    return capsule;
}

static PyObject *write_row(PyObject *self, PyObject *args) {
    PyObject *capsule, *row;
    if (!PyArg_ParseTuple(args, "OO!", &capsule, &PyDict_Type, &row)) return NULL;
    plan_t *plan = PyCapsule_GetPointer(capsule, "avro_rows.plan");
    if (plan == NULL) return NULL;
    buffer b = {PyMem_Malloc(1024), 0, 1024};
    if (b.data == NULL) return PyErr_NoMemory();
    PyObject *result = NULL;
    Py_ssize_t hlen = PyBytes_GET_SIZE(plan->header);
    if (reserve(&b, hlen) < 0) goto done;
    memcpy(b.data, PyBytes_AS_STRING(plan->header), (size_t)hlen);
    b.len = hlen;
    for (Py_ssize_t i = 0; i < plan->count; i++) {
        PyObject *v = PyDict_GetItemWithError(row, plan->names[i]);  /* borrowed */
        if (v == NULL) {
            if (PyErr_Occurred()) goto done;
            result = Py_NewRef(Py_None);  /* missing field */
            goto done;
        }
        int written = put_field(&b, plan->kinds[i], v, plan->lo[i], plan->hi[i]);
        if (written < 0) goto done;
        if (written == 0) { result = Py_NewRef(Py_None); goto done; }
    }
    result = PyBytes_FromStringAndSize(b.data, b.len);
done:
    PyMem_Free(b.data);
    return result;
}

/* An Avro long at *pos: 0 and the value, or -1 when it runs past end or is longer than 9 bytes. */
static int get_long(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, long long *value) {
    uint64_t n = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (*pos >= end) return -1;
        unsigned char byte = p[(*pos)++];
        n |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = (long long)(n >> 1) ^ -(long long)(n & 1);
            return 0;
        }
    }
    return -1;
}

static PyObject *read_envelope(PyObject *self, PyObject *args) {
    Py_buffer view, prefix;
    if (!PyArg_ParseTuple(args, "y*y*", &view, &prefix)) return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t end = view.len, pos = prefix.len;
    PyObject *out = NULL;
    if (end < prefix.len || memcmp(p, prefix.buf, (size_t)prefix.len) != 0) goto other;
    out = PyTuple_New(10);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < 10; i++) {
        long long n;
        if (get_long(p, end, &pos, &n) < 0) goto other;
        PyObject *item;
        if (i == 1) {
            item = PyLong_FromLongLong(n);
        } else {
            if (n < 0 || n > end - pos) goto other;
            const char *start = (const char *)p + pos;
            pos += (Py_ssize_t)n;
            if (i == 9) {
                item = PyBytes_FromStringAndSize(start, (Py_ssize_t)n);
            } else {
                item = PyUnicode_DecodeUTF8(start, (Py_ssize_t)n, NULL);
                if (item == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear();
                    goto other;
                }
            }
        }
        if (item == NULL) { Py_CLEAR(out); goto done; }
        PyTuple_SET_ITEM(out, i, item);
    }
    goto done;
other:
    Py_XDECREF(out);
    out = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&prefix);
    return out;
}

static PyMethodDef methods[] = {
    {"make_plan", make_plan, METH_VARARGS, "make_plan(header, ((field, kind, lo, hi), ...)) -> plan"},
    {"write_row", write_row, METH_VARARGS, "write_row(plan, row) -> bytes, or None for the Python path"},
    {"read_envelope", read_envelope, METH_VARARGS,
     "read_envelope(payload, prefix) -> the raw envelope's 10 fields, or None for the Python path"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avro_rows", "Flat-row Avro writer and raw envelope reader (C)", -1, methods};

PyMODINIT_FUNC PyInit__avro_rows(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}
