/* Splitting jsonpb lines into per-row values and shapes, as flowlens.sources.jsonpb reads them
 * (Arrow's JSON reader on the schema there, then its column derivations).
 *
 * A line's shape key is the line with the per-row values cut out (each replaced by a byte that
 * valid JSON never holds outside strings, 0x01), plus what the event label needs of the L7 part;
 * lines with the same key differ only in per-row values, which cannot change how the rest
 * parses. Anything this code is not sure to read as the reference does (another JSON type than
 * the schema's, escapes in keys, duplicate keys it reads, numbers outside the frame's range,
 * other time forms, lost events, blank lines) bails: the reference reads that block. */
#include "native.h"

#include <stdlib.h>

typedef struct {
    const char *p, *end;
} J;

enum { V_NONE = 0, V_NULL, V_STRING, V_NUMBER, V_OBJECT, V_ARRAY, V_BOOL };

static const char EMPTY[] = "";

static void ws(J *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
        j->p++;
}

static int expect(J *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != c) return -1;
    j->p++;
    return 0;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* Bytes of w that are '"', '\\', below 0x20 or above 0x7F: nonzero when there are any. */
static inline uint64_t special_bytes(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    return ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
           ((w - ones * 0x20) & ~w) | w;
}

/* A string at j (at its opening quote): its raw content, and whether it has escapes. Escapes
 * are checked (a \u0000 or a lone surrogate bails), raw bytes must be UTF-8 without control
 * characters. */
static inline int string_raw(J *j, Str *raw, int *escaped) {
    if (j->p >= j->end || *j->p != '"') return -1;
    const char *start = ++j->p;
    int high = 0; /* a byte above 0x7F: the content is checked as UTF-8 */
    *escaped = 0;
    while (j->p < j->end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (j->end - j->p >= 8) { /* eight bytes at once, to the first one to look at */
            uint64_t w;
            memcpy(&w, j->p, 8);
            uint64_t m = special_bytes(w) & 0x8080808080808080ull;
            if (!m) {
                j->p += 8;
                continue;
            }
            j->p += __builtin_ctzll(m) >> 3; /* the lowest flag is exact */
        }
#endif
        unsigned char c = (unsigned char)*j->p;
        if (c >= 0x80) {
            high = 1;
            j->p++;
            continue;
        }
        if (c == '"') {
            raw->p = start;
            raw->n = (size_t)(j->p - start);
            j->p++;
            return !high || utf8_valid((const uint8_t *)raw->p, raw->n) ? 0 : -1;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            *escaped = 1;
            if (j->end - j->p < 2) return -1;
            char e = j->p[1];
            if (e == 'u') {
                uint32_t v;
                if (j->end - j->p < 6 || hex4(j->p + 2, &v) < 0 || v == 0) return -1;
                j->p += 6;
                if (v >= 0xDC00 && v <= 0xDFFF) return -1;
                if (v >= 0xD800 && v <= 0xDBFF) { /* a surrogate pair, or bail */
                    uint32_t lo;
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                        hex4(j->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    j->p += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0') return -1;
            j->p += 2;
            continue;
        }
        j->p++;
    }
    return -1;
}

static void put_utf8(char *out, size_t *at, uint32_t cp) {
    if (cp < 0x80) out[(*at)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*at)++] = (char)(0xC0 | cp >> 6);
        out[(*at)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*at)++] = (char)(0xE0 | cp >> 12);
        out[(*at)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*at)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*at)++] = (char)(0xF0 | cp >> 18);
        out[(*at)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*at)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*at)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* The string's value: the raw bytes themselves, or an unescaped copy in the run's arena (checked
 * already by string_raw). Never NULL for a string, even an empty one. */
