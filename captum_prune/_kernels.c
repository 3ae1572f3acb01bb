/* Three fused passes of the method on the CPU (captum_prune._cpu.bracket, .mask_ and
 * .abs_product_).
 *
 * bracket: numpy needs two comparisons, an "or", a scan and a gather per chunk of scores to
 * split it into below / inside / above a per-row bracket [low, high]; each of them reads or
 * writes the whole chunk again, and the selection of a large network is bound by that memory
 * traffic. This does the same in one read of the scores, with the C comparisons of the scores'
 * own type that numpy's less/greater make (NaN is neither below nor above: inside).
 *
 * mask: values *= keep, the product numpy makes after casting the 0/1 bytes to the values'
 * type, without numpy's buffered cast loop.
 *
 * abs_product: the taylor score |a * g| in place, one rounded product and its absolute value
 * (torch's mul then abs_, in one pass instead of two).
 *
 * So the results are the same, bit for bit; the tests check each against the path it
 * replaces.
 *
 * Plain C and the CPython API only (no numpy or torch headers): the module builds in about a
 * second wherever a C compiler is, and the package falls back to numpy where none is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Elements classified before the in-between ones are looked for: small enough to stay in the
 * first-level cache, a multiple of 8 so that the flags are read as 8-byte words. */
#define BLOCK 512

/* The in-between entries found so far: flat positions and the values there (itemsize bytes
 * each), in growing buffers. */
typedef struct {
    int64_t *positions;
    unsigned char *values;
    Py_ssize_t itemsize;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Found;

static int push(Found *out, int64_t position, const unsigned char *value) {
    if (out->size == out->capacity) {
        Py_ssize_t grown = out->capacity ? 2 * out->capacity : 4096;
        int64_t *positions = realloc(out->positions, (size_t)grown * sizeof(int64_t));
        unsigned char *values;
        if (positions == NULL) {
            return -1;
        }
        out->positions = positions;
        values = realloc(out->values, (size_t)(grown * out->itemsize));
        if (values == NULL) {
            return -1;
        }
        out->values = values;
        out->capacity = grown;
    }
    out->positions[out->size] = position;
    memcpy(out->values + out->size * out->itemsize, value, (size_t)out->itemsize);
    out->size++;
    return 0;
}

/* The flags of a block are 0/1 bytes, read 8 at a time as words (most have none): where in
 * memory the first set one of a word is, and the word without it (on either byte order). */
static inline Py_ssize_t first_flag(uint64_t bits) {
#if defined(__GNUC__) || defined(__clang__)
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_clzll(bits) >> 3;
#else
    return __builtin_ctzll(bits) >> 3;
#endif
#else
    unsigned char bytes[8];
    Py_ssize_t k = 0;
    memcpy(bytes, &bits, 8);
    while (!bytes[k]) {
        k++;
    }
    return k;
#endif
}

static inline uint64_t without_flag(uint64_t bits, Py_ssize_t k) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return bits & ~((uint64_t)0xff << (56 - 8 * k));
#elif defined(__BYTE_ORDER__) || defined(_M_X64) || defined(_M_IX86) || defined(_M_ARM64)
    return bits & ~((uint64_t)0xff << (8 * k));
#else
    unsigned char bytes[8];
    memcpy(bytes, &bits, 8);
    bytes[k] = 0;
    memcpy(&bits, bytes, 8);
    return bits;
#endif
}

/* Appends the positions (and values, from the block's values v) of the set flags (0 or 1
 * per byte) of one block. */
static int scan_block(const unsigned char *inside, const unsigned char *v, Py_ssize_t n,
                      int64_t offset, Found *out) {
    Py_ssize_t word, j;
    for (word = 0; word + 8 <= n; word += 8) {
        uint64_t bits;
        memcpy(&bits, inside + word, 8);
        while (bits) {
            /* The first set byte first: positions come out ascending. */
            const Py_ssize_t k = first_flag(bits);
            j = word + k;
            if (push(out, offset + j, v + j * out->itemsize) < 0) {
                return -1;
            }
            bits = without_flag(bits, k);
        }
    }
    for (j = word; j < n; j++) {
        if (inside[j] && push(out, offset + j, v + j * out->itemsize) < 0) {
            return -1;
        }
    }
    return 0;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* The compare loop compiled for AVX2 too, chosen at load time where the CPU has it. */
#define WIDE_VECTORS __attribute__((target_clones("avx2", "default")))
#else
#define WIDE_VECTORS
#endif

/* One block: above = v > hi and inside = neither v < lo nor above, as 0/1 bytes; returns how
 * many are below. */
#define DEFINE_CLASSIFY(NAME, T)                                                            \
    WIDE_VECTORS static unsigned int NAME##_block(const T *restrict v, Py_ssize_t n, T lo,  \
                                                  T hi, unsigned char *restrict above,      \
                                                  unsigned char *restrict inside) {         \
        unsigned int below = 0;                                                             \
        Py_ssize_t i;                                                                       \
        for (i = 0; i < n; i++) {                                                           \
            const unsigned char is_below = v[i] < lo;                                       \
            const unsigned char is_above = v[i] > hi;                                       \
            above[i] = is_above;                                                            \
            inside[i] = !(is_below | is_above);                                             \
            below += is_below;                                                              \
        }                                                                                   \
        return below;                                                                       \
    }                                                                                       \
    static int NAME(const T *values, Py_ssize_t rows, Py_ssize_t width, const T *low,       \
                    const T *high, unsigned char *keep, int64_t *below, Found *out) {       \
        unsigned char inside[BLOCK];                                                        \
        Py_ssize_t r, start;                                                                \
        for (r = 0; r < rows; r++) {                                                        \
            int64_t count = 0;                                                              \
            for (start = 0; start < width; start += BLOCK) {                                \
                Py_ssize_t n = width - start < BLOCK ? width - start : BLOCK;               \
                Py_ssize_t at = r * width + start;                                          \
                count += NAME##_block(values + at, n, low[r], high[r], keep + at, inside);  \
                if (scan_block(inside, (const unsigned char *)(values + at), n, (int64_t)at, \
                               out) < 0) {                                                  \
                    return -1;                                                              \
                }                                                                           \
            }                                                                               \
            below[r] = count;                                                               \
        }                                                                                   \
        return 0;                                                                           \
    }

