/* Protobuf wire format over descriptor tables given by Python: scanning, validation, and
 * protojson as hubble prints it (flowlens.render.jsonpb over flowlens.sources.protodict). */
#include "native.h"

#include <stdlib.h>

Schema SCHEMA;

/* ---- the schema ---- */

static char *dup_utf8(PyObject *s, size_t *len) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (!u) return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out) { PyErr_NoMemory(); return NULL; }
    memcpy(out, u, (size_t)n + 1);
    if (len) *len = (size_t)n;
    return out;
}

static void schema_clear(void) {
    for (int i = 0; i < SCHEMA.nmsgs; i++) {
        Message *m = &SCHEMA.msgs[i];
        for (int j = 0; j < m->nfields; j++) free(m->fields[j].name);
        free(m->fields);
        free(m->full_name);
        free(m->numbers);
        free(m->by_number);
    }
    for (int i = 0; i < SCHEMA.nenums; i++) {
        Enum *e = &SCHEMA.enums[i];
        for (int j = 0; j < e->n; j++) free(e->names[j]);
        free(e->names);
        free(e->numbers);
        free(e->lens);
    }
    free(SCHEMA.msgs);
    free(SCHEMA.enums);
    memset(&SCHEMA, 0, sizeof SCHEMA);
}

/* set_schema(messages, enums)
 *   messages: [(full_name, wkt, [(number, name, type, repeated, presence, oneof, message,
 *                                 enum), ...]), ...] with fields in declaration order
 *   enums: [[(number, name), ...], ...] sorted by number, one name per number */
PyObject *py_set_schema(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *messages, *enums;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &messages, &PyList_Type, &enums))
        return NULL;
    schema_clear();
    Py_ssize_t nm = PyList_GET_SIZE(messages), ne = PyList_GET_SIZE(enums);
    SCHEMA.msgs = calloc((size_t)nm + 1, sizeof(Message));
    SCHEMA.enums = calloc((size_t)ne + 1, sizeof(Enum));
    if (!SCHEMA.msgs || !SCHEMA.enums) { schema_clear(); return PyErr_NoMemory(); }
    for (Py_ssize_t i = 0; i < nm; i++) {
        Message *m = &SCHEMA.msgs[i];
        SCHEMA.nmsgs = (int)i + 1;
        PyObject *name, *fields;
        int wkt;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(messages, i), "UiO!", &name, &wkt, &PyList_Type,
                              &fields))
            goto fail;
        m->wkt = wkt;
        if (!(m->full_name = dup_utf8(name, NULL))) goto fail;
        Py_ssize_t nf = PyList_GET_SIZE(fields);
        m->fields = calloc((size_t)nf + 1, sizeof(Field));
        m->numbers = calloc((size_t)nf + 1, sizeof(uint32_t));
        m->by_number = calloc((size_t)nf + 1, sizeof(int));
        if (!m->fields || !m->numbers || !m->by_number) { PyErr_NoMemory(); goto fail; }
        for (Py_ssize_t j = 0; j < nf; j++) {
            Field *f = &m->fields[j];
            PyObject *fname;
            unsigned long number;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, j), "kUiiiiii", &number, &fname,
                                  &f->type, &f->repeated, &f->presence, &f->oneof, &f->message,
                                  &f->enumeration))
                goto fail;
            m->nfields = (int)j + 1;
            f->number = (uint32_t)number;
            if (!(f->name = dup_utf8(fname, &f->name_len))) goto fail;
            if ((f->message >= nm) || (f->enumeration >= ne)) {
                PyErr_SetString(PyExc_ValueError, "schema index out of range");
                goto fail;
            }
            m->by_number[j] = (int)j;
            if (f->number < 64) m->direct[f->number] = (int16_t)(j + 1);
        }
        /* sort field indexes by number for the lookup of large numbers (insertion sort: few) */
        for (int a = 1; a < m->nfields; a++) {
            int idx = m->by_number[a], b = a;
            while (b > 0 && m->fields[m->by_number[b - 1]].number > m->fields[idx].number) {
                m->by_number[b] = m->by_number[b - 1];
                b--;
            }
            m->by_number[b] = idx;
        }
        for (int a = 0; a < m->nfields; a++) m->numbers[a] = m->fields[m->by_number[a]].number;
    }
    for (Py_ssize_t i = 0; i < ne; i++) {
        Enum *e = &SCHEMA.enums[i];
        SCHEMA.nenums = (int)i + 1;
        PyObject *values = PyList_GET_ITEM(enums, i);
        if (!PyList_Check(values)) { PyErr_SetString(PyExc_TypeError, "enum values"); goto fail; }
        Py_ssize_t nv = PyList_GET_SIZE(values);
        e->numbers = calloc((size_t)nv + 1, sizeof(int32_t));
        e->names = calloc((size_t)nv + 1, sizeof(char *));
        e->lens = calloc((size_t)nv + 1, sizeof(size_t));
        if (!e->numbers || !e->names || !e->lens) { PyErr_NoMemory(); goto fail; }
        for (Py_ssize_t j = 0; j < nv; j++) {
            int number;
            PyObject *vname;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(values, j), "iU", &number, &vname)) goto fail;
            if (j > 0 && number <= e->numbers[j - 1]) {
                PyErr_SetString(PyExc_ValueError, "enum values must be sorted and distinct");
                goto fail;
            }
            e->numbers[j] = number;
            if (!(e->names[j] = dup_utf8(vname, &e->lens[j]))) goto fail;
            e->n = (int)j + 1;
        }
    }
    SCHEMA.ready = 1;
    Py_RETURN_NONE;
