/* hubble's text (compact, dict, table) of split flows, as flowlens.render.hubble prints the
 * frame of the same flows: the frame's values are a shape's (ShapeView, given by the caller
 * from the reference decoder) and a row's (Row). */
#include "native.h"

#include <stdlib.h>

enum { F_COMPACT = 0, F_DICT = 1, F_TABLE = 2 };
enum { TF_STAMP_MILLI = 0, TF_YMD, TF_YMDH, TF_YMDHM, TF_RFC3339, TF_RFC3339_MILLI,
       TF_RFC3339_MICRO, TF_RFC3339_NANO, TF_RFC1123Z, TF_COUNT };

/* ---- the tables of flowlens._hubble the renderer needs ---- */

#define MAX_TABLE 64
static struct {
    int ready;
    Str verdict_unknown, direction_unknown, auth_disabled;
    Str pv_from[MAX_TABLE], pv_to[MAX_TABLE]; /* POLICY_VERDICT_TEXT */
    int npv;
    int64_t reserved_id[MAX_TABLE];
    Str reserved_name[MAX_TABLE];
    int nreserved;
    Str port_protocols[8];
    int nports;
    Arena arena;
} T;

static int copy_str(PyObject *o, Str *out, Arena *arena) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(o, &n);
    if (!u) return -1;
    *out = arena_str(arena, u, (size_t)n);
    if (!out->p) { PyErr_NoMemory(); return -1; }
    return 0;
}

/* set_render_tables(verdict_unknown, policy_verdict_text, direction_unknown, reserved,
 *                   port_protocols, auth_disabled) */
PyObject *py_set_render_tables(PyObject *self, PyObject *args) {
    PyObject *vu, *pvt, *du, *reserved, *ports, *ad;
    if (!PyArg_ParseTuple(args, "UO!UO!O!U", &vu, &PyDict_Type, &pvt, &du, &PyDict_Type,
                          &reserved, &PyTuple_Type, &ports, &ad))
        return NULL;
    arena_free(&T.arena);
    memset(&T, 0, sizeof T);
    if (PyDict_GET_SIZE(pvt) > MAX_TABLE || PyDict_GET_SIZE(reserved) > MAX_TABLE ||
        PyTuple_GET_SIZE(ports) > 8) {
        PyErr_SetString(PyExc_ValueError, "table too large");
        return NULL;
    }
    if (copy_str(vu, &T.verdict_unknown, &T.arena) < 0 ||
        copy_str(du, &T.direction_unknown, &T.arena) < 0 ||
        copy_str(ad, &T.auth_disabled, &T.arena) < 0)
        return NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(pvt, &pos, &k, &v)) {
        if (copy_str(k, &T.pv_from[T.npv], &T.arena) < 0 ||
            copy_str(v, &T.pv_to[T.npv], &T.arena) < 0)
            return NULL;
        T.npv++;
    }
    pos = 0;
    while (PyDict_Next(reserved, &pos, &k, &v)) {
        T.reserved_id[T.nreserved] = PyLong_AsLongLong(k);
        if (PyErr_Occurred() || copy_str(v, &T.reserved_name[T.nreserved], &T.arena) < 0)
            return NULL;
        T.nreserved++;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ports); i++)
        if (copy_str(PyTuple_GET_ITEM(ports, i), &T.port_protocols[T.nports++], &T.arena) < 0)
            return NULL;
    T.ready = 1;
    Py_RETURN_NONE;
}

static int same(Str a, Str b) { return a.p && b.p && a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

/* ---- shape views ---- */

/* A str or None; 0, or -1 with an exception. */
static int view_str(PyObject *o, Str *out, Arena *arena) {
    if (o == Py_None) {
        out->p = NULL;
        out->n = 0;
        return 0;
    }
    if (!PyUnicode_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "a shape value must be str or None");
        return -1;
    }
    return copy_str(o, out, arena);
}

