/* Splitting serialized GetFlowsResponse messages into per-row values and shapes, as
 * flowlens.sources.proto.ProtoDecoder does: the values that differ from flow to flow are read
 * here; the rest of a flow, its shape, is keyed, and each new shape is decoded once by the
 * reference (the caller). */
#include "native.h"

#include <stdlib.h>
#include <time.h>

/* Shapes kept before the table starts over (as the reference's cache), and key bytes. */
#define MAX_SHAPES 100000
#define MAX_KEY_BYTES (16u << 20)

/* ---- the shape table ---- */

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

/* A 64-bit hash of bytes: four independent lanes of 8 bytes, then the tail. */
static uint64_t hash_bytes(uint64_t seed, const char *p, size_t n) {
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t a = seed, b = seed ^ k, c = seed + k, d = ~seed;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = (a ^ w[0]) * k;
        b = (b ^ w[1]) * k;
        c = (c ^ w[2]) * k;
        d = (d ^ w[3]) * k;
        a ^= a >> 29; b ^= b >> 29; c ^= c >> 29; d ^= d >> 29;
    }
    uint64_t h = mix(a ^ mix(b + 1) ^ mix(c + 2) ^ mix(d + 3) ^ (n * k));
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = mix(h ^ w) * k;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    return mix(h ^ w ^ (uint64_t)(n - i) << 56);
}

static void shapes_reset(Splitter *sp) {
    for (size_t i = 0; i < sp->nslots; i++) sp->slots[i].id = -1;
    sp->nshapes = 0;
    sp->keys.len = 0;
    if (sp->views) memset(sp->views, 0, sp->views_cap * sizeof(ShapeView));
    arena_free(&sp->view_arena);
    sp->generation++;
}

static int shapes_grow(Splitter *sp) {
    size_t n = sp->nslots ? sp->nslots * 2 : 1024;
    Slot *slots = malloc(n * sizeof(Slot));
    if (!slots) return -1;
    for (size_t i = 0; i < n; i++) slots[i].id = -1;
    for (size_t i = 0; i < sp->nslots; i++) {
        Slot *s = &sp->slots[i];
        if (s->id < 0) continue;
        size_t j = s->hash & (n - 1);
        while (slots[j].id >= 0) j = (j + 1) & (n - 1);
        slots[j] = *s;
    }
    free(sp->slots);
    sp->slots = slots;
    sp->nslots = n;
    return 0;
}

int32_t shape_of(Splitter *sp, const Str *parts, int nparts, int *is_new) {
    *is_new = 0;
    if ((sp->nshapes + 1) * 2 > sp->nslots && shapes_grow(sp) < 0) return -1;
    uint64_t h = sp->seed;
    size_t n = 0;
    for (int i = 0; i < nparts; i++) {
        h = mix(h ^ hash_bytes(sp->seed, parts[i].p, parts[i].n)) + parts[i].n;
        n += parts[i].n;
    }
    size_t j = h & (sp->nslots - 1);
    while (sp->slots[j].id >= 0) {
        Slot *s = &sp->slots[j];
        if (s->hash == h && s->len == n) { /* compare part by part with the stored key */
            const char *stored = sp->keys.data + s->off;
            int same = 1;
            for (int i = 0; i < nparts && same; i++) {
                same = parts[i].n == 0 || memcmp(stored, parts[i].p, parts[i].n) == 0;
                stored += parts[i].n;
            }
            if (same) return s->id;
        }
        j = (j + 1) & (sp->nslots - 1);
    }
    if (sp->nshapes >= sp->views_cap) {
        size_t cap = sp->views_cap ? sp->views_cap * 2 : 1024;
        ShapeView *views = realloc(sp->views, cap * sizeof(ShapeView));
        if (!views) return -1;
        memset(views + sp->views_cap, 0, (cap - sp->views_cap) * sizeof(ShapeView));
        sp->views = views;
        sp->views_cap = cap;
    }
    size_t off = sp->keys.len;
    for (int i = 0; i < nparts; i++) buf_put(&sp->keys, parts[i].p, parts[i].n);
    if (sp->keys.failed) return -1;
    Slot *s = &sp->slots[j];
    s->hash = h;
    s->off = off;
    s->len = n;
    s->id = (int32_t)sp->nshapes++;
    *is_new = 1;
    return s->id;
}

/* ---- runs ---- */

int run_push(Run *run, Row **row) {
    if (run->nrows == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 1024;
        Row *rows = realloc(run->rows, cap * sizeof(Row));
        if (!rows) return -1;
        run->rows = rows;
        run->cap = cap;
    }
    *row = &run->rows[run->nrows++];
    memset(*row, 0, sizeof(Row));
    (*row)->l7 = -1;
    return 0;
}

int run_push_l7(Run *run, Row *row, L7Row **l7) {
    if (run->nl7 == run->l7cap) {
        size_t cap = run->l7cap ? run->l7cap * 2 : 256;
        L7Row *l7s = realloc(run->l7s, cap * sizeof(L7Row));
        if (!l7s) return -1;
        run->l7s = l7s;
        run->l7cap = cap;
    }
    row->l7 = (int32_t)run->nl7;
    *l7 = &run->l7s[run->nl7++];
    memset(*l7, 0, sizeof(L7Row));
    return 0;
}

/* ---- key building ---- */