static int string_value(Run *run, Str raw, int escaped, Str *out) {
    if (!escaped) {
        out->p = raw.n ? raw.p : EMPTY;
        out->n = raw.n;
        return 0;
    }
    char *buf = arena_alloc(&run->arena, raw.n ? raw.n : 1); /* never longer than raw */
    if (!buf) return -1;
    size_t at = 0;
    for (size_t i = 0; i < raw.n;) {
        char c = raw.p[i];
        if (c != '\\') {
            buf[at++] = c;
            i++;
            continue;
        }
        char e = raw.p[i + 1];
        if (e == 'u') {
            uint32_t v, lo;
            hex4(raw.p + i + 2, &v);
            i += 6;
            if (v >= 0xD800 && v <= 0xDBFF) {
                hex4(raw.p + i + 2, &lo);
                i += 6;
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(buf, &at, v);
            continue;
        }
        buf[at++] = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r'
                  : e == 't' ? '\t' : e;
        i += 2;
    }
    out->p = buf;
    out->n = at;
    return 0;
}

/* A number token; *integer is set when it is an integer without fraction or exponent. */
static int number(J *j, int *integer, int64_t *value) {
    const char *start = j->p;
    int negative = 0;
    if (j->p < j->end && *j->p == '-') { negative = 1; j->p++; }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    int leading_zero = *j->p == '0';
    uint64_t v = 0;
    int overflow = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) overflow = 1;
        v = v * 10 + (uint64_t)(*j->p - '0');
        j->p++;
    }
    if (leading_zero && j->p - start - negative > 1) return -1;
    *integer = !overflow && v <= INT64_MAX;
    if (j->p < j->end && *j->p == '.') {
        *integer = 0;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        *integer = 0;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (negative && v == 0) *integer = 0; /* "-0": leave it to the reference */
    *value = negative ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int literal(J *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return -1;
    j->p += n;
    return 0;
}

/* Checks and skips any value; its kind in *kind. */
static int skip_value(J *j, int depth, int *kind) {
    if (depth >= MAX_DEPTH) return -1;
    ws(j);
    if (j->p >= j->end) return -1;
    char c = *j->p;
    Str raw;
    int escaped, integer;
    int64_t v;
    switch (c) {
    case '"':
        *kind = V_STRING;
        return string_raw(j, &raw, &escaped);
    case 'n': *kind = V_NULL; return literal(j, "null");
    case 't': *kind = V_BOOL; return literal(j, "true");
    case 'f': *kind = V_BOOL; return literal(j, "false");
    case '{': {
        *kind = V_OBJECT;
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == '}') { j->p++; return 0; }
        for (;;) {
            int k;
            ws(j);
            if (string_raw(j, &raw, &escaped) < 0 || expect(j, ':') < 0 ||
                skip_value(j, depth + 1, &k) < 0)
                return -1;
            ws(j);
            if (j->p >= j->end) return -1;
            if (*j->p == '}') { j->p++; return 0; }
            if (*j->p++ != ',') return -1;
        }
    }
    case '[': {
        *kind = V_ARRAY;
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
        for (;;) {
            int k;
            if (skip_value(j, depth + 1, &k) < 0) return -1;
            ws(j);
            if (j->p >= j->end) return -1;
            if (*j->p == ']') { j->p++; return 0; }
            if (*j->p++ != ',') return -1;
        }
    }
    default:
        *kind = V_NUMBER;
        return number(j, &integer, &v);
    }
}

/* ---- objects read member by member ---- */

typedef struct {
    J *j;
    int depth;
    int first;
} Obj;

/* Enters an object (j at '{'); 0, or -1. */
static int obj_open(Obj *o, J *j, int depth) {
    o->j = j;
    o->depth = depth;
    o->first = 1;
    if (depth >= MAX_DEPTH) return -1;
    return expect(j, '{');
}

/* The next member's key (1), the end of the object (0), or -1. Keys with escapes bail: the
 * reference would compare them unescaped. */
static int obj_next(Obj *o, Str *key) {
    J *j = o->j;
    ws(j);
    if (j->p >= j->end) return -1;
    if (*j->p == '}') {
        j->p++;
        return 0;
    }
    if (!o->first && *j->p++ != ',') return -1;
    if (!o->first) ws(j);
    o->first = 0;
    int escaped;
    if (string_raw(j, key, &escaped) < 0 || escaped || expect(j, ':') < 0) return -1;
    ws(j);
    return 1;
}

/* The kind of the value at j, without moving. */
static int peek_kind(J *j) {
    if (j->p >= j->end) return V_NONE;
    switch (*j->p) {
    case '"': return V_STRING;
    case 'n': return V_NULL;
    case '{': return V_OBJECT;
    case '[': return V_ARRAY;
    case 't': case 'f': return V_BOOL;
    default: return V_NUMBER;
    }
}

