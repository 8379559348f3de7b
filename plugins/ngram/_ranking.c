/* Log-probability, rank and entropy of every token of a backoff n-gram model, compiled.

   What plugins/ngram/model.py's _ending_at and _score_ids and stats.py's backoff_token_stats
   compute with numpy, with the same floating-point operations in the same order where they
   decide a result (log-probabilities and ranks are equal; entropies agree to 1e-13, as
   numpy's vectorised power rounds otherwise than exp). Level by level, the positions sorted
   by their context, each context's continuations are worked out once: their lower-order
   values read from the suffix context's entry (made a level below), their values sorted and
   their sums taken; the n-gram ending at a position is then found among its context's
   continuations, and its counts by searching their sorted values. Entries are kept from call
   to call in a pool; once it holds more than its share, the contexts with few continuations
   are forgotten (the frequent ones recur in every batch).

   A Tables object holds buffers of the model's arrays (numpy arrays or memory maps; read only)
   and its cache. The interpreter is let go while it works; a lock keeps one thread in a
   Tables at a time (stats.py lends each thread its own). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { VALUES_F32, VALUES_F64, VALUES_U8, VALUES_U16, VALUES_U32, VALUES_ZERO };

typedef struct {
    int kind;
    const void *data;   /* the values, or their codes */
    const double *table;  /* the table codes point into */
    Py_ssize_t table_len;
} Values;

typedef struct {
    const uint64_t *plain;  /* full keys, or NULL for packed ones: */
    const uint32_t *low;    /* the low 32 bits of each key */
    const int64_t *blocks;  /* blocks[h]: the first index whose key >> 32 is h; the last is n */
    Py_ssize_t nblocks;     /* len(blocks) - 1 */
    Py_ssize_t n;
} Keys;

typedef struct {
    int64_t start;  /* where its values begin in the pools */
    int64_t size;
    Py_ssize_t lo, hi;  /* its run of keys (its continuations) */
    int64_t context;
    int level;  /* (the context's length) */
    double sums[4];  /* sum of 10^p, 10^p p, 10^low, 10^low low */
} Entry;

#define MAX_ORDER 16
#define TIE 1e-9  /* log10 units: values closer than this count as tied (engine/distribution.py) */
#define AHEAD 32  /* positions ahead whose memory is asked for */
#ifdef __GNUC__
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)0)
#endif
#define LN10 2.302585092994046  /* Python's math.log(10), as the model scales by */
#define KEPT_FROM 8  /* continuations a context needs to be kept from one call to the next, once the pool is full */

typedef struct {
    PyObject_HEAD
    int order;
    int64_t V;
    Py_buffer *buffers;  /* every buffer held, released with the object */
    int nbuffers;
    Keys keys[MAX_ORDER];
    Values logp[MAX_ORDER];
    Values backoff[MAX_ORDER];
    const double *unigrams;  /* the unigram values (without <s>) ascending */
    Py_ssize_t nunigrams;
    double U0, U1;
    /* the cache */
    int32_t *slot[MAX_ORDER];  /* slot[j][c]: 1 + the entry of context c of length j, 0 if none */
    Py_ssize_t contexts[MAX_ORDER];
    Entry *entries;
    Py_ssize_t nentries, entries_cap;
    float *pool_p;  /* each entry's continuations' p, ascending */
    double *pool_low;  /* and their lower-order values, ascending */
    int32_t *pool_words;  /* and the continuations themselves, ascending */
    float *pool_by_word;  /* with their p in that order (where a longer context's continuations look them up) */
    int floats;  /* whether every log-probability of the model is a float32 (pool_by_word holds them exactly) */
    int64_t pool_used, pool_size;
    int64_t pool_kept;  /* at most this many values are kept from one call to the next */
    PyThread_type_lock lock;
} Tables;

static inline uint64_t key_at(const Keys *k, Py_ssize_t i, Py_ssize_t *block)
{
    if (k->plain)
        return k->plain[i];
    while (k->blocks[*block + 1] <= i)
        (*block)++;
    return ((uint64_t)*block << 32) | k->low[i];
}

/* The first index in [lo, hi) of ascending a[] at least x (hi if none): a binary search, or
   with ``near`` one that steps outward from lo first (the answer is usually close to where
   the last one was). */
