/* One pass over the bytes of an NDJSON text: cut it into lines, say for each line whether it is
 * certainly a valid JSON object (RFC 8259, UTF-8), and cut out the raw text of its key.
 *
 * The results are Arrow "string view" arrays (16 bytes per value) pointing into the input, so
 * that Polars takes them without copying. The scanner is conservative: a line it does not
 * vouch for (or whose key it cannot cut out with certainty) is flagged, and the caller parses
 * it exactly. It never says "valid" of an invalid line, and never gives a key that differs
 * from the canonical JSON of the parsed key value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define F_BLANK 1   /* only JSON whitespace: not a record */
#define F_VALID 2   /* certainly a valid JSON object */
#define F_KEY 4     /* the key view holds the key's canonical text */
#define F_UTF8 8    /* the line is valid UTF-8 (may be held in a Polars String column) */
#define F_TYPED 16  /* the line's leaf types are in the scan's type set */

#define MAX_DEPTH 64
#define MAX_PATHS 16
#define MAX_STEPS 16

typedef struct {
    int npaths;
    int nsteps[MAX_PATHS];
    const char *step[MAX_PATHS][MAX_STEPS];
    Py_ssize_t steplen[MAX_PATHS][MAX_STEPS];
} keyspec;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    const keyspec *ks;
    /* per key path: token span (offset from line start), -1 when not seen */
    Py_ssize_t tok_start[MAX_PATHS];
    Py_ssize_t tok_len[MAX_PATHS];
    int tok_canonical[MAX_PATHS];
    int key_unsure;
    const unsigned char *line;
    /* the line's shape: member names, nesting and leaf types, hashed (two 64-bit lanes) */
    uint64_t h1, h2;
    int hashing; /* 0 inside arrays: an array is one leaf, whatever it holds */
    struct namestack *names; /* the member names of the objects open at this point */
} parser;

/* Member names of the open objects, innermost last, to refuse a line where one object names
 * a member twice (contract: `duplicate_member`; the exact parser names it). */
typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} name_ref;

typedef struct namestack {
    name_ref *items;
    Py_ssize_t len, cap;
} namestack;

/* Whether the object whose names start at `base` already holds `name`; else pushes it.
 * Returns -1 when the stack cannot grow (the caller treats the line as unsure). */
static int name_seen(namestack *ns, Py_ssize_t base, uint64_t *bloom, const unsigned char *name,
                     Py_ssize_t n) {
    /* a 256-bit filter per object: the pairwise check runs only on a likely repeat */
    unsigned h = (unsigned)(n * 31 + (n ? name[0] * 7 + name[n - 1] * 13 + name[n / 2] : 0)) & 255;
    uint64_t bit = 1ULL << (h & 63);
    if (bloom[h >> 6] & bit) {
        for (Py_ssize_t i = base; i < ns->len; i++)
            if (ns->items[i].n == n && memcmp(ns->items[i].p, name, n) == 0) return 1;
    }
    bloom[h >> 6] |= bit;
    if (ns->len == ns->cap) {
        Py_ssize_t cap = ns->cap ? ns->cap * 2 : 64;
        name_ref *items = realloc(ns->items, cap * sizeof(name_ref));
        if (!items) return -1;
        ns->items = items;
        ns->cap = cap;
    }
    ns->items[ns->len].p = name;
    ns->items[ns->len].n = n;
    ns->len++;
    return 0;
}

enum { T_STRING = 1, T_NUMBER, T_BOOLEAN, T_NULL, T_ARRAY, T_OPEN, T_CLOSE };
#define NAME_TAG (1ULL << 40) /* keeps a name's length apart from the type codes */

static inline void mix(parser *ps, uint64_t v) {
    uint64_t a = (ps->h1 ^ v) * 0x9E3779B97F4A7C15ULL;
    uint64_t b = (ps->h2 ^ v) * 0xC2B2AE3D27D4EB4FULL;
    ps->h1 = a ^ (a >> 29);
    ps->h2 = b ^ (b >> 31);
}

static inline void mix_name(parser *ps, const unsigned char *s, Py_ssize_t n) {
    mix(ps, NAME_TAG | (uint64_t)n);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        mix(ps, w);
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        mix(ps, w);
    }
}

/* The type code of a value from its first byte (objects are hashed by parse_object). */
static inline uint64_t type_code(unsigned char c) {
    switch (c) {
    case '"':
        return T_STRING;
    case 't':
    case 'f':
        return T_BOOLEAN;
    case 'n':
        return T_NULL;
    case '[':
        return T_ARRAY;
    default:
        return T_NUMBER;
    }
}