/* Markers start with a zero byte, which no field's tag can (field number 0 is invalid), so a
 * key reads back unambiguously. */
static void key_mark(Buf *key, char what) {
    buf_putc(key, '\0');
    buf_putc(key, what);
}

static void key_bytes(Buf *key, const char *p, size_t n) {
    uint32_t len = (uint32_t)n;
    buf_put(key, &len, sizeof len);
    buf_put(key, p, n);
}

/* The raw occurrences of a scanned level, except the given field numbers. */
static void key_level_except(Buf *key, const Scratch *s, int depth, int mi, uint32_t a,
                             uint32_t b) {
    const Level *l = &s->lv[depth];
    const Message *m = &SCHEMA.msgs[mi];
    for (size_t i = 0; i < l->n; i++) {
        const Occ *o = &l->a[i];
        uint32_t number = o->field >= 0 ? m->fields[o->field].number : 0;
        if (o->field >= 0 && (number == a || number == b)) continue;
        buf_put(key, o->raw, o->raw_n);
    }
}

static Str occ_str(const Occ *o) {
    Str s = {NULL, 0};
    if (o && o->n) {
        s.p = (const char *)o->p;
        s.n = o->n;
    }
    return s;
}

/* Strings of a repeated field joined with `sep` (NULL when there are none). */
static Str joined(Run *run, const Scratch *s, int depth, int mi, uint32_t number,
                  const char *sep, int *oom) {
    const Level *l = &s->lv[depth];
    int fi = message_field(&SCHEMA.msgs[mi], number);
    size_t total = 0, count = 0, seplen = strlen(sep);
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].field == fi) { total += l->a[i].n; count++; }
    Str out = {NULL, 0};
    if (!count) return out;
    total += (count - 1) * seplen;
    char *p = arena_alloc(&run->arena, total ? total : 1);
    if (!p) { *oom = 1; return out; }
    size_t at = 0, k = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->a[i].field != fi) continue;
        if (k++) { memcpy(p + at, sep, seplen); at += seplen; }
        memcpy(p + at, l->a[i].p, l->a[i].n);
        at += l->a[i].n;
    }
    out.p = p;
    out.n = total;
    return out;
}

static const Occ *last(const Scratch *s, int depth, int mi, uint32_t number) {
    return wire_last(s, depth, mi, number);
}

static uint64_t last_u64(const Scratch *s, int depth, int mi, uint32_t number) {
    const Occ *o = last(s, depth, mi, number);
    return o ? o->v : 0;
}

/* The time of a Timestamp occurrence in nanoseconds; -1 beyond what datetime64[ns] holds
 * (int64, its lowest value being NaT): the reference makes such a flow a bad record. */
static int timestamp_ns(const Occ *o, int64_t *out) {
    int64_t seconds, nanos, ns;
    if (wire_timestamp(o->p, o->n, &seconds, &nanos) < 0) return -1;
    if (__builtin_mul_overflow(seconds, (int64_t)1000000000, &ns)) return -1;
    if (__builtin_add_overflow(ns, nanos, out) || *out == INT64_MIN) return -1;
    return 0;
}

