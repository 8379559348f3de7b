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
   and its cache. The interpreter is let go while it works; a lock keeps one call in a Tables
   at a time (stats.py lends each thread its own), and a call may run on two threads that
   share the cache (call_run). */

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
    int64_t start;  /* where its values begin in its pool */
    int64_t size;
    Py_ssize_t lo, hi;  /* its run of keys (its continuations) */
    int64_t context;
    int level;  /* (the context's length) */
    double sums[4];  /* sum of 10^p, 10^p p, 10^low, 10^low low */
} Entry;

/* Contexts worked out: each entry's values at [start, start + size) of the arrays. */
typedef struct {
    Entry *entries;
    Py_ssize_t nentries, entries_cap;
    float *p;  /* each entry's continuations' p, ascending */
    double *low;  /* and their lower-order values, ascending */
    int32_t *words;  /* and the continuations themselves, ascending */
    float *by_word;  /* with their p in that order (where a longer context's continuations look them up) */
    int64_t used, size;
} Pool;

#define MAX_ORDER 16
#define THREADS 2  /* at most: the caller and one helper */
#define CHUNK 2048  /* positions of a level a thread takes at a time in pass 1 (then on to whole contexts) */
#define SPLIT 4096  /* positions a thread takes at a time in passes 2 and 3 */
#define TIE 1e-9  /* log10 units: values closer than this count as tied (engine/distribution.py) */
#define AHEAD 32  /* positions ahead whose memory is asked for */
#ifdef __GNUC__
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)0)
#endif
#define LN10 2.302585092994046  /* Python's math.log(10), as the model scales by */
#define KEPT_FROM 8  /* continuations a context needs to be kept from one call to the next, once the pool is full */

/* A call's arrays, kept from call to call (grown, never shrunk): memory handed back and taken
   again at every call cost a process's threads their TLBs, flushed on every core. */
typedef struct {
    Py_ssize_t cells;  /* positions they have room for */
    int64_t *ending;  /* ending[k * n + p]: the n-gram of length k + 1 ending at p, -1 if none */
    uint64_t *sorted;  /* level k's (context, position) keys */
    uint64_t *spare;
    int32_t *entry_at;  /* entry_at[k * n + p]: the entry of position p's context of length k */
    double *work;
} Scratch;

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
    int32_t *slot[MAX_ORDER];  /* slot[j][c]: 1 + the entry of context c of length j in kept, 0 if none */
    Py_ssize_t contexts[MAX_ORDER];
    Pool kept;  /* the contexts kept */
    Pool staged[THREADS];  /* each thread's contexts worked out at the level in hand, moved to kept when it is done */
    int floats;  /* whether every log-probability of the model is a float32 (by_word holds them exactly) */
    int64_t pool_kept;  /* at most this many values are kept from one call to the next */
    Scratch scratch;
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

static void scratch_free(Scratch *s)
{
    free(s->ending);
    free(s->sorted);
    free(s->spare);
    free(s->entry_at);
    free(s->work);
    memset(s, 0, sizeof *s);
}

/* Room for a call of n positions with a model of order N; -1 when memory runs out. */
static int scratch_reserve(Scratch *s, Py_ssize_t n, int N)
{
    if (s->cells >= n)
        return 0;
    scratch_free(s);
    size_t cells = (size_t)n;
    s->ending = malloc((size_t)N * cells * sizeof(int64_t));
    s->sorted = malloc((size_t)N * cells * sizeof(uint64_t));
    s->spare = malloc(cells * sizeof(uint64_t));
    s->entry_at = malloc((size_t)N * cells * sizeof(int32_t));
    s->work = malloc((size_t)(2 * N + 2) * cells * sizeof(double));
    if (!s->ending || !s->sorted || !s->spare || !s->entry_at || !s->work) {
        scratch_free(s);
        return -1;
    }
    s->cells = n;
    return 0;
}

/* Room in ``pool`` for ``values`` more values and ``entries`` more entries; -1 when memory
   runs out. */
