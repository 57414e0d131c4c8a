/* flowlens._native: the fast path of the live and file readers (see flowlens/sources/native.py).
 *
 * Everything here answers a narrow question fast and says "not me" (a bail) for anything it is
 * not sure to answer exactly as the Python reference does; the caller then takes the reference
 * path. Every reader of untrusted bytes checks bounds before each access. */
#ifndef FLOWLENS_NATIVE_H
#define FLOWLENS_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32 /* nesting of messages and JSON values */

/* ---- growable byte buffer (util.c) ---------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the content is incomplete */
} Buf;

int buf_grow(Buf *b, size_t extra);
static inline void buf_put(Buf *b, const void *p, size_t n) {
    if (n == 0 || (b->len + n > b->cap && buf_grow(b, n) < 0)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static inline void buf_putc(Buf *b, char c) {
    if (b->len + 1 > b->cap && buf_grow(b, 1) < 0) return;
    b->data[b->len++] = c;
}
static inline void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }
void buf_free(Buf *b);
void buf_u64(Buf *b, uint64_t v);
void buf_i64(Buf *b, int64_t v);
/* pad: at least `width` digits, with zeros */
void buf_uint_padded(Buf *b, uint64_t v, int width);

/* A string slice; p == NULL means missing (null). */
typedef struct {
    const char *p;
    size_t n;
} Str;
static inline int str_eq(Str s, const char *lit) {
    size_t n = strlen(lit);
    return s.p && s.n == n && memcmp(s.p, lit, n) == 0;
}

/* 1 if [p, p+n) is well-formed UTF-8 (no surrogates, no overlong forms, <= U+10FFFF). */
int utf8_valid(const uint8_t *p, size_t n);
/* Number of code points of well-formed UTF-8. */
size_t utf8_length(const char *p, size_t n);
/* A JSON string as protojson and Go's encoder write it (orjson escapes, then <, >, &, U+2028,
 * U+2029 as \u escapes). The input must be valid UTF-8. */
void json_quote(Buf *b, const char *p, size_t n);

/* ---- time (util.c) --------------------------------------------------------------------- */

typedef struct {
    int64_t year;
    int month, day, hour, minute, second, weekday; /* weekday 0 = Sunday */
} Civil;
void civil_from_seconds(int64_t seconds, Civil *c);
/* days since 1970-01-01 of a proleptic Gregorian date */
int64_t days_from_civil(int64_t y, int m, int d);
extern const char *const MONTH_ABBR[12];
extern const char *const WEEKDAY_ABBR[7];

/* ---- protobuf descriptors and wire format (wire.c) ------------------------------------- */

enum {
    T_DOUBLE = 1, T_FLOAT = 2, T_INT64 = 3, T_UINT64 = 4, T_INT32 = 5, T_FIXED64 = 6,
    T_FIXED32 = 7, T_BOOL = 8, T_STRING = 9, T_GROUP = 10, T_MESSAGE = 11, T_BYTES = 12,
    T_UINT32 = 13, T_ENUM = 14, T_SFIXED32 = 15, T_SFIXED64 = 16, T_SINT32 = 17, T_SINT64 = 18
};
enum { WKT_NONE = 0, WKT_TIMESTAMP, WKT_BOOL, WKT_INT32, WKT_UINT32, WKT_INT64, WKT_UINT64,
       WKT_STRING, WKT_OTHER };

typedef struct {
    uint32_t number;
    char *name;
    size_t name_len;
    int type, repeated, presence, oneof; /* oneof: index, or -1 */
    int message, enumeration;            /* indexes into the schema, or -1 */
} Field;

typedef struct {
    char *full_name;
    int wkt;
    Field *fields; /* declaration order */
    int nfields;
    int16_t direct[64]; /* field number -> field index + 1 for numbers < 64 */
    uint32_t *numbers;  /* sorted field numbers ... */
    int *by_number;     /* ... and their field indexes */
} Message;

typedef struct {
    int32_t *numbers; /* sorted */
    char **names;
    size_t *lens;
    int n;
} Enum;

typedef struct {
    Message *msgs;
    int nmsgs;
    Enum *enums;
    int nenums;
    int ready;
} Schema;
extern Schema SCHEMA;

int schema_find(const char *full_name);
int message_field(const Message *m, uint32_t number); /* field index or -1 */
Str enum_name(int enumeration, int32_t number);       /* p NULL when unknown */

/* One field occurrence in a message's bytes. */
typedef struct {
    int field; /* index in the message, or -1 for an unknown field */
    int wt;    /* wire type */
    uint64_t v; /* varint / fixed value */
    const uint8_t *p; /* length-delimited bytes */
    size_t n;
    const uint8_t *raw; /* the whole occurrence, tag included */
    size_t raw_n;
} Occ;

typedef struct {
    Occ *a;
    size_t n, cap;
    int *order; /* occurrences sorted by field (declaration order), see wire_sorted */
    int *start; /* per field: first position in order; start[nfields] = n */
    size_t order_cap, start_cap;
} Level;

typedef struct {
    Level lv[MAX_DEPTH];
} Scratch;
void scratch_free(Scratch *s);

/* Scans one message level: every field's wire type and bounds checked, strings UTF-8, each
 * singular message and oneof at most once; nested messages are not entered. 0, or -1 to bail. */
int wire_scan(Scratch *s, int depth, int mi, const uint8_t *p, size_t n);
/* Orders the scanned occurrences by field (declaration order); 0, or -1 (no memory). */
int wire_sort(Scratch *s, int depth, int mi);
/* Scans a message and every message inside it. */
int wire_validate(Scratch *s, int depth, int mi, const uint8_t *p, size_t n);
/* The last occurrence of field `number` at this level (after wire_scan), or NULL. */
const Occ *wire_last(const Scratch *s, int depth, int mi, uint32_t number);
/* Appends the protojson (hubble's jsonpb) of a message. 0, or -1 to bail. */
int protojson_message(Scratch *s, int depth, int mi, const uint8_t *p, size_t n, Buf *out);
/* A Timestamp's seconds and nanos (missing fields are 0). 0, or -1 to bail. */
int wire_timestamp(const uint8_t *p, size_t n, int64_t *seconds, int64_t *nanos);

/* A varint of at most 64 bits; 0, or -1 when malformed or cut off. */
static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) { /* one byte: the common case */
        *v = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        if (i == 9 && b > 1) return -1; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Python functions of wire.c */
PyObject *py_set_schema(PyObject *self, PyObject *args);
PyObject *py_jsonpb(PyObject *self, PyObject *args);

/* ---- arenas: allocations that never move, freed together (util.c) ----------------------- */

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    char data[];
} Chunk;
typedef struct {
    Chunk *head;
} Arena;
char *arena_alloc(Arena *a, size_t n); /* NULL when out of memory */
Str arena_str(Arena *a, const char *p, size_t n); /* a copy; p NULL when out of memory */
void arena_free(Arena *a);