/* The L7 values of a flow (ProtoDecoder._l7); appends the L7 key. 0, or -1 to bail. */
static int split_l7(Splitter *sp, Run *run, Scratch *s, Row *row, const Occ *l7o,
                    const Occ *summary, Buf *key) {
    L7Row *l7;
    if (run_push_l7(run, row, &l7) < 0) return -1;
    if (wire_scan(s, 2, sp->mi_l7, l7o->p, l7o->n) < 0) return -1;
    const Message *m7 = &SCHEMA.msgs[sp->mi_l7];
    int32_t type = (int32_t)(uint32_t)last_u64(s, 2, sp->mi_l7, 1);
    int type_field = message_field(m7, 1);
    Str type_name = {NULL, 0};
    if (type) {
        type_name = enum_name(m7->fields[type_field].enumeration, type);
        if (!type_name.p) { /* an unknown number: its digits, as the reference writes it */
            char digits[16];
            int len = snprintf(digits, sizeof digits, "%d", type);
            type_name = arena_str(&run->arena, digits, (size_t)len);
            if (!type_name.p) return -1;
        }
    }
    int response = str_eq(type_name, "RESPONSE");
    const Occ *dns = last(s, 2, sp->mi_l7, 100), *http = last(s, 2, sp->mi_l7, 101),
              *kafka = last(s, 2, sp->mi_l7, 102);
    char record = dns ? 'd' : http ? 'h' : kafka ? 'k' : '-';
    l7->type = type_name;
    if (record != '-') {
        static const char *names[] = {"dns", "http", "kafka"};
        const char *name = names[record == 'd' ? 0 : record == 'h' ? 1 : 2];
        l7->protocol.p = name;
        l7->protocol.n = strlen(name);
    }
    if (response) {
        l7->latency = last_u64(s, 2, sp->mi_l7, 2);
        l7->has_latency = 1;
    }
    Str source = {NULL, 0};
    int oom = 0;
    if (http) {
        if (wire_scan(s, 3, sp->mi_http, http->p, http->n) < 0) return -1;
        l7->http_method = occ_str(last(s, 3, sp->mi_http, 2));
        l7->http_url = occ_str(last(s, 3, sp->mi_http, 3));
        l7->http_protocol = occ_str(last(s, 3, sp->mi_http, 4));
        if (response) {
            uint32_t code = (uint32_t)last_u64(s, 3, sp->mi_http, 1);
            if (code > 32767) return -1; /* beyond the frame's Int16: the reference decides */
            l7->http_code = code;
            l7->has_code = 1;
        }
        /* headers: "key: value" joined with "\n" */
        const Level *l = &s->lv[3];
        int hf = message_field(&SCHEMA.msgs[sp->mi_http], 5);
        Buf joined_headers = {0};
        size_t count = 0;
        for (size_t i = 0; i < l->n; i++) {
            if (l->a[i].field != hf) continue;
            if (wire_scan(s, 4, sp->mi_header, l->a[i].p, l->a[i].n) < 0) {
                buf_free(&joined_headers);
                return -1;
            }
            Str k = occ_str(last(s, 4, sp->mi_header, 1));
            Str v = occ_str(last(s, 4, sp->mi_header, 2));
            if (count++) buf_putc(&joined_headers, '\n');
            if (k.p) buf_put(&joined_headers, k.p, k.n);
            buf_put(&joined_headers, ": ", 2);
            if (v.p) buf_put(&joined_headers, v.p, v.n);
        }
        if (count) {
            l7->http_headers = arena_str(&run->arena, joined_headers.data, joined_headers.len);
            if (!l7->http_headers.p || joined_headers.failed) oom = 1;
        }
        buf_free(&joined_headers);
    } else if (dns) {
        if (wire_scan(s, 3, sp->mi_dns, dns->p, dns->n) < 0) return -1;
        source = occ_str(last(s, 3, sp->mi_dns, 5));
        l7->dns_query = occ_str(last(s, 3, sp->mi_dns, 1));
        l7->dns_qtypes = joined(run, s, 3, sp->mi_dns, 7, ",", &oom);
        l7->dns_ips = joined(run, s, 3, sp->mi_dns, 2, ",", &oom);
        if (response) {
            uint32_t rcode = (uint32_t)last_u64(s, 3, sp->mi_dns, 6);
            if (rcode > 32767) return -1;
            l7->dns_rcode = rcode;
            l7->has_rcode = 1;
        }
    }
    if (oom) return -1;
    l7->summary = occ_str(summary);
    /* the L7 key: what the event label needs (record, type, DNS observation source) */
    key_mark(key, '7');
    buf_putc(key, record);
    buf_put(key, &type, sizeof type);
    key_bytes(key, source.p ? source.p : "", source.p ? source.n : 0);
    buf_putc(key, source.p ? 1 : 0);
    return 0;
}

/* One GetFlowsResponse: 0 a flow row was added, 1 it is not a flow, -1 bail. */
static int split_response(Splitter *sp, Run *run, Scratch *s, Buf *key, const uint8_t *p,
                          size_t n, size_t index, int32_t *shape, int *is_new) {
    if (wire_validate(s, 0, sp->mi_response, p, n) < 0) return -1;
    if (wire_scan(s, 0, sp->mi_response, p, n) < 0) return -1;
    const Occ *flow = last(s, 0, sp->mi_response, 1);
    if (!flow) return 1;
    const Occ *node = last(s, 0, sp->mi_response, 1000);
    const Occ *rtime = last(s, 0, sp->mi_response, 1001);
    if (wire_scan(s, 1, sp->mi_flow, flow->p, flow->n) < 0) return -1;
    Row *row;
    if (run_push(run, &row) < 0) return -1;
    row->source = index;
    const Message *fm = &SCHEMA.msgs[sp->mi_flow];
    const Level *fl = &s->lv[1];
    const Occ *ftime = NULL, *l7 = NULL, *summary = NULL, *node_name = NULL;
    key->len = 0;
    for (size_t i = 0; i < fl->n; i++) {
        const Occ *o = &fl->a[i];
        if (o->field < 0) {
            buf_put(key, o->raw, o->raw_n);
            continue;
        }
        switch (fm->fields[o->field].number) {
        case 1: ftime = o; break;
        case 34: row->uuid = occ_str(o); break;
        case 32: case 33: break; /* socket cookie, cgroup id: no column derives from them */
        case 15: l7 = o; break;
        case 100000: summary = o; break;
        case 11:
            node_name = o;
            buf_put(key, o->raw, o->raw_n);
            break;
        case 5: /* IP: addresses per row, the rest in the key */
            if (wire_scan(s, 2, sp->mi_ip, o->p, o->n) < 0) return -1;
            row->src_ip = occ_str(last(s, 2, sp->mi_ip, 1));
            row->dst_ip = occ_str(last(s, 2, sp->mi_ip, 2));
            key_mark(key, 'I');
            key_level_except(key, s, 2, sp->mi_ip, 1, 2);
            key_mark(key, 'i');
            break;
        case 6: { /* l4: ports per row */
            if (wire_scan(s, 2, sp->mi_l4, o->p, o->n) < 0) return -1;
            key_mark(key, 'L');
            const Level *l = &s->lv[2];
            const Message *l4 = &SCHEMA.msgs[sp->mi_l4];
            for (size_t k = 0; k < l->n; k++) {
                const Occ *b = &l->a[k];
                uint32_t num = b->field >= 0 ? l4->fields[b->field].number : 0;
                int which = num == 1 ? 0 : num == 2 ? 1 : num == 5 ? 2 : -1; /* TCP UDP SCTP */
                if (which < 0) {
                    buf_put(key, b->raw, b->raw_n);
                    continue;
                }
                int mi = sp->mi_ports[which];
                if (wire_scan(s, 3, mi, b->p, b->n) < 0) return -1;
                uint64_t sport = last_u64(s, 3, mi, 1), dport = last_u64(s, 3, mi, 2);
                if (sport > 65535 || dport > 65535) return -1; /* the reference decides */
                row->sport = (uint32_t)sport;
                row->dport = (uint32_t)dport;
                key_mark(key, 'P');
                buf_putc(key, (char)which);
                key_level_except(key, s, 3, mi, 1, 2);
                key_mark(key, 'p');
            }
            key_mark(key, 'l');
            break;
        }
        case 30: /* trace context: the trace id per row */
            if (wire_scan(s, 2, sp->mi_trace_context, o->p, o->n) < 0) return -1;
            {
                const Occ *parent = last(s, 2, sp->mi_trace_context, 1);
                if (parent) {
                    if (wire_scan(s, 3, sp->mi_trace_parent, parent->p, parent->n) < 0)
                        return -1;
                    row->trace_id = occ_str(last(s, 3, sp->mi_trace_parent, 1));
                }
            }
            break;
        default:
            buf_put(key, o->raw, o->raw_n);
        }
    }
    if (ftime) {
        if (timestamp_ns(ftime, &row->time) < 0) return -1;
        row->has_time = 1;
    } else if (rtime) {
        if (timestamp_ns(rtime, &row->time) < 0) return -1;
        row->has_time = 1;
    }
    if (l7) {
        if (split_l7(sp, run, s, row, l7, summary, key) < 0) return -1;
    } else if (summary) {
        buf_put(key, summary->raw, summary->raw_n);
    }
    if (!node_name || !node_name->n) { /* the response's node name stands in */
        key_mark(key, 'N');
        key_bytes(key, node ? (const char *)node->p : "", node ? node->n : 0);
    }
    if (key->failed) return -1;
    Str whole = {key->data ? key->data : "", key->len};
    *shape = row->shape = shape_of(sp, &whole, 1, is_new);
    return row->shape < 0 ? -1 : 0;
}