/* 1: byte needs attention inside a string (quote, backslash, control, non-ASCII) */
static unsigned char str_special[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++)
        str_special[c] = (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) ? 1 : 0;
}

static inline void skip_ws(parser *ps) {
    const unsigned char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    ps->p = p;
}

/* One UTF-8 sequence starting at p (p[0] >= 0x80): its length, or 0 if invalid. */
static inline int utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    Py_ssize_t left = end - p;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && p[1] > 0x9F) return 0;  /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && p[1] > 0x8F) return 0;  /* > U+10FFFF */
        return 4;
    }
    return 0;
}

static int utf8_valid(const unsigned char *p, const unsigned char *end) {
    while (p < end) {
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                p += 8;
                continue;
            }
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        int n = utf8_seq(p, end);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string at ps->p (on the opening quote). Returns 1 if valid; *escaped set if it holds a
 * backslash escape; *unsure set for escapes the exact parser may judge differently (lone
 * surrogates). */
static inline int parse_string(parser *ps, int *escaped, int *unsure) {
    const unsigned char *p = ps->p + 1, *end = ps->end;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while none needs attention */
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed compare: bytes >= 0x80 are negative, so "< 0x20" also catches them */
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                       _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && !str_special[*p]) p++;
        if (p >= end) return 0;
        unsigned char c = *p;
        if (c == '"') {
            ps->p = p + 1;
            return 1;
        }
        if (c == '\\') {
            *escaped = 1;
            if (p + 1 >= end) return 0;
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6) return 0;
                int v = 0;
                for (int i = 2; i < 6; i++) {
                    int h = hexval(p[i]);
                    if (h < 0) return 0;
                    v = v * 16 + h;
                }
                p += 6;
                if (v >= 0xD800 && v <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    int w = 0; /* a high surrogate: a low one must follow */
                    for (int i = 2; i < 6; i++) {
                        int h = hexval(p[i]);
                        if (h < 0) return 0;
                        w = w * 16 + h;
                    }
                    if (w >= 0xDC00 && w <= 0xDFFF) {
                        p += 6;
                        continue;
                    }
                }
                if (v >= 0xD800 && v <= 0xDFFF) *unsure = 1; /* lone: the exact parser decides */
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return 0;
            }
            continue;
        }
        if (c < 0x20) return 0;
        int n = utf8_seq(p, end);
        if (!n) return 0;
        p += n;
    }
}

/* A number at ps->p. Returns 1 if valid; *integer set when it has no fraction or exponent. */
static inline int parse_number(parser *ps, int *integer) {
    const unsigned char *p = ps->p, *end = ps->end;
    *integer = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        *integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    ps->p = p;
    return 1;
}

static inline int parse_literal(parser *ps, const char *lit, int n) {
    if (ps->end - ps->p < n || memcmp(ps->p, lit, n) != 0) return 0;
    ps->p += n;
    return 1;
}

static int parse_value(parser *ps, int depth, int *unsure);

/* After a member or element: 1 at a comma (skipped, with the space after it), 2 at `closer`
 * (skipped), 0 at anything else. */
static inline int after_item(parser *ps, unsigned char closer) {
    skip_ws(ps);
    if (ps->p >= ps->end) return 0;
    if (*ps->p == ',') {
        ps->p++;
        skip_ws(ps);
        return 1;
    }
    if (*ps->p == closer) {
        ps->p++;
        return 2;
    }
    return 0;
}

/* An object at ps->p ('{'); `active`: bit mask of the key paths whose first `step` names led
 * here. */