/* An int or None within [0, max]; 1 when out of range (the view is unusable). */
static int view_uint(PyObject *o, uint64_t max, uint64_t *out, int *has) {
    *has = 0;
    if (o == Py_None) return 0;
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "a shape value must be int or None");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(o);
        if (PyErr_Occurred()) { PyErr_Clear(); return 1; }
        if (u > max) return 1;
        *out = u;
        *has = 1;
        return 0;
    }
    if (overflow < 0 || v < 0 || (uint64_t)v > max) return 1;
    *out = (uint64_t)v;
    *has = 1;
    return 0;
}

/* set_view(shape, (node, verdict, event, direction, policies, protocol, summary, auth,
 *                  src_namespace, src_pod, src_service, src_names, src_identity,
 *                  dst_namespace, dst_pod, dst_service, dst_names, dst_identity,
 *                  is_reply, ip_trace_id)) */
PyObject *splitter_set_view(Splitter *sp, PyObject *args) {
    int shape;
    PyObject *values;
    if (!PyArg_ParseTuple(args, "iO!", &shape, &PyTuple_Type, &values)) return NULL;
    if (sp->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the splitter is in use by another thread");
        return NULL;
    }
    if (shape < 0 || (size_t)shape >= sp->nshapes || PyTuple_GET_SIZE(values) != 20) {
        PyErr_SetString(PyExc_ValueError, "no such shape, or not 20 values");
        return NULL;
    }
    ShapeView v;
    memset(&v, 0, sizeof v);
    Arena *a = &sp->view_arena;
    Str *strings[] = {&v.node, &v.verdict, &v.event, &v.direction, &v.policies, &v.protocol,
                      &v.summary, &v.auth};
    for (int i = 0; i < 8; i++)
        if (view_str(PyTuple_GET_ITEM(values, i), strings[i], a) < 0) return NULL;
    for (int side = 0; side < 2; side++) {
        int base = 8 + side * 5;
        if (view_str(PyTuple_GET_ITEM(values, base), &v.ns[side], a) < 0 ||
            view_str(PyTuple_GET_ITEM(values, base + 1), &v.pod[side], a) < 0 ||
            view_str(PyTuple_GET_ITEM(values, base + 2), &v.service[side], a) < 0 ||
            view_str(PyTuple_GET_ITEM(values, base + 3), &v.names[side], a) < 0)
            return NULL;
        uint64_t id;
        int r = view_uint(PyTuple_GET_ITEM(values, base + 4), 0xFFFFFFFFu, &id,
                          &v.has_identity[side]);
        if (r < 0) return NULL;
        v.unusable |= r;
        v.identity[side] = (int64_t)id;
    }
    PyObject *reply = PyTuple_GET_ITEM(values, 18);
    v.reply = reply == Py_None ? -1 : PyObject_IsTrue(reply);
    if (v.reply < -1) return NULL;
    int r = view_uint(PyTuple_GET_ITEM(values, 19), UINT64_MAX, &v.trace, &v.has_trace);
    if (r < 0) return NULL;
    v.unusable |= r;
    v.set = 1;
    sp->views[shape] = v;
    Py_RETURN_NONE;
}

/* ---- pieces of a record ---- */

static void put_str(Buf *b, Str s) {
    if (s.p) buf_put(b, s.p, s.n);
}

static int nonempty(Str s) { return s.p && s.n; }

