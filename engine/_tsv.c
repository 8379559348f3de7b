/* `foretell score`'s tab-separated text, compiled: pretokenized lines read into columns (what
   engine/tokenizer.py's pretokenized_columns and the vocabulary's lookup give, the tokens kept
   as one UTF-8 text: engine/token_lines.py), words looked up in a hash table over their UTF-8
   bytes (``Words``), and the table's rows written (what engine/table.py lays out with numpy, a
   row at a time).

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

/* The vocabulary as a hash table over its words' UTF-8 bytes (open addressing, at most half
   full): pretokenized text is looked up without a string object a word, where making, hashing
   and freeing a million of them was a quarter of `score`'s reading. */
typedef struct {
    PyObject_HEAD
    Py_buffer data;  /* the bytes the words are in */
    int64_t *starts, *ends;  /* word i: data[starts[i], ends[i]) */
    uint64_t *slots;  /* the hash's top 32 bits above 1 + the word's id; 0 where empty */
    uint64_t mask;
} Words;

static inline uint64_t hash_bytes(const unsigned char *s, Py_ssize_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;  /* FNV-1a, then mixed (its low bits alone are weak) */
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

/* The id of the word of n bytes at s (whose hash_bytes is h), -1 if none; *slot: where it is
   or would go. */
static int64_t words_find(const Words *w, const unsigned char *s, Py_ssize_t n, uint64_t h, uint64_t *slot)
{
    uint64_t tag = h >> 32;
    const unsigned char *data = w->data.buf;
    for (uint64_t i = h & w->mask;; i = (i + 1) & w->mask) {
        uint64_t e = w->slots[i];
        *slot = i;
        if (!e) return -1;
        if (e >> 32 == tag) {
            int64_t id = (int64_t)(e & 0xffffffffULL) - 1;
            if (w->ends[id] - w->starts[id] == n && memcmp(data + w->starts[id], s, (size_t)n) == 0)
                return id;
        }
    }
}

static void Words_dealloc(Words *w)
{
    if (w->data.obj) PyBuffer_Release(&w->data);
    PyMem_Free(w->starts);
    PyMem_Free(w->ends);
    PyMem_Free(w->slots);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *Words_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* Words(data, starts, ends): word i is data[starts[i]:ends[i]] (int64 arrays); a ValueError
       names the first word that repeats one before it. */
    PyObject *starts_object, *ends_object;
    Words *w = (Words *)type->tp_alloc(type, 0);
    if (!w) return NULL;
    Py_buffer starts, ends;
    if (!PyArg_ParseTuple(args, "y*OO", &w->data, &starts_object, &ends_object)) {
        Py_DECREF(w);
        return NULL;
    }
    if (PyObject_GetBuffer(starts_object, &starts, PyBUF_C_CONTIGUOUS) < 0) { Py_DECREF(w); return NULL; }
    if (PyObject_GetBuffer(ends_object, &ends, PyBUF_C_CONTIGUOUS) < 0) { PyBuffer_Release(&starts); Py_DECREF(w); return NULL; }
    Py_ssize_t count = starts.len / 8;
    PyObject *result = NULL;
    if (starts.len != ends.len || starts.len % 8 || count >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "starts and ends: int64 arrays of one length");
        goto done;
    }
    uint64_t size = 16;
    while (size < 2 * (uint64_t)count) size <<= 1;
    w->starts = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(int64_t));
    w->ends = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(int64_t));
    w->slots = PyMem_Calloc((size_t)size, sizeof(uint64_t));
    if (!w->starts || !w->ends || !w->slots) { PyErr_NoMemory(); goto done; }
    memcpy(w->starts, starts.buf, (size_t)starts.len);
    memcpy(w->ends, ends.buf, (size_t)ends.len);
    w->mask = size - 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t start = w->starts[i], end = w->ends[i];
        if (start < 0 || end < start || end > w->data.len) {
            PyErr_Format(PyExc_ValueError, "word %zd lies outside the data", i);
            goto done;
        }
        uint64_t slot;
        const unsigned char *s = (const unsigned char *)w->data.buf + start;
        uint64_t h = hash_bytes(s, (Py_ssize_t)(end - start));
        if (words_find(w, s, (Py_ssize_t)(end - start), h, &slot) >= 0) {
            PyErr_Format(PyExc_ValueError, "word %zd repeats one before it", i);
            goto done;
        }
        w->slots[slot] = (h >> 32) << 32 | (uint64_t)(i + 1);
    }
    result = (PyObject *)w;
done:
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    if (!result) Py_DECREF(w);
    return result;
}

static PyObject *Words_get(Words *w, PyObject *args)
{
    /* get(word: bytes) -> its id, or None */
    Py_buffer word;
    if (!PyArg_ParseTuple(args, "y*", &word)) return NULL;
    uint64_t slot;
    int64_t id = words_find(w, word.buf, word.len, hash_bytes(word.buf, word.len), &slot);
    PyBuffer_Release(&word);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(id);
}

static PyMethodDef Words_methods[] = {
    {"get", (PyCFunction)Words_get, METH_VARARGS, "A word's id (its UTF-8 bytes given), or None."},
    {NULL},
};

static PyTypeObject WordsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine._tsv.Words",
    .tp_basicsize = sizeof(Words),
    .tp_dealloc = (destructor)Words_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A vocabulary's words, looked up by their UTF-8 bytes.",
    .tp_methods = Words_methods,
    .tp_new = Words_new,
};