#define SEARCH(name, type)                                                                \
    static inline Py_ssize_t name(const type *a, Py_ssize_t lo, Py_ssize_t hi, type x, int near) \
    {                                                                                     \
        Py_ssize_t step = near ? 1 : hi - lo;                                             \
        while (lo + step < hi && a[lo + step - 1] < x) {                                  \
            lo += step;                                                                   \
            step <<= 1;                                                                   \
        }                                                                                 \
        if (lo + step < hi) hi = lo + step;                                               \
        while (lo < hi) {                                                                 \
            Py_ssize_t mid = lo + (hi - lo) / 2;                                          \
            if (a[mid] < x) lo = mid + 1; else hi = mid;                                  \
        }                                                                                 \
        return lo;                                                                        \
    }
SEARCH(search_u64, uint64_t)
SEARCH(search_u32, uint32_t)
SEARCH(search_i32, int32_t)

/* The first index in [from, to) whose key is at least ``key`` (to if none), the keys in that
   range ascending (``near``: see SEARCH). */
static Py_ssize_t lower_bound(const Keys *k, uint64_t key, Py_ssize_t from, Py_ssize_t to, int near)
{
    if (k->plain)
        return search_u64(k->plain, from, to, key, near);
    uint64_t high = key >> 32;  /* (searched within the block of its high bits) */
    if ((Py_ssize_t)high >= k->nblocks || k->blocks[high] >= to)
        return to;
    if (k->blocks[high + 1] <= from)
        return from;
    Py_ssize_t lo = from > k->blocks[high] ? from : k->blocks[high];
    Py_ssize_t hi = to < k->blocks[high + 1] ? to : k->blocks[high + 1];
    return search_u32(k->low, lo, hi, (uint32_t)key, near);
}

/* Whether the key at ``pos`` (where lower_bound put it, below n) is ``key``. */
static inline int key_is_at(const Keys *k, Py_ssize_t pos, uint64_t key)
{
    if (k->plain)
        return k->plain[pos] == key;
    uint64_t high = key >> 32;
    return (Py_ssize_t)high < k->nblocks && pos >= k->blocks[high] && pos < k->blocks[high + 1] && k->low[pos] == (uint32_t)key;
}

static inline double value_at(const Values *v, Py_ssize_t i)
{
    switch (v->kind) {
    case VALUES_F32: return ((const float *)v->data)[i];
    case VALUES_F64: return ((const double *)v->data)[i];
    case VALUES_U8: return v->table[((const uint8_t *)v->data)[i]];
    case VALUES_U16: return v->table[((const uint16_t *)v->data)[i]];
    case VALUES_U32: return v->table[((const uint32_t *)v->data)[i]];
    default: return 0.0;
    }
}

static inline void prefetch_value(const Values *v, Py_ssize_t i)
{
    static const int sizes[] = {4, 8, 1, 2, 4, 0};
    if (v->kind != VALUES_ZERO)
        PREFETCH((const char *)v->data + (size_t)i * sizes[v->kind]);
}

/* How many of the n ascending values exceed x: a binary search without branches (the
   processor mispredicted half of a branching one's steps). */
#define COUNT_GREATER(name, type)                                          \
    static inline int64_t name(const type *values, int64_t n, double x)    \
    {                                                                      \
        if (n == 0) return 0;                                              \
        const type *base = values;                                         \
        for (int64_t len = n; len > 1;) {                                  \
            int64_t half = len / 2;                                        \
            base = (double)base[half - 1] <= x ? base + half : base;       \
            len -= half;                                                   \
        }                                                                  \
        return n - (base - values) - ((double)*base <= x);                 \
    }
COUNT_GREATER(count_greater_f, float)
COUNT_GREATER(count_greater_d, double)

/* Sorts n values ascending: quicksort (median of three, the smaller side first so the stack
   stays short), insertion sort below 24 values; inlined, where qsort called a comparison
   function for every pair (a tenth of the ranking's time). Values are finite. */
#define SORT(name, type)                                                                 \
    static void name(type *v, int64_t n)                                                 \
    {                                                                                    \
        int64_t stack[128], depth = 0, lo = 0, hi = n - 1;                                \
        for (;;) {                                                                       \
            while (hi - lo >= 24) {                                                      \
                int64_t mid = lo + (hi - lo) / 2;                                        \
                type a = v[lo], b = v[mid], c = v[hi], t;                                \
                type pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b)); \
                int64_t i = lo, j = hi;                                                  \
                while (i <= j) {                                                         \
                    while (v[i] < pivot) i++;                                            \
                    while (v[j] > pivot) j--;                                            \
                    if (i <= j) { t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }           \
                }                                                                        \
                if (j - lo < hi - i) { stack[depth++] = i; stack[depth++] = hi; hi = j; } \
                else { stack[depth++] = lo; stack[depth++] = j; lo = i; }                \
            }                                                                            \
            for (int64_t i = lo + 1; i <= hi; i++) {                                     \
                type x = v[i];                                                           \
                int64_t j = i;                                                           \
                for (; j > lo && v[j - 1] > x; j--) v[j] = v[j - 1];                     \
                v[j] = x;                                                                \
            }                                                                            \
            if (depth == 0) return;                                                      \
            hi = stack[--depth];                                                         \
            lo = stack[--depth];                                                         \
        }                                                                                \
    }
