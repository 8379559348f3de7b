/* `foretell score`'s tab-separated text, compiled: pretokenized lines read into columns (what
   engine/tokenizer.py's pretokenized_columns and the vocabulary's lookup give), and the table's
   rows written (what engine/table.py lays out with numpy, a row at a time).

   Rows: Each row is exactly f"{token}\t{start}\t{end}\t{bits:.3f}\t{rank}\t{entropy:.3f}\t{oov}\n"
   (offsets below zero blank): a number with three decimals from its thousandths as an integer
   where that cannot round otherwise than Python does, else from snprintf, which rounds the
   exact binary value as Python's formatting does. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ROW_ROOM 800  /* the most a row's numbers take: two offsets, a rank, two numbers of up to 310 digits */

static char *put_integer(char *out, int64_t v)
{
    char digits[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) *out++ = '-';
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) *out++ = digits[--n];
    return out;
}

static char *put_three_decimals(char *out, double x)
{
    double scaled = fabs(x) * 1000.0;
    if (scaled < 1e15 && fabs(scaled - floor(scaled) - 0.5) >= 1e-6) {  /* (not huge, not near a tie) */
        int64_t units = (int64_t)nearbyint(scaled);
        if (signbit(x)) *out++ = '-';
        out = put_integer(out, units / 1000);
        int thousandths = (int)(units % 1000);
        out[0] = '.';
        out[1] = (char)('0' + thousandths / 100);
        out[2] = (char)('0' + thousandths / 10 % 10);
        out[3] = (char)('0' + thousandths % 10);
        return out + 4;
    }
    if (isnan(x)) { memcpy(out, "nan", 3); return out + 3; }
    if (isinf(x)) {
        if (x < 0) *out++ = '-';
        memcpy(out, "inf", 3);
        return out + 3;
    }
    return out + snprintf(out, 330, "%.3f", x);
}

static int contiguous(PyObject *object, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t n, const char *name)
{
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len != n * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes", name, n, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *rows(PyObject *self, PyObject *args)
{
    /* rows(n, tokens, starts, ends, bits, rank, entropy, oov): n rows; tokens the encoded
       tokens joined by b"\n" (none holds one); starts, ends and rank int64, bits and entropy
       float64, oov one byte each (numpy's bool). */
    Py_ssize_t n;
    Py_buffer text;
    PyObject *objects[6];
    if (!PyArg_ParseTuple(args, "ny*OOOOOO", &n, &text, &objects[0], &objects[1], &objects[2], &objects[3], &objects[4], &objects[5]))
        return NULL;
    const char *tokens = text.buf, *tokens_end = (const char *)text.buf + text.len;
    Py_ssize_t lines = 0;
    for (const char *c = tokens; (c = memchr(c, '\n', (size_t)(tokens_end - c))) != NULL; c++)
        lines++;
    if (n < 0 || (n == 0 ? text.len != 0 : lines != n - 1)) {
        PyErr_SetString(PyExc_ValueError, "the tokens are not n lines");
        PyBuffer_Release(&text);
        return NULL;
    }
    static const Py_ssize_t sizes[] = {8, 8, 8, 8, 8, 1};
    static const char *names[] = {"starts", "ends", "bits", "rank", "entropy", "oov"};
    Py_buffer views[6];
    int held = 0;
    PyObject *result = NULL;
    char *buffer = NULL;
    for (; held < 6; held++)
        if (contiguous(objects[held], &views[held], sizes[held], n, names[held]) < 0)
            goto done;
    const int64_t *starts = views[0].buf, *ends = views[1].buf, *rank = views[3].buf;
    const double *bits = views[2].buf, *entropy = views[4].buf;
    const uint8_t *oov = views[5].buf;
    size_t size = (size_t)text.len + (size_t)n * 64 + ROW_ROOM, used = 0;
    buffer = PyMem_RawMalloc(size);
    if (!buffer) { PyErr_NoMemory(); goto done; }
    const char *token = tokens;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *token_end = memchr(token, '\n', (size_t)(tokens_end - token));
        if (!token_end) token_end = tokens_end;
        size_t length = (size_t)(token_end - token);
        if (used + length + ROW_ROOM > size) {
            size_t grown = 2 * size + length + ROW_ROOM;
            char *bigger = PyMem_RawRealloc(buffer, grown);
            if (!bigger) { PyErr_NoMemory(); goto done; }
            buffer = bigger;
            size = grown;
        }
        char *out = buffer + used;
        memcpy(out, token, length);
        out += length;
        *out++ = '\t';
        if (starts[i] >= 0) out = put_integer(out, starts[i]);
        *out++ = '\t';
        if (ends[i] >= 0) out = put_integer(out, ends[i]);
        *out++ = '\t';
        out = put_three_decimals(out, bits[i]);
        *out++ = '\t';
        out = put_integer(out, rank[i]);
        *out++ = '\t';
        out = put_three_decimals(out, entropy[i]);
        *out++ = '\t';
        *out++ = oov[i] ? '1' : '0';
        *out++ = '\n';
        used = (size_t)(out - buffer);
        token = token_end + 1;
    }
    result = PyBytes_FromStringAndSize(buffer, (Py_ssize_t)used);
done:
    PyMem_RawFree(buffer);
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    PyBuffer_Release(&text);
    return result;
}