static int parse_object(parser *ps, int depth, unsigned active, int step, int *unsure) {
    const keyspec *ks = ps->ks;
    unsigned seen = 0; /* paths whose step-th name occurred in this object */
    Py_ssize_t base = ps->names->len;
    uint64_t bloom[4] = {0, 0, 0, 0};
    if (ps->hashing) mix(ps, T_OPEN);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        if (ps->hashing) mix(ps, T_CLOSE);
        return 1;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') return 0;
        const unsigned char *name = ps->p + 1;
        int escaped = 0;
        if (!parse_string(ps, &escaped, unsure)) return 0;
        Py_ssize_t namelen = (ps->p - 1) - name;
        /* an escaped name may equal another one once decoded: the exact parser decides */
        if (escaped || name_seen(ps->names, base, bloom, name, namelen) != 0) *unsure = 1;
        if (ps->hashing) mix_name(ps, name, namelen);
        unsigned match = 0;
        if (active) {
            if (escaped) {
                ps->key_unsure = 1; /* a key name may hide behind an escape */
            } else {
                for (int k = 0; k < ks->npaths; k++) {
                    if ((active >> k & 1) && ks->steplen[k][step] == namelen &&
                        memcmp(ks->step[k][step], name, namelen) == 0)
                        match |= 1u << k;
                }
                if (match & seen) ps->key_unsure = 1; /* a duplicated member name */
                seen |= match;
            }
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') return 0;
        ps->p++;
        skip_ws(ps);
        if (ps->p >= ps->end) return 0;
        unsigned char c = *ps->p;
        if (match) {
            unsigned leaf = 0, inner = 0;
            for (int k = 0; k < ks->npaths; k++) {
                if (!(match >> k & 1)) continue;
                if (ks->nsteps[k] == step + 1)
                    leaf |= 1u << k;
                else
                    inner |= 1u << k;
            }
            const unsigned char *vstart = ps->p;
            if (inner) {
                if (c == '{') {
                    if (depth + 1 > MAX_DEPTH) {
                        *unsure = 1;
                        return 0;
                    }
                    if (!parse_object(ps, depth + 1, inner, step + 1, unsure)) return 0;
                } else {
                    ps->key_unsure = 1; /* the path does not lead to an object: exact path */
                    if (!parse_value(ps, depth, unsure)) return 0;
                }
                /* a leaf of another path cannot share this member (names equal, lengths differ) */
                if (leaf) ps->key_unsure = 1;
            } else {
                int canonical = 0;
                if (c == '"') {
                    int esc = 0;
                    if (!parse_string(ps, &esc, unsure)) return 0;
                    canonical = !esc;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                    int integer;
                    if (!parse_number(ps, &integer)) return 0;
                    /* "-0" is the integer 0, canonically "0" */
                    canonical = integer && !(ps->p - vstart == 2 && vstart[0] == '-');
                } else if (c == 't') {
                    if (!parse_literal(ps, "true", 4)) return 0;
                    canonical = 1;
                } else if (c == 'f') {
                    if (!parse_literal(ps, "false", 5)) return 0;
                    canonical = 1;
                } else {
                    if (!parse_value(ps, depth, unsure)) return 0; /* null, object, array */
                }
                for (int k = 0; k < ks->npaths; k++) {
                    if (!(leaf >> k & 1)) continue;
                    ps->tok_start[k] = vstart - ps->line;
                    ps->tok_len[k] = ps->p - vstart;
                    ps->tok_canonical[k] = canonical;
                }
            }
        } else {
            if (!parse_value(ps, depth, unsure)) return 0;
        }
        if (ps->hashing && c != '{') mix(ps, type_code(c));
        int next = after_item(ps, '}');
        if (next != 1) {
            if (next && ps->hashing) mix(ps, T_CLOSE);
            ps->names->len = base;
            return next == 2;
        }
    }
}

static int parse_array_items(parser *ps, int depth, int *unsure, Py_ssize_t *items);

static int parse_array(parser *ps, int depth, int *unsure) {
    int hashing = ps->hashing;
    Py_ssize_t items;
    ps->hashing = 0;
    int ok = parse_array_items(ps, depth, unsure, &items);
    ps->hashing = hashing;
    return ok;
}

/* An array at ps->p ('['); `items`: how many elements it has. */
static int parse_array_items(parser *ps, int depth, int *unsure, Py_ssize_t *items) {
    *items = 0;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 1;
    }
    for (;;) {
        if (!parse_value(ps, depth, unsure)) return 0;
        (*items)++;
        int next = after_item(ps, ']');
        if (next != 1) return next == 2;
    }
}

static int parse_value(parser *ps, int depth, int *unsure) {
    if (ps->p >= ps->end) return 0;
    unsigned char c = *ps->p;
    int escaped = 0, integer;
    switch (c) {
    case '"':
        return parse_string(ps, &escaped, unsure);
    case '{':
    case '[':
        if (depth + 1 > MAX_DEPTH) {
            *unsure = 1;
            return 0;
        }
        return c == '{' ? parse_object(ps, depth + 1, 0, 0, unsure)
                        : parse_array(ps, depth + 1, unsure);
    case 't':
        return parse_literal(ps, "true", 4);
    case 'f':
        return parse_literal(ps, "false", 5);
    case 'n':
        return parse_literal(ps, "null", 4);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, &integer);
        return 0;
    }
}

/* Arrow string view: length, then either the bytes inline (<= 12) or a 4-byte prefix, the
 * buffer index and the offset. */