/* A buffer that grows. */
typedef struct {
    char *data;
    size_t used, size;
} Bytes;

static int bytes_put(Bytes *b, const void *s, size_t n)
{
    if (b->used + n > b->size) {
        size_t size = 2 * b->size > b->used + n ? 2 * b->size : b->used + n + 4096;
        char *grown = PyMem_Realloc(b->data, size);
        if (!grown) { PyErr_NoMemory(); return -1; }
        b->data = grown;
        b->size = size;
    }
    memcpy(b->data + b->used, s, n);
    b->used += n;
    return 0;
}

/* A row of columns' output: the token's bytes (after a b"\n" unless it is the first), where
   they end, its character offsets and its id. */
typedef struct {
    Bytes text;
    int64_t *numbers[4];  /* row ends, starts, ends, ids */
    Py_ssize_t count, room;
} Rows;

static int rows_put(Rows *r, const void *token, size_t length, int64_t start, int64_t end, int64_t id)
{
    if (r->count == r->room) {
        Py_ssize_t room = r->room ? 2 * r->room : 4096;
        for (int c = 0; c < 4; c++) {
            int64_t *grown = PyMem_Realloc(r->numbers[c], (size_t)room * sizeof(int64_t));
            if (!grown) { PyErr_NoMemory(); return -1; }
            r->numbers[c] = grown;
        }
        r->room = room;
    }
    if ((r->count && bytes_put(&r->text, "\n", 1) < 0) || bytes_put(&r->text, token, length) < 0)
        return -1;
    r->numbers[0][r->count] = (int64_t)r->text.used;
    r->numbers[1][r->count] = start;
    r->numbers[2][r->count] = end;
    r->numbers[3][r->count++] = id;
    return 0;
}

static PyObject *columns(PyObject *self, PyObject *args)
{
    /* columns(block, offset, words, unknown, line_end, end_token): the words of whole
       pretokenized lines (runs of characters between spaces, tabs and line ends; the block
       holds no \r), each line's end a token of its own, as (their UTF-8 bytes joined by b"\n",
       with end_token for each line's end; where each ends in those bytes; their character
       offsets from ``offset``, -1 for a line's end; their ids in ``words``, ``unknown`` where
       absent, ``line_end`` for a line's end), the last four as int64 bytes. A block not ending
       in a line end gets one, as pretokenized_columns reads it. None where the block has no
       UTF-8 form (a lone surrogate). */
    PyObject *block;
    Words *words;
    Py_ssize_t offset, end_length;
    long long unknown, line_end;
    const char *end_token;
    if (!PyArg_ParseTuple(args, "UnO!LLy#", &block, &offset, &WordsType, &words, &unknown, &line_end, &end_token, &end_length))
        return NULL;
    Py_ssize_t size;
    const unsigned char *s = (const unsigned char *)PyUnicode_AsUTF8AndSize(block, &size);
    if (!s) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int ascii = PyUnicode_IS_ASCII(block);
    Rows rows = {{NULL, 0, 0}, {NULL, NULL, NULL, NULL}, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t i = 0, chars = 0;  /* where the reading is, in bytes and in characters */
    int at_line_start = 1;
    for (;;) {
        int line_end_here = i < size ? s[i] == '\n' : !at_line_start || size == 0;
        if (i >= size && !line_end_here) break;
        if (line_end_here) {
            if (rows_put(&rows, end_token, (size_t)end_length, -1, -1, line_end) < 0) goto done;
            at_line_start = 1;
            if (i >= size) break;
            i++;
            chars++;
            continue;
        }
        at_line_start = 0;
        if (s[i] == ' ' || s[i] == '\t') {
            i++;
            chars++;
            continue;
        }
        Py_ssize_t start = i, start_chars = chars;
        while (i < size && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') {
            if (ascii || (s[i] & 0xC0) != 0x80) chars++;  /* (a character's first byte) */
            i++;
        }
        uint64_t slot;
        int64_t id = words_find(words, s + start, i - start, hash_bytes(s + start, i - start), &slot);
        if (rows_put(&rows, s + start, (size_t)(i - start), offset + start_chars, offset + chars, id < 0 ? unknown : id) < 0)
            goto done;
    }
    Py_ssize_t bytes = rows.count * 8;
    result = Py_BuildValue("(y#y#y#y#y#)", rows.text.data ? rows.text.data : "", (Py_ssize_t)rows.text.used,
                           rows.numbers[0] ? (char *)rows.numbers[0] : "", bytes, rows.numbers[1] ? (char *)rows.numbers[1] : "", bytes,
                           rows.numbers[2] ? (char *)rows.numbers[2] : "", bytes, rows.numbers[3] ? (char *)rows.numbers[3] : "", bytes);
done:
    PyMem_Free(rows.text.data);
    for (int c = 0; c < 4; c++)
        PyMem_Free(rows.numbers[c]);
    return result;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, "score's table rows for one batch, as bytes."},
    {"columns", columns, METH_VARARGS, "The words of whole pretokenized lines as UTF-8 text, with their offsets and ids."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tsv", "foretell score's tab-separated text read and written, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__tsv(void)
{
    if (PyType_Ready(&WordsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WordsType);
    if (PyModule_AddObject(m, "Words", (PyObject *)&WordsType) < 0) {
        Py_DECREF(&WordsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