DEFINE_CLASSIFY(classify_float, float)
DEFINE_CLASSIFY(classify_double, double)

/* A C-contiguous buffer with its format (a TypeError or BufferError set if not). */
static int get(PyObject *object, Py_buffer *view, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    return PyObject_GetBuffer(object, view, flags);
}

static PyObject *bracket(PyObject *self, PyObject *args) {
    PyObject *values_obj, *low_obj, *high_obj, *keep_obj, *below_obj;
    Py_ssize_t rows, width;
    Py_buffer values, low, high, keep, below;
    Found out = {NULL, NULL, 0, 0, 0};
    PyObject *result = NULL;
    int status = 0, is_double;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOnn", &values_obj, &low_obj, &high_obj, &keep_obj,
                          &below_obj, &rows, &width)) {
        return NULL;
    }
    if (get(values_obj, &values, 0) < 0) {
        return NULL;
    }
    if (get(low_obj, &low, 0) < 0) {
        goto release_values;
    }
    if (get(high_obj, &high, 0) < 0) {
        goto release_low;
    }
    if (get(keep_obj, &keep, 1) < 0) {
        goto release_high;
    }
    if (get(below_obj, &below, 1) < 0) {
        goto release_keep;
    }
    is_double = strcmp(values.format, "d") == 0;
    if ((!is_double && strcmp(values.format, "f") != 0) || rows < 0 || width < 0 ||
        values.len != rows * width * values.itemsize ||
        strcmp(low.format, values.format) != 0 || low.len != rows * values.itemsize ||
        strcmp(high.format, values.format) != 0 || high.len != rows * values.itemsize ||
        keep.len != rows * width || keep.itemsize != 1 ||
        below.len != rows * (Py_ssize_t)sizeof(int64_t) || below.itemsize != 8) {
        PyErr_SetString(PyExc_ValueError,
                        "bracket: expected float32/float64 values of rows * width, low and "
                        "high of rows in that dtype, keep of rows * width bytes, below of "
                        "rows int64");
        goto release_below;
    }
    out.itemsize = values.itemsize;
    Py_BEGIN_ALLOW_THREADS
    if (is_double) {
        status = classify_double(values.buf, rows, width, low.buf, high.buf, keep.buf,
                                 below.buf, &out);
    } else {
        status = classify_float(values.buf, rows, width, low.buf, high.buf, keep.buf,
                                below.buf, &out);
    }
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
    } else {
        /* (y# turns a NULL buffer into None: nothing found is two empty byte strings.) */
        result = Py_BuildValue(
            "y#y#", out.size ? (const char *)out.positions : "",
            out.size * (Py_ssize_t)sizeof(int64_t), out.size ? (const char *)out.values : "",
            out.size * out.itemsize);
    }
release_below:
    PyBuffer_Release(&below);
release_keep:
    PyBuffer_Release(&keep);
release_high:
    PyBuffer_Release(&high);
release_low:
    PyBuffer_Release(&low);
release_values:
    PyBuffer_Release(&values);
    free(out.positions);
    free(out.values);
    return result;
}

/* The elementwise in-place passes: a[i] = f(a[i], b[i]) for float or double a, through void
 * pointers so that one wrapper serves all (the typed loops keep their restrict). */
typedef void (*Pass)(void *a, const void *b, Py_ssize_t n);