/* ---- Python types ---- */

static void run_dealloc(Run *run) {
    if (run->has_view) PyBuffer_Release(&run->view);
    free(run->rows);
    free(run->l7s);
    arena_free(&run->arena);
    Py_XDECREF(run->owner);
    Py_XDECREF(run->new_shapes);
    Py_XDECREF(run->others);
    Py_TYPE(run)->tp_free((PyObject *)run);
}

static Run *run_new(Splitter *sp, PyObject *owner) {
    Run *run = PyObject_New(Run, &RunType);
    if (!run) return NULL;
    run->rows = NULL;
    run->l7s = NULL;
    run->nrows = run->cap = run->nl7 = run->l7cap = 0;
    run->arena.head = NULL;
    run->owner = Py_NewRef(owner);
    run->has_view = 0;
    run->newlines = 0;
    run->new_shapes = PyList_New(0);
    run->others = PyList_New(0);
    run->generation = sp->generation;
    if (!run->new_shapes || !run->others) {
        Py_DECREF(run);
        return NULL;
    }
    return run;
}

/* Shapes start over once too many were seen (the caller drops its shape values too). */
static void maybe_reset(Splitter *sp) {
    if (sp->nshapes >= MAX_SHAPES || sp->keys.len >= MAX_KEY_BYTES) shapes_reset(sp);
}

typedef struct {
    const uint8_t *p;
    size_t n;
} Piece;

/* Where each payload of `parts` lies: parts a tuple of bytes objects, offsets a tuple of as
 * many int64 buffers, payload j of part k at parts[k][offsets[k][j]:offsets[k][j + 1]]
 * (rising, within the part). Appended to *pieces (PyMem; *count of them); -1 with an
 * exception set. */
static int joined_pieces(PyObject *parts, PyObject *offsets, Piece **pieces,
                         Py_ssize_t *count) {
    if (!PyTuple_Check(parts) || !PyTuple_Check(offsets) ||
        PyTuple_GET_SIZE(parts) != PyTuple_GET_SIZE(offsets)) {
        PyErr_SetString(PyExc_TypeError, "parts and offsets must be tuples of the same length");
        return -1;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(parts); k++) {
        PyObject *data = PyTuple_GET_ITEM(parts, k);
        if (!PyBytes_Check(data)) {
            PyErr_SetString(PyExc_TypeError, "parts must be bytes");
            return -1;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(offsets, k), &view,
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return -1;
        int ok = view.itemsize == 8 && view.format &&
                 (view.format[0] == 'q' || view.format[0] == 'l') && view.format[1] == '\0' &&
                 view.len >= 8;
        if (!ok) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "offsets must be at least one signed 64-bit integer");
            return -1;
        }
        const int64_t *at = (const int64_t *)view.buf;
        Py_ssize_t n = view.len / 8 - 1;
        Piece *grown = PyMem_Realloc(*pieces, (size_t)(*count + n + 1) * sizeof(Piece));
        if (!grown) {
            PyBuffer_Release(&view);
            PyErr_NoMemory();
            return -1;
        }
        *pieces = grown;
        const uint8_t *base = (const uint8_t *)PyBytes_AS_STRING(data);
        for (Py_ssize_t j = 0; j <= n && ok; j++) {
            ok = at[j] >= (j ? at[j - 1] : 0) && at[j] <= PyBytes_GET_SIZE(data);
            if (ok && j < n) grown[*count + j] = (Piece){base + at[j], (size_t)(at[j + 1] - at[j])};
        }
        PyBuffer_Release(&view);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "offsets must rise within their part");
            return -1;
        }
        *count += n;
    }
    return 0;
}