fail:
    schema_clear();
    return NULL;
}

int schema_find(const char *full_name) {
    for (int i = 0; i < SCHEMA.nmsgs; i++)
        if (strcmp(SCHEMA.msgs[i].full_name, full_name) == 0) return i;
    return -1;
}

int message_field(const Message *m, uint32_t number) {
    if (number < 64) return m->direct[number] - 1;
    int lo = 0, hi = m->nfields - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (m->numbers[mid] == number) return m->by_number[mid];
        if (m->numbers[mid] < number) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

Str enum_name(int enumeration, int32_t number) {
    Str s = {NULL, 0};
    if (enumeration < 0 || enumeration >= SCHEMA.nenums) return s;
    const Enum *e = &SCHEMA.enums[enumeration];
    int lo = 0, hi = e->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (e->numbers[mid] == number) {
            s.p = e->names[mid];
            s.n = e->lens[mid];
            return s;
        }
        if (e->numbers[mid] < number) lo = mid + 1;
        else hi = mid - 1;
    }
    return s;
}

/* ---- scanning ---- */

static int wire_type_of(int type) {
    switch (type) {
    case T_DOUBLE: case T_FIXED64: case T_SFIXED64: return 1;
    case T_FLOAT: case T_FIXED32: case T_SFIXED32: return 5;
    case T_STRING: case T_BYTES: case T_MESSAGE: return 2;
    case T_GROUP: return 3;
    default: return 0;
    }
}

void scratch_free(Scratch *s) {
    for (int i = 0; i < MAX_DEPTH; i++) {
        free(s->lv[i].a);
        free(s->lv[i].order);
        free(s->lv[i].start);
    }
    memset(s, 0, sizeof *s);
}

static int level_push(Level *l, const Occ *o) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        Occ *a = realloc(l->a, cap * sizeof(Occ));
        if (!a) return -1;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = *o;
    return 0;
}

int wire_scan(Scratch *s, int depth, int mi, const uint8_t *p, size_t n) {
    if (depth < 0 || depth >= MAX_DEPTH || mi < 0 || mi >= SCHEMA.nmsgs) return -1;
    const Message *m = &SCHEMA.msgs[mi];
    Level *l = &s->lv[depth];
    l->n = 0;
    const uint8_t *end = p + n;
    /* singular messages and oneofs seen, as bits (bail beyond 64 fields/oneofs) */
    uint64_t seen_msg = 0, seen_oneof = 0;
    while (p < end) {
        const uint8_t *start = p;
        uint64_t tag;
        if (read_varint(&p, end, &tag) < 0) return -1;
        uint64_t number = tag >> 3;
        int wt = (int)(tag & 7);
        if (number == 0 || number > 536870911u) return -1;
        Occ o = {-1, wt, 0, NULL, 0, start, 0};
        switch (wt) {
        case 0:
            if (read_varint(&p, end, &o.v) < 0) return -1;
            break;
        case 1:
            if (end - p < 8) return -1;
            for (int i = 7; i >= 0; i--) o.v = (o.v << 8) | p[i];
            p += 8;
            break;
        case 5:
            if (end - p < 4) return -1;
            for (int i = 3; i >= 0; i--) o.v = (o.v << 8) | p[i];
            p += 4;
            break;
        case 2: {
            uint64_t len;
            if (read_varint(&p, end, &len) < 0 || len > (uint64_t)(end - p)) return -1;
            o.p = p;
            o.n = (size_t)len;
            p += len;
            break;
        }
        default:
            return -1; /* groups and invalid wire types: the reference decides */
        }
        o.raw_n = (size_t)(p - start);
        int fi = message_field(m, (uint32_t)number);
        if (fi >= 0) {
            const Field *f = &m->fields[fi];
            int expected = wire_type_of(f->type);
            if (expected == 3) return -1;
            if (wt != expected) return -1; /* also packed repeated scalars: none in flows */
            if (f->type == T_STRING && !utf8_valid(o.p, o.n)) return -1;
            if (f->type == T_MESSAGE && !f->repeated) {
                if (fi >= 64 || (seen_msg >> fi & 1)) return -1; /* merged occurrences */
                seen_msg |= 1ull << fi;
            }
            if (f->oneof >= 0) {
                if (f->oneof >= 64 || (seen_oneof >> f->oneof & 1)) return -1;
                seen_oneof |= 1ull << f->oneof;
            }
            o.field = fi;
        }
        if (level_push(l, &o) < 0) return -1;
    }
    return 0;
}