static void put_time(Buf *b, int has, int64_t ns, int tf) {
    if (!has) {
        buf_puts(b, "N/A");
        return;
    }
    int64_t seconds = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) { /* floor, so that the fraction is never negative */
        seconds--;
        frac += 1000000000;
    }
    Civil c;
    civil_from_seconds(seconds, &c);
    int digits = 0, trim = 0;
    if (tf == TF_STAMP_MILLI) {
        buf_puts(b, MONTH_ABBR[c.month - 1]);
        buf_putc(b, ' ');
        if (c.day < 10) buf_putc(b, ' ');
        buf_u64(b, (uint64_t)c.day);
        buf_putc(b, ' ');
    } else if (tf == TF_RFC1123Z) {
        buf_puts(b, WEEKDAY_ABBR[c.weekday]);
        buf_puts(b, ", ");
        buf_uint_padded(b, (uint64_t)c.day, 2);
        buf_putc(b, ' ');
        buf_puts(b, MONTH_ABBR[c.month - 1]);
        buf_putc(b, ' ');
        buf_uint_padded(b, (uint64_t)c.year, 4);
        buf_putc(b, ' ');
    } else {
        buf_uint_padded(b, (uint64_t)c.year, 4);
        buf_putc(b, '-');
        buf_uint_padded(b, (uint64_t)c.month, 2);
        buf_putc(b, '-');
        buf_uint_padded(b, (uint64_t)c.day, 2);
        if (tf == TF_YMD) return;
        buf_putc(b, 'T');
    }
    buf_uint_padded(b, (uint64_t)c.hour, 2);
    if (tf != TF_YMDH) {
        buf_putc(b, ':');
        buf_uint_padded(b, (uint64_t)c.minute, 2);
        if (tf != TF_YMDHM) {
            buf_putc(b, ':');
            buf_uint_padded(b, (uint64_t)c.second, 2);
        }
    }
    switch (tf) {
    case TF_STAMP_MILLI: digits = 3; break;
    case TF_RFC3339_MILLI: digits = 3; trim = 1; break;
    case TF_RFC3339_MICRO: digits = 6; trim = 1; break;
    case TF_RFC3339_NANO: digits = 9; trim = 1; break;
    default: break;
    }
    if (digits) {
        char f[9];
        int64_t x = frac;
        for (int i = 8; i >= 0; i--) { f[i] = (char)('0' + x % 10); x /= 10; }
        int n = digits;
        if (trim) while (n > 0 && f[n - 1] == '0') n--;
        if (n) {
            buf_putc(b, '.');
            buf_put(b, f, (size_t)n);
        }
    }
    if (tf == TF_RFC1123Z) buf_puts(b, " +0000");
    else if (tf != TF_STAMP_MILLI) buf_putc(b, 'Z');
}

static int has_port_protocol(Str protocol) {
    if (!protocol.p) return 1; /* a port with no known protocol came from such a line */
    for (int i = 0; i < T.nports; i++)
        if (same(protocol, T.port_protocols[i])) return 1;
    return 0;
}

/* SOURCE/DESTINATION: pod, else service, else DNS names, else IP; then the port. */
static void put_host(Buf *b, const ShapeView *v, int side, Str ip, uint32_t port, int numeric) {
    size_t mark = b->len;
    if (!numeric) {
        /* pod: the namespace comes from the service when there is one */
        Str pod = v->pod[side], service = v->service[side];
        if (nonempty(pod)) {
            Str ns = v->ns[side];
            if (service.p) {
                const char *slash = memchr(service.p, '/', service.n);
                ns.p = service.p;
                ns.n = slash ? (size_t)(slash - service.p) : service.n;
            } else if (!nonempty(ns)) {
                ns.n = 0;
            }
            if (ns.p && ns.n) {
                put_str(b, ns);
                buf_putc(b, '/');
            }
            put_str(b, pod);
            goto port;
        }
        if (service.p) { /* namespace/name, or name; nothing without a name */
            size_t cut = service.n;
            while (cut > 0 && service.p[cut - 1] != '/') cut--;
            if (cut < service.n) {
                if (cut > 1) {
                    buf_put(b, service.p, cut - 1);
                    buf_putc(b, '/');
                }
                buf_put(b, service.p + cut, service.n - cut);
                goto port;
            }
        }
        if (nonempty(v->names[side])) {
            put_str(b, v->names[side]);
            goto port;
        }
    }
    if (nonempty(ip)) put_str(b, ip);
port:
    if (port && has_port_protocol(v->protocol)) {
        size_t n = b->len - mark;
        if (n && memchr(b->data + mark, ':', n)) {
            /* bracket the host as Go's net.JoinHostPort does */
            if (b->len + 2 > b->cap && buf_grow(b, 2) < 0) return;
            memmove(b->data + mark + 1, b->data + mark, n);
            b->data[mark] = '[';
            b->len++;
            buf_putc(b, ']');
        }
        buf_putc(b, ':');
        buf_u64(b, port);
    }
}