/* Keys seen in one object, for the duplicate check of the keys this code reads. */
typedef struct {
    uint32_t seen;
} Seen;
static int once(Seen *s, int bit) {
    if (s->seen >> bit & 1) return -1;
    s->seen |= 1u << bit;
    return 0;
}

/* A string value or null (*out.p NULL); anything else bails. */
static int string_or_null(Run *run, J *j, Str *out) {
    out->p = NULL;
    out->n = 0;
    int kind = peek_kind(j);
    if (kind == V_NULL) return literal(j, "null");
    Str raw;
    int escaped;
    if (kind != V_STRING || string_raw(j, &raw, &escaped) < 0) return -1;
    return string_value(run, raw, escaped, out);
}

/* An integer value within [low, high] or null; anything else bails. */
static int int_or_null(J *j, int64_t low, int64_t high, int64_t *out, int *has) {
    *has = 0;
    int kind = peek_kind(j);
    if (kind == V_NULL) return literal(j, "null");
    int integer;
    if (kind != V_NUMBER || number(j, &integer, out) < 0 || !integer) return -1;
    if (*out < low || *out > high) return -1;
    *has = 1;
    return 0;
}

/* One element of an array, appended to `b` (`index`: its place in the array); -1 when it is
   not one the array may hold. */
typedef int (*Element)(Run *run, J *j, int depth, Buf *b, int index, const void *ctx);

/* The elements of the array at `j` (its `[` next), each read and appended by `element`;
   `count` of them. -1 for anything but a well-formed array. */
static int each_element(Run *run, J *j, int depth, Element element, const void *ctx, Buf *b,
                        int *count) {
    *count = 0;
    if (peek_kind(j) != V_ARRAY || depth >= MAX_DEPTH) return -1;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        ws(j);
        if (element(run, j, depth, b, *count, ctx) < 0) return -1;
        ++*count;
        ws(j);
        if (j->p >= j->end) return -1;
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',') return -1;
    }
}

static int string_element(Run *run, J *j, int depth, Buf *b, int index, const void *sep) {
    Str s;
    if (peek_kind(j) != V_STRING || string_or_null(run, j, &s) < 0) return -1;
    if (index) buf_puts(b, (const char *)sep);
    buf_put(b, s.p, s.n);
    return 0;
}

/* Strings of an array (or null) joined with `sep` into the arena; elements must be strings. */
static int joined_strings(Run *run, J *j, int depth, const char *sep, Str *out) {
    out->p = NULL;
    out->n = 0;
    if (peek_kind(j) == V_NULL) return literal(j, "null");
    Buf b = {0};
    int count;
    int r = each_element(run, j, depth, string_element, sep, &b, &count);
    if (r == 0 && count) {
        *out = arena_str(&run->arena, b.data ? b.data : "", b.len);
        if (!out->p || b.failed) r = -1;
    } else if (r == 0) {
        out->p = EMPTY; /* an empty list: joined, "" */
    }
    buf_free(&b);
    return r;
}

/* ---- a line ---- */

#define MAX_CUTS 16

typedef struct {
    const char *from, *to; /* a value cut out of the key */
    int summary;           /* only when the flow is an L7 flow */
} Cut;

typedef struct {
    Cut cuts[MAX_CUTS];
    int ncuts;
    Str time, rtime;
    int has_l7, has_icmp, protocols;
    char record;
    Str l7_type, dns_source;
} Line;

static int cut(Line *l, const char *from, const char *to, int summary) {
    if (l->ncuts >= MAX_CUTS) return -1;
    l->cuts[l->ncuts].from = from;
    l->cuts[l->ncuts].to = to;
    l->cuts[l->ncuts].summary = summary;
    l->ncuts++;
    return 0;
}

/* A per-row string member: read, and cut out of the key. */
static int cut_string(Run *run, J *j, Line *l, Str *out, int summary) {
    const char *from = j->p;
    if (string_or_null(run, j, out) < 0) return -1;
    return cut(l, from, j->p, summary);
}

/* Per-row integer member, cut out of the key. */
static int cut_int(J *j, Line *l, int64_t low, int64_t high, int64_t *out, int *has) {
    const char *from = j->p;
    if (int_or_null(j, low, high, out, has) < 0) return -1;
    return cut(l, from, j->p, 0);
}