static int pool_reserve(Pool *pool, int64_t values, Py_ssize_t entries)
{
    if (pool->used + values > pool->size) {
        int64_t size = 2 * pool->size > pool->used + values ? 2 * pool->size : pool->used + values;
        if (size < 4096) size = 4096;
        float *p = realloc(pool->p, (size_t)size * sizeof(float));
        if (p) pool->p = p;
        double *low = realloc(pool->low, (size_t)size * sizeof(double));
        if (low) pool->low = low;
        int32_t *words = realloc(pool->words, (size_t)size * sizeof(int32_t));
        if (words) pool->words = words;
        float *by_word = realloc(pool->by_word, (size_t)size * sizeof(float));
        if (by_word) pool->by_word = by_word;
        if (!p || !low || !words || !by_word) return -1;
        pool->size = size;
    }
    if (pool->nentries + entries > pool->entries_cap) {
        Py_ssize_t cap = 2 * pool->entries_cap > pool->nentries + entries ? 2 * pool->entries_cap : pool->nentries + entries;
        if (cap < 4096) cap = 4096;
        Entry *grown = realloc(pool->entries, (size_t)cap * sizeof(Entry));
        if (!grown) return -1;
        pool->entries = grown;
        pool->entries_cap = cap;
    }
    return 0;
}

static void pool_free(Pool *pool)
{
    free(pool->entries);
    free(pool->p);
    free(pool->low);
    free(pool->words);
    free(pool->by_word);
}

/* Forget the contexts with fewer than ``min_size`` continuations, and any past half of what
   is kept from call to call: the frequent contexts, which have the most continuations and
   recur in every batch, stay. Their values move down the pool. */
static void forget(Tables *t, int64_t min_size)
{
    Pool *pool = &t->kept;
    Py_ssize_t kept = 0;
    int64_t used = 0;
    for (Py_ssize_t k = 0; k < pool->nentries; k++) {
        Entry e = pool->entries[k];
        int32_t *slot = &t->slot[e.level][e.context];
        if (e.size < min_size || used + e.size > t->pool_kept) {
            *slot = 0;
            continue;
        }
        if (e.start != used) {  /* (the frequent contexts, kept early on, stay where they are) */
            memmove(pool->p + used, pool->p + e.start, (size_t)e.size * sizeof(float));
            memmove(pool->low + used, pool->low + e.start, (size_t)e.size * sizeof(double));
            memmove(pool->words + used, pool->words + e.start, (size_t)e.size * sizeof(int32_t));
            memmove(pool->by_word + used, pool->by_word + e.start, (size_t)e.size * sizeof(float));
            e.start = used;
        }
        used += e.size;
        pool->entries[kept++] = e;
        *slot = (int32_t)kept;
    }
    pool->nentries = kept;
    pool->used = used;
}

/* The contexts each thread worked out at a level moved to the kept pool, thread by thread
   (first[s]: where thread s's went among the kept entries); -1 when memory runs out. */
static int keep_staged(Tables *t, int threads, int32_t *first)
{
    Pool *to = &t->kept;
    for (int s = 0; s < threads; s++) {
        Pool *from = &t->staged[s];
        if (pool_reserve(to, from->used, from->nentries) < 0) return -1;
        first[s] = (int32_t)to->nentries;
        memcpy(to->p + to->used, from->p, (size_t)from->used * sizeof(float));
        memcpy(to->low + to->used, from->low, (size_t)from->used * sizeof(double));
        memcpy(to->words + to->used, from->words, (size_t)from->used * sizeof(int32_t));
        memcpy(to->by_word + to->used, from->by_word, (size_t)from->used * sizeof(float));
        for (Py_ssize_t i = 0; i < from->nentries; i++) {
            Entry e = from->entries[i];
            e.start += to->used;
            to->entries[to->nentries++] = e;
            t->slot[e.level][e.context] = (int32_t)to->nentries;
        }
        to->used += from->used;
        from->used = 0;
        from->nentries = 0;
    }
    return 0;
}

