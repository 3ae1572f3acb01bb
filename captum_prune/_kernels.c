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

/* Appends the positions (and values, from the block's values v) of the set flags (0 or 1
 * per byte) of one block, read as 8-byte words: most words have none. */
static int scan_block(const unsigned char *inside, const unsigned char *v, Py_ssize_t n,
                      int64_t offset, Found *out) {
    Py_ssize_t word, j;
    for (word = 0; word + 8 <= n; word += 8) {
        uint64_t bits;
        memcpy(&bits, inside + word, 8);
        while (bits) {
            /* The lowest set byte first: positions come out ascending. */
            j = word + (__builtin_ctzll(bits) >> 3);
            if (push(out, offset + j, v + j * out->itemsize) < 0) {
                return -1;
            }
            bits &= bits - 1;
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
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Compiled fast paths of captum_prune (optional).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