static PyObject *columns(PyObject *self, PyObject *args)
{
    /* columns(block, offset, line_ids, unknown, end_token): the words of whole pretokenized
       lines (runs of characters between spaces, tabs and line ends; the block holds no \r),
       each line's end a token of its own: (tokens, with end_token for each line's end; their
       character offsets from ``offset`` as int64 bytes, -1 for a line's end; their ids from
       ``line_ids`` as int64 bytes, ``unknown`` where absent, line_ids["\n"] for a line's end).
       A block not ending in a line end gets one, as pretokenized_columns reads it. */
    PyObject *block, *line_ids, *end_token;
    Py_ssize_t offset;
    long long unknown;
    if (!PyArg_ParseTuple(args, "UnO!LU", &block, &offset, &PyDict_Type, &line_ids, &unknown, &end_token))
        return NULL;
    Py_ssize_t length = PyUnicode_GET_LENGTH(block);
    int kind = PyUnicode_KIND(block);
    const void *data = PyUnicode_DATA(block);
    PyObject *newline = PyUnicode_FromOrdinal('\n'), *tokens = PyList_New(0), *result = NULL;
    int64_t *starts = NULL, *ends = NULL, *ids = NULL;
    Py_ssize_t count = 0, room = 0;
    long long line_end_id = 0;
    if (!newline || !tokens) goto done;
    PyObject *found = PyDict_GetItemWithError(line_ids, newline);
    if (!found) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "line_ids has no id for a line's end");
        goto done;
    }
    line_end_id = PyLong_AsLongLong(found);
    if (line_end_id == -1 && PyErr_Occurred()) goto done;
    Py_ssize_t i = 0;
    while (i <= length) {
        Py_UCS4 ch = i < length ? PyUnicode_READ(kind, data, i) : '\n';
        if (i == length && length > 0 && PyUnicode_READ(kind, data, length - 1) == '\n')
            break;  /* (the block ended with its line end) */
        if (count == room) {
            room = room ? 2 * room : 4096;
            int64_t *s = PyMem_Realloc(starts, (size_t)room * sizeof(int64_t)), *e = NULL, *d = NULL;
            if (s) starts = s;
            if (s) e = PyMem_Realloc(ends, (size_t)room * sizeof(int64_t));
            if (e) ends = e;
            if (e) d = PyMem_Realloc(ids, (size_t)room * sizeof(int64_t));
            if (d) ids = d;
            if (!s || !e || !d) { PyErr_NoMemory(); goto done; }
        }
        if (ch == '\n') {
            if (PyList_Append(tokens, end_token) < 0) goto done;
            starts[count] = ends[count] = -1;
            ids[count++] = line_end_id;
            i++;
            continue;
        }
        if (ch == ' ' || ch == '\t') {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        while (i < length) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c == ' ' || c == '\t' || c == '\n') break;
            i++;
        }
        PyObject *word = PyUnicode_Substring(block, start, i);
        if (!word) goto done;
        PyObject *id = PyDict_GetItemWithError(line_ids, word);
        long long value = unknown;
        if (id) value = PyLong_AsLongLong(id);
        int failed = (!id && PyErr_Occurred()) || (value == -1 && PyErr_Occurred()) || PyList_Append(tokens, word) < 0;
        Py_DECREF(word);
        if (failed) goto done;
        starts[count] = offset + start;
        ends[count] = offset + i;
        ids[count++] = value;
    }
    result = Py_BuildValue("(Oy#y#y#)", tokens, (const char *)starts, (Py_ssize_t)(count * 8), (const char *)ends,
                           (Py_ssize_t)(count * 8), (const char *)ids, (Py_ssize_t)(count * 8));
done:
    Py_XDECREF(newline);
    Py_XDECREF(tokens);
    PyMem_Free(starts);
    PyMem_Free(ends);
    PyMem_Free(ids);
    return result;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, "score's table rows for one batch, as bytes."},
    {"columns", columns, METH_VARARGS, "The words of whole pretokenized lines, their offsets and ids."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tsv", "foretell score's tab-separated text read and written, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__tsv(void)
{
    return PyModule_Create(&module);
}