int wire_sort(Scratch *s, int depth, int mi) {
    const Message *m = &SCHEMA.msgs[mi];
    Level *l = &s->lv[depth];
    size_t nf = (size_t)m->nfields;
    if (l->start_cap < nf + 2) {
        int *start = realloc(l->start, (nf + 2) * sizeof(int));
        if (!start) return -1;
        l->start = start;
        l->start_cap = nf + 2;
    }
    if (l->order_cap < l->n + 1) {
        int *order = realloc(l->order, (l->n + 1) * sizeof(int));
        if (!order) return -1;
        l->order = order;
        l->order_cap = l->n + 1;
    }
    memset(l->start, 0, (nf + 2) * sizeof(int));
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].field >= 0) l->start[l->a[i].field + 1]++;
    for (size_t f = 0; f < nf; f++) l->start[f + 1] += l->start[f];
    /* place, keeping the stream order within a field (start[] ends shifted by one slot) */
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].field >= 0) l->order[l->start[l->a[i].field]++] = (int)i;
    for (size_t f = nf; f > 0; f--) l->start[f] = l->start[f - 1];
    l->start[0] = 0;
    return 0;
}

const Occ *wire_last(const Scratch *s, int depth, int mi, uint32_t number) {
    int fi = message_field(&SCHEMA.msgs[mi], number);
    if (fi < 0) return NULL;
    const Level *l = &s->lv[depth];
    for (size_t i = l->n; i > 0; i--)
        if (l->a[i - 1].field == fi) return &l->a[i - 1];
    return NULL;
}

int wire_validate(Scratch *s, int depth, int mi, const uint8_t *p, size_t n) {
    if (wire_scan(s, depth, mi, p, n) < 0) return -1;
    const Message *m = &SCHEMA.msgs[mi];
    const Level *l = &s->lv[depth];
    /* The next level's scans reuse the scratch of depth + 1 only: this level stays valid. */
    for (size_t i = 0; i < l->n; i++) {
        const Occ *o = &l->a[i];
        if (o->field < 0) continue;
        const Field *f = &m->fields[o->field];
        if (f->type == T_MESSAGE && wire_validate(s, depth + 1, f->message, o->p, o->n) < 0)
            return -1;
    }
    return 0;
}

