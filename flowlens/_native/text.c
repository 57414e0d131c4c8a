/* hubble's compact text split into the six keys flowlens.sources.text reads, as its regex
 * `_COMPACT` matches them, each key dictionary-encoded over the block.
 *
 * A line this code does not match fully, exactly as the regex would, makes the whole block the
 * regex's: `\d` here is ASCII only (the regex's Unicode digits bail), and `\S` stops at what
 * Python's str.isspace() calls space. */
#include "native.h"

#include <stdlib.h>

typedef struct {
    const char *p;
    size_t n;
} Span;

enum { K_SECONDS, K_SUFFIX, K_FIRST, K_LINK, K_TAIL, K_LOST, K_COUNT };

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }

/* The length of the code point at p if it is a space for Python's `\s` (str.isspace), else 0. */
static size_t py_space(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    uint32_t cp;
    size_t n;
    if ((c & 0xE0) == 0xC0 && end - p >= 2) { cp = (c & 0x1F) << 6 | (p[1] & 0x3F); n = 2; }
    else if ((c & 0xF0) == 0xE0 && end - p >= 3) {
        cp = (c & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
        n = 3;
    } else return 0;
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
        cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return n;
    return 0;
}

/* \S*+ : the run of non-space characters from p. */
static const char *nonspace(const char *p, const char *end) {
    while (p < end && !py_space((const unsigned char *)p, (const unsigned char *)end)) {
        unsigned c = (unsigned char)*p;
        p += c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    }
    return p > end ? end : p;
}

static int lit(const char **p, const char *end, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0) return 0;
    *p += n;
    return 1;
}

/* Digits at p matching a pattern of 'd' (digit), ' ' or other literal characters. */
static int shape(const char **p, const char *end, const char *pattern) {
    const char *q = *p;
    for (const char *c = pattern; *c; c++, q++) {
        if (q >= end) return 0;
        if (*c == 'd' ? !is_digit(*q) : *c == 'U' ? !is_upper(*q) : *c == 'l' ? !is_lower(*q)
            : *c == 'S' ? !(*q == ' ' || is_digit(*q)) : *q != *c)
            return 0;
    }
    *p = q;
    return 1;
}

/* (?>ID:\d+|[a-z0-9-]+) between parentheses */
static int identity(const char **p, const char *end) {
    const char *q = *p;
    if (q >= end || *q++ != '(') return 0;
    if (end - q >= 3 && memcmp(q, "ID:", 3) == 0) {
        q += 3;
        const char *d = q;
        while (q < end && is_digit(*q)) q++;
        if (q == d) return 0;
    } else {
        const char *w = q;
        while (q < end && (is_lower(*q) || is_digit(*q) || *q == '-')) q++;
        if (q == w) return 0;
    }
    if (q >= end || *q++ != ')') return 0;
    *p = q;
    return 1;
}

/* One line (without its newline): 1 and the six keys, or 0. */
static int compact_line(const char *s, const char *end, Span k[K_COUNT]) {
    const char *p = s;
    for (int i = 0; i < K_COUNT; i++) k[i] = (Span){"", 0}; /* a part the line has not */
    /* the seconds */
    if (!(lit(&p, end, "N/A") || shape(&p, end, "Ull Sd dd:dd:dd") ||
          shape(&p, end, "Ull, dd Ull dddd dd:dd:dd"))) {
        if (!shape(&p, end, "dddd-dd-dd")) return 0;
        if (shape(&p, end, "Tdd") && shape(&p, end, ":dd")) shape(&p, end, ":dd");
    }
    k[K_SECONDS] = (Span){s, (size_t)(p - s)};
    /* fraction, zone, node */
    const char *g = p;
    if (p < end && *p == '.' && end - p > 1 && is_digit(p[1])) {
        p++;
        for (int i = 0; i < 9 && p < end && is_digit(*p); i++) p++;
    }
    if (!lit(&p, end, "Z")) lit(&p, end, " +0000");
    if (end - p >= 2 && p[0] == ' ' && p[1] == '[') {
        const char *q = p + 2;
        while (q < end && *q != ']') q++;
        if (q < end) p = q + 1;
    }
    k[K_SUFFIX] = (Span){g, (size_t)(p - g)};
    /* the line ends in one optional CR */
    const char *stop = end > p && end[-1] == '\r' ? end - 1 : end;
    if (lit(&p, end, " EVENTS LOST: ")) {
        if (stop < p) return 0;
        k[K_LOST] = (Span){p, (size_t)(stop - p)};
        return 1;
    }
    if (!lit(&p, end, ": ")) return 0;
    const char *h = p;
    p = nonspace(p, end);
    k[K_FIRST] = (Span){h, (size_t)(p - h)};
    if (!lit(&p, end, " ")) return 0;
    const char *l = p;
    if (!identity(&p, end) || !lit(&p, end, " ")) return 0;
    if (!(lit(&p, end, "->") || lit(&p, end, "<-") || lit(&p, end, "<>"))) return 0;
    if (!lit(&p, end, " ")) return 0;
    p = nonspace(p, end);
    if (!lit(&p, end, " ") || !identity(&p, end)) return 0;
    k[K_LINK] = (Span){l, (size_t)(p - l)};
    if (!lit(&p, end, " ")) return 0;
    if (stop <= p || stop[-1] != ')') return 0;
    k[K_TAIL] = (Span){p, (size_t)(stop - p)};
    return 1;
}