static inline void put_view(unsigned char *v, const unsigned char *base, Py_ssize_t off,
                            Py_ssize_t len, int32_t buffer) {
    int32_t l = (int32_t)len;
    memset(v, 0, 16);
    memcpy(v, &l, 4);
    if (len <= 12) {
        memcpy(v + 4, base + off, len);
    } else {
        int32_t o = (int32_t)off;
        memcpy(v + 4, base + off, 4);
        memcpy(v + 8, &buffer, 4);
        memcpy(v + 12, &o, 4);
    }
}

typedef struct {
    unsigned char *data;
    Py_ssize_t len, cap;
} growbuf;

static int grow_put(growbuf *g, const unsigned char *s, Py_ssize_t n) {
    if (g->len + n > g->cap) {
        Py_ssize_t cap = g->cap ? g->cap * 2 : 1 << 20;
        while (cap < g->len + n) cap *= 2;
        unsigned char *d = realloc(g->data, cap);
        if (!d) return 0;
        g->data = d;
        g->cap = cap;
    }
    memcpy(g->data + g->len, s, n);
    g->len += n;
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * changed(before, after): the contract's changed leaf paths of two records, when they can be
 * told from the text alone; None when not (the caller compares the parsed records).
 *
 * Leaves are the non-null scalars and arrays, objects descended (`a.b`). Two leaves are equal
 * when their texts are equal. Texts that differ mean different values for: strings without
 * escapes, booleans, integers written canonically, numbers that are exact as doubles (compared
 * as doubles, as Python compares int and float), arrays of different lengths, and values of
 * different JSON types. Anything else (escaped strings, arrays of the same length, huge
 * integers against floats, escaped or repeated member names, very deep or big records) is
 * declined. */

#define MAX_LEAVES 1024
#define PATH_ARENA 65536
#define MAX_PATH 4096
#define MAX_MEMBERS 256

enum { K_STRING = 1, K_NUMBER, K_BOOLEAN, K_ARRAY };
#define L_ESCAPED 1 /* a string with escapes */
#define L_INTEGER 2 /* an integer written canonically (not -0) */

typedef struct {
    const unsigned char *path;
    Py_ssize_t path_len;
    const unsigned char *text;
    Py_ssize_t text_len;
    unsigned char kind, flags;
    Py_ssize_t items; /* arrays: number of elements */
} leaf;

typedef struct {
    leaf leaves[MAX_LEAVES];
    int n;
    unsigned char arena[PATH_ARENA];
    Py_ssize_t used;
    unsigned char path[MAX_PATH];
    Py_ssize_t path_len;
} leafset;

/* The leaves of the object at ps->p into `ls` (paths prefixed by ls->path). 0: declined. */
static int collect(parser *ps, leafset *ls, int depth) {
    const unsigned char *names[MAX_MEMBERS];
    Py_ssize_t lens[MAX_MEMBERS];
    int members = 0;
    Py_ssize_t prefix = ls->path_len;
    if (depth > MAX_DEPTH) return 0;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return 1;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') return 0;
        const unsigned char *name = ps->p + 1;
        int escaped = 0, unsure = 0;
        if (!parse_string(ps, &escaped, &unsure) || escaped || unsure) return 0;
        Py_ssize_t len = (ps->p - 1) - name;
        if (members == MAX_MEMBERS) return 0;
        for (int i = 0; i < members; i++) /* a repeated name: the last one counts */
            if (lens[i] == len && memcmp(names[i], name, len) == 0) return 0;
        names[members] = name;
        lens[members++] = len;
        if (prefix + len + 1 > MAX_PATH) return 0;
        memcpy(ls->path + prefix, name, len);
        ls->path_len = prefix + len;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') return 0;
        ps->p++;
        skip_ws(ps);
        if (ps->p >= ps->end) return 0;
        const unsigned char *v = ps->p;
        unsigned char c = *v, kind = 0, flags = 0;
        Py_ssize_t items = 0;
        if (c == '{') {
            ls->path[ls->path_len++] = '.';
            if (!collect(ps, ls, depth + 1)) return 0;
        } else if (c == 'n') {
            if (!parse_literal(ps, "null", 4)) return 0; /* a null member is no leaf */
        } else if (c == '"') {
            escaped = 0;
            if (!parse_string(ps, &escaped, &unsure) || unsure) return 0;
            kind = K_STRING;
            flags = escaped ? L_ESCAPED : 0;
        } else if (c == 't' || c == 'f') {
            if (!(c == 't' ? parse_literal(ps, "true", 4) : parse_literal(ps, "false", 5)))
                return 0;
            kind = K_BOOLEAN;
        } else if (c == '[') {
            if (depth + 1 > MAX_DEPTH || !parse_array_items(ps, depth + 1, &unsure, &items) ||
                unsure)
                return 0;
            kind = K_ARRAY;
        } else {
            int integer;
            if (!parse_number(ps, &integer)) return 0;
            kind = K_NUMBER;
            if (integer && !(ps->p - v == 2 && v[0] == '-')) flags = L_INTEGER;
        }
        if (kind) {
            if (ls->n == MAX_LEAVES || ls->used + ls->path_len > PATH_ARENA) return 0;
            leaf *l = &ls->leaves[ls->n++];
            memcpy(ls->arena + ls->used, ls->path, ls->path_len);
            l->path = ls->arena + ls->used;
            l->path_len = ls->path_len;
            ls->used += ls->path_len;
            l->text = v;
            l->text_len = ps->p - v;
            l->kind = kind;
            l->flags = flags;
            l->items = items;
        }
        int next = after_item(ps, '}');
        if (next != 1) {
            ls->path_len = prefix;
            return next == 2;
        }
    }
}