/* ---- splitting flows into per-row values and shapes (split.c, json.c) -------------------- */

/* The values that differ from flow to flow; everything else is the flow's shape. */
typedef struct {
    int64_t time;
    Str uuid, src_ip, dst_ip, trace_id;
    int32_t shape;
    int32_t l7; /* index into Run.l7s, or -1: not an L7 flow */
    uint32_t sport, dport; /* 0: none */
    uint8_t has_time;
    size_t source, source_len; /* the payload's index, or the line's offset and length */
} Row;

typedef struct {
    Str summary, type, protocol, http_method, http_url, http_protocol, http_headers, dns_query,
        dns_qtypes, dns_ips;
    uint64_t latency;
    int64_t http_code, dns_rcode;
    uint8_t has_latency, has_code, has_rcode;
} L7Row;

/* What the renderer needs of a shape: the frame's values of the columns hubble prints. */
typedef struct {
    int set, unusable; /* unusable: a value the renderer leaves to the reference */
    Str node, verdict, event, direction, policies, protocol, summary, auth;
    Str ns[2], pod[2], service[2], names[2];
    int64_t identity[2];
    int has_identity[2];
    int reply; /* -1 unknown, 0, 1 */
    uint64_t trace;
    int has_trace;
} ShapeView;

typedef struct {
    uint64_t hash;
    size_t off;
    size_t len;
    int32_t id; /* -1: empty slot */
} Slot;

typedef struct {
    PyObject_HEAD
    int json; /* 0: GetFlowsResponse bytes; 1: jsonpb lines */
    Slot *slots;
    size_t nslots, nshapes;
    Buf keys;
    ShapeView *views;
    size_t views_cap;
    Arena view_arena;
    long generation; /* bumped when the shapes start over */
    int busy;        /* a split runs without the GIL: one at a time */
    uint64_t seed;
    int mi_response, mi_flow, mi_ip, mi_l4, mi_trace_context, mi_trace_parent, mi_l7, mi_dns,
        mi_http, mi_header, mi_ports[3];
} Splitter;

typedef struct {
    PyObject_HEAD
    Row *rows;
    size_t nrows, cap;
    L7Row *l7s;
    size_t nl7, l7cap;
    Arena arena;
    PyObject *owner;      /* what the Str values point into: a tuple of bytes, or a block */
    Py_buffer view;       /* the block's, exported while the run lives */
    int has_view;
    PyObject *new_shapes; /* [(shape, index)]: index of a payload, or (start, end) of a line */
    PyObject *others;     /* [(index, rows before)]: responses that are not flows */
    long generation;      /* of the splitter's shapes when the run was split */
    size_t newlines;      /* in the block split (jsonpb) */
} Run;

extern PyTypeObject SplitterType, RunType;
int run_push(Run *run, Row **row);
int run_push_l7(Run *run, Row *row, L7Row **l7);
/* The shape of a key given in parts (their concatenation; a new shape is added, *is_new says
 * so); -1 when out of memory. */
int32_t shape_of(Splitter *sp, const Str *parts, int nparts, int *is_new);
int split_json(Splitter *sp, Run *run, const char *block, size_t n); /* 0, or -1 to bail */

/* ---- compact text (text.c) -------------------------------------------------------------- */

PyObject *py_compact_keys(PyObject *self, PyObject *args);

/* ---- rendering (render.c) ------------------------------------------------------------- */

PyObject *py_set_render_tables(PyObject *self, PyObject *args);
PyObject *splitter_set_view(Splitter *sp, PyObject *args);
PyObject *splitter_render(Splitter *sp, PyObject *args, PyObject *kwargs);
extern PyTypeObject TableType;

#endif