SORT(sort_f, float)
SORT(sort_d, double)

/* Forget the contexts with fewer than ``min_size`` continuations, and any past half of what
   is kept from call to call: the frequent contexts, which have the most continuations and
   recur in every batch, stay. Their values move down the pools. */
static void forget(Tables *t, int64_t min_size)
{
    Py_ssize_t kept = 0;
    int64_t used = 0;
    for (Py_ssize_t k = 0; k < t->nentries; k++) {
        Entry e = t->entries[k];
        int32_t *slot = &t->slot[e.level][e.context];
        if (e.size < min_size || used + e.size > t->pool_kept) {
            *slot = 0;
            continue;
        }
        memmove(t->pool_p + used, t->pool_p + e.start, (size_t)e.size * sizeof(float));
        memmove(t->pool_low + used, t->pool_low + e.start, (size_t)e.size * sizeof(double));
        memmove(t->pool_words + used, t->pool_words + e.start, (size_t)e.size * sizeof(int32_t));
        memmove(t->pool_by_word + used, t->pool_by_word + e.start, (size_t)e.size * sizeof(float));
        e.start = used;
        used += e.size;
        t->entries[kept++] = e;
        *slot = (int32_t)kept;
    }
    t->nentries = kept;
    t->pool_used = used;
}

/* The run of keys of context c of length i (its continuations): its entry's, where it has one. */
static void run_of(const Tables *t, int i, int64_t c, Py_ssize_t *lo, Py_ssize_t *hi)
{
    int32_t s = t->slot[i] ? t->slot[i][c] : 0;
    if (s) {
        *lo = t->entries[s - 1].lo;
        *hi = t->entries[s - 1].hi;
        return;
    }
    uint64_t base = (uint64_t)c * (uint64_t)t->V;
    *lo = lower_bound(&t->keys[i], base, 0, t->keys[i].n, 0);
    *hi = lower_bound(&t->keys[i], base + (uint64_t)t->V, *lo, t->keys[i].n, 1);
}

/* D(w) given the contexts lower[from..1] (-1 where unknown): the deepest explicit n-gram's
   value plus ``shift`` and the backoffs of the contexts above it, or the unigram's plus all of
   them; each level's run of keys found when first needed, then searched from at[i] (words
   come in ascending order). */
static double deeper_value(const Tables *t, const int64_t *lower, int64_t w, int from, double shift, Py_ssize_t *at, Py_ssize_t *end)
{
    for (int i = from; i >= 1; i--) {
        if (lower[i] < 0) continue;
        if (at[i] < 0)
            run_of(t, i, lower[i], &at[i], &end[i]);
        uint64_t key = (uint64_t)lower[i] * (uint64_t)t->V + (uint64_t)w;
        Py_ssize_t pos = at[i] = lower_bound(&t->keys[i], key, at[i], end[i], 1);
        if (pos < end[i] && key_is_at(&t->keys[i], pos, key))
            return value_at(&t->logp[i], pos) + shift;
        shift += value_at(&t->backoff[i - 1], lower[i]);
    }
    return value_at(&t->logp[0], w) + shift;
}

/* The entry of context c of length j (its shorter contexts lower[1..j-1], -1 where unknown;
   the entry of lower[j - 1], -1 where there is none; the level's slots allocated), worked out
   if not kept (its run of keys searched from *from, then moved past it: contexts come in
   ascending order); NULL when memory runs out. */