static void put_identity(Buf *b, const ShapeView *v, int side) {
    int64_t id = v->has_identity[side] ? v->identity[side] : 0;
    for (int i = 0; i < T.nreserved; i++) {
        if (T.reserved_id[i] == id) {
            buf_putc(b, '(');
            put_str(b, T.reserved_name[i]);
            buf_putc(b, ')');
            return;
        }
    }
    buf_puts(b, "(ID:");
    buf_i64(b, id);
    buf_putc(b, ')');
}

static int is_policy_verdict(const ShapeView *v) {
    return v->event.p && v->event.n >= 15 && memcmp(v->event.p, "policy-verdict:", 15) == 0;
}

static void put_type(Buf *b, const ShapeView *v, int pv) {
    if (v->event.p) put_str(b, v->event);
    else buf_puts(b, "UNKNOWN");
    if (pv) {
        buf_putc(b, ' ');
        put_str(b, v->direction.p ? v->direction : T.direction_unknown);
    }
}

/* The verdict; ALLOWED/DENIED/AUDITED on policy verdicts, `BY <policies>` on request. */
static int put_verdict(Buf *b, const ShapeView *v, int pv, int policy_names) {
    Str name = v->verdict.p ? v->verdict : T.verdict_unknown;
    if (pv) {
        for (int i = 0; i < T.npv; i++) {
            if (same(name, T.pv_from[i])) {
                name = T.pv_to[i];
                break;
            }
        }
    }
    put_str(b, name);
    if (pv && policy_names && v->policies.p && v->direction.p &&
        (str_eq(name, "ALLOWED") || str_eq(name, "DENIED"))) {
        if (!v->policies.n) return -1; /* the reference's record is null there */
        buf_puts(b, " BY ");
        put_str(b, v->policies);
    }
    return 0;
}

static void put_summary(Buf *b, const ShapeView *v, Str summary) {
    if (v->has_trace && v->trace > 0) {
        buf_puts(b, "IP Trace ID: ");
        buf_u64(b, v->trace);
        buf_puts(b, "; ");
    }
    put_str(b, summary);
    if (v->auth.p && !same(v->auth, T.auth_disabled)) {
        buf_puts(b, "; Auth: ");
        put_str(b, v->auth);
    }
}

/* ESC and CR as hubble neutralises them (^[ and \r), in b from `mark` on. */
static void escape_from(Buf *b, size_t mark) {
    size_t extra = 0;
    for (size_t i = mark; i < b->len; i++)
        if (b->data[i] == '\x1b' || b->data[i] == '\r') extra++;
    if (!extra || b->failed) return;
    size_t n = b->len - mark;
    if (b->len + extra > b->cap && buf_grow(b, extra) < 0) return;
    /* from the end backwards, in place */
    size_t to = b->len + extra;
    for (size_t i = n; i > 0; i--) {
        char c = b->data[mark + i - 1];
        if (c == '\x1b') { b->data[--to] = '['; b->data[--to] = '^'; }
        else if (c == '\r') { b->data[--to] = 'r'; b->data[--to] = '\\'; }
        else b->data[--to] = c;
    }
    b->len += extra;
}

/* ---- records ---- */

typedef struct {
    int fmt, tf, node_name, policy_names, numeric;
} Opts;

enum { C_TIME, C_NODE, C_SOURCE, C_DESTINATION, C_TYPE, C_VERDICT, C_SUMMARY, C_COUNT };
static const char *const HEADINGS[C_COUNT] = {"TIMESTAMP", "NODE", "SOURCE", "DESTINATION",
                                              "TYPE", "VERDICT", "SUMMARY"};