static int leaf_order(const void *x, const void *y) {
    const leaf *a = x, *b = y;
    Py_ssize_t n = a->path_len < b->path_len ? a->path_len : b->path_len;
    int c = memcmp(a->path, b->path, n);
    if (c) return c;
    return (a->path_len > b->path_len) - (a->path_len < b->path_len);
}

/* The leaves of a record text, sorted by path (UTF-8 byte order is code point order). */
static int leaves_of(const unsigned char *text, Py_ssize_t len, leafset *ls) {
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.p = text;
    ps.end = text + len;
    ps.line = text;
    ls->n = 0;
    ls->used = 0;
    ls->path_len = 0;
    namestack names = {NULL, 0, 0}; /* objects inside arrays are parsed by parse_object */
    ps.names = &names;
    skip_ws(&ps);
    int ok = ps.p < ps.end && *ps.p == '{' && collect(&ps, ls, 1);
    free(names.items);
    if (!ok) return 0;
    skip_ws(&ps);
    if (ps.p != ps.end) return 0;
    qsort(ls->leaves, ls->n, sizeof(leaf), leaf_order);
    for (int i = 1; i < ls->n; i++) /* `a.b` written both nested and as one name */
        if (leaf_order(&ls->leaves[i - 1], &ls->leaves[i]) == 0) return 0;
    return 1;
}

/* A number's value as a double, when comparing doubles is comparing the exact decimal values;
 * 0: declined (the caller parses exactly). That holds for at most 15 significant digits and a
 * normal (or zero) double: distinct such decimals are distinct doubles. More digits
 * (0.1 vs 0.10000000000000001), an overflow (1e400 is inf, like 2e400) or an underflow
 * (1e-400 is 0) would make different numbers equal. */
static int number_value(const leaf *l, double *out) {
    char buf[64];
    if (l->text_len >= (Py_ssize_t)sizeof buf) return 0;
    Py_ssize_t digits = 0;
    int nonzero = 0;
    for (Py_ssize_t i = 0; i < l->text_len; i++) {
        char c = l->text[i];
        if (c == 'e' || c == 'E') break;
        if (c >= '0' && c <= '9') {
            digits++;
            nonzero |= c != '0';
        }
    }
    if (digits > 15) return 0; /* leading zeros count too: conservative */
    memcpy(buf, l->text, l->text_len);
    buf[l->text_len] = 0;
    char *stop;
    double x = strtod(buf, &stop);
    if (stop != buf + l->text_len || !isfinite(x)) return 0;
    if (nonzero && fabs(x) < DBL_MIN) return 0; /* underflow: subnormal or zero */
    *out = x;
    return 1;
}

/* 1 equal, 0 different, -1 declined */
static int leaf_equal(const leaf *a, const leaf *b) {
    if (a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0) return 1;
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case K_STRING:
        return (a->flags | b->flags) & L_ESCAPED ? -1 : 0;
    case K_BOOLEAN:
        return 0;
    case K_ARRAY:
        return a->items != b->items ? 0 : -1;
    default: {
        if ((a->flags & b->flags) & L_INTEGER) return 0;
        double x, y;
        if (!number_value(a, &x) || !number_value(b, &y)) return -1;
        return x == y;
    }
    }
}

/* ------------------------------------------------------------------------------------------
 * Leaf types of a scan: the distinct (leaf path, type) pairs of the lines with a fast key,
 * collected once per distinct shape (the first line of each shape is walked again). */