/* The run of keys of context c of length i (its continuations): its kept entry's, where it has one. */
static void run_of(const Tables *t, int i, int64_t c, Py_ssize_t *lo, Py_ssize_t *hi)
{
    int32_t s = t->slot[i] ? t->slot[i][c] : 0;
    if (s) {
        *lo = t->kept.entries[s - 1].lo;
        *hi = t->kept.entries[s - 1].hi;
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

/* Context c of length j worked out into ``pool`` (its shorter contexts lower[1..j-1], -1 where
   unknown; ``suffix`` the kept entry of lower[j - 1], NULL where there is none): its run of
   keys searched from *from, then moved past it (a thread's contexts come in ascending order).
   Reads only what the levels below kept, so threads work out contexts side by side; NULL when
   memory runs out. */
static Entry *work_out(const Tables *t, Pool *pool, int j, int64_t c, const int64_t *lower, Py_ssize_t *from, const Entry *suffix)
{
    const Keys *keys = &t->keys[j];
    uint64_t base = (uint64_t)c * (uint64_t)t->V;
    Py_ssize_t lo = lower_bound(keys, base, *from, keys->n, 1);
    Py_ssize_t hi = lower_bound(keys, base + (uint64_t)t->V, lo, keys->n, 1);
    *from = hi;
    int64_t n = hi - lo;
    if (pool_reserve(pool, n, 1) < 0)
        return NULL;
    float *p = pool->p + pool->used, *by_word = pool->by_word + pool->used;
    double *low = pool->low + pool->used;
    int32_t *words = pool->words + pool->used;

    /* D_{j-1} of each continuation: its value in the suffix context (the context a word
       shorter), whose entry the level below kept, its words in order beside their values;
       failing that, deeper, through the model's keys. */
    const int32_t *suffix_words = NULL;
    const float *suffix_values = NULL;
    Py_ssize_t suffix_size = 0, at_suffix = 0;
    double past_suffix = 0.0;  /* (a word missing there: the suffix's backoff, then deeper) */
    if (t->floats && suffix) {
        suffix_words = t->kept.words + suffix->start;
        suffix_values = t->kept.by_word + suffix->start;
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
    Entry *e = &pool->entries[pool->nentries++];
    e->start = pool->used;
    e->size = n;
    e->lo = lo;
    e->hi = hi;
    e->context = c;
    e->level = j;
    e->sums[0] = s0; e->sums[1] = s1; e->sums[2] = s2; e->sums[3] = s3;
    pool->used += n;
    return e;
}

static void Tables_dealloc(Tables *t)
{
    for (int i = 0; i < t->nbuffers; i++)
        PyBuffer_Release(&t->buffers[i]);
    PyMem_Free(t->buffers);
    for (int j = 0; j < MAX_ORDER; j++)
        free(t->slot[j]);
    pool_free(&t->kept);
    for (int s = 0; s < THREADS; s++)
        pool_free(&t->staged[s]);
    scratch_free(&t->scratch);
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
    t->pool_kept = pool;
    t->lock = PyThread_allocate_lock();
    if (pool_reserve(&t->kept, pool, 0) < 0 || !t->lock) { Py_DECREF(t); return PyErr_NoMemory(); }
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

/* Two threads share a call where the platform has POSIX threads: pass 1 takes a level's
   positions a chunk of whole contexts at a time, each thread working its new contexts out into
   a pool of its own (the levels below, kept, are only read), moved to the kept pool when the
   level is done; passes 2 and 3 split the positions. One cache of contexts serves both, where
   two processes (or two Tables) each worked the frequent ones out again. */
#if defined(__GNUC__) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#define HAVE_THREADS 1
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define TAKE_NEXT(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
#else
#define HAVE_THREADS 0
#define LOAD(x) (x)
#define STORE(x, v) ((x) = (v))
#define TAKE_NEXT(x) ((x)++)
#endif

typedef struct {
#if HAVE_THREADS
    pthread_mutex_t lock;
    pthread_cond_t turn;
#endif
    int parties, waiting;
    unsigned generation;
} Barrier;

/* Wait until every thread of the call is here (and sees what the others wrote before). */
static void barrier_wait(Barrier *b)
{
#if HAVE_THREADS
    if (b->parties < 2) return;
    pthread_mutex_lock(&b->lock);
    unsigned generation = b->generation;
    if (++b->waiting == b->parties) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->turn);
    } else {
        while (generation == b->generation)
            pthread_cond_wait(&b->turn, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
#else
    (void)b;
#endif
}

typedef struct {
    Tables *t;
    const int64_t *ids;
    Py_ssize_t n;
    int N, threads, pbits;
    int64_t bos;
    uint64_t pmask;
    double *logprobs, *entropies, *x, *bo, *E0, *E1;
    int64_t *ranks, *ending;
    uint64_t *sorted, *spare;
    int32_t *entry_at;  /* a kept entry's index, or -1 - (i * THREADS + s): thread s's i-th of that level */
    Py_ssize_t sizes[MAX_ORDER];  /* level k's positions with a context */
    int32_t first[MAX_ORDER][THREADS];  /* where each thread's contexts of level k went among the kept */
    Py_ssize_t chunk;  /* positions a thread takes at a time in pass 1 (CHUNK; a few in tests) */
    long taken[MAX_ORDER + 1 + MAX_ORDER];  /* chunks taken: pass 2's at 0, pass 1's of level k at k, pass 3's at MAX_ORDER + k */
    int failed;  /* memory ran out */
    Barrier barrier;
} Call;

/* The entry of position p's context of length k (once its level is kept). */
static inline const Entry *entry_of(const Call *call, int k, Py_ssize_t p)
{
    int32_t i = call->entry_at[(size_t)k * call->n + p];
    if (i < 0) {
        int32_t s = -1 - i;
        i = call->first[k][s % THREADS] + s / THREADS;
    }
    return &call->t->kept.entries[i];
}

/* Level k's positions with a context, sorted by it (one thread; the others wait). */
static void level_sorted(Call *call, int k)
{
    Tables *t = call->t;
    Py_ssize_t n = call->n, m = 0;
    const int64_t *shorter = call->ending + (size_t)(k - 1) * n;
    int64_t *here = call->ending + (size_t)k * n, most = 0;
    uint64_t *keys = call->sorted + (size_t)k * n;
    here[0] = -1;
    for (Py_ssize_t p = 1; p < n; p++) {
        here[p] = -1;
        int64_t c = shorter[p - 1];
        if (c >= 0) {
            keys[m++] = (uint64_t)c << call->pbits | (uint64_t)p;
            if (c > most) most = c;
        }
    }
    radix_sort(keys, call->spare, m, call->pbits + bit_length((uint64_t)most));
    call->sizes[k] = m;
    if (!t->slot[k] && !(t->slot[k] = calloc((size_t)t->contexts[k], sizeof(int32_t))))
        STORE(call->failed, 1);
}

/* The next chunk [*from, *to) of ``total`` things (``chunk`` a chunk) from the count of
   those taken; 0 when none are left. Threads take chunks until none are left, so one the
   system keeps waiting holds up the other little. */
static int take_chunk(long *taken, Py_ssize_t total, Py_ssize_t chunk, Py_ssize_t *from, Py_ssize_t *to)
{
    long i = TAKE_NEXT(*taken);
    if ((size_t)i * (size_t)chunk >= (size_t)total) return 0;
    *from = (Py_ssize_t)i * chunk;
    *to = total - *from > chunk ? *from + chunk : total;
    return 1;
}

/* The first of level k's sorted positions from q on that opens a context. */
static Py_ssize_t context_start(const Call *call, int k, Py_ssize_t q)
{
    const uint64_t *keys = call->sorted + (size_t)k * call->n;
    Py_ssize_t m = call->sizes[k];
    if (q >= m) return m;
    while (q > 0 && q < m && keys[q] >> call->pbits == keys[q - 1] >> call->pbits)
        q++;
    return q;
}

/* Pass 1 at level k, a chunk at a time: each position's context's entry (kept, or worked out
   into this thread's pool) and the n-gram ending there (the context's run of keys at the
   word's place among its continuations). */
static void level_entries(Call *call, int k, int thread)
{
    Tables *t = call->t;
    Pool *staged = &t->staged[thread];
    Py_ssize_t n = call->n, m = call->sizes[k];
    const uint64_t *keys = call->sorted + (size_t)k * n;
    const int64_t *ids = call->ids;
    int64_t *here = call->ending + (size_t)k * n;
    int32_t *entry_here = call->entry_at + (size_t)k * n;
    const int32_t *entry_below = call->entry_at + (size_t)(k - 1) * n;
    const int32_t *slot = t->slot[k];
    Py_ssize_t q, to;
    while (!LOAD(call->failed) && take_chunk(&call->taken[k], m, call->chunk, &q, &to)) {
        q = context_start(call, k, q);  /* (a context's positions stay together) */
        to = context_start(call, k, to);
        Py_ssize_t from = 0, size = 0, lo = 0;
        int64_t last = -1;
        int32_t index = -1;
        const int32_t *words = NULL;
        for (; q < to; q++) {
            Py_ssize_t p = (Py_ssize_t)(keys[q] & call->pmask);
            int64_t c = (int64_t)(keys[q] >> call->pbits);
            if (q + AHEAD < to) {
                PREFETCH(&slot[keys[q + AHEAD] >> call->pbits]);
                PREFETCH(&ids[keys[q + AHEAD] & call->pmask]);
                PREFETCH(&entry_below[keys[q + AHEAD] & call->pmask]);
            }
            if (c != last) {
                const Entry *e;
                if (slot[c]) {
                    index = slot[c] - 1;
                    e = &t->kept.entries[index];
                    words = t->kept.words + e->start;
                } else {
                    int64_t lower[MAX_ORDER];
                    for (int l = 1; l < k; l++)
                        lower[l] = call->ending[(size_t)(l - 1) * n + p - 1];
                    const Entry *suffix = k >= 2 && lower[k - 1] >= 0 ? entry_of(call, k - 1, p) : NULL;
                    Entry *made = work_out(t, staged, k, c, lower, &from, suffix);
                    if (!made) {
                        STORE(call->failed, 1);
                        return;
                    }
                    index = (int32_t)(-1 - ((made - staged->entries) * THREADS + thread));
                    e = made;
                    words = staged->words + made->start;
                }
                size = e->size;
                lo = e->lo;
                last = c;
            }
            entry_here[p] = index;
            Py_ssize_t at = search_i32(words, 0, size, (int32_t)ids[p], 0);
            if (at < size && words[at] == ids[p])
                here[p] = lo + at;
        }
    }
}

/* Pass 2 for positions [from, to): each log-probability, from the longest n-gram and the
   backoffs above it; and pass 3's start: the thresholds each level counts against, and the
   unigram distribution's counts and sums. */
static void positions_scored(Call *call, Py_ssize_t from, Py_ssize_t to)
{
    const Tables *t = call->t;
    Py_ssize_t n = call->n;
    int N = call->N;
    const int64_t *ids = call->ids, *ending = call->ending;
    for (Py_ssize_t p = from; p < to; p++) {
        if (p + AHEAD < to) {  /* (the value and backoffs the position further on will read) */
            Py_ssize_t ahead = p + AHEAD;
            int best = 0;
            for (int k = 1; k < N; k++)
                if (ending[(size_t)k * n + ahead] >= 0) best = k;
            prefetch_value(&t->logp[best], ending[(size_t)best * n + ahead]);
            for (int k = best + 1; k < N; k++)
                if (ending[(size_t)(k - 1) * n + ahead - 1] >= 0)
                    prefetch_value(&t->backoff[k - 1], ending[(size_t)(k - 1) * n + ahead - 1]);
        }
        if (ids[p] == call->bos) {
            call->logprobs[p] = NAN;
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
        call->logprobs[p] = value * LN10;
    }
    double *x = call->x, *bo = call->bo;
    for (Py_ssize_t p = from; p < to; p++) {
        x[(size_t)(N - 1) * n + p] = call->logprobs[p] / LN10 + TIE;
        for (int j = N - 1; j > 0; j--) {
            int64_t c = p > 0 ? ending[(size_t)(j - 1) * n + p - 1] : -1;
            double b = c >= 0 ? value_at(&t->backoff[j - 1], c) : 0.0;
            bo[(size_t)j * n + p] = b;
            x[(size_t)(j - 1) * n + p] = x[(size_t)j * n + p] - b;
        }
        call->ranks[p] = 1 + count_greater_d(t->unigrams, t->nunigrams, x[p]);
        call->E0[p] = t->U0;
        call->E1[p] = t->U1;
    }
}

/* Pass 3 at level j for its sorted positions [from, to): each position's counts in its
   context's sorted values, and its entropy sums (a context's positions together keep its
   values in the processor's cache). */
static void level_counts(Call *call, int j, Py_ssize_t from, Py_ssize_t to)
{
    Py_ssize_t n = call->n;
    const Pool *kept = &call->t->kept;
    const uint64_t *keys = call->sorted + (size_t)j * n;
    const int64_t *ids = call->ids;
    const double *xj = call->x + (size_t)j * n, *xl = call->x + (size_t)(j - 1) * n, *bj = call->bo + (size_t)j * n;
    double *E0 = call->E0, *E1 = call->E1;
    int64_t *ranks = call->ranks, last = -1, size = 0;
    const int32_t *entries_here = call->entry_at + (size_t)j * n;
    const float *p_values = NULL;
    const double *low = NULL, *sums = NULL;
    double b = 0.0, tb = 1.0;
    for (Py_ssize_t q = from; q < to; q++) {
        Py_ssize_t p = (Py_ssize_t)(keys[q] & call->pmask);
        int64_t c = (int64_t)(keys[q] >> call->pbits);
        if (q + AHEAD < to) {  /* (what positions further on will read, asked for now) */
            Py_ssize_t ahead = (Py_ssize_t)(keys[q + AHEAD] & call->pmask);
            PREFETCH(&ids[ahead]);
            PREFETCH(&xj[ahead]);
            PREFETCH(&xl[ahead]);
            PREFETCH(&E0[ahead]);
            PREFETCH(&E1[ahead]);
            PREFETCH(&ranks[ahead]);
            PREFETCH(&entries_here[ahead]);
            if (q + AHEAD / 2 < to)
                PREFETCH(entry_of(call, j, (Py_ssize_t)(keys[q + AHEAD / 2] & call->pmask)));
        }
        if (ids[p] == call->bos) continue;
        if (c != last) {
            const Entry *e = entry_of(call, j, p);  /* (made in pass 1) */
            p_values = kept->p + e->start;
            low = kept->low + e->start;
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

/* A thread's part of the call (thread 0 also does what one thread does alone). */
static void call_part(Call *call, int thread)
{
    for (int k = 1; k < call->N; k++) {
        if (thread == 0 && !LOAD(call->failed))
            level_sorted(call, k);
        barrier_wait(&call->barrier);
        if (!LOAD(call->failed))
            level_entries(call, k, thread);
        barrier_wait(&call->barrier);
        if (thread == 0 && !LOAD(call->failed) && keep_staged(call->t, call->threads, call->first[k]) < 0)
            STORE(call->failed, 1);
        barrier_wait(&call->barrier);
    }
    Py_ssize_t from, to;
    while (!LOAD(call->failed) && take_chunk(&call->taken[0], call->n, SPLIT, &from, &to))
        positions_scored(call, from, to);
    for (int j = 1; j < call->N; j++) {
        barrier_wait(&call->barrier);
        while (!LOAD(call->failed) && take_chunk(&call->taken[MAX_ORDER + j], call->sizes[j], SPLIT, &from, &to))
            level_counts(call, j, from, to);
    }
    barrier_wait(&call->barrier);
    from = call->n * thread / call->threads;
    to = call->n * (thread + 1) / call->threads;
    const double LOG2_10 = 3.321928094887362;
    for (Py_ssize_t p = from; p < to && !LOAD(call->failed); p++) {
        if (call->ids[p] == call->bos) {
            call->ranks[p] = 0;
            call->entropies[p] = NAN;
        } else {
            call->entropies[p] = -LOG2_10 * call->E1[p];
        }
    }
}

#if HAVE_THREADS
static void *helper_part(void *call)
{
    call_part(call, 1);
    return NULL;
}
#endif

/* The call on ``threads`` threads (one where a second cannot start). */
static void call_run(Call *call, int threads)
{
    call->threads = 1;
    call->barrier.parties = 1;
#if HAVE_THREADS
    pthread_t helper;
    int helped = 0;
    if (threads >= 2 && pthread_mutex_init(&call->barrier.lock, NULL) == 0) {
        if (pthread_cond_init(&call->barrier.turn, NULL) == 0) {
            call->threads = call->barrier.parties = 2;
            helped = pthread_create(&helper, NULL, helper_part, call) == 0;
            if (!helped) {
                call->threads = call->barrier.parties = 1;
                pthread_cond_destroy(&call->barrier.turn);
            }
        }
        if (!helped) pthread_mutex_destroy(&call->barrier.lock);
    }
    call_part(call, 0);
    if (helped) {
        pthread_join(helper, NULL);
        pthread_cond_destroy(&call->barrier.turn);
        pthread_mutex_destroy(&call->barrier.lock);
    }
#else
    (void)threads;
    call_part(call, 0);
#endif
}

static PyObject *Tables_stats(Tables *t, PyObject *args)
{
    /* stats(bos, ids, logprob, rank, entropy, threads=1, chunk=CHUNK): ids (int64, a stream
       opening with <s>, whose id is bos); writes each position's natural-log probability, rank
       (int64) and entropy in bits, NaN / 0 / NaN at <s>; on two threads where asked and the
       platform has them. As the model's _ending_at, _score_ids and backoff_token_stats compute them, in
       three passes:
       1. level by level, the n-gram ending at each position, from its context's entry (the
          positions sorted by their context, each context's continuations worked out once:
          the n-gram is the context's run of keys at the word's place among them);
       2. each position's log-probability, from the longest n-gram and the backoffs above it;
       3. level by level again, each position's counts in its context's sorted values (the
          entries stay kept from pass 1; each context's positions together keep its values in
          the processor's cache). */
    long long bos;
    int threads = 1;
    Py_ssize_t chunk = CHUNK;
    Py_buffer ib, lb, rb, eb;
    if (!PyArg_ParseTuple(args, "Ly*w*w*w*|in", &bos, &ib, &lb, &rb, &eb, &threads, &chunk))
        return NULL;
    Py_ssize_t n = ib.len / 8;
    int N = t->order;
    PyObject *result = NULL;
    if (lb.len != n * 8 || rb.len != n * 8 || eb.len != n * 8 || chunk < 1) {
        PyErr_SetString(PyExc_ValueError, "arrays of different lengths, or a chunk of no positions");
        goto done;
    }
    const int64_t *ids = ib.buf;
    for (Py_ssize_t p = 0; p < n; p++)
        if (ids[p] < 0 || ids[p] >= t->V) {
            PyErr_SetString(PyExc_ValueError, "a word id outside the vocabulary");
            goto done;
        }
    if (n == 0 || ids[0] != bos || (uint64_t)n * (uint64_t)N >= INT32_MAX / (2 * THREADS)) {
        PyErr_SetString(PyExc_ValueError, "the stream must open with <s> (and hold fewer than 2^29 / order tokens)");
        goto done;
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(t->lock, WAIT_LOCK);
    if (scratch_reserve(&t->scratch, n, N) < 0) {
        failed = 1;
    } else {
        if (t->kept.used > t->pool_kept)
            forget(t, KEPT_FROM);
        if (t->kept.nentries >= INT32_MAX / 2)  /* (entries are numbered in 31 bits) */
            forget(t, INT64_MAX);
        for (int s = 0; s < THREADS; s++)  /* (what a call that ran out of memory left) */
            t->staged[s].used = t->staged[s].nentries = 0;
        Scratch *s = &t->scratch;
        Call call = {
            .t = t, .ids = ids, .n = n, .N = N, .bos = bos, .pbits = bit_length((uint64_t)n), .chunk = chunk,
            .logprobs = lb.buf, .entropies = eb.buf, .ranks = rb.buf, .ending = s->ending, .sorted = s->sorted,
            .spare = s->spare, .entry_at = s->entry_at,
        };
        call.pmask = ((uint64_t)1 << call.pbits) - 1;
        call.x = s->work;
        call.bo = s->work + (size_t)N * n;
        call.E0 = call.bo + (size_t)N * n;
        call.E1 = call.E0 + n;
        memcpy(call.ending, ids, (size_t)n * sizeof(int64_t));
        call_run(&call, threads);
        failed = call.failed;
    }
    PyThread_release_lock(t->lock);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
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