/* The cells of dict and table (escaped, in the cells buffer; ends[c] after each cell). */
typedef struct {
    size_t ends[C_COUNT];
} Cells;

static Str row_summary(const Run *run, const Row *row, const ShapeView *v) {
    return row->l7 >= 0 ? run->l7s[row->l7].summary : v->summary;
}

/* One flow's compact line. 0, or -1 to bail. */
static int compact_line(Buf *b, const Run *run, const Row *row, const ShapeView *v,
                        const Opts *o) {
    size_t mark = b->len;
    int pv = is_policy_verdict(v);
    put_time(b, row->has_time, row->time, o->tf);
    if (o->node_name) {
        buf_puts(b, " [");
        put_str(b, v->node);
        buf_putc(b, ']');
    }
    buf_puts(b, ": ");
    int reply = v->reply == 1;
    for (int k = 0; k < 2; k++) {
        int side = reply ? 1 - k : k;
        put_host(b, v, side, side ? row->dst_ip : row->src_ip, side ? row->dport : row->sport,
                 o->numeric);
        buf_putc(b, ' ');
        put_identity(b, v, side);
        if (k == 0) buf_puts(b, v->reply < 0 ? " <> " : v->reply ? " <- " : " -> ");
    }
    buf_putc(b, ' ');
    put_type(b, v, pv);
    buf_putc(b, ' ');
    if (put_verdict(b, v, pv, o->policy_names) < 0) return -1;
    buf_puts(b, " (");
    put_summary(b, v, row_summary(run, row, v));
    buf_puts(b, ")\n");
    escape_from(b, mark);
    return 0;
}

static int flow_cells(Buf *b, Cells *cells, const Run *run, const Row *row,
                      const ShapeView *v, const Opts *o) {
    int pv = is_policy_verdict(v);
    for (int c = 0; c < C_COUNT; c++) {
        size_t mark = b->len;
        switch (c) {
        case C_TIME: put_time(b, row->has_time, row->time, o->tf); break;
        case C_NODE: if (o->node_name) put_str(b, v->node); break;
        case C_SOURCE: put_host(b, v, 0, row->src_ip, row->sport, o->numeric); break;
        case C_DESTINATION: put_host(b, v, 1, row->dst_ip, row->dport, o->numeric); break;
        case C_TYPE: put_type(b, v, pv); break;
        case C_VERDICT: if (put_verdict(b, v, pv, o->policy_names) < 0) return -1; break;
        case C_SUMMARY: put_summary(b, v, row_summary(run, row, v)); break;
        }
        escape_from(b, mark);
        cells->ends[c] = b->len;
    }
    return 0;
}

/* A lost-events record from Python: (position, time ns | None, node | None, source,
 * cpu | None, count, first ns | None, last ns | None). */
typedef struct {
    Py_ssize_t position;
    int has_time, has_first, has_last;
    int64_t time, first, last, cpu;
    uint64_t count;
    Str node, source;
} Lost;

static int parse_lost(PyObject *item, Lost *l) {
    PyObject *t, *node, *source, *cpu, *count, *first, *last;
    memset(l, 0, sizeof *l);
    if (!PyArg_ParseTuple(item, "nOOUOOOO", &l->position, &t, &node, &source, &cpu, &count,
                          &first, &last))
        return -1;
    struct { PyObject *o; int *has; int64_t *v; } times[] = {
        {t, &l->has_time, &l->time}, {first, &l->has_first, &l->first},
        {last, &l->has_last, &l->last}, {cpu, NULL, &l->cpu}};
    for (int i = 0; i < 4; i++) {
        if (times[i].o == Py_None) continue;
        *times[i].v = PyLong_AsLongLong(times[i].o);
        if (PyErr_Occurred()) return -1;
        if (times[i].has) *times[i].has = 1;
    }
    l->count = PyLong_AsUnsignedLongLong(count);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(source, &n);
    if (!u) return -1;
    l->source.p = u;
    l->source.n = (size_t)n;
    if (node != Py_None) {
        if (!(u = PyUnicode_AsUTF8AndSize(node, &n))) return -1;
        l->node.p = u;
        l->node.n = (size_t)n;
    }
    return 0;
}