/* RFC 3339 as hubble writes it, YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z, to nanoseconds; -1 for any
 * other form or a time beyond what int64 nanoseconds hold (the reference decides those). */
static int parse_time(Str s, int64_t *ns) {
    const char *p = s.p;
    size_t n = s.n;
    if (n < 20 || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' ||
        p[n - 1] != 'Z')
        return -1;
    int f[6], at[6] = {0, 5, 8, 11, 14, 17}, width[6] = {4, 2, 2, 2, 2, 2};
    for (int k = 0; k < 6; k++) {
        f[k] = 0;
        for (int i = 0; i < width[k]; i++) {
            char c = p[at[k] + i];
            if (c < '0' || c > '9') return -1;
            f[k] = f[k] * 10 + (c - '0');
        }
    }
    int64_t frac = 0;
    size_t i = 19;
    if (p[i] == '.') {
        size_t digits = 0;
        for (i++; i < n - 1; i++, digits++) {
            if (p[i] < '0' || p[i] > '9' || digits == 9) return -1;
            frac = frac * 10 + (p[i] - '0');
        }
        if (!digits) return -1;
        for (; digits < 9; digits++) frac *= 10;
    }
    if (i != n - 1) return -1;
    static const int days_in[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year = f[0], month = f[1], day = f[2];
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month < 1 || month > 12 || day < 1 || day > days_in[month - 1] ||
        (month == 2 && day == 29 && !leap) || f[3] > 23 || f[4] > 59 || f[5] > 59)
        return -1;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + f[3] * 3600 + f[4] * 60 + f[5];
    int64_t whole;
    if (__builtin_mul_overflow(seconds, (int64_t)1000000000, &whole) ||
        __builtin_add_overflow(whole, frac, ns) || *ns == INT64_MIN) /* (NaT) */
        return -1;
    return 0;
}

/* Latency: a string of digits (protojson's uint64) within uint64; null is none. */
static int latency(Run *run, J *j, uint64_t *out, int *has) {
    Str s;
    *has = 0;
    if (string_or_null(run, j, &s) < 0) return -1;
    if (s.p) {
        if (!s.n || (s.n > 1 && s.p[0] == '0')) return -1;
        uint64_t v = 0;
        for (size_t i = 0; i < s.n; i++) {
            if (s.p[i] < '0' || s.p[i] > '9') return -1;
            uint64_t d = (uint64_t)(s.p[i] - '0');
            if (v > (UINT64_MAX - d) / 10) return -1;
            v = v * 10 + d;
        }
        *out = v;
        *has = 1;
    }
    return 0;
}

/* A header {"key": …, "value": …} as `key: value`, one per line. */
static int header_element(Run *run, J *j, int depth, Buf *b, int index, const void *ctx) {
    Obj o;
    Str key, k = {NULL, 0}, v = {NULL, 0};
    Seen seen = {0};
    int m;
    if (peek_kind(j) != V_OBJECT || obj_open(&o, j, depth + 1) < 0) return -1;
    while ((m = obj_next(&o, &key)) == 1) {
        if (str_eq(key, "key")) {
            if (once(&seen, 0) < 0 || string_or_null(run, j, &k) < 0) return -1;
        } else if (str_eq(key, "value")) {
            if (once(&seen, 1) < 0 || string_or_null(run, j, &v) < 0) return -1;
        } else {
            int kind;
            if (skip_value(j, depth + 2, &kind) < 0) return -1;
        }
    }
    if (m < 0) return -1;
    if (index) buf_putc(b, '\n');
    if (k.p) buf_put(b, k.p, k.n);
    buf_put(b, ": ", 2);
    if (v.p) buf_put(b, v.p, v.n);
    return 0;
}

static int http_headers(Run *run, J *j, int depth, Str *out) {
    out->p = NULL;
    out->n = 0;
    if (peek_kind(j) == V_NULL) return literal(j, "null");
    Buf b = {0};
    int count;
    int r = each_element(run, j, depth, header_element, NULL, &b, &count);
    if (r == 0 && count && b.len) {
        *out = arena_str(&run->arena, b.data, b.len);
        if (!out->p || b.failed) r = -1;
    }
    buf_free(&b);
    return r;
}