#define DEFINE_PASS(NAME, T, B, EXPR)                                                      \
    WIDE_VECTORS static void NAME##_loop(T *restrict a, const B *restrict b, Py_ssize_t n) { \
        Py_ssize_t i;                                                                       \
        for (i = 0; i < n; i++) {                                                           \
            a[i] = EXPR;                                                                    \
        }                                                                                   \
    }                                                                                       \
    static void NAME(void *a, const void *b, Py_ssize_t n) { NAME##_loop(a, b, n); }

/* mask: values *= keep, the 0/1 bytes converted to the values' type first. */
DEFINE_PASS(mask_float, float, unsigned char, a[i] * (float)b[i])
DEFINE_PASS(mask_double, double, unsigned char, a[i] * (double)b[i])
/* abs_product: |a * g|, one rounded product. */
DEFINE_PASS(abs_product_float, float, float, fabsf(a[i] * b[i]))
DEFINE_PASS(abs_product_double, double, double, fabs(a[i] * b[i]))

/* Parses (a, b), a written in place: float32 or float64, and b of the same length in
 * elements with the item size b_itemsize (0: a's own format); runs the pass without the GIL. */
static PyObject *in_place(PyObject *args, Py_ssize_t b_itemsize, const char *error,
                          Pass pass_float, Pass pass_double) {
    PyObject *a_obj, *b_obj, *result = NULL;
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "OO", &a_obj, &b_obj)) {
        return NULL;
    }
    if (get(a_obj, &a, 1) < 0) {
        return NULL;
    }
    if (get(b_obj, &b, 0) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    if ((strcmp(a.format, "f") != 0 && strcmp(a.format, "d") != 0) ||
        (b_itemsize ? b.itemsize != b_itemsize : strcmp(b.format, a.format) != 0) ||
        b.len / b.itemsize != a.len / a.itemsize) {
        PyErr_SetString(PyExc_ValueError, error);
    } else {
        Pass pass = a.format[0] == 'd' ? pass_double : pass_float;
        Py_ssize_t n = a.len / a.itemsize;
        Py_BEGIN_ALLOW_THREADS
        pass(a.buf, b.buf, n);
        Py_END_ALLOW_THREADS
        Py_INCREF(Py_None);
        result = Py_None;
    }
    PyBuffer_Release(&b);
    PyBuffer_Release(&a);
    return result;
}

static PyObject *mask(PyObject *self, PyObject *args) {
    (void)self;
    return in_place(args, 1, "mask: expected float32 or float64 values and one byte per value",
                    mask_float, mask_double);
}

static PyObject *abs_product(PyObject *self, PyObject *args) {
    (void)self;
    return in_place(args, 0,
                    "abs_product: expected two float32 or two float64 buffers of one size",
                    abs_product_float, abs_product_double);
}

/* ---------------------------------------------------------------- select_keep
 *
 * The reference rule's masks for rows of up to a few million pooled scores, per row: the
 * rank-th (and rank+1-th) smallest value as numpy's sort places them (NaN last), numpy's
 * linear interpolation between the two in double, rounded to the scores' type, and
 * keep = score > tau. numpy sorts a pooled copy of every row for that. Here:
 *
 * 1. two ranks of a fixed sample of the row give a bracket [low, high] that should hold both;
 *    one classifying pass (bracket's) writes keep = score > high, counts the scores below low
 *    and collects the few in between with their positions; a radix selection among those
 *    places the two ranks, and the masks of the in-between ones are set from tau;
 * 2. where the bracket misses (the counts say so, or tau falls outside it), or the row is
 *    short, an exact radix selection on order-preserving integer keys finds the two values
 *    instead (a histogram of the top bits, the keys of the bin that holds the rank, narrowed
 *    digit by digit), and a last read writes every mask.
 *
 * Either way the masks are those of numpy's path, bit for bit (tested against it).
 */

/* Bits of the radix selection's first digit (1024 bins; COPIES histograms, so that runs of
 * equal scores do not wait on one counter, fit the first-level cache) and of the later ones;
 * the LSD sort of the small arrays uses the later width. */
#define FIRST_BITS 10
#define LATER_BITS 11
#define COPIES 4
/* Rows shorter than this skip the bracket. */
#define BRACKET_MIN 8192

/* Order-preserving keys (key_float, key_double): negatives reversed below the positives, -0
 * just below +0, every NaN above +inf (where numpy's sort puts NaN); branch-free, as signs
 * and NaN come in no predictable order. value_float, value_double: the value of a key, in
 * double (a NaN for the NaN key). */
#define DEFINE_KEY(T, U, SIGN, INF)                                                          \
    static inline U key_##T(T x) {                                                           \
        U u;                                                                                 \
        memcpy(&u, &x, sizeof u);                                                            \
        return (u ^ (((U)0 - (u >> (8 * sizeof(U) - 1))) | SIGN)) |                          \
               ((U)0 - (U)((u & ~SIGN) > INF));                                              \
    }                                                                                        \
    static inline double value_##T(U key) {                                                  \
        U u = (key & SIGN) ? (key & ~SIGN) : ~key;                                           \
        T x;                                                                                 \
        if (key == (U) ~(U)0) {                                                              \
            return NAN;                                                                      \
        }                                                                                    \
        memcpy(&x, &u, sizeof x);                                                            \
        return (double)x;                                                                    \
    }

DEFINE_KEY(float, uint32_t, 0x80000000u, 0x7f800000u)
DEFINE_KEY(double, uint64_t, 0x8000000000000000ull, 0x7ff0000000000000ull)

/* numpy's _lerp, from the nearer end. The product is stored before the sum, so that no
 * compiler fuses them into one rounding (numpy rounds both). */
static double lerp(double low, double high, double gamma) {
    volatile double step;
    const double diff = high - low;
    if (gamma >= 0.5) {
        step = diff * (1.0 - gamma);
        return high - step;
    }
    step = diff * gamma;
    return low + step;
}

/* What every row of a call selects, and in what. */
typedef struct {
    const void *const *arrays;  /* per chunk, (rows, widths[c]) values of one type */
    unsigned char *const *keep; /* per chunk, (rows, widths[c]) bytes written */
    const Py_ssize_t *widths;
    Py_ssize_t chunks;
    uint64_t n;      /* the pooled width */
    uint64_t rank;
    int two;         /* whether tau interpolates to rank + 1 */
    double gamma;
    uint64_t sample; /* sampled scores per row for the bracket (0: no bracket) */
    double margin;   /* the bracket's half-width in standard deviations of a sampled rank */
} Selection;