/* An open-addressing hash table of (h1, h2) entries, or of (h1, h2, bytes in `data`) entries
 * when `data` is given: shapes (h1, h2 their hash; state 1 typed, 2 declined) and leaf types
 * (h1 the path's hash, h2 its kind, the path's bytes in `data`; state 1). */
typedef struct {
    uint64_t h1, h2;
    Py_ssize_t off, len;
    unsigned char state; /* 0: empty slot */
} slot;

typedef struct {
    slot *slots;
    size_t cap, n;
} table;

static int table_init(table *t, size_t cap) {
    t->cap = cap;
    t->n = 0;
    t->slots = calloc(cap, sizeof(slot));
    return t->slots != NULL;
}

/* The slot of an entry (found, or the empty one to fill), the table grown first when half
 * full; NULL on memory exhaustion. */
static slot *table_find(table *t, uint64_t h1, uint64_t h2, const growbuf *data,
                        const unsigned char *bytes, Py_ssize_t len) {
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap * 2;
        slot *grown = calloc(cap, sizeof(slot));
        if (!grown) return NULL;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slots[i].state) continue;
            size_t j = t->slots[i].h1 & (cap - 1);
            while (grown[j].state) j = (j + 1) & (cap - 1);
            grown[j] = t->slots[i];
        }
        free(t->slots);
        t->slots = grown;
        t->cap = cap;
    }
    for (size_t j = h1 & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
        slot *e = &t->slots[j];
        if (!e->state) return e;
        if (e->h1 == h1 && e->h2 == h2 &&
            (!data || (e->len == len && memcmp(data->data + e->off, bytes, len) == 0)))
            return e;
    }
}

typedef struct {
    table shapes, types;
    growbuf paths; /* the bytes of the leaf paths in `types` */
    leafset *leaves;
} typeset;

static int typeset_init(typeset *t) {
    memset(t, 0, sizeof *t);
    int shapes = table_init(&t->shapes, 64), types = table_init(&t->types, 256);
    t->leaves = malloc(sizeof(leafset));
    return shapes && types && t->leaves;
}

static void typeset_free(typeset *t) {
    free(t->shapes.slots);
    free(t->types.slots);
    free(t->paths.data);
    free(t->leaves);
}

static uint64_t path_hash(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ULL;
    return h;
}

/* Add (path, kind) to the set; 0 on memory exhaustion. */
static int type_add(typeset *t, const unsigned char *path, Py_ssize_t len, unsigned char kind) {
    slot *e = table_find(&t->types, path_hash(path, len), kind, &t->paths, path, len);
    if (!e) return 0;
    if (e->state) return 1;
    e->h1 = path_hash(path, len);
    e->h2 = kind;
    e->off = t->paths.len;
    e->len = len;
    e->state = 1;
    t->types.n++;
    return grow_put(&t->paths, path, len);
}

/* Whether the leaf types of a line of this shape are in the set (walking the line the first
 * time the shape is seen); -1 on memory exhaustion. */
static int shape_typed(typeset *t, uint64_t h1, uint64_t h2, const unsigned char *line,
                       Py_ssize_t len) {
    slot *e = table_find(&t->shapes, h1, h2, NULL, NULL, 0);
    if (!e) return -1;
    if (e->state) return e->state == 1;
    e->h1 = h1;
    e->h2 = h2;
    t->shapes.n++;
    if (!leaves_of(line, len, t->leaves)) {
        e->state = 2;
        return 0;
    }
    for (int i = 0; i < t->leaves->n; i++) {
        const leaf *l = &t->leaves->leaves[i];
        if (!type_add(t, l->path, l->path_len, l->kind)) return -1;
    }
    e->state = 1;
    return 1;
}

static int parse_keyspec(PyObject *paths, keyspec *ks) {
    PyObject *seq = PySequence_Fast(paths, "key paths must be a sequence");
    if (!seq) return 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_PATHS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "between 1 and 16 key paths");
        return 0;
    }
    ks->npaths = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *steps = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i), "steps");
        if (!steps) {
            Py_DECREF(seq);
            return 0;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(steps);
        if (m < 1 || m > MAX_STEPS) {
            Py_DECREF(steps);
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "between 1 and 16 steps per key path");
            return 0;
        }
        ks->nsteps[i] = (int)m;
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *b = PySequence_Fast_GET_ITEM(steps, j);
            char *s;
            Py_ssize_t len;
            if (PyBytes_AsStringAndSize(b, &s, &len) < 0) {
                Py_DECREF(steps);
                Py_DECREF(seq);
                return 0;
            }
            /* the objects stay alive: `paths` is held by the caller during the call */
            ks->step[i][j] = s;
            ks->steplen[i][j] = len;
        }
        Py_DECREF(steps);
    }
    Py_DECREF(seq);
    return 1;
}