static Entry *entry_of(Tables *t, int j, int64_t c, const int64_t *lower, Py_ssize_t *from, int32_t suffix_entry)
{
    int32_t s = t->slot[j][c];
    if (s) return &t->entries[s - 1];

    const Keys *keys = &t->keys[j];
    uint64_t base = (uint64_t)c * (uint64_t)t->V;
    Py_ssize_t lo = lower_bound(keys, base, *from, keys->n, 1);
    Py_ssize_t hi = lower_bound(keys, base + (uint64_t)t->V, lo, keys->n, 1);
    *from = hi;
    int64_t n = hi - lo;
    if (t->nentries >= INT32_MAX - 1)
        forget(t, INT64_MAX);
    if (t->pool_used + n > t->pool_size) {  /* (grown within a call: forgetting there undid the work of the levels below) */
        int64_t size = 2 * t->pool_size > t->pool_used + n ? 2 * t->pool_size : t->pool_used + n;
        float *p = realloc(t->pool_p, (size_t)size * sizeof(float));
        if (p) t->pool_p = p;
        double *low = realloc(t->pool_low, (size_t)size * sizeof(double));
        if (low) t->pool_low = low;
        int32_t *words = realloc(t->pool_words, (size_t)size * sizeof(int32_t));
        if (words) t->pool_words = words;
        float *by_word = realloc(t->pool_by_word, (size_t)size * sizeof(float));
        if (by_word) t->pool_by_word = by_word;
        if (!p || !low || !words || !by_word) return NULL;
        t->pool_size = size;
    }
    if (t->nentries == t->entries_cap) {
        Py_ssize_t cap = t->entries_cap ? 2 * t->entries_cap : 4096;
        Entry *grown = realloc(t->entries, (size_t)cap * sizeof(Entry));
        if (!grown) return NULL;
        t->entries = grown;
        t->entries_cap = cap;
    }
    float *p = t->pool_p + t->pool_used, *by_word = t->pool_by_word + t->pool_used;
    double *low = t->pool_low + t->pool_used;
    int32_t *words = t->pool_words + t->pool_used;

    /* D_{j-1} of each continuation: its value in the suffix context (the context a word
       shorter), whose entry the level below made, its words in order beside their values;
       failing that, deeper, through the model's keys. */
    const int32_t *suffix_words = NULL;
    const float *suffix_values = NULL;
    Py_ssize_t suffix_size = 0, at_suffix = 0;
    double past_suffix = 0.0;  /* (a word missing there: the suffix's backoff, then deeper) */
    if (t->floats && suffix_entry >= 0) {
        const Entry *suffix = &t->entries[suffix_entry];
        suffix_words = t->pool_words + suffix->start;
        suffix_values = t->pool_by_word + suffix->start;
        suffix_size = suffix->size;
        past_suffix = 0.0 + value_at(&t->backoff[j - 2], lower[j - 1]);
    }
    Py_ssize_t at[MAX_ORDER], end[MAX_ORDER];
    for (int i = 1; i < j; i++)
        at[i] = end[i] = -1;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    Py_ssize_t block = (Py_ssize_t)(base >> 32);  /* (the run's first key is in this block or after it) */
    for (Py_ssize_t idx = lo; idx < hi; idx++) {
        int64_t w = (int64_t)(key_at(keys, idx, &block) - base);
        double pv = (double)(float)value_at(&t->logp[j], idx), lv;
        if (suffix_words) {
            at_suffix = search_i32(suffix_words, at_suffix, suffix_size, (int32_t)w, 1);
            if (at_suffix < suffix_size && suffix_words[at_suffix] == w)
                lv = (double)suffix_values[at_suffix] + 0.0;
            else
                lv = deeper_value(t, lower, w, j - 2, past_suffix, at, end);
        } else {
            lv = deeper_value(t, lower, w, j - 1, 0.0, at, end);
        }
        double tp = exp(pv * LN10), tl = exp(lv * LN10);
        s0 += tp;
        s1 += tp * pv;
        s2 += tl;
        s3 += tl * lv;
        p[idx - lo] = by_word[idx - lo] = (float)pv;
        words[idx - lo] = (int32_t)w;
        low[idx - lo] = lv;
    }
    sort_f(p, n);
    sort_d(low, n);
    Entry *e = &t->entries[t->nentries++];
    e->start = t->pool_used;
    e->size = n;
    e->lo = lo;
    e->hi = hi;
    e->context = c;
    e->level = j;
    e->sums[0] = s0; e->sums[1] = s1; e->sums[2] = s2; e->sums[3] = s3;
    t->pool_used += n;
    t->slot[j][c] = (int32_t)t->nentries;
    return e;
}

