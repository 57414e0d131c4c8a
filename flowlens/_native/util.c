/* Buffers, UTF-8, JSON string quoting and civil time. */
#include "native.h"

int buf_grow(Buf *b, size_t extra) {
    if (b->failed) return -1;
    size_t need = b->len + extra;
    if (need < b->len) { b->failed = 1; return -1; }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { b->failed = 1; return -1; }
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data) { b->failed = 1; return -1; }
    b->data = data;
    b->cap = cap;
    return 0;
}

void buf_free(Buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void buf_u64(Buf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    buf_put(b, tmp + i, (size_t)(24 - i));
}

void buf_i64(Buf *b, int64_t v) {
    if (v < 0) {
        buf_putc(b, '-');
        buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        buf_u64(b, (uint64_t)v);
    }
}

void buf_uint_padded(Buf *b, uint64_t v, int width) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    while (24 - i < width && i > 0) tmp[--i] = '0';
    buf_put(b, tmp + i, (size_t)(24 - i));
}

int utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) { /* eight ASCII bytes at once */
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            uint8_t d = p[i + j];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        i += k + 1;
    }
    return 1;
}

size_t utf8_length(const char *p, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((uint8_t)p[i] & 0xC0) != 0x80) count++;
    return count;
}

static const char HEX[] = "0123456789abcdef";

void json_quote(Buf *b, const char *p, size_t n) {
    if (b->len + n + 2 > b->cap && buf_grow(b, n + 2) < 0) return;
    b->data[b->len++] = '"';
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0xE2)
            continue;
        const char *esc = NULL;
        char u[6] = {'\\', 'u', '0', '0', 0, 0};
        size_t skip = 1;
        if (c < 0x20) {
            switch (c) {
            case '\b': esc = "\\b"; break;
            case '\t': esc = "\\t"; break;
            case '\n': esc = "\\n"; break;
            case '\f': esc = "\\f"; break;
            case '\r': esc = "\\r"; break;
            default:
                u[4] = HEX[c >> 4];
                u[5] = HEX[c & 15];
            }
        } else if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '<') esc = "\\u003c";
        else if (c == '>') esc = "\\u003e";
        else if (c == '&') esc = "\\u0026";
        else if (c == 0xE2 && i + 2 < n && (uint8_t)p[i + 1] == 0x80 &&
                 ((uint8_t)p[i + 2] == 0xA8 || (uint8_t)p[i + 2] == 0xA9)) {
            esc = (uint8_t)p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
            skip = 3;
        } else continue;
        buf_put(b, p + run, i - run);
        if (esc) buf_puts(b, esc);
        else buf_put(b, u, 6);
        i += skip - 1;
        run = i + 1;
    }
    buf_put(b, p + run, n - run);
    buf_putc(b, '"');
}

/* ---- civil time (proleptic Gregorian, UTC) ---- */

const char *const MONTH_ABBR[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
const char *const WEEKDAY_ABBR[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Days are counted in 400-year eras of 146097 days, years starting in March so that the leap
 * day ends a year. */
int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void civil_from_seconds(int64_t seconds, Civil *c) {
    int64_t days = floor_div(seconds, 86400);
    int64_t rest = seconds - days * 86400;
    c->hour = (int)(rest / 3600);
    c->minute = (int)(rest % 3600 / 60);
    c->second = (int)(rest % 60);
    c->weekday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c->year = yoe + era * 400 + (c->month <= 2);
}

/* ---- arenas ---- */

char *arena_alloc(Arena *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    Chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 60000 ? n : 65536 - sizeof(Chunk);
        c = malloc(sizeof(Chunk) + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

Str arena_str(Arena *a, const char *p, size_t n) {
    Str s = {NULL, 0};
    char *copy = arena_alloc(a, n ? n : 1);
    if (!copy) return s;
    if (n) memcpy(copy, p, n);
    s.p = copy;
    s.n = n;
    return s;
}

void arena_free(Arena *a) {
    Chunk *c = a->head;
    while (c) {
        Chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}