PyDoc_STRVAR(
    scan_doc,
    "scan(data, key_paths) -> (lines, line_views, key_views, flags, types, key_data, bad_utf8)\n\n"
    "data: bytes-like NDJSON text (< 2 GiB); key_paths: for each key path, its member names as "
    "UTF-8 bytes. lines: the number of lines (a last line without a newline counts); "
    "line_views/key_views: Arrow string views (16 bytes per line) into data, or into key_data "
    "(composite keys only: tokens joined by \\x1f); flags: one byte per line (1 blank, 2 valid "
    "object, 4 key cut out, 8 valid UTF-8, 16 leaf types in `types`); types: the distinct "
    "(leaf path as UTF-8 bytes, kind) of the lines flagged 16 (kind 1 string, 2 number, "
    "3 boolean, 4 array); bad_utf8: lines that are not UTF-8.");

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *paths;
    if (!PyArg_ParseTuple(args, "y*O", &buf, &paths)) return NULL;
    keyspec ks;
    if (!parse_keyspec(paths, &ks)) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (buf.len >= INT32_MAX) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "data must be smaller than 2 GiB");
        return NULL;
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t size = buf.len;
    Py_ssize_t nlines = 0;
    Py_BEGIN_ALLOW_THREADS;
    const unsigned char *p = data, *end = data + size;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', end - p);
        nlines++;
        if (!nl) break;
        p = nl + 1;
    }
    Py_END_ALLOW_THREADS;
    PyObject *lines_v = PyBytes_FromStringAndSize(NULL, nlines * 16);
    PyObject *keys_v = PyBytes_FromStringAndSize(NULL, nlines * 16);
    PyObject *flags_b = PyBytes_FromStringAndSize(NULL, nlines);
    typeset ts;
    int ts_ok = typeset_init(&ts);
    if (!lines_v || !keys_v || !flags_b || !ts_ok) {
        Py_XDECREF(lines_v);
        Py_XDECREF(keys_v);
        Py_XDECREF(flags_b);
        typeset_free(&ts);
        PyBuffer_Release(&buf);
        return ts_ok ? NULL : PyErr_NoMemory();
    }
    unsigned char *lv = (unsigned char *)PyBytes_AS_STRING(lines_v);
    unsigned char *kv = (unsigned char *)PyBytes_AS_STRING(keys_v);
    unsigned char *fl = (unsigned char *)PyBytes_AS_STRING(flags_b);
    Py_ssize_t bad_utf8 = 0;
    int oom = 0;
    int composite = ks.npaths > 1;
    growbuf keydata = {NULL, 0, 0};
    namestack names = {NULL, 0, 0};
    Py_BEGIN_ALLOW_THREADS;
    const unsigned char *p = data, *end = data + size;
    for (Py_ssize_t i = 0; i < nlines; i++) {
        const unsigned char *nl = memchr(p, '\n', end - p);
        const unsigned char *stop = nl ? nl : end;
        const unsigned char *lend = stop;
        while (lend > p && lend[-1] == '\r') lend--;
        unsigned char flags = 0;
        parser ps;
        ps.p = p;
        ps.end = lend;
        ps.ks = &ks;
        ps.line = p;
        ps.key_unsure = 0;
        ps.h1 = 0x243F6A8885A308D3ULL;
        ps.h2 = 0x13198A2E03707344ULL;
        ps.hashing = 1;
        names.len = 0; /* a line that failed half-way left its names behind */
        ps.names = &names;
        for (int k = 0; k < ks.npaths; k++) ps.tok_start[k] = -1;
        skip_ws(&ps);
        int unsure = 0;
        if (ps.p >= lend) {
            flags = F_BLANK | F_UTF8;
        } else if (*ps.p == '{' && parse_object(&ps, 1, (1u << ks.npaths) - 1, 0, &unsure) &&
                   (skip_ws(&ps), ps.p == lend) && !unsure) {
            flags = F_VALID | F_UTF8;
            int key_ok = !ps.key_unsure;
            for (int k = 0; k < ks.npaths && key_ok; k++)
                key_ok = ps.tok_start[k] >= 0 && ps.tok_canonical[k];
            if (key_ok) flags |= F_KEY;
        } else if (utf8_valid(p, lend)) {
            flags = F_UTF8;
        } else {
            bad_utf8++;
        }
        put_view(lv + i * 16, data, p - data, lend - p, 0);
        if (flags & F_KEY) {
            if (!composite) {
                put_view(kv + i * 16, data, (p - data) + ps.tok_start[0], ps.tok_len[0], 0);
            } else {
                Py_ssize_t start = keydata.len;
                for (int k = 0; k < ks.npaths && !oom; k++) {
                    if (k && !grow_put(&keydata, (const unsigned char *)"\x1f", 1)) oom = 1;
                    if (!oom && !grow_put(&keydata, p + ps.tok_start[k], ps.tok_len[k])) oom = 1;
                }
                if (oom) break;
                if (keydata.len >= INT32_MAX) {
                    oom = 1;
                    break;
                }
                put_view(kv + i * 16, keydata.data, start, keydata.len - start, 0);
            }
        } else {
            memset(kv + i * 16, 0, 16);
        }
        if (flags & F_KEY) { /* a record the exact path will not see: its types come from here */
            int typed = shape_typed(&ts, ps.h1, ps.h2, p, lend - p);
            if (typed < 0) {
                oom = 1;
                break;
            }
            if (typed) flags |= F_TYPED;
        }
        fl[i] = flags;
        p = stop + 1;
    }
    Py_END_ALLOW_THREADS;
    free(names.items);
    PyBuffer_Release(&buf);
    if (oom) {
        free(keydata.data);
        typeset_free(&ts);
        Py_DECREF(lines_v);
        Py_DECREF(keys_v);
        Py_DECREF(flags_b);
        return PyErr_NoMemory();
    }
    PyObject *types = PyList_New(0);
    for (size_t j = 0; types && j < ts.types.cap; j++) {
        slot *e = &ts.types.slots[j];
        if (!e->state) continue;
        PyObject *item = Py_BuildValue("(y#i)", ts.paths.data + e->off, e->len, (int)e->h2);
        if (!item || PyList_Append(types, item) < 0) Py_CLEAR(types);
        Py_XDECREF(item);
    }
    typeset_free(&ts);
    if (!types) {
        free(keydata.data);
        Py_DECREF(lines_v);
        Py_DECREF(keys_v);
        Py_DECREF(flags_b);
        return NULL;
    }
    PyObject *kd;
    if (composite) {
        kd = PyBytes_FromStringAndSize((const char *)keydata.data, keydata.len);
        free(keydata.data);
        if (!kd) {
            Py_DECREF(lines_v);
            Py_DECREF(keys_v);
            Py_DECREF(flags_b);
            Py_DECREF(types);
            return NULL;
        }
    } else {
        kd = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(nNNNNNn)", nlines, lines_v, keys_v, flags_b, types, kd, bad_utf8);
}