static void Tables_dealloc(Tables *t)
{
    for (int i = 0; i < t->nbuffers; i++)
        PyBuffer_Release(&t->buffers[i]);
    PyMem_Free(t->buffers);
    for (int j = 0; j < MAX_ORDER; j++)
        free(t->slot[j]);
    free(t->entries);
    free(t->pool_p);
    free(t->pool_low);
    free(t->pool_words);
    free(t->pool_by_word);
    if (t->lock) PyThread_free_lock(t->lock);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* A contiguous buffer of ``object`` whose items are ``itemsize`` bytes (format checked by the
   caller, in Python), kept with the tables. */
static const void *hold(Tables *t, PyObject *object, Py_ssize_t itemsize, Py_ssize_t *count)
{
    Py_buffer *view = &t->buffers[t->nbuffers];
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    t->nbuffers++;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "expected items of %zd bytes, got %zd", itemsize, view->itemsize);
        return NULL;
    }
    *count = view->len / itemsize;
    return view->buf;
}

static int read_values(Tables *t, PyObject *spec, Values *v)
{
    /* spec: (kind, data, table or None) */
    int kind;
    PyObject *data, *table;
    if (!PyArg_ParseTuple(spec, "iOO", &kind, &data, &table))
        return -1;
    static const Py_ssize_t sizes[] = {4, 8, 1, 2, 4, 0};
    if (kind < 0 || kind > VALUES_ZERO) {
        PyErr_SetString(PyExc_ValueError, "unknown kind of values");
        return -1;
    }
    v->kind = kind;
    Py_ssize_t n;
    if (kind != VALUES_ZERO && !(v->data = hold(t, data, sizes[kind], &n)))
        return -1;
    if (kind >= VALUES_U8 && kind <= VALUES_U32) {
        if (!(v->table = hold(t, table, 8, &v->table_len)))
            return -1;
    }
    return 0;
}

static PyObject *Tables_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* Tables(V, keys, logp, backoff, unigrams, U0, U1, contexts, pool):
       keys[k] (k >= 1): (plain uint64 or None, low uint32 or None, blocks int64 or None);
       logp[k], backoff[k]: (kind, data, table); contexts[j]: how many contexts of length j. */
    long long V, pool;
    PyObject *keys, *logp, *backoff, *unigrams, *contexts;
    double U0, U1;
    if (!PyArg_ParseTuple(args, "LO!O!O!OddO!L", &V, &PyList_Type, &keys, &PyList_Type, &logp, &PyList_Type, &backoff,
                          &unigrams, &U0, &U1, &PyList_Type, &contexts, &pool))
        return NULL;
    Py_ssize_t order = PyList_GET_SIZE(logp);
    if (order < 2 || order > MAX_ORDER || PyList_GET_SIZE(keys) != order || PyList_GET_SIZE(backoff) != order
        || PyList_GET_SIZE(contexts) != order || V < 1 || V > INT32_MAX || pool < V) {
        PyErr_SetString(PyExc_ValueError, "inconsistent tables");
        return NULL;
    }
    Tables *t = (Tables *)type->tp_alloc(type, 0);
    if (!t) return NULL;
    t->order = (int)order;
    t->V = V;
    t->buffers = PyMem_Calloc((size_t)(8 * order + 2), sizeof(Py_buffer));
    if (!t->buffers) { Py_DECREF(t); return PyErr_NoMemory(); }
    for (Py_ssize_t k = 0; k < order; k++) {
        if (read_values(t, PyList_GET_ITEM(logp, k), &t->logp[k]) < 0 || read_values(t, PyList_GET_ITEM(backoff, k), &t->backoff[k]) < 0) {
            Py_DECREF(t);
            return NULL;
        }
        t->contexts[k] = PyLong_AsSsize_t(PyList_GET_ITEM(contexts, k));
        if (t->contexts[k] < 0 || t->contexts[k] > INT32_MAX) {  /* (a context's key holds it in 31 bits beside a position) */
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "too many contexts for the compiled tables");
            Py_DECREF(t);
            return NULL;
        }
        if (k == 0) continue;
        PyObject *plain, *low, *blocks;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(keys, k), "OOO", &plain, &low, &blocks)) { Py_DECREF(t); return NULL; }
        Keys *kk = &t->keys[k];
        if (plain != Py_None) {
            if (!(kk->plain = hold(t, plain, 8, &kk->n))) { Py_DECREF(t); return NULL; }
        } else {
            Py_ssize_t nb;
            if (!(kk->low = hold(t, low, 4, &kk->n)) || !(kk->blocks = hold(t, blocks, 8, &nb))) { Py_DECREF(t); return NULL; }
            kk->nblocks = nb - 1;
        }
    }
    if (!(t->unigrams = hold(t, unigrams, 8, &t->nunigrams))) { Py_DECREF(t); return NULL; }
    t->U0 = U0;
    t->U1 = U1;
    t->pool_kept = t->pool_size = pool;
    t->pool_p = malloc((size_t)pool * sizeof(float));
    t->pool_low = malloc((size_t)pool * sizeof(double));
    t->pool_words = malloc((size_t)pool * sizeof(int32_t));
    t->pool_by_word = malloc((size_t)pool * sizeof(float));
    t->lock = PyThread_allocate_lock();
    if (!t->pool_p || !t->pool_low || !t->pool_words || !t->pool_by_word || !t->lock) { Py_DECREF(t); return PyErr_NoMemory(); }
    t->floats = 1;
    for (Py_ssize_t k = 0; k < order; k++) {
        const Values *v = &t->logp[k];
        if (v->kind == VALUES_F64) t->floats = 0;
        if (v->kind >= VALUES_U8 && v->kind <= VALUES_U32)
            for (Py_ssize_t i = 0; i < v->table_len; i++)
                if ((double)(float)v->table[i] != v->table[i]) t->floats = 0;
    }
    return (PyObject *)t;
}