static void lost_tail(Buf *b, const Lost *l) {
    buf_puts(b, "CPU(");
    buf_i64(b, l->cpu);
    buf_puts(b, ")");
}

static void lost_window(Buf *b, const Lost *l, int tf) {
    if (!l->has_first && !l->has_last) return;
    buf_puts(b, " (first: ");
    put_time(b, l->has_first, l->first, tf);
    buf_puts(b, ", last: ");
    put_time(b, l->has_last, l->last, tf);
    buf_putc(b, ')');
}

static void lost_compact(Buf *b, const Lost *l, int tf) {
    size_t mark = b->len;
    put_time(b, l->has_time, l->time, tf);
    buf_puts(b, " EVENTS LOST: ");
    put_str(b, l->source);
    buf_putc(b, ' ');
    lost_tail(b, l);
    buf_putc(b, ' ');
    buf_u64(b, l->count);
    lost_window(b, l, tf);
    buf_putc(b, '\n');
    escape_from(b, mark);
}

static void lost_cells(Buf *b, Cells *cells, const Lost *l, const Opts *o) {
    for (int c = 0; c < C_COUNT; c++) {
        size_t mark = b->len;
        switch (c) {
        case C_TIME: put_time(b, l->has_time, l->time, o->tf); break;
        case C_NODE:
            if (o->node_name) {
                if (nonempty(l->node)) put_str(b, l->node);
                else buf_putc(b, '-');
            }
            break;
        case C_SOURCE: put_str(b, l->source); break;
        case C_DESTINATION: buf_putc(b, '-'); break;
        case C_TYPE: buf_puts(b, "EVENTS LOST"); break;
        case C_VERDICT: buf_putc(b, '-'); break;
        case C_SUMMARY:
            lost_tail(b, l);
            buf_puts(b, " - ");
            buf_u64(b, l->count);
            lost_window(b, l, o->tf);
            break;
        }
        escape_from(b, mark);
        cells->ends[c] = b->len;
    }
}

/* dict: `LABEL: cell` lines, the label right-aligned to 11 columns; lost-events blocks have
 * no DESTINATION line. */
static void dict_block(Buf *out, const char *cells, size_t start, const Cells *c,
                       const Opts *o, int lost, int separator) {
    if (separator) buf_puts(out, "------------\n");
    size_t from = start;
    for (int k = 0; k < C_COUNT; k++) {
        size_t to = c->ends[k];
        int shown = (k != C_NODE || o->node_name) && !(lost && k == C_DESTINATION);
        if (shown) {
            size_t len = strlen(HEADINGS[k]);
            for (size_t pad = len; pad < 11; pad++) buf_putc(out, ' ');
            buf_puts(out, HEADINGS[k]);
            buf_puts(out, ": ");
            buf_put(out, cells + from, to - from);
            buf_putc(out, '\n');
        }
        from = to;
    }
}

/* ---- the table writer: every record's cells, aligned at the end ---- */

typedef struct {
    PyObject_HEAD
    Buf cells;
    size_t *ends; /* C_COUNT per record */
    size_t records, cap;
    size_t widths[C_COUNT];
    int node_name;
} Table;

static int table_add(Table *t, const Buf *b, size_t start, const Cells *c);

/* add(cells): one record's escaped cells as the reference renders them (without NODE unless
 * the table has it). */