/* Working memory of one call, for rows of n pooled scores. Sized by what the bracket uses
 * (large buffers would come fresh from the system, page by page, at every call); the radix
 * selection's n + 1 keys are allocated when it first runs. */
typedef struct {
    void *keys;          /* max(sample, n / 4) + 1 keys: the sample, then the in-between */
    void *spare;         /* sample keys: the LSD sort's other half */
    void *values;        /* n / 4 values (the in-between ones) */
    uint32_t *positions; /* n / 4 pooled positions */
    uint32_t *hist;      /* COPIES << FIRST_BITS counters */
    void *all_keys;      /* n + 1 keys, or NULL */
} Work;

#define DEFINE_SELECT(NAME, T, K, KEY, VALUE, CLASSIFY)                                      \
    WIDE_VECTORS static void NAME##_masks(const T *restrict v, Py_ssize_t n, T tau,          \
                                          unsigned char *restrict keep) {                    \
        Py_ssize_t j;                                                                        \
        for (j = 0; j < n; j++) {                                                            \
            keep[j] = v[j] > tau;                                                            \
        }                                                                                    \
    }                                                                                        \
    /* Sorts a[0..size) ascending (LSD radix; spare holds size keys); returns where the     \
     * result is (a or spare). */                                                            \
    static K *NAME##_sort(K *a, K *spare, uint64_t size, uint32_t *count) {                  \
        const K mask = (K)((1u << LATER_BITS) - 1);                                          \
        int shift;                                                                           \
        uint64_t i;                                                                          \
        for (shift = 0; shift < (int)(8 * sizeof(K)); shift += LATER_BITS) {                 \
            uint32_t total = 0, bin;                                                         \
            K *swap;                                                                         \
            memset(count, 0, sizeof(uint32_t) << LATER_BITS);                                \
            for (i = 0; i < size; i++) {                                                     \
                count[(a[i] >> shift) & mask]++;                                             \
            }                                                                                \
            for (bin = 0; bin < (1u << LATER_BITS); bin++) {                                 \
                const uint32_t here = count[bin];                                            \
                count[bin] = total;                                                          \
                total += here;                                                               \
            }                                                                                \
            for (i = 0; i < size; i++) {                                                     \
                spare[count[(a[i] >> shift) & mask]++] = a[i];                               \
            }                                                                                \
            swap = a;                                                                        \
            a = spare;                                                                       \
            spare = swap;                                                                    \
        }                                                                                    \
        return a;                                                                            \
    }                                                                                        \
    /* The keys of ranks low <= high among keys[0..size) (destroyed): the top digit's      \
     * histogram (COPIES of it) finds the bins that hold them, and only the keys of those    \
     * bins and the ones between are sorted (into spare, size keys). */                      \
    static void NAME##_two_ranks(K *keys, K *spare, uint64_t size, uint64_t low,            \
                                 uint64_t high, uint32_t *hist, K *k_low, K *k_high) {       \
        const int shift = (int)(8 * sizeof(K)) - FIRST_BITS;                                 \
        uint64_t i, bin, cum = 0, below = 0, count = 0;                                      \
        K first = 0, last = 0, *sorted;                                                      \
        int found = 0;                                                                       \
        memset(hist, 0, sizeof(uint32_t) * (COPIES << FIRST_BITS));                          \
        for (i = 0; i + COPIES <= size; i += COPIES) {                                       \
            hist[(keys[i] >> shift) * COPIES]++;                                             \
            hist[(keys[i + 1] >> shift) * COPIES + 1]++;                                     \
            hist[(keys[i + 2] >> shift) * COPIES + 2]++;                                     \
            hist[(keys[i + 3] >> shift) * COPIES + 3]++;                                     \
        }                                                                                    \
        for (; i < size; i++) {                                                              \
            hist[(keys[i] >> shift) * COPIES]++;                                             \
        }                                                                                    \
        for (bin = 0; found < 2; bin++) {                                                    \
            const uint64_t here = (uint64_t)hist[bin * COPIES] + hist[bin * COPIES + 1] +    \
                                  hist[bin * COPIES + 2] + hist[bin * COPIES + 3];           \
            if (!found && cum + here > low) {                                                \
                first = (K)bin;                                                              \
                below = cum;                                                                 \
                found = 1;                                                                   \
            }                                                                                \
            if (found && cum + here > high) {                                                \
                last = (K)bin;                                                               \
                found = 2;                                                                   \
            }                                                                                \
            cum += here;                                                                     \
        }                                                                                    \
        for (i = 0; i < size; i++) {                                                         \
            const K digit = keys[i] >> shift;                                                \
            spare[count] = keys[i];                                                          \
            count += (digit >= first) & (digit <= last);                                     \
        }                                                                                    \
        sorted = NAME##_sort(spare, keys, count, hist);                                      \
        *k_low = sorted[low - below];                                                        \
        *k_high = sorted[high - below];                                                      \
    }                                                                                        \
    /* Radix selection of ranks rank and rank + 1 among keys[0..size), whose digits above  \
     * `shift` are settled: `below` smaller keys lie elsewhere, and `next` (if has_next) is  \
     * the smallest larger key found elsewhere. Narrows the keys in place, digit by digit,    \
     * until they are all one key. */                                                        \
    static void NAME##_narrow(K *keys, uint64_t size, uint64_t rank, int two, int shift,    \
                              uint64_t below, K next, int has_next, uint32_t *hist, K *k0,  \
                              K *k1) {                                                       \
        const K top = (K) ~(K)0;                                                             \
        uint64_t i, bin, cum;                                                                \
        K chosen;                                                                            \
        while (shift > 0) {                                                                  \
            const int bits = shift < LATER_BITS ? shift : LATER_BITS;                        \
            const K mask = (K)(((K)1 << bits) - 1);                                          \
            uint64_t kept = 0;                                                               \
            K level_next = top;                                                              \
            int level_has = 0;                                                               \
            for (i = 1; i < size && keys[i] == keys[0]; i++) {                               \
            }                                                                                \
            if (i >= size) {                                                                 \
                break;                                                                       \
            }                                                                                \
            shift -= bits;                                                                   \
            memset(hist, 0, sizeof(uint32_t) << LATER_BITS);                                 \
            for (i = 0; i < size; i++) {                                                     \
                hist[(keys[i] >> shift) & mask]++;                                           \
            }                                                                                \
            for (bin = 0, cum = below;; bin++) {                                             \
                if (cum + hist[bin] > rank) {                                                \
                    break;                                                                   \
                }                                                                            \
                cum += hist[bin];                                                            \
            }                                                                                \
            below = cum;                                                                     \
            chosen = (K)bin;                                                                 \
            for (i = 0; i < size; i++) {                                                     \
                const K key = keys[i];                                                       \
                const K digit = (key >> shift) & mask;                                       \
                const K later = digit > chosen ? key : top;                                  \
                keys[kept] = key;                                                            \
                kept += digit == chosen;                                                     \
                level_next = later < level_next ? later : level_next;                        \
                level_has |= digit > chosen;                                                 \
            }                                                                                \
            /* A later digit here lies below every later bin of the digits above. */         \
            if (level_has) {                                                                 \
                next = level_next;                                                           \
                has_next = 1;                                                                \
            }                                                                                \
            size = kept;                                                                     \
        }                                                                                    \
        /* `below` keys are smaller than keys[0], `size` equal to it. */                     \
        *k0 = keys[0];                                                                       \
        *k1 = (!two || rank + 1 < below + size || !has_next) ? *k0 : next;                   \
    }                                                                                        \
    /* The exact path: tau of row r by a radix selection; writes every mask (-1: no        \
     * memory). */                                                                           \
    static int NAME##_radix(const Selection *s, Py_ssize_t r, Work *w) {                     \
        const K top = (K) ~(K)0;                                                             \
        K *keys;                                                                             \
        uint32_t *hist = w->hist;                                                            \
        int shift = (int)(8 * sizeof(K)) - FIRST_BITS;                                       \
        uint64_t below, size = 0, bin, cum;                                                  \
        K next = top, chosen, k0, k1;                                                        \
        int has_next = 0;                                                                    \
        Py_ssize_t c, j;                                                                     \
        double tau;                                                                          \
        if (w->all_keys == NULL && (w->all_keys = malloc((s->n + 1) * sizeof(K))) == NULL) {  \
            return -1;                                                                       \
        }                                                                                    \
        keys = w->all_keys;                                                                  \
        memset(hist, 0, sizeof(uint32_t) * (COPIES << FIRST_BITS));                          \
        for (c = 0; c < s->chunks; c++) {                                                    \
            const T *v = (const T *)s->arrays[c] + r * s->widths[c];                         \
            const Py_ssize_t width = s->widths[c];                                           \
            for (j = 0; j + COPIES <= width; j += COPIES) {                                  \
                hist[(KEY(v[j]) >> shift) * COPIES]++;                                       \
                hist[(KEY(v[j + 1]) >> shift) * COPIES + 1]++;                               \
                hist[(KEY(v[j + 2]) >> shift) * COPIES + 2]++;                               \
                hist[(KEY(v[j + 3]) >> shift) * COPIES + 3]++;                               \
            }                                                                                \
            for (; j < width; j++) {                                                         \
                hist[(KEY(v[j]) >> shift) * COPIES]++;                                       \
            }                                                                                \
        }                                                                                    \
        for (bin = 0, cum = 0;; bin++) {                                                     \
            const uint64_t count = (uint64_t)hist[bin * COPIES] + hist[bin * COPIES + 1] +   \
                                   hist[bin * COPIES + 2] + hist[bin * COPIES + 3];          \
            if (cum + count > s->rank) {                                                     \
                break;                                                                       \
            }                                                                                \
            cum += count;                                                                    \
        }                                                                                    \
        below = cum;                                                                         \
        chosen = (K)bin;                                                                     \
        /* The keys of that bin (stored always, counted when they belong). */               \
        for (c = 0; c < s->chunks; c++) {                                                    \
            const T *v = (const T *)s->arrays[c] + r * s->widths[c];                         \
            const Py_ssize_t width = s->widths[c];                                           \
            for (j = 0; j < width; j++) {                                                    \
                const K key = KEY(v[j]);                                                     \
                keys[size] = key;                                                            \
                size += (key >> shift) == chosen;                                            \
            }                                                                                \
        }                                                                                    \
        /* Rank + 1 lies in a later bin: the smallest key there (one more read, rarely). */  \
        if (s->two && s->rank + 1 >= below + size) {                                         \
            for (c = 0; c < s->chunks; c++) {                                                \
                const T *v = (const T *)s->arrays[c] + r * s->widths[c];                     \
                for (j = 0; j < s->widths[c]; j++) {                                         \
                    const K key = KEY(v[j]);                                                 \
                    if ((key >> shift) > chosen && (!has_next || key < next)) {              \
                        next = key;                                                          \
                        has_next = 1;                                                        \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        NAME##_narrow(keys, size, s->rank, s->two, shift, below, next, has_next, hist, &k0, \
                      &k1);                                                                  \
        tau = s->two ? lerp(VALUE(k0), VALUE(k1), s->gamma) : VALUE(k0);                     \
        for (c = 0; c < s->chunks; c++) {                                                    \
            const Py_ssize_t width = s->widths[c];                                           \
            NAME##_masks((const T *)s->arrays[c] + r * width, width, (T)tau,                 \
                         s->keep[c] + r * width);                                            \
        }                                                                                    \
        return 0;                                                                            \
    }                                                                                        \
    /* The bracketed path for row r: 0 with every mask written, 1 if the bracket missed. */  \
    static int NAME##_bracketed(const Selection *s, Py_ssize_t r, const Work *w) {           \
        const uint64_t m = s->sample, n = s->n, last = s->rank + (uint64_t)s->two;           \
        const double fraction = (double)s->rank / (double)(n - 1);                           \
        const double sd = sqrt((double)m * fraction * (1.0 - fraction));                    \
        const double low_at = floor(fraction * (double)(m - 1) - s->margin * sd - 4.0);      \
        const double high_at =                                                               \
            ceil((double)last / (double)(n - 1) * (double)(m - 1) + s->margin * sd + 4.0);   \
        const K top = (K) ~(K)0;                                                             \
        const uint64_t scale = (n << 32) / m, stretch = n / m;                               \
        K *keys = w->keys, k0, k1, k_low, k_high;                                            \
        T *found = w->values;                                                                \
        unsigned char inside[BLOCK];                                                         \
        uint64_t i, below = 0, count = 0, nan = 0, state = 0x9e3779b97f4a7c15ull;            \
        T low, high, t;                                                                      \
        Py_ssize_t c, start, base;                                                           \
        double tau;                                                                          \
        /* The sample: one score from each of m equal stretches of the row, at a fixed      \
         * pseudo-random place in it (the bracket only decides the speed). */                \
        for (i = 0, c = 0, base = 0; i < m; i++) {                                           \
            uint64_t at;                                                                     \
            state = state * 6364136223846793005ull + 1442695040888963407ull;                 \
            /* (i * n / m without a division: scale is n / m in 32.32 fixed point) */       \
            at = ((i * scale) >> 32) + (((state >> 32) * stretch) >> 32);                    \
            while ((uint64_t)(base + s->widths[c]) <= at) {                                  \
                base += s->widths[c++];                                                      \
            }                                                                                \
            keys[i] = KEY(((const T *)s->arrays[c])[r * s->widths[c] + (Py_ssize_t)at - base]); \
        }                                                                                    \
        NAME##_two_ranks(keys, w->spare, m, low_at < 0 ? 0 : (uint64_t)low_at,              \
                         high_at >= (double)m ? m - 1 : (uint64_t)high_at, w->hist, &k_low,   \
                         &k_high);                                                           \
        low = low_at < 0 ? (T)-INFINITY : (T)VALUE(k_low);                                   \
        high = high_at >= (double)m ? (T)INFINITY : (T)VALUE(k_high);                        \
        if (isnan(low) || isnan(high)) {                                                     \
            return 1;                                                                        \
        }                                                                                    \
        /* One read: keep = v > high, below = v < low, the rest collected (NaN among it). */ \
        for (c = 0, base = 0; c < s->chunks; base += s->widths[c++]) {                       \
            const T *v = (const T *)s->arrays[c] + r * s->widths[c];                         \
            unsigned char *keep = s->keep[c] + r * s->widths[c];                             \
            for (start = 0; start < s->widths[c]; start += BLOCK) {                          \
                const Py_ssize_t size =                                                      \
                    s->widths[c] - start < BLOCK ? s->widths[c] - start : BLOCK;             \
                Py_ssize_t word, j;                                                          \
                below += CLASSIFY(v + start, size, low, high, keep + start, inside);         \
                for (word = 0; word < size; word += 8) {                                     \
                    const Py_ssize_t end = size - word < 8 ? size : word + 8;                \
                    uint64_t bits = 0;                                                       \
                    memcpy(&bits, inside + word, (size_t)(end - word));                      \
                    while (bits) {                                                           \
                        const Py_ssize_t k = first_flag(bits);                               \
                        j = word + k;                                                        \
                        bits = without_flag(bits, k);                                        \
                        if (count == n / 4) {                                                \
                            return 1; /* too wide to be worth it */                          \
                        }                                                                    \
                        w->positions[count] = (uint32_t)(base + start + j);                  \
                        found[count] = v[start + j];                                         \
                        count++;                                                             \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        for (i = 0; i < count; i++) {                                                        \
            keys[i] = KEY(found[i]);                                                         \
            nan += keys[i] == top;                                                           \
        }                                                                                    \
        if (below > s->rank || last >= below + count - nan) {                                \
            return 1;                                                                        \
        }                                                                                    \
        NAME##_narrow(keys, count, s->rank - below, s->two, (int)(8 * sizeof(K)), 0, top, 0, \
                      w->hist, &k0, &k1);                                                    \
        tau = s->two ? lerp(VALUE(k0), VALUE(k1), s->gamma) : VALUE(k0);                     \
        t = (T)tau;                                                                          \
        /* Outside [low, high] the masks are right only if tau is inside it. */             \
        if (!(t >= low && t <= high)) {                                                      \
            return 1;                                                                        \
        }                                                                                    \
        for (i = 0, c = 0, base = 0; i < count; i++) {                                       \
            while ((Py_ssize_t)w->positions[i] >= base + s->widths[c]) {                     \
                base += s->widths[c++];                                                      \
            }                                                                                \
            s->keep[c][r * s->widths[c] + (Py_ssize_t)w->positions[i] - base] = found[i] > t; \
        }                                                                                    \
        return 0;                                                                            \
    }                                                                                        \
    /* Row r's masks (-1: no memory). */                                                     \
    static int NAME(const Selection *s, Py_ssize_t r, Work *w) {                             \
        if (s->sample == 0 || s->n < BRACKET_MIN || NAME##_bracketed(s, r, w)) {             \
            return NAME##_radix(s, r, w);                                                    \
        }                                                                                    \
        return 0;                                                                            \
    }

DEFINE_SELECT(select_float, float, uint32_t, key_float, value_float, classify_float_block)
DEFINE_SELECT(select_double, double, uint64_t, key_double, value_double, classify_double_block)

static PyObject *select_keep(PyObject *self, PyObject *args) {
    PyObject *arrays_obj, *keep_obj, *result = NULL;
    Py_ssize_t rows, start, stop, chunks, c, got = 0, n = 0, itemsize = 0;
    unsigned long long rank, sample;
    int two, is_double = 0, ok = 1;
    double gamma, margin;
    Py_buffer *views = NULL;
    const void **arrays = NULL;
    unsigned char **keep = NULL;
    Py_ssize_t *widths = NULL;
    Work work = {NULL, NULL, NULL, NULL, NULL, NULL};
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!nnnKpdKd", &PyTuple_Type, &arrays_obj, &PyTuple_Type,
                          &keep_obj, &rows, &start, &stop, &rank, &two, &gamma, &sample,
                          &margin)) {
        return NULL;
    }
    chunks = PyTuple_GET_SIZE(arrays_obj);
    if (chunks < 1 || PyTuple_GET_SIZE(keep_obj) != chunks || rows < 1 || start < 0 ||
        stop > rows || start > stop || !(gamma >= 0.0 && gamma < 1.0) || !(margin >= 0.0)) {
        PyErr_SetString(PyExc_ValueError,
                        "select_keep: expected tuples of one or more values and keep buffers "
                        "of one length, rows >= 1, 0 <= start <= stop <= rows, 0 <= gamma < 1 "
                        "and margin >= 0");
        return NULL;
    }
    views = PyMem_Calloc((size_t)(2 * chunks), sizeof(Py_buffer));
    arrays = PyMem_Calloc((size_t)chunks, sizeof(void *));
    keep = PyMem_Calloc((size_t)chunks, sizeof(unsigned char *));
    widths = PyMem_Calloc((size_t)chunks, sizeof(Py_ssize_t));
    if (views == NULL || arrays == NULL || keep == NULL || widths == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (c = 0; c < chunks && ok; c++) {
        Py_buffer *values = &views[got], *kept = &views[got + 1];
        if (get(PyTuple_GET_ITEM(arrays_obj, c), values, 0) < 0) {
            goto done;
        }
        got++;
        if (get(PyTuple_GET_ITEM(keep_obj, c), kept, 1) < 0) {
            goto done;
        }
        got++;
        if (c == 0) {
            is_double = strcmp(values->format, "d") == 0;
            itemsize = values->itemsize;
            ok = is_double || strcmp(values->format, "f") == 0;
        }
        ok = ok && strcmp(values->format, views[0].format) == 0 &&
             values->len % (rows * itemsize) == 0 && kept->itemsize == 1 &&
             kept->len == values->len / itemsize;
        if (ok) {
            widths[c] = values->len / (rows * itemsize);
            arrays[c] = values->buf;
            keep[c] = kept->buf;
            n += widths[c];
        }
    }
    if (!ok || n < 1 || n >= 0xffffffffLL || rank >= (unsigned long long)n ||
        (two && rank + 1 >= (unsigned long long)n) || sample > (unsigned long long)n) {
        PyErr_SetString(PyExc_ValueError,
                        "select_keep: expected float32 or float64 values (one dtype, rows * "
                        "width each, 0 < pooled width < 2**32), one byte of keep per value, "
                        "rank (+ 1 with two) and sample below the pooled width");
        goto done;
    }
    {
        const size_t key = is_double ? sizeof(uint64_t) : sizeof(uint32_t);
        const size_t inside = (size_t)n / 4 + 1;
        work.keys = malloc(((size_t)sample > inside ? (size_t)sample : inside) * key);
        work.spare = malloc(((size_t)sample + 1) * key);
        work.values = malloc(inside * (size_t)itemsize);
        work.positions = malloc(inside * sizeof(uint32_t));
        work.hist = malloc(sizeof(uint32_t) * (COPIES << FIRST_BITS));
    }
    if (!work.keys || !work.spare || !work.values || !work.positions || !work.hist) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const Selection s = {arrays, keep, widths, chunks, (uint64_t)n, (uint64_t)rank,
                             two, gamma, (uint64_t)sample, margin};
        Py_ssize_t r;
        int status = 0;
        Py_BEGIN_ALLOW_THREADS
        for (r = start; r < stop && status == 0; r++) {
            status = is_double ? select_double(&s, r, &work) : select_float(&s, r, &work);
        }
        Py_END_ALLOW_THREADS
        if (status < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (c = 0; c < got; c++) {
        PyBuffer_Release(&views[c]);
    }
    free(work.keys);
    free(work.spare);
    free(work.values);
    free(work.positions);
    free(work.hist);
    free(work.all_keys);
    PyMem_Free(views);
    PyMem_Free(arrays);
    PyMem_Free(keep);
    PyMem_Free(widths);
    return result;
}

/* ---------------------------------------------------------------- zero_rows
 *
 * Which rows of a gradient are all zeros (the empty-attribution check after every call):
 * numpy counts every entry of every row; this stops at a row's first entry that is not 0
 * (NaN is not, -0.0 is), usually its first. */
#define DEFINE_ZERO_ROW(NAME, T)                                                             \
    static int NAME(const T *v, Py_ssize_t width) {                                          \
        Py_ssize_t j;                                                                        \
        for (j = 0; j < width; j++) {                                                        \
            if (v[j] != 0) {                                                                 \
                return 0;                                                                    \
            }                                                                                \
        }                                                                                    \
        return 1;                                                                            \
    }

DEFINE_ZERO_ROW(zero_row_float, float)
DEFINE_ZERO_ROW(zero_row_double, double)

static PyObject *zero_rows(PyObject *self, PyObject *args) {
    PyObject *values_obj, *result = NULL;
    Py_buffer values;
    Py_ssize_t rows, r, width;
    int is_double;
    (void)self;
    if (!PyArg_ParseTuple(args, "On", &values_obj, &rows)) {
        return NULL;
    }
    if (get(values_obj, &values, 0) < 0) {
        return NULL;
    }
    is_double = strcmp(values.format, "d") == 0;
    if ((!is_double && strcmp(values.format, "f") != 0) || rows < 1 ||
        values.len % (rows * values.itemsize) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "zero_rows: expected float32 or float64 values of rows (>= 1) equal rows");
        goto release;
    }
    width = values.len / (rows * values.itemsize);
    result = PyList_New(0);
    for (r = 0; result != NULL && r < rows; r++) {
        const int zero = is_double ? zero_row_double((const double *)values.buf + r * width, width)
                                   : zero_row_float((const float *)values.buf + r * width, width);
        if (zero) {
            PyObject *index = PyLong_FromSsize_t(r);
            if (index == NULL || PyList_Append(result, index) < 0) {
                Py_CLEAR(result);
            }
            Py_XDECREF(index);
        }
    }
release:
    PyBuffer_Release(&values);
    return result;
}

static PyMethodDef methods[] = {
    {"bracket", bracket, METH_VARARGS,
     "bracket(values, low, high, keep, below, rows, width) -> (positions, found)\n\n"
     "For each row r of the C-contiguous (rows, width) float32/float64 buffer values: writes\n"
     "keep = values > high[r], below[r] = count of values < low[r], and returns the flat\n"
     "positions (ascending, int64 bytes) of the entries that are neither (NaN among them)\n"
     "and their values (bytes of the values' dtype)."},
    {"mask", mask, METH_VARARGS,
     "mask(values, keep): values *= keep elementwise, in place (contiguous float32 or\n"
     "float64 values, one 0/1 byte of keep per value), in one pass."},
    {"abs_product", abs_product, METH_VARARGS,
     "abs_product(a, g): a = |a * g| elementwise, in place (two contiguous float32 or two\n"
     "float64 buffers of one size), in one pass."},
    {"select_keep", select_keep, METH_VARARGS,
     "select_keep(values, keep, rows, start, stop, rank, two, gamma, sample, margin)\n\n"
     "values: a tuple of C-contiguous (rows, width_c) float32 or float64 buffers (one dtype),\n"
     "the chunks of pooled rows; keep: a tuple of as many writable (rows, width_c) byte\n"
     "buffers. For each row r in [start, stop): v0, v1 = the rank-th and rank+1-th smallest\n"
     "values of the pooled row (NaN largest), tau = numpy's linear interpolation between them\n"
     "with weight gamma in double (v0 alone unless two), rounded to the values' dtype; writes\n"
     "keep = values > tau. sample > 0: first try a bracket from that many sampled values\n"
     "per row, margin standard deviations of a sampled rank wide (exact either way)."},
    {"zero_rows", zero_rows, METH_VARARGS,
     "zero_rows(values, rows) -> list of int\n\n"
     "The rows (of the C-contiguous float32/float64 buffer values, rows equal parts) whose\n"
     "every entry is 0 (NaN is not, -0.0 is)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Compiled fast paths of captum_prune (optional).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