static leafset *left_set, *right_set; /* one pair of buffers, used with the GIL held */

static PyObject *changed_paths(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "changed(before, after) takes two bytes objects");
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "changed(before, after) takes two bytes objects");
        return NULL;
    }
    if (!left_set) {
        left_set = PyMem_RawMalloc(sizeof(leafset));
        right_set = PyMem_RawMalloc(sizeof(leafset));
        if (!left_set || !right_set) return PyErr_NoMemory();
    }
    leafset *L = left_set, *R = right_set;
    if (!leaves_of((const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), L) ||
        !leaves_of((const unsigned char *)PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), R))
        Py_RETURN_NONE;
    /* Merge the two sorted lists; decide every common path before building anything. */
    const leaf *out[2 * MAX_LEAVES];
    int n = 0, i = 0, j = 0;
    while (i < L->n || j < R->n) {
        int c = i == L->n ? 1 : j == R->n ? -1 : leaf_order(&L->leaves[i], &R->leaves[j]);
        if (c < 0) {
            out[n++] = &L->leaves[i++];
        } else if (c > 0) {
            out[n++] = &R->leaves[j++];
        } else {
            int eq = leaf_equal(&L->leaves[i], &R->leaves[j]);
            if (eq < 0) Py_RETURN_NONE;
            if (!eq) out[n++] = &L->leaves[i];
            i++;
            j++;
        }
    }
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *path = PyUnicode_DecodeUTF8((const char *)out[k]->path, out[k]->path_len, NULL);
        if (!path) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, path);
    }
    return list;
}

PyDoc_STRVAR(changed_doc,
             "changed(before, after) -> list[str] | None\n\n"
             "The sorted leaf paths whose values differ between two JSON object texts (bytes), "
             "by the diff contract; None when that cannot be told from the texts alone.");

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"changed", (PyCFunction)(void (*)(void))changed_paths, METH_FASTCALL, changed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "NDJSON line scanner (see scan).", -1, methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    init_tables();
    return PyModule_Create(&module);
}