static PyObject *table_add_cells(Table *t, PyObject *args) {
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &list)) return NULL;
    if (PyList_GET_SIZE(list) != C_COUNT - !t->node_name) {
        PyErr_SetString(PyExc_ValueError, "wrong number of cells");
        return NULL;
    }
    Buf b = {0};
    Cells c;
    Py_ssize_t at = 0;
    for (int k = 0; k < C_COUNT; k++) {
        if (k != C_NODE || t->node_name) {
            Py_ssize_t n;
            const char *u = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(list, at++), &n);
            if (!u) { buf_free(&b); return NULL; }
            buf_put(&b, u, (size_t)n);
        }
        c.ends[k] = b.len;
    }
    int r = b.failed ? -1 : table_add(t, &b, 0, &c);
    buf_free(&b);
    if (r < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static int table_add(Table *t, const Buf *b, size_t start, const Cells *c) {
    if (t->records == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        size_t *ends = realloc(t->ends, cap * C_COUNT * sizeof(size_t));
        if (!ends) return -1;
        t->ends = ends;
        t->cap = cap;
    }
    size_t base = t->cells.len, from = start;
    buf_put(&t->cells, b->data ? b->data + start : "", c->ends[C_COUNT - 1] - start);
    if (t->cells.failed) return -1;
    for (int k = 0; k < C_COUNT; k++) {
        size_t w = b->data ? utf8_length(b->data + from, c->ends[k] - from) : 0;
        if (w > t->widths[k]) t->widths[k] = w;
        t->ends[t->records * C_COUNT + k] = base + (c->ends[k] - start);
        from = c->ends[k];
    }
    t->records++;
    return 0;
}

/* finish() -> bytes: the header and every record, each column its widest cell plus 3 spaces
 * (the last one not padded), as Go's tabwriter aligns them; b"" when there is no record. */
static PyObject *table_finish(Table *t, PyObject *unused) {
    if (!t->records) return PyBytes_FromStringAndSize("", 0);
    size_t widths[C_COUNT];
    for (int k = 0; k < C_COUNT; k++) {
        size_t h = strlen(HEADINGS[k]);
        widths[k] = (t->widths[k] > h ? t->widths[k] : h) + 3;
    }
    Buf out = {0};
    for (size_t r = 0; r <= t->records; r++) {
        size_t from = r ? (r == 1 ? 0 : t->ends[(r - 1) * C_COUNT - 1]) : 0;
        for (int k = 0; k < C_COUNT; k++) {
            if (k == C_NODE && !t->node_name) {
                if (r) from = t->ends[(r - 1) * C_COUNT + k];
                continue;
            }
            const char *cell;
            size_t len;
            if (r == 0) {
                cell = HEADINGS[k];
                len = strlen(cell);
            } else {
                size_t to = t->ends[(r - 1) * C_COUNT + k];
                cell = t->cells.data + from;
                len = to - from;
                from = to;
            }
            buf_put(&out, cell, len);
            if (k != C_SUMMARY)
                for (size_t w = utf8_length(cell, len); w < widths[k]; w++) buf_putc(&out, ' ');
        }
        buf_putc(&out, '\n');
    }
    PyObject *result = out.failed ? PyErr_NoMemory()
                                  : PyBytes_FromStringAndSize(out.data, (Py_ssize_t)out.len);
    buf_free(&out);
    return result;
}

static int table_init(Table *t, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"node_name", NULL};
    int node_name = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", kw, &node_name)) return -1;
    t->node_name = node_name;
    return 0;
}