/* The l7 object of a flow, all per row (cut out of the key as a whole by the caller). */
static int l7_values(Run *run, J *j, int depth, Line *l, L7Row *r) {
    Obj o;
    Str key;
    Seen seen = {0};
    int m;
    int64_t code = 0, rcode = 0;
    int has_code = 0, has_rcode = 0, http = 0, dns = 0, kafka = 0;
    uint64_t lat = 0;
    int has_lat = 0;
    if (obj_open(&o, j, depth) < 0) return -1;
    while ((m = obj_next(&o, &key)) == 1) {
        int kind = peek_kind(j);
        if (str_eq(key, "type")) {
            if (once(&seen, 0) < 0 || string_or_null(run, j, &r->type) < 0) return -1;
        } else if (str_eq(key, "latency_ns")) {
            if (once(&seen, 1) < 0 || latency(run, j, &lat, &has_lat) < 0) return -1;
        } else if (str_eq(key, "http") || str_eq(key, "dns")) {
            int is_http = key.p[0] == 'h';
            if (once(&seen, is_http ? 2 : 3) < 0) return -1;
            if (kind == V_NULL) {
                if (literal(j, "null") < 0) return -1;
                continue;
            }
            Obj rec;
            Str k2;
            Seen s2 = {0};
            int m2;
            if (kind != V_OBJECT || obj_open(&rec, j, depth + 1) < 0) return -1;
            if (is_http) http = 1;
            else dns = 1;
            while ((m2 = obj_next(&rec, &k2)) == 1) {
                int bad = 0;
                if (is_http && str_eq(k2, "code"))
                    bad = once(&s2, 0) < 0 || int_or_null(j, 0, 32767, &code, &has_code) < 0;
                else if (is_http && str_eq(k2, "method"))
                    bad = once(&s2, 1) < 0 || string_or_null(run, j, &r->http_method) < 0;
                else if (is_http && str_eq(k2, "url"))
                    bad = once(&s2, 2) < 0 || string_or_null(run, j, &r->http_url) < 0;
                else if (is_http && str_eq(k2, "protocol"))
                    bad = once(&s2, 3) < 0 || string_or_null(run, j, &r->http_protocol) < 0;
                else if (is_http && str_eq(k2, "headers"))
                    bad = once(&s2, 4) < 0 || http_headers(run, j, depth + 2, &r->http_headers) < 0;
                else if (!is_http && str_eq(k2, "query"))
                    bad = once(&s2, 5) < 0 || string_or_null(run, j, &r->dns_query) < 0;
                else if (!is_http && str_eq(k2, "ips"))
                    bad = once(&s2, 6) < 0 || joined_strings(run, j, depth + 2, ",", &r->dns_ips) < 0;
                else if (!is_http && str_eq(k2, "qtypes"))
                    bad = once(&s2, 7) < 0 ||
                          joined_strings(run, j, depth + 2, ",", &r->dns_qtypes) < 0;
                else if (!is_http && str_eq(k2, "rcode"))
                    bad = once(&s2, 8) < 0 || int_or_null(j, 0, 32767, &rcode, &has_rcode) < 0;
                else if (!is_http && str_eq(k2, "observation_source"))
                    bad = once(&s2, 9) < 0 || string_or_null(run, j, &l->dns_source) < 0;
                else {
                    int k3;
                    bad = skip_value(j, depth + 2, &k3) < 0;
                }
                if (bad) return -1;
            }
            if (m2 < 0) return -1;
        } else if (str_eq(key, "kafka")) {
            int k3;
            if (once(&seen, 4) < 0 || skip_value(j, depth + 1, &k3) < 0) return -1;
            if (k3 == V_OBJECT) kafka = 1;
            else if (k3 != V_NULL) return -1;
        } else {
            int k3;
            if (skip_value(j, depth + 1, &k3) < 0) return -1;
        }
    }
    if (m < 0 || http + dns + kafka > 1) return -1;
    l->record = http ? 'h' : dns ? 'd' : kafka ? 'k' : '-';
    if (l->record != '-') {
        static const char *names[] = {"http", "dns", "kafka"};
        const char *name = names[http ? 0 : dns ? 1 : 2];
        r->protocol.p = name;
        r->protocol.n = strlen(name);
    }
    int response = str_eq(r->type, "RESPONSE");
    if (response) {
        r->latency = has_lat ? lat : 0;
        r->has_latency = 1;
        if (http) { r->http_code = has_code ? code : 0; r->has_code = 1; }
        if (dns) { r->dns_rcode = has_rcode ? rcode : 0; r->has_rcode = 1; }
    }
    /* joined lists: an empty join is null */
    if (r->dns_qtypes.p && !r->dns_qtypes.n) r->dns_qtypes.p = NULL;
    if (r->dns_ips.p && !r->dns_ips.n) r->dns_ips.p = NULL;
    l->l7_type = r->type;
    return 0;
}