/* ---- the keys of a block, dictionary-encoded ---- */

typedef struct {
    Span *keys; /* distinct, in order of first sight */
    size_t nkeys, cap;
    int32_t *slots; /* key index + 1, 0 empty */
    uint64_t *hashes;
    size_t nslots;
    Buf codes; /* int32 per row */
} Dict;

static uint64_t span_hash(Span s) {
    uint64_t h = 0xcbf29ce484222325ull ^ s.n;
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 0x100000001b3ull;
    return h ^ (h >> 32);
}

static int dict_code(Dict *d, Span s) {
    if ((d->nkeys + 1) * 2 > d->nslots) {
        size_t n = d->nslots ? d->nslots * 2 : 256;
        int32_t *slots = calloc(n, sizeof(int32_t));
        uint64_t *hashes = calloc(n, sizeof(uint64_t));
        if (!slots || !hashes) { free(slots); free(hashes); return -1; }
        for (size_t i = 0; i < d->nslots; i++) {
            if (!d->slots[i]) continue;
            size_t j = d->hashes[i] & (n - 1);
            while (slots[j]) j = (j + 1) & (n - 1);
            slots[j] = d->slots[i];
            hashes[j] = d->hashes[i];
        }
        free(d->slots);
        free(d->hashes);
        d->slots = slots;
        d->hashes = hashes;
        d->nslots = n;
    }
    uint64_t h = span_hash(s);
    size_t j = h & (d->nslots - 1);
    int32_t code = -1;
    while (d->slots[j]) {
        Span *k = &d->keys[d->slots[j] - 1];
        if (d->hashes[j] == h && k->n == s.n && (!s.n || memcmp(k->p, s.p, s.n) == 0)) {
            code = d->slots[j] - 1;
            break;
        }
        j = (j + 1) & (d->nslots - 1);
    }
    if (code < 0) {
        if (d->nkeys == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 256;
            Span *keys = realloc(d->keys, cap * sizeof(Span));
            if (!keys) return -1;
            d->keys = keys;
            d->cap = cap;
        }
        code = (int32_t)d->nkeys;
        d->keys[d->nkeys++] = s;
        d->slots[j] = code + 1;
        d->hashes[j] = h;
    }
    buf_put(&d->codes, &code, sizeof code);
    return d->codes.failed ? -1 : 0;
}

static void dict_free(Dict *d) {
    free(d->keys);
    free(d->slots);
    free(d->hashes);
    buf_free(&d->codes);
}

/* compact_keys(text) -> [(codes: bytes of int32 per row, keys: [str])] * 6, or None when a
 * line is not one the regex matches (the reference reads that text). */
PyObject *py_compact_keys(PyObject *self, PyObject *args) {
    PyObject *text;
    if (!PyArg_ParseTuple(args, "U", &text)) return NULL;
    Py_ssize_t size;
    const char *s = PyUnicode_AsUTF8AndSize(text, &size);
    if (!s) return NULL;
    Dict dicts[K_COUNT];
    memset(dicts, 0, sizeof dicts);
    const char *p = s, *end = s + size;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS /* the str (and its UTF-8) lives while the caller holds it */
    while (p < end && ok > 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) { ok = 0; break; } /* a block of whole lines only */
        Span keys[K_COUNT];
        if (!compact_line(p, nl, keys)) { ok = 0; break; }
        for (int i = 0; i < K_COUNT && ok > 0; i++)
            if (dict_code(&dicts[i], keys[i]) < 0) ok = -1;
        p = nl + 1;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (ok < 0) {
        PyErr_NoMemory();
    } else if (ok == 0) {
        result = Py_NewRef(Py_None);
    } else if ((result = PyList_New(K_COUNT))) {
        for (int i = 0; i < K_COUNT; i++) {
            Dict *d = &dicts[i];
            PyObject *keys = PyList_New((Py_ssize_t)d->nkeys);
            PyObject *codes = PyBytes_FromStringAndSize(d->codes.data ? d->codes.data : "",
                                                        (Py_ssize_t)d->codes.len);
            for (size_t j = 0; keys && j < d->nkeys; j++) {
                PyObject *k = PyUnicode_DecodeUTF8(d->keys[j].p, (Py_ssize_t)d->keys[j].n,
                                                   "strict");
                if (!k) { Py_CLEAR(keys); break; }
                PyList_SET_ITEM(keys, (Py_ssize_t)j, k);
            }
            PyObject *pair = keys && codes ? PyTuple_Pack(2, codes, keys) : NULL;
            Py_XDECREF(keys);
            Py_XDECREF(codes);
            if (!pair) { Py_CLEAR(result); break; }
            PyList_SET_ITEM(result, i, pair);
        }
    }
    for (int i = 0; i < K_COUNT; i++) dict_free(&dicts[i]);
    return result;
}