/* split(payloads) or split(parts, offsets) -> Run, or None when the reference must decode
 * these payloads: a list of bytes, or laid end to end in parts (joined_pieces). */
static PyObject *splitter_split(Splitter *sp, PyObject *args) {
    PyObject *payloads, *offsets = NULL;
    if (!PyArg_ParseTuple(args, "O|O", &payloads, &offsets)) return NULL;
    if (sp->json) {
        PyErr_SetString(PyExc_TypeError, "a jsonpb splitter: use split_json");
        return NULL;
    }
    PyObject *owner; /* what the pieces point into, for the run to hold */
    Py_ssize_t count = 0;
    Piece *pieces = NULL;
    if (offsets) {
        if (joined_pieces(payloads, offsets, &pieces, &count) < 0) {
            PyMem_Free(pieces);
            return NULL;
        }
        owner = Py_NewRef(payloads);
    } else {
        if (!PyList_Check(payloads)) {
            PyErr_SetString(PyExc_TypeError, "payloads must be a list of bytes");
            return NULL;
        }
        owner = PySequence_Tuple(payloads);
        if (!owner) return NULL;
        count = PyTuple_GET_SIZE(owner);
        pieces = PyMem_Malloc((size_t)(count + 1) * sizeof(Piece));
        for (Py_ssize_t i = 0; pieces && i < count; i++) {
            PyObject *payload = PyTuple_GET_ITEM(owner, i);
            if (!PyBytes_Check(payload)) {
                Py_DECREF(owner);
                PyMem_Free(pieces);
                PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
                return NULL;
            }
            pieces[i] = (Piece){(const uint8_t *)PyBytes_AS_STRING(payload),
                                (size_t)PyBytes_GET_SIZE(payload)};
        }
        if (!pieces) {
            Py_DECREF(owner);
            return PyErr_NoMemory();
        }
    }
    if (sp->busy) {
        Py_DECREF(owner);
        PyMem_Free(pieces);
        PyErr_SetString(PyExc_RuntimeError, "the splitter is in use by another thread");
        return NULL;
    }
    maybe_reset(sp);
    Run *run = run_new(sp, owner);
    Py_DECREF(owner);
    if (!run) {
        PyMem_Free(pieces);
        return NULL;
    }
    Scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    Buf key = {0}, others = {0}, fresh = {0}; /* (index, value) pairs of Py_ssize_t */
    int bail = 0;
    sp->busy = 1;
    Py_BEGIN_ALLOW_THREADS /* the payloads are immutable bytes the run holds */
    for (Py_ssize_t i = 0; i < count && !bail; i++) {
        int32_t shape;
        int is_new;
        int r = split_response(sp, run, &scratch, &key, pieces[i].p, pieces[i].n, (size_t)i,
                               &shape, &is_new);
        Py_ssize_t pair[2] = {i, 0};
        if (r < 0) {
            bail = 1;
        } else if (r == 1) {
            pair[1] = (Py_ssize_t)run->nrows;
            buf_put(&others, pair, sizeof pair);
        } else if (is_new) {
            pair[0] = shape;
            pair[1] = i;
            buf_put(&fresh, pair, sizeof pair);
        }
    }
    Py_END_ALLOW_THREADS
    sp->busy = 0;
    PyMem_Free(pieces);
    scratch_free(&scratch);
    buf_free(&key);
    if (others.failed || fresh.failed) bail = 1;
    for (int k = 0; k < 2 && !bail; k++) {
        const Buf *pairs = k ? &fresh : &others;
        PyObject *list = k ? run->new_shapes : run->others;
        const Py_ssize_t *v = (const Py_ssize_t *)pairs->data;
        for (size_t j = 0; j + 1 < pairs->len / sizeof(Py_ssize_t); j += 2) {
            PyObject *item = Py_BuildValue("(nn)", v[j], v[j + 1]);
            if (!item || PyList_Append(list, item) < 0) bail = -1;
            Py_XDECREF(item);
            if (bail) break;
        }
    }
    buf_free(&others);
    buf_free(&fresh);
    if (bail) {
        /* The reference decodes the whole run. Shapes this run added would stay unknown to the
         * caller: start over (rare: hostile or unusual input). */
        PyObject *err = bail < 0 ? PyErr_Occurred() : NULL;
        Py_DECREF(run);
        shapes_reset(sp);
        if (err) return NULL;
        Py_RETURN_NONE;
    }
    return (PyObject *)run;
}