int wire_timestamp(const uint8_t *p, size_t n, int64_t *seconds, int64_t *nanos) {
    const uint8_t *end = p + n;
    *seconds = *nanos = 0;
    while (p < end) {
        uint64_t tag, v;
        if (read_varint(&p, end, &tag) < 0) return -1;
        int wt = (int)(tag & 7);
        uint64_t number = tag >> 3;
        if (number == 0 || number > 536870911u) return -1;
        if (wt == 0) {
            if (read_varint(&p, end, &v) < 0) return -1;
            if (number == 1) *seconds = (int64_t)v;
            else if (number == 2) *nanos = (int32_t)(uint32_t)v;
        } else if (number == 1 || number == 2) {
            return -1;
        } else if (wt == 1) {
            if (end - p < 8) return -1;
            p += 8;
        } else if (wt == 5) {
            if (end - p < 4) return -1;
            p += 4;
        } else if (wt == 2) {
            if (read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p)) return -1;
            p += v;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ---- protojson ---- */

/* RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits; years 1000 to 9999 only (the reference
 * prints years before 1000 with fewer digits, then refuses them). */
static int put_timestamp(Buf *out, int64_t seconds, int64_t nanos) {
    if (seconds < -30610224000LL || seconds > 253402300799LL) return -1;
    if (nanos < 0 || nanos > 999999999) return -1;
    Civil c;
    civil_from_seconds(seconds, &c);
    buf_putc(out, '"');
    buf_uint_padded(out, (uint64_t)c.year, 4);
    buf_putc(out, '-');
    buf_uint_padded(out, (uint64_t)c.month, 2);
    buf_putc(out, '-');
    buf_uint_padded(out, (uint64_t)c.day, 2);
    buf_putc(out, 'T');
    buf_uint_padded(out, (uint64_t)c.hour, 2);
    buf_putc(out, ':');
    buf_uint_padded(out, (uint64_t)c.minute, 2);
    buf_putc(out, ':');
    buf_uint_padded(out, (uint64_t)c.second, 2);
    if (nanos) {
        buf_putc(out, '.');
        if (nanos % 1000000 == 0) buf_uint_padded(out, (uint64_t)(nanos / 1000000), 3);
        else if (nanos % 1000 == 0) buf_uint_padded(out, (uint64_t)(nanos / 1000), 6);
        else buf_uint_padded(out, (uint64_t)nanos, 9);
    }
    buf_puts(out, "Z\"");
    return 0;
}

static void put_key(Buf *out, const Field *f, int *first) {
    if (!*first) buf_putc(out, ',');
    *first = 0;
    buf_putc(out, '"');
    buf_put(out, f->name, f->name_len);
    buf_puts(out, "\":");
}

/* A scalar's value as JSON; 0 (written), 1 (default: omitted), -1 (bail). */
static int put_scalar(Buf *out, const Field *f, const Occ *o, int keep_default) {
    uint64_t v = o->v;
    switch (f->type) {
    case T_INT32: case T_SFIXED32: case T_SINT32: case T_ENUM: {
        int32_t x = f->type == T_SINT32 ? (int32_t)(((uint32_t)v >> 1) ^ (0u - ((uint32_t)v & 1)))
                                        : (int32_t)(uint32_t)v;
        if (!x && !keep_default) return 1;
        if (f->type == T_ENUM) {
            Str name = enum_name(f->enumeration, x);
            if (name.p) {
                buf_putc(out, '"');
                buf_put(out, name.p, name.n);
                buf_putc(out, '"');
                return 0;
            }
        }
        buf_i64(out, x);
        return 0;
    }
    case T_UINT32: case T_FIXED32:
        if (!(uint32_t)v && !keep_default) return 1;
        buf_u64(out, (uint32_t)v);
        return 0;
    case T_INT64: case T_SFIXED64: case T_SINT64: {
        int64_t x = f->type == T_SINT64 ? (int64_t)((v >> 1) ^ (0 - (v & 1))) : (int64_t)v;
        if (!x && !keep_default) return 1;
        buf_putc(out, '"');
        buf_i64(out, x);
        buf_putc(out, '"');
        return 0;
    }
    case T_UINT64: case T_FIXED64:
        if (!v && !keep_default) return 1;
        buf_putc(out, '"');
        buf_u64(out, v);
        buf_putc(out, '"');
        return 0;
    case T_BOOL:
        if (!v && !keep_default) return 1;
        buf_puts(out, v ? "true" : "false");
        return 0;
    case T_STRING:
        if (!o->n && !keep_default) return 1;
        json_quote(out, (const char *)o->p, o->n);
        return 0;
    default:
        return -1; /* floats, doubles, bytes: not in flows */
    }
}

/* A well-known type's JSON value (Timestamp, wrappers); -1 to bail. */
static int put_wkt(Scratch *s, int depth, const Message *m, int mi, const Occ *o, Buf *out) {
    if (m->wkt == WKT_TIMESTAMP) {
        int64_t seconds, nanos;
        if (wire_timestamp(o->p, o->n, &seconds, &nanos) < 0) return -1;
        return put_timestamp(out, seconds, nanos);
    }
    if (m->wkt == WKT_OTHER || depth + 1 >= MAX_DEPTH) return -1;
    if (wire_scan(s, depth + 1, mi, o->p, o->n) < 0) return -1;
    const Occ *value = wire_last(s, depth + 1, mi, 1);
    if (!value) {
        switch (m->wkt) {
        case WKT_BOOL: buf_puts(out, "false"); return 0;
        case WKT_INT32: case WKT_UINT32: buf_putc(out, '0'); return 0;
        case WKT_INT64: case WKT_UINT64: buf_puts(out, "\"0\""); return 0;
        case WKT_STRING: buf_puts(out, "\"\""); return 0;
        default: return -1;
        }
    }
    return put_scalar(out, &m->fields[value->field], value, 1) < 0 ? -1 : 0;
}

int protojson_message(Scratch *s, int depth, int mi, const uint8_t *p, size_t n, Buf *out) {
    if (depth >= MAX_DEPTH || mi < 0 || mi >= SCHEMA.nmsgs) return -1;
    const Message *m = &SCHEMA.msgs[mi];
    if (m->wkt != WKT_NONE) return -1;
    if (wire_scan(s, depth, mi, p, n) < 0 || wire_sort(s, depth, mi) < 0) return -1;
    Level *l = &s->lv[depth];
    int first = 1;
    buf_putc(out, '{');
    for (int fi = 0; fi < m->nfields; fi++) {
        int from = l->start[fi], to = l->start[fi + 1];
        if (from == to) continue;
        const Field *f = &m->fields[fi];
        if (f->type == T_MESSAGE) {
            const Message *sub = &SCHEMA.msgs[f->message];
            if (f->repeated && sub->wkt != WKT_NONE) return -1;
            if (f->repeated) {
                put_key(out, f, &first);
                buf_putc(out, '[');
                for (int k = from; k < to; k++) {
                    /* the nested call reuses deeper levels only: this level's order stays */
                    const Occ *o = &l->a[l->order[k]];
                    if (k > from) buf_putc(out, ',');
                    if (protojson_message(s, depth + 1, f->message, o->p, o->n, out) < 0)
                        return -1;
                }
                buf_putc(out, ']');
                continue;
            }
            const Occ *o = &l->a[l->order[to - 1]];
            put_key(out, f, &first);
            if (sub->wkt != WKT_NONE) {
                if (put_wkt(s, depth, sub, f->message, o, out) < 0) return -1;
            } else if (protojson_message(s, depth + 1, f->message, o->p, o->n, out) < 0) {
                return -1;
            }
            continue;
        }
        if (f->repeated) {
            if (f->type != T_STRING) return -1; /* repeated numbers: not in flows */
            put_key(out, f, &first);
            buf_putc(out, '[');
            for (int k = from; k < to; k++) {
                const Occ *o = &l->a[l->order[k]];
                if (k > from) buf_putc(out, ',');
                json_quote(out, (const char *)o->p, o->n);
            }
            buf_putc(out, ']');
            continue;
        }
        /* singular scalar: the last occurrence wins; proto3 defaults are omitted unless the
         * field has presence */
        size_t mark = out->len;
        int was_first = first;
        put_key(out, f, &first);
        int r = put_scalar(out, f, &l->a[l->order[to - 1]], f->presence);
        if (r < 0) return -1;
        if (r == 1) { /* omitted: take the key back */
            out->len = mark;
            first = was_first;
        }
    }
    buf_putc(out, '}');
    return out->failed ? -1 : 0;
}

/* jsonpb(payloads, message_index) -> list of bytes (one line each, with "\n") or None where the
 * reference must encode. The GIL is released while encoding. */
PyObject *py_jsonpb(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *payloads;
    int mi;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &payloads, &mi)) return NULL;
    if (!SCHEMA.ready || mi < 0 || mi >= SCHEMA.nmsgs) {
        PyErr_SetString(PyExc_ValueError, "no schema, or no such message");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    Py_buffer *views = calloc((size_t)count + 1, sizeof(Py_buffer));
    size_t *ends = calloc((size_t)count + 1, sizeof(size_t));
    if (!views || !ends) { free(views); free(ends); return PyErr_NoMemory(); }
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    for (; got < count; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(payloads, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
    Buf out = {0};
    Scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        size_t mark = out.len;
        if (protojson_message(&scratch, 0, mi, views[i].buf, (size_t)views[i].len, &out) < 0) {
            out.len = mark;
            out.failed = 0;
            ends[i] = SIZE_MAX;
            continue;
        }
        buf_putc(&out, '\n');
        ends[i] = out.len;
    }
    Py_END_ALLOW_THREADS
    scratch_free(&scratch);
    if (out.failed) { buf_free(&out); PyErr_NoMemory(); goto done; }
    result = PyList_New(count);
    if (!result) { buf_free(&out); goto done; }
    size_t start = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *line;
        if (ends[i] == SIZE_MAX) {
            line = Py_NewRef(Py_None);
        } else {
            line = PyBytes_FromStringAndSize(out.data + start, (Py_ssize_t)(ends[i] - start));
            start = ends[i];
            if (!line) { Py_CLEAR(result); break; }
        }
        PyList_SET_ITEM(result, i, line);
    }
    buf_free(&out);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    free(views);
    free(ends);
    return result;
}