/* flow.l4: ports per row; which protocols are there. */
static int l4_values(Run *run, J *j, int depth, Line *l, Row *row) {
    Obj o;
    Str key;
    Seen seen = {0};
    int m;
    static const char *names[] = {"TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP"};
    if (obj_open(&o, j, depth) < 0) return -1;
    while ((m = obj_next(&o, &key)) == 1) {
        int which = -1;
        for (int k = 0; k < 7; k++)
            if (str_eq(key, names[k])) which = k;
        int kind = peek_kind(j);
        if (which < 0) {
            int k3;
            if (skip_value(j, depth + 1, &k3) < 0) return -1;
            continue;
        }
        if (once(&seen, which) < 0) return -1;
        if (kind == V_NULL) {
            if (literal(j, "null") < 0) return -1;
            continue;
        }
        if (kind != V_OBJECT) return -1;
        l->protocols++;
        if (which >= 3) {
            int k3;
            l->has_icmp |= which == 3 || which == 4;
            if (skip_value(j, depth + 1, &k3) < 0) return -1;
            continue;
        }
        Obj body;
        Str k2;
        Seen s2 = {0};
        int m2;
        if (obj_open(&body, j, depth + 1) < 0) return -1;
        while ((m2 = obj_next(&body, &k2)) == 1) {
            int64_t port;
            int has;
            if (str_eq(k2, "source_port") || str_eq(k2, "destination_port")) {
                int src = k2.p[0] == 's';
                if (once(&s2, src) < 0 || cut_int(j, l, 0, 65535, &port, &has) < 0) return -1;
                if (src) row->sport = has ? (uint32_t)port : 0;
                else row->dport = has ? (uint32_t)port : 0;
            } else {
                int k3;
                if (skip_value(j, depth + 2, &k3) < 0) return -1;
            }
        }
        if (m2 < 0) return -1;
    }
    (void)run;
    return m < 0 ? -1 : 0;
}

/* flow.IP: the addresses per row. */
static int ip_values(Run *run, J *j, int depth, Line *l, Row *row) {
    Obj o;
    Str key;
    Seen seen = {0};
    int m;
    if (obj_open(&o, j, depth) < 0) return -1;
    while ((m = obj_next(&o, &key)) == 1) {
        if (str_eq(key, "source") || str_eq(key, "destination")) {
            int src = key.p[0] == 's';
            Str *at = src ? &row->src_ip : &row->dst_ip;
            if (once(&seen, src) < 0 || cut_string(run, j, l, at, 0) < 0) return -1;
            if (at->p && !at->n) at->p = NULL; /* empty is NA */
        } else {
            int k3;
            if (skip_value(j, depth + 1, &k3) < 0) return -1;
        }
    }
    return m < 0 ? -1 : 0;
}

static int trace_values(Run *run, J *j, int depth, Line *l, Row *row, int level) {
    Obj o;
    Str key;
    Seen seen = {0};
    int m;
    if (peek_kind(j) == V_NULL) return literal(j, "null");
    if (obj_open(&o, j, depth) < 0) return -1;
    while ((m = obj_next(&o, &key)) == 1) {
        if (level == 0 && str_eq(key, "parent")) {
            if (once(&seen, 0) < 0 || trace_values(run, j, depth + 1, l, row, 1) < 0) return -1;
        } else if (level == 1 && str_eq(key, "trace_id")) {
            if (once(&seen, 1) < 0 || cut_string(run, j, l, &row->trace_id, 0) < 0) return -1;
            if (row->trace_id.p && !row->trace_id.n) row->trace_id.p = NULL;
        } else {
            int k3;
            if (skip_value(j, depth + 1, &k3) < 0) return -1;
        }
    }
    return m < 0 ? -1 : 0;
}