/* split_json(block) -> Run, or None when the reference must read this block */
static PyObject *splitter_split_json(Splitter *sp, PyObject *args) {
    PyObject *block;
    if (!PyArg_ParseTuple(args, "O", &block)) return NULL;
    if (!sp->json) {
        PyErr_SetString(PyExc_TypeError, "a protobuf splitter: use split");
        return NULL;
    }
    if (sp->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the splitter is in use by another thread");
        return NULL;
    }
    maybe_reset(sp);
    Run *run = run_new(sp, block);
    if (!run) return NULL;
    /* Row values point into the block: the run holds it, exported (a bytearray cannot be
     * resized while it is), instead of a copy. */
    if (PyObject_GetBuffer(block, &run->view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(run);
        return NULL;
    }
    run->has_view = 1;
    int r = split_json(sp, run, run->view.buf, (size_t)run->view.len);
    if (r < 0) {
        int err = PyErr_Occurred() != NULL;
        Py_DECREF(run);
        shapes_reset(sp);
        if (err) return NULL;
        Py_RETURN_NONE;
    }
    return (PyObject *)run;
}

static int splitter_init(Splitter *sp, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"json", NULL};
    int json = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", kw, &json)) return -1;
    sp->json = json;
    sp->seed = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)sp << 16) ^ 0x5DEECE66Dull;
    if (json) return 0; /* jsonpb lines need no descriptor tables */
    if (!SCHEMA.ready) {
        PyErr_SetString(PyExc_RuntimeError, "set_schema() first");
        return -1;
    }
    struct { int *at; const char *name; } need[] = {
        {&sp->mi_response, "observer.GetFlowsResponse"}, {&sp->mi_flow, "flow.Flow"},
        {&sp->mi_ip, "flow.IP"}, {&sp->mi_l4, "flow.Layer4"},
        {&sp->mi_trace_context, "flow.TraceContext"}, {&sp->mi_trace_parent, "flow.TraceParent"},
        {&sp->mi_l7, "flow.Layer7"}, {&sp->mi_dns, "flow.DNS"}, {&sp->mi_http, "flow.HTTP"},
        {&sp->mi_header, "flow.HTTPHeader"}, {&sp->mi_ports[0], "flow.TCP"},
        {&sp->mi_ports[1], "flow.UDP"}, {&sp->mi_ports[2], "flow.SCTP"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if ((*need[i].at = schema_find(need[i].name)) < 0) {
            PyErr_Format(PyExc_RuntimeError, "schema lacks %s", need[i].name);
            return -1;
        }
    }
    return 0;
}

static PyObject *splitter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Splitter *sp = (Splitter *)type->tp_alloc(type, 0);
    return (PyObject *)sp; /* tp_alloc zeroes the object */
}

static void splitter_dealloc(Splitter *sp) {
    free(sp->slots);
    buf_free(&sp->keys);
    free(sp->views);
    arena_free(&sp->view_arena);
    Py_TYPE(sp)->tp_free((PyObject *)sp);
}

static PyObject *splitter_reset(Splitter *sp, PyObject *unused) {
    if (sp->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the splitter is in use by another thread");
        return NULL;
    }
    shapes_reset(sp);
    Py_RETURN_NONE;
}

static PyObject *splitter_generation(Splitter *sp, void *closure) {
    return PyLong_FromLong(sp->generation);
}

static PyObject *splitter_shapes(Splitter *sp, void *closure) {
    return PyLong_FromSize_t(sp->nshapes);
}