/* Sorts m keys ascending (stable), least significant 11 bits first, over their lowest ``bits``
   bits (the others are zero); ``spare`` holds m keys. */
static void radix_sort(uint64_t *keys, uint64_t *spare, Py_ssize_t m, int bits)
{
    Py_ssize_t counts[2048];
    uint64_t *from = keys, *to = spare;
    for (int shift = 0; shift < bits; shift += 11) {
        memset(counts, 0, sizeof counts);
        for (Py_ssize_t i = 0; i < m; i++)
            counts[(from[i] >> shift) & 2047]++;
        Py_ssize_t total = 0;
        for (int d = 0; d < 2048; d++) {
            Py_ssize_t c = counts[d];
            counts[d] = total;
            total += c;
        }
        for (Py_ssize_t i = 0; i < m; i++)
            to[counts[(from[i] >> shift) & 2047]++] = from[i];
        uint64_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != keys)
        memcpy(keys, from, (size_t)m * sizeof(uint64_t));
}

static int bit_length(uint64_t v)
{
    int bits = 0;
    while (v) { bits++; v >>= 1; }
    return bits;
}

static PyObject *Tables_stats(Tables *t, PyObject *args)
{
    /* stats(bos, ids, logprob, rank, entropy): ids (int64, a stream opening with <s>, whose id
       is bos); writes each position's natural-log probability, rank (int64) and entropy in
       bits, NaN / 0 / NaN at <s>. As the model's _ending_at, _score_ids and
       backoff_token_stats compute them, in three passes:
       1. level by level, the n-gram ending at each position, from its context's entry (the
          positions sorted by their context, each context's continuations worked out once:
          the n-gram is the context's run of keys at the word's place among them);
       2. each position's log-probability, from the longest n-gram and the backoffs above it;
       3. level by level again, each position's counts in its context's sorted values (the
          entries stay kept from pass 1; each context's positions together keep its values in
          the processor's cache). */
    long long bos;
    Py_buffer ib, lb, rb, eb;
    if (!PyArg_ParseTuple(args, "Ly*w*w*w*", &bos, &ib, &lb, &rb, &eb))
        return NULL;
    Py_ssize_t n = ib.len / 8;
    int N = t->order;
    PyObject *result = NULL;
    int64_t *ending = NULL;
    uint64_t *sorted = NULL, *spare = NULL;
    int32_t *entry_at = NULL;  /* entry_at[k * n + p]: the entry of position p's context of length k */
    double *work = NULL;
    Py_ssize_t *sizes = NULL;
    if (lb.len != n * 8 || rb.len != n * 8 || eb.len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "arrays of different lengths");
        goto done;
    }
    const int64_t *ids = ib.buf;
    double *logprobs = lb.buf, *entropies = eb.buf;
    int64_t *ranks = rb.buf;
    for (Py_ssize_t p = 0; p < n; p++)
        if (ids[p] < 0 || ids[p] >= t->V) {
            PyErr_SetString(PyExc_ValueError, "a word id outside the vocabulary");
            goto done;
        }
    if (n == 0 || ids[0] != bos || (uint64_t)n >= ((uint64_t)1 << 32)) {
        PyErr_SetString(PyExc_ValueError, "the stream must open with <s> (and hold under 2^32 tokens)");
        goto done;
    }
    size_t cells = (size_t)n;
    ending = PyMem_RawMalloc((size_t)N * cells * sizeof(int64_t));  /* ending[k * n + p] */
    sorted = PyMem_RawMalloc((size_t)N * cells * sizeof(uint64_t));  /* level k's (context, position) keys */
    spare = PyMem_RawMalloc(cells * sizeof(uint64_t));
    work = PyMem_RawMalloc((size_t)(2 * N + 2) * cells * sizeof(double));
    sizes = PyMem_RawCalloc((size_t)N, sizeof(Py_ssize_t));
    entry_at = PyMem_RawMalloc((size_t)N * cells * sizeof(int32_t));
    if (!ending || !sorted || !spare || !work || !sizes || !entry_at) { PyErr_NoMemory(); goto done; }
    double *x = work, *bo = work + (size_t)N * n, *E0 = bo + (size_t)N * n, *E1 = E0 + n;
    int failed = 0, pbits = bit_length((uint64_t)n);
    uint64_t pmask = ((uint64_t)1 << pbits) - 1;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(t->lock, WAIT_LOCK);
    if (t->pool_used > t->pool_kept)
        forget(t, KEPT_FROM);

    /* 1. The n-grams ending at each position. */
    memcpy(ending, ids, cells * sizeof(int64_t));
    for (int k = 1; k < N && !failed; k++) {
        const int64_t *shorter = ending + (size_t)(k - 1) * n;
        int64_t *here = ending + (size_t)k * n;
        uint64_t *keys = sorted + (size_t)k * n;
        Py_ssize_t m = 0;
        int64_t most = 0;
        here[0] = -1;
        for (Py_ssize_t p = 1; p < n; p++) {
            here[p] = -1;
            int64_t c = shorter[p - 1];
            if (c >= 0) {
                keys[m++] = (uint64_t)c << pbits | (uint64_t)p;
                if (c > most) most = c;
            }
        }
        radix_sort(keys, spare, m, pbits + bit_length((uint64_t)most));
        sizes[k] = m;
        Py_ssize_t from = 0;
        int64_t last = -1;
        int32_t index = -1, *entry_here = entry_at + (size_t)k * n;
        const int32_t *entry_below = entry_at + (size_t)(k - 1) * n;
        const int32_t *words = NULL;
        Py_ssize_t size = 0, lo = 0;
        if (!t->slot[k] && !(t->slot[k] = calloc((size_t)t->contexts[k], sizeof(int32_t)))) { failed = 1; break; }
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t p = (Py_ssize_t)(keys[q] & pmask);
            int64_t c = (int64_t)(keys[q] >> pbits);
            if (q + AHEAD < m) {
                PREFETCH(&t->slot[k][keys[q + AHEAD] >> pbits]);
                PREFETCH(&ids[keys[q + AHEAD] & pmask]);
                PREFETCH(&entry_below[keys[q + AHEAD] & pmask]);
            }
            if (c != last) {
                int64_t lower[MAX_ORDER];
                for (int l = 1; l < k; l++)
                    lower[l] = ending[(size_t)(l - 1) * n + p - 1];
                Entry *e = entry_of(t, k, c, lower, &from, k >= 2 && lower[k - 1] >= 0 ? entry_below[p] : -1);
                if (!e) { failed = 1; break; }
                index = (int32_t)(e - t->entries);
                words = t->pool_words + e->start;
                size = e->size;
                lo = e->lo;
                last = c;
            }
            entry_here[p] = index;  /* (the entry of this position's context of length k) */
            Py_ssize_t at = search_i32(words, 0, size, (int32_t)ids[p], 0);
            if (at < size && words[at] == ids[p])
                here[p] = lo + at;
        }
    }

    /* 2. Log-probabilities: the longest n-gram's, plus the backoffs of the longer contexts. */
    for (Py_ssize_t p = 0; p < n && !failed; p++) {
        if (p + AHEAD < n) {  /* (the value and backoffs the position further on will read) */
            Py_ssize_t ahead = p + AHEAD;
            int best = 0;
            for (int k = 1; k < N; k++)
                if (ending[(size_t)k * n + ahead] >= 0) best = k;
            prefetch_value(&t->logp[best], ending[(size_t)best * n + ahead]);
            for (int k = best + 1; k < N; k++)
                if (ending[(size_t)(k - 1) * n + ahead - 1] >= 0)
                    prefetch_value(&t->backoff[k - 1], ending[(size_t)(k - 1) * n + ahead - 1]);
        }
        if (ids[p] == bos) {
            logprobs[p] = NAN;
            continue;
        }
        int best = 0;
        for (int k = 1; k < N; k++)
            if (ending[(size_t)k * n + p] >= 0) best = k;
        double value = value_at(&t->logp[best], ending[(size_t)best * n + p]);
        for (int k = best + 1; k < N; k++) {
            int64_t c = ending[(size_t)(k - 1) * n + p - 1];
            if (c >= 0) value += value_at(&t->backoff[k - 1], c);
        }
        logprobs[p] = value * LN10;
    }

    /* 3. Ranks and entropies. */
    for (Py_ssize_t p = 0; p < n && !failed; p++) {
        x[(size_t)(N - 1) * n + p] = logprobs[p] / LN10 + TIE;
        for (int j = N - 1; j > 0; j--) {
            int64_t c = p > 0 ? ending[(size_t)(j - 1) * n + p - 1] : -1;
            double b = c >= 0 ? value_at(&t->backoff[j - 1], c) : 0.0;
            bo[(size_t)j * n + p] = b;
            x[(size_t)(j - 1) * n + p] = x[(size_t)j * n + p] - b;
        }
        ranks[p] = 1 + count_greater_d(t->unigrams, t->nunigrams, x[p]);
        E0[p] = t->U0;
        E1[p] = t->U1;
    }
    for (int j = 1; j < N && !failed; j++) {
        const uint64_t *keys = sorted + (size_t)j * n;
        const int32_t *entries_here = entry_at + (size_t)j * n;
        Py_ssize_t m = sizes[j];
        const double *xj = x + (size_t)j * n, *xl = x + (size_t)(j - 1) * n, *bj = bo + (size_t)j * n;
        int64_t last = -1;
        const float *p_values = NULL;
        const double *low = NULL, *sums = NULL;
        int64_t size = 0;
        double b = 0.0, tb = 1.0;
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t p = (Py_ssize_t)(keys[q] & pmask);
            int64_t c = (int64_t)(keys[q] >> pbits);
            if (q + AHEAD < m) {  /* (what positions further on will read, asked for now) */
                Py_ssize_t ahead = (Py_ssize_t)(keys[q + AHEAD] & pmask);
                PREFETCH(&ids[ahead]);
                PREFETCH(&xj[ahead]);
                PREFETCH(&xl[ahead]);
                PREFETCH(&E0[ahead]);
                PREFETCH(&E1[ahead]);
                PREFETCH(&ranks[ahead]);
                PREFETCH(&entries_here[ahead]);
                if (q + AHEAD / 2 < m)
                    PREFETCH(&t->entries[entries_here[keys[q + AHEAD / 2] & pmask]]);
            }
            if (ids[p] == bos) continue;
            if (c != last) {
                const Entry *e = &t->entries[entries_here[p]];  /* (made in pass 1) */
                p_values = t->pool_p + e->start;
                low = t->pool_low + e->start;
                size = e->size;
                sums = e->sums;
                b = bj[p];
                tb = exp(b * LN10);
                last = c;
            }
            ranks[p] += count_greater_f(p_values, size, xj[p]) - count_greater_d(low, size, xl[p]);
            double e0 = E0[p], e1 = E1[p];
            E0[p] = sums[0] + tb * (e0 - sums[2]);
            E1[p] = sums[1] + tb * (e1 + b * e0 - sums[3] - b * sums[2]);
        }
    }
    const double LOG2_10 = 3.321928094887362;
    for (Py_ssize_t p = 0; p < n; p++) {
        if (ids[p] == bos) {
            ranks[p] = 0;
            entropies[p] = NAN;
        } else {
            entropies[p] = -LOG2_10 * E1[p];
        }
    }
    PyThread_release_lock(t->lock);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(ending);
    PyMem_RawFree(sorted);
    PyMem_RawFree(spare);
    PyMem_RawFree(work);
    PyMem_RawFree(sizes);
    PyMem_RawFree(entry_at);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&eb);
    return result;
}

static PyMethodDef Tables_methods[] = {
    {"stats", (PyCFunction)Tables_stats, METH_VARARGS, "Write each position's log-probability, rank and entropy in bits."},
    {NULL},
};

static PyTypeObject TablesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugins.ngram._ranking.Tables",
    .tp_basicsize = sizeof(Tables),
    .tp_dealloc = (destructor)Tables_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A backoff model's arrays and the contexts ranked so far.",
    .tp_methods = Tables_methods,
    .tp_new = Tables_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ranking", "Rank and entropy of a backoff n-gram model's tokens, compiled.", -1, NULL,
};

PyMODINIT_FUNC PyInit__ranking(void)
{
    if (PyType_Ready(&TablesType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&TablesType);
    if (PyModule_AddObject(m, "Tables", (PyObject *)&TablesType) < 0) {
        Py_DECREF(&TablesType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