/* What a block's lines add besides rows, gathered without the GIL: (shape, start, end) of new
 * shapes and (start, end, rows before) of lost-event records, as size_t triples. */
typedef struct {
    Buf fresh, others;
} Gathered;

/* One line: 0 a row (or a lost-event record) was added; -1 to bail. */
static int json_line(Splitter *sp, Run *run, const char *p, size_t n, size_t offset, Buf *key,
                     Gathered *acc) {
    J j = {p, p + n};
    Line l;
    memset(&l, 0, sizeof l);
    Row *row;
    L7Row r7;
    memset(&r7, 0, sizeof r7);
    Str summary = {NULL, 0};
    if (run_push(run, &row) < 0) return -1;
    row->source = offset;
    row->source_len = n;
    Obj top, flow;
    Str k;
    Seen seen = {0}, fseen = {0};
    int m, has_flow = 0, has_lost = 0;
    if (obj_open(&top, &j, 0) < 0) return -1;
    while ((m = obj_next(&top, &k)) == 1) {
        int kind = peek_kind(&j);
        if (str_eq(k, "flow")) {
            if (once(&seen, 0) < 0) return -1;
            if (kind == V_NULL) {
                if (literal(&j, "null") < 0) return -1;
                continue;
            }
            if (kind != V_OBJECT || obj_open(&flow, &j, 1) < 0) return -1;
            has_flow = 1;
            int fm;
            while ((fm = obj_next(&flow, &k)) == 1) {
                int fk = peek_kind(&j), bad = 0;
                if (str_eq(k, "time"))
                    bad = once(&fseen, 0) < 0 || cut_string(run, &j, &l, &l.time, 0) < 0;
                else if (str_eq(k, "uuid"))
                    bad = once(&fseen, 1) < 0 || cut_string(run, &j, &l, &row->uuid, 0) < 0;
                else if (str_eq(k, "Summary"))
                    bad = once(&fseen, 2) < 0 || cut_string(run, &j, &l, &summary, 1) < 0;
                else if (str_eq(k, "IP"))
                    bad = once(&fseen, 3) < 0 ||
                          (fk == V_NULL ? literal(&j, "null") : fk == V_OBJECT
                           ? ip_values(run, &j, 2, &l, row) : -1) < 0;
                else if (str_eq(k, "l4"))
                    bad = once(&fseen, 4) < 0 ||
                          (fk == V_NULL ? literal(&j, "null") : fk == V_OBJECT
                           ? l4_values(run, &j, 2, &l, row) : -1) < 0;
                else if (str_eq(k, "trace_context"))
                    bad = once(&fseen, 5) < 0 || trace_values(run, &j, 2, &l, row, 0) < 0;
                else if (str_eq(k, "l7")) {
                    const char *from = j.p;
                    bad = once(&fseen, 6) < 0;
                    if (!bad && fk == V_OBJECT) {
                        l.has_l7 = 1;
                        bad = l7_values(run, &j, 2, &l, &r7) < 0 || cut(&l, from, j.p, 0) < 0;
                    } else if (!bad) {
                        bad = fk != V_NULL || literal(&j, "null") < 0;
                    }
                } else {
                    int k3;
                    bad = skip_value(&j, 2, &k3) < 0;
                }
                if (bad) return -1;
            }
            if (fm < 0) return -1;
        } else if (str_eq(k, "time")) {
            if (once(&seen, 1) < 0 || cut_string(run, &j, &l, &l.rtime, 0) < 0) return -1;
        } else if (str_eq(k, "lost_events")) { /* read by the reference, line by line */
            int k3;
            if (once(&seen, 2) < 0 || skip_value(&j, 1, &k3) < 0) return -1;
            has_lost = k3 == V_OBJECT;
            if (k3 != V_OBJECT && k3 != V_NULL) return -1;
        } else if (str_eq(k, "node_status") || str_eq(k, "lostEvents") ||
                   str_eq(k, "nodeStatus")) {
            return -1; /* not a flow line: the reference reads this block */
        } else {
            int k3;
            if (skip_value(&j, 1, &k3) < 0) return -1;
        }
    }
    ws(&j);
    if (m < 0 || j.p != j.end || has_flow == has_lost) return -1;
    if (has_lost) { /* a lost-events record: the caller reads it */
        run->nrows--;
        size_t other[3] = {offset, offset + n, run->nrows};
        buf_put(&acc->others, other, sizeof other);
        return acc->others.failed ? -1 : 0;
    }
    if (l.protocols > 1 || (l.has_l7 && l.has_icmp)) return -1;
    /* the time: the flow's, else the response's */
    Str t = l.time.p ? l.time : l.rtime;
    if (t.p) {
        if (parse_time(t, &row->time) < 0) return -1;
        row->has_time = 1;
    }
    if (l.has_l7) {
        L7Row *r;
        if (run_push_l7(run, row, &r) < 0) return -1;
        *r = r7;
        r->summary = summary;
    }
    /* the key: the line without its per-row values (each a marker), then the L7 part's key;
     * in parts, so that a known shape costs no copy */
    static const char MARK[] = "\x01";
    Str parts[2 * MAX_CUTS + 2];
    int nparts = 0;
    const char *from = p;
    for (int i = 0; i < l.ncuts; i++) {
        if (l.cuts[i].summary && !l.has_l7) continue;
        parts[nparts++] = (Str){from, (size_t)(l.cuts[i].from - from)};
        parts[nparts++] = (Str){MARK, 1};
        from = l.cuts[i].to;
    }
    parts[nparts++] = (Str){from, (size_t)(p + n - from)};
    if (l.has_l7) {
        key->len = 0;
        buf_putc(key, '\x01');
        buf_putc(key, l.record);
        Str l7[2] = {l.l7_type, l.dns_source};
        for (int i = 0; i < 2; i++) {
            uint32_t len = l7[i].p ? (uint32_t)l7[i].n : UINT32_MAX;
            buf_put(key, &len, sizeof len);
            if (l7[i].p) buf_put(key, l7[i].p, l7[i].n);
        }
        if (key->failed) return -1;
        parts[nparts++] = (Str){key->data, key->len};
    }
    int is_new;
    row->shape = shape_of(sp, parts, nparts, &is_new);
    if (row->shape < 0) return -1;
    if (is_new) {
        size_t fresh[3] = {(size_t)row->shape, offset, offset + n};
        buf_put(&acc->fresh, fresh, sizeof fresh);
        if (acc->fresh.failed) return -1;
    }
    return 0;
}