static PyMethodDef splitter_methods[] = {
    {"split", (PyCFunction)splitter_split, METH_VARARGS,
     "split(payloads) or split(parts, offsets) -> Run | None: serialized GetFlowsResponse "
     "messages (a list of bytes, or laid end to end in a tuple of bytes, payload j of part k "
     "at parts[k][offsets[k][j]:offsets[k][j + 1]], offsets a tuple of int64 buffers) into "
     "per-row values and shapes; None when the reference must decode them."},
    {"split_json", (PyCFunction)splitter_split_json, METH_VARARGS,
     "split_json(block) -> Run | None: jsonpb lines likewise."},
    {"reset", (PyCFunction)splitter_reset, METH_NOARGS,
     "reset(): forget every shape (the generation changes)."},
    {"set_view", (PyCFunction)splitter_set_view, METH_VARARGS,
     "set_view(shape, values): the values of the printed columns of a new shape."},
    {"render", (PyCFunction)(void (*)(void))splitter_render, METH_VARARGS | METH_KEYWORDS,
     "render(run, format, ...) -> bytes | None: hubble's text of the run's flows."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef splitter_getset[] = {
    {"generation", (getter)splitter_generation, NULL, "bumped when shapes start over", NULL},
    {"shapes", (getter)splitter_shapes, NULL, "shapes known", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SplitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowlens._native.Splitter",
    .tp_basicsize = sizeof(Splitter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Splitter(json=False): flows into per-row values and shapes, shapes kept across "
              "runs.",
    .tp_new = splitter_new,
    .tp_init = (initproc)splitter_init,
    .tp_dealloc = (destructor)splitter_dealloc,
    .tp_methods = splitter_methods,
    .tp_getset = splitter_getset,
};

/* ---- Run: columns for Arrow ---- */

static PyObject *bitmap_or_none(const uint8_t *valid, size_t n, size_t nulls) {
    if (!nulls) Py_RETURN_NONE;
    PyObject *bits = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 7) / 8));
    if (!bits) return NULL;
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(bits);
    memset(b, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (valid[i]) b[i / 8] |= (uint8_t)(1u << (i % 8));
    return bits;
}

typedef Str (*StrOf)(const Run *, size_t);
typedef int (*IntOf)(const Run *, size_t, uint64_t *);

static Str s_uuid(const Run *r, size_t i) { return r->rows[i].uuid; }
static Str s_src_ip(const Run *r, size_t i) { return r->rows[i].src_ip; }
static Str s_dst_ip(const Run *r, size_t i) { return r->rows[i].dst_ip; }
static Str s_trace_id(const Run *r, size_t i) { return r->rows[i].trace_id; }
#define L7S(field)                                                                          \
    static Str s_##field(const Run *r, size_t i) {                                          \
        Str none = {NULL, 0};                                                               \
        return r->rows[i].l7 < 0 ? none : r->l7s[r->rows[i].l7].field;                      \
    }
L7S(summary)
L7S(type)
L7S(protocol)
L7S(http_method)
L7S(http_url)
L7S(http_protocol)
L7S(http_headers)
L7S(dns_query)
L7S(dns_qtypes)
L7S(dns_ips)

static int i_time(const Run *r, size_t i, uint64_t *v) {
    *v = (uint64_t)r->rows[i].time;
    return r->rows[i].has_time;
}
static int i_sport(const Run *r, size_t i, uint64_t *v) {
    *v = r->rows[i].sport;
    return *v != 0;
}
static int i_dport(const Run *r, size_t i, uint64_t *v) {
    *v = r->rows[i].dport;
    return *v != 0;
}
static int i_code(const Run *r, size_t i, uint64_t *v) {
    if (r->rows[i].l7 < 0) return 0;
    const L7Row *l = &r->l7s[r->rows[i].l7];
    *v = (uint64_t)l->http_code;
    return l->has_code;
}
static int i_rcode(const Run *r, size_t i, uint64_t *v) {
    if (r->rows[i].l7 < 0) return 0;
    const L7Row *l = &r->l7s[r->rows[i].l7];
    *v = (uint64_t)l->dns_rcode;
    return l->has_rcode;
}
static int i_latency(const Run *r, size_t i, uint64_t *v) {
    if (r->rows[i].l7 < 0) return 0;
    const L7Row *l = &r->l7s[r->rows[i].l7];
    *v = l->latency;
    return l->has_latency;
}

/* ("string", validity | None, offsets, data) */
static PyObject *string_column(const Run *r, StrOf of) {
    size_t n = r->nrows, total = 0, nulls = 0;
    uint8_t *valid = malloc(n + 1);
    if (!valid) return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++) {
        Str s = of(r, i);
        valid[i] = s.p != NULL;
        nulls += !valid[i];
        total += s.p ? s.n : 0;
    }
    PyObject *result = NULL, *bits = NULL, *offsets = NULL, *data = NULL;
    if (total > INT32_MAX) { PyErr_SetString(PyExc_OverflowError, "column too large"); goto out; }
    bits = bitmap_or_none(valid, n, nulls);
    offsets = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 1) * sizeof(int32_t)));
    data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!bits || !offsets || !data) goto out;
    int32_t *off = (int32_t *)PyBytes_AS_STRING(offsets);
    char *d = PyBytes_AS_STRING(data);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        Str s = of(r, i);
        off[i] = (int32_t)at;
        if (s.p && s.n) memcpy(d + at, s.p, s.n);
        at += s.p ? s.n : 0;
    }
    off[n] = (int32_t)at;
    result = Py_BuildValue("(sOOO)", "string", bits, offsets, data);
out:
    free(valid);
    Py_XDECREF(bits);
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    return result;
}

/* (type, validity | None, None, data) with 8-byte values */
static PyObject *int_column(const Run *r, IntOf of, const char *type) {
    size_t n = r->nrows, nulls = 0;
    uint8_t *valid = malloc(n + 1);
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 8));
    PyObject *result = NULL, *bits = NULL;
    if (!valid || !data) { if (!valid) PyErr_NoMemory(); goto out; }
    uint64_t *d = (uint64_t *)PyBytes_AS_STRING(data);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        valid[i] = (uint8_t)(of(r, i, &v) != 0);
        d[i] = valid[i] ? v : 0;
        nulls += !valid[i];
    }
    bits = bitmap_or_none(valid, n, nulls);
    if (bits) result = Py_BuildValue("(sOOO)", type, bits, Py_None, data);
out:
    free(valid);
    Py_XDECREF(bits);
    Py_XDECREF(data);
    return result;
}