static void table_dealloc(Table *t) {
    buf_free(&t->cells);
    free(t->ends);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef table_methods[] = {
    {"add", (PyCFunction)table_add_cells, METH_VARARGS,
     "add(cells): a record's escaped cells, as flowlens.render.hubble.table_records gives."},
    {"finish", (PyCFunction)table_finish, METH_NOARGS,
     "finish() -> bytes: the aligned table of every record added."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowlens._native.Table",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Table(node_name=False): hubble's -o table, records added by render().",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)table_init,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_methods = table_methods,
};

/* ---- render ---- */

/* render(run, fmt, time_format, node_name, policy_names, numeric, lost, separator, table)
 *   fmt 0 compact, 1 dict, 2 table (records go to `table`, b"" is returned);
 *   lost: [(position, ...)] in stream order; separator: dict's before the first block.
 * -> bytes, or None when the reference must render this run. */
PyObject *splitter_render(Splitter *sp, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"run", "fmt", "time_format", "node_name", "policy_names", "numeric",
                         "lost", "separator", "table", NULL};
    Run *run;
    Opts o = {0};
    PyObject *lost_list = NULL, *table = Py_None;
    int separator = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!iippp|O!pO", kw, &RunType, &run, &o.fmt,
                                     &o.tf, &o.node_name, &o.policy_names, &o.numeric,
                                     &PyList_Type, &lost_list, &separator, &table))
        return NULL;
    if (!T.ready || o.fmt < 0 || o.fmt > 2 || o.tf < 0 || o.tf >= TF_COUNT ||
        (o.fmt == F_TABLE && !PyObject_TypeCheck(table, &TableType))) {
        PyErr_SetString(PyExc_ValueError, "bad render arguments (or no render tables)");
        return NULL;
    }
    if (sp->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the splitter is in use by another thread");
        return NULL;
    }
    if (run->generation != sp->generation) Py_RETURN_NONE;
    for (size_t i = 0; i < run->nrows; i++) {
        int32_t s = run->rows[i].shape;
        if (s < 0 || (size_t)s >= sp->nshapes || !sp->views[s].set || sp->views[s].unusable)
            Py_RETURN_NONE;
    }
    Py_ssize_t nlost = lost_list ? PyList_GET_SIZE(lost_list) : 0;
    Lost *lost = calloc((size_t)nlost + 1, sizeof(Lost));
    if (!lost) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < nlost; i++) {
        if (parse_lost(PyList_GET_ITEM(lost_list, i), &lost[i]) < 0) {
            free(lost);
            return NULL;
        }
        /* not in stream order (the reference sorts them), or beyond the frame's types */
        if ((i && lost[i].position < lost[i - 1].position) || lost[i].count > INT64_MAX ||
            lost[i].cpu < INT32_MIN || lost[i].cpu > INT32_MAX) {
            free(lost);
            Py_RETURN_NONE;
        }
    }
    Buf out = {0}, cells = {0};
    int bail = 0, blocks = 0;
    Py_ssize_t li = 0;
    sp->busy = 1; /* the views stay as they are while rendering without the GIL */
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i <= run->nrows && !bail; i++) {
        /* lost-event records before flow i (positions beyond the flows go last) */
        while (li < nlost && (lost[li].position <= (Py_ssize_t)i || i == run->nrows)) {
            Cells c;
            if (o.fmt == F_COMPACT) {
                lost_compact(&out, &lost[li], o.tf);
            } else {
                cells.len = 0;
                lost_cells(&cells, &c, &lost[li], &o);
                if (o.fmt == F_DICT)
                    dict_block(&out, cells.data, 0, &c, &o, 1, separator || blocks);
                else if (table_add((Table *)table, &cells, 0, &c) < 0) bail = -1;
            }
            blocks++;
            li++;
        }
        if (i == run->nrows) break;
        const Row *row = &run->rows[i];
        const ShapeView *v = &sp->views[row->shape];
        if (o.fmt == F_COMPACT) {
            if (compact_line(&out, run, row, v, &o) < 0) bail = 1;
        } else {
            Cells c;
            cells.len = 0;
            if (flow_cells(&cells, &c, run, row, v, &o) < 0) bail = 1;
            else if (o.fmt == F_DICT) dict_block(&out, cells.data, 0, &c, &o, 0, separator || blocks);
            else if (table_add((Table *)table, &cells, 0, &c) < 0) bail = -1;
        }
        blocks++;
    }
    Py_END_ALLOW_THREADS
    sp->busy = 0;
    free(lost);
    PyObject *result;
    if (out.failed || cells.failed || bail < 0) result = PyErr_NoMemory();
    else if (bail) result = Py_NewRef(Py_None);
    else result = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
    buf_free(&out);
    buf_free(&cells);
    return result;
}