int split_json(Splitter *sp, Run *run, const char *block, size_t n) {
    Buf key = {0};
    Gathered acc = {{0}, {0}};
    size_t at = 0;
    int r = 0;
    sp->busy = 1;
    Py_BEGIN_ALLOW_THREADS /* the run holds the block, exported */
    while (at < n && r == 0) {
        const char *nl = memchr(block + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - block) : n;
        if (end == at && !nl) break;
        r = json_line(sp, run, block + at, end - at, at, &key, &acc);
        run->newlines += nl != NULL;
        at = end + 1;
    }
    Py_END_ALLOW_THREADS
    sp->busy = 0;
    buf_free(&key);
    for (int k = 0; k < 2 && r == 0; k++) {
        const Buf *b = k ? &acc.others : &acc.fresh;
        const size_t *v = (const size_t *)b->data;
        for (size_t i = 0; i + 2 < b->len / sizeof(size_t) && r == 0; i += 3) {
            PyObject *item = k ? Py_BuildValue("(nnn)", (Py_ssize_t)v[i], (Py_ssize_t)v[i + 1],
                                               (Py_ssize_t)v[i + 2])
                               : Py_BuildValue("(n(nn))", (Py_ssize_t)v[i],
                                               (Py_ssize_t)v[i + 1], (Py_ssize_t)v[i + 2]);
            if (!item || PyList_Append(k ? run->others : run->new_shapes, item) < 0) r = -1;
            Py_XDECREF(item);
        }
    }
    buf_free(&acc.fresh);
    buf_free(&acc.others);
    return r == 0 ? 0 : -1;
}