static PyObject *run_columns(Run *r, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    struct { const char *name; StrOf of; } strings[] = {
        {"uuid", s_uuid}, {"src_ip", s_src_ip}, {"dst_ip", s_dst_ip}, {"trace_id", s_trace_id},
        {"summary", s_summary}, {"l7_type", s_type}, {"l7_protocol", s_protocol},
        {"http_method", s_http_method}, {"http_url", s_http_url},
        {"http_protocol", s_http_protocol}, {"http_headers", s_http_headers},
        {"dns_query", s_dns_query}, {"dns_qtypes", s_dns_qtypes}, {"dns_ips", s_dns_ips},
    };
    struct { const char *name; IntOf of; const char *type; } ints[] = {
        {"time", i_time, "int64"}, {"src_port", i_sport, "int64"},
        {"dst_port", i_dport, "int64"}, {"http_code", i_code, "int64"},
        {"dns_rcode", i_rcode, "int64"}, {"latency_ns", i_latency, "uint64"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        PyObject *col = string_column(r, strings[i].of);
        if (!col || PyDict_SetItemString(out, strings[i].name, col) < 0) {
            Py_XDECREF(col);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(col);
    }
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        PyObject *col = int_column(r, ints[i].of, ints[i].type);
        if (!col || PyDict_SetItemString(out, ints[i].name, col) < 0) {
            Py_XDECREF(col);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(col);
    }
    return out;
}

/* shapes() -> (bytes of int32 shape per row, bytes of uint8 1 where the flow is L7) */
static PyObject *run_shapes(Run *r, PyObject *unused) {
    PyObject *shapes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(r->nrows * 4));
    PyObject *l7 = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)r->nrows);
    if (!shapes || !l7) {
        Py_XDECREF(shapes);
        Py_XDECREF(l7);
        return NULL;
    }
    int32_t *s = (int32_t *)PyBytes_AS_STRING(shapes);
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(l7);
    for (size_t i = 0; i < r->nrows; i++) {
        s[i] = r->rows[i].shape;
        b[i] = r->rows[i].l7 >= 0;
    }
    PyObject *result = PyTuple_Pack(2, shapes, l7);
    Py_DECREF(shapes);
    Py_DECREF(l7);
    return result;
}

/* shape_counts() -> [(shape, flows)] for the shapes of the run */
static PyObject *run_shape_counts(Run *r, PyObject *unused) {
    PyObject *counts = PyDict_New();
    if (!counts) return NULL;
    for (size_t i = 0; i < r->nrows; i++) {
        PyObject *key = PyLong_FromLong(r->rows[i].shape);
        PyObject *n = key ? PyDict_GetItemWithError(counts, key) : NULL;
        PyObject *more = (key && !PyErr_Occurred()) ? PyLong_FromLong(n ? PyLong_AsLong(n) + 1 : 1)
                                                    : NULL;
        if (!more || PyDict_SetItem(counts, key, more) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(more);
            Py_DECREF(counts);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(more);
    }
    PyObject *items = PyDict_Items(counts);
    Py_DECREF(counts);
    return items;
}

/* source(row) -> the payload's index, or the line as (offset, end) in the block */
static PyObject *run_source(Run *r, PyObject *args) {
    Py_ssize_t row;
    if (!PyArg_ParseTuple(args, "n", &row)) return NULL;
    if (row < 0 || (size_t)row >= r->nrows) {
        PyErr_SetString(PyExc_IndexError, "no such row");
        return NULL;
    }
    const Row *w = &r->rows[row];
    if (PyTuple_Check(r->owner)) return PyLong_FromSize_t(w->source);
    return Py_BuildValue("(nn)", (Py_ssize_t)w->source, (Py_ssize_t)(w->source + w->source_len));
}

static PyObject *run_rows(Run *r, void *closure) { return PyLong_FromSize_t(r->nrows); }
static PyObject *run_new_shapes(Run *r, void *closure) { return Py_NewRef(r->new_shapes); }
static PyObject *run_others(Run *r, void *closure) { return Py_NewRef(r->others); }
static PyObject *run_generation(Run *r, void *closure) {
    return PyLong_FromLong(r->generation);
}

static PyObject *run_newlines(Run *r, void *closure) { return PyLong_FromSize_t(r->newlines); }

static PyObject *run_newest(Run *r, void *closure) {
    int any = 0;
    int64_t newest = 0;
    for (size_t i = 0; i < r->nrows; i++) {
        if (!r->rows[i].has_time) continue;
        if (!any || r->rows[i].time > newest) newest = r->rows[i].time;
        any = 1;
    }
    if (!any) Py_RETURN_NONE;
    return PyLong_FromLongLong(newest);
}

static PyMethodDef run_methods[] = {
    {"columns", (PyCFunction)run_columns, METH_NOARGS,
     "columns() -> {name: (type, validity, offsets, data)}: the per-row columns as Arrow "
     "buffers."},
    {"shapes", (PyCFunction)run_shapes, METH_NOARGS,
     "shapes() -> (int32 shape per row, uint8 L7 flag per row) as bytes."},
    {"shape_counts", (PyCFunction)run_shape_counts, METH_NOARGS,
     "shape_counts() -> [(shape, flows)]."},
    {"source", (PyCFunction)run_source, METH_VARARGS,
     "source(row) -> the index of the row's payload, or its line's (offset, end)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef run_getset[] = {
    {"rows", (getter)run_rows, NULL, "flows in the run", NULL},
    {"new_shapes", (getter)run_new_shapes, NULL, "[(shape, index)] first seen here", NULL},
    {"others", (getter)run_others, NULL, "[(index, rows before)] of responses not flows", NULL},
    {"generation", (getter)run_generation, NULL,
     "the splitter's generation of shapes the run's shape numbers refer to", NULL},
    {"newest", (getter)run_newest, NULL, "newest flow time (ns) or None", NULL},
    {"newlines", (getter)run_newlines, NULL, "newlines in the block split (jsonpb)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject RunType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowlens._native.Run",
    .tp_basicsize = sizeof(Run),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The flows of one split: per-row values and shapes.",
    .tp_dealloc = (destructor)run_dealloc,
    .tp_methods = run_methods,
    .tp_getset = run_getset,
};
