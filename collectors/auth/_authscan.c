/* _authscan: one pass over a chunk of auth log lines, for collectors.auth.native.
 *
 * Vectorscan (the maintained fork of Intel's Hyperscan) finds every occurrence of the literals
 * that the auth patterns need ("Failed", "Invalid", "sshd", "su", "useradd[", ...) in one pass.
 * Each occurrence is then put, in C, in one of these:
 *   - nothing: the pattern cannot match there (decided only where that is certain);
 *   - fast: the line has exactly the common shape of the pattern, and its fields are returned
 *     (the host of a failed login, the pid/user/rhost of a PAM failure, ...);
 *   - slow: anything else; the line start is returned and Python runs the pattern's regex on that
 *     line (collectors.auth.regexes), so the regexes stay the one definition of what counts.
 * A fast parse follows the regex's own first path (greedy quantifiers, first alternative) and gives
 * up (slow) wherever the regex could backtrack, so a fast line yields what the regex would; a line
 * with two occurrences of one pattern is slow. tests/test_auth_native.py checks that both paths
 * agree, on real logs, generated ones and fuzzed input.
 *
 * scan(chunk) -> ((lines, clean), failed, invalid, sshd, sudo_commands, slow, probes), where
 *   clean   = True when every byte is ASCII and none is NUL (no line can be malformed)
 *   failed  = (starts, kinds, hosts)        kinds: one byte per event, KIND_* below
 *   invalid = (starts, users, hosts)        users cut to 64 bytes
 *   sshd    = (starts, kinds, pids, users, hosts, methods): kinds 0 a PAM authentication failure
 *             (users: PAM's user= when not empty, else ruser=; methods empty), 1 an accepted login
 *   sudo_commands = starts of the sudo lines that run a command (not refused)
 *   slow    = (failed, invalid, sshd, su, admin): starts of the lines for the regexes
 *   probes  = (starts, hosts): pre-authentication probes (PROBES[0]) parsed in C
 * starts are line starts as bytes of native int64 (numpy.frombuffer); the rest lists of bytes.
 * The GIL is held throughout: the one scratch space is never used by two threads at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <hs/hs.h>
#include <stdint.h>
#include <string.h>

enum { F_FAILED, F_INVALID, F_SSHD, F_SU, F_ADMIN, N_FAMILIES };
enum { KIND_LOGIN, KIND_PUBKEY_VALID, KIND_PUBKEY_INVALID, KIND_NONE, KIND_OTHER };
enum { NOTHING, FAST, SLOW, COMMAND, QUIET };   /* QUIET: the regex matches, to no effect */

/* Literals whose last bytes are rare in logs: Hyperscan's literal matcher slows down when they
 * end like common words ("Failed " ends like "closed ", "Invalid user " like "for user "). */
static const char *const LITERALS[] = {"Failed", "Invalid", "sshd", "su",
                                       "useradd[", "groupadd[", "passwd[", "usermod["};
static const int FAMILY[] = {F_FAILED, F_INVALID, F_SSHD, F_SU, F_ADMIN, F_ADMIN, F_ADMIN, F_ADMIN};
#define N_LITERALS 8
static size_t LENGTH[N_LITERALS];

static hs_database_t *database;
static hs_scratch_t *scratch;

/* ---- growable vectors ------------------------------------------------------------------------ */
typedef struct { int64_t *v; Py_ssize_t n, cap; } Vec;

static int push(Vec *a, int64_t x) {
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? a->cap * 2 : 1024;
        int64_t *v = PyMem_Realloc(a->v, (size_t)cap * sizeof(int64_t));
        if (v == NULL) { PyErr_NoMemory(); return -1; }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static PyObject *vec_bytes(const Vec *a) {
    return PyBytes_FromStringAndSize((const char *)a->v, a->n * (Py_ssize_t)sizeof(int64_t));
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* ---- character classes of Python's bytes regexes -------------------------------------------- */
static inline int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); } /* \s */
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_alnum(unsigned char c) {
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}
static inline int is_word(unsigned char c) { return is_alnum(c) || c == '_'; }          /* \w */
static inline int is_host(unsigned char c) {                          /* [\w.:%-] */
    return is_word(c) || c == '.' || c == ':' || c == '%' || c == '-';
}
static inline int is_blank(unsigned char c) { return c == ' ' || c == '\t'; }

/* ---- one chunk ------------------------------------------------------------------------------- */
typedef struct {
    const unsigned char *s;
    Py_ssize_t n;
    Vec hits[N_FAMILIES];                 /* start offsets of each family's literals */
    Vec f_starts, f_kinds, i_starts, p_starts, p_kinds, sudo_starts, slow[N_FAMILIES], pr_starts;
    PyObject *f_hosts, *i_users, *i_hosts, *p_pids, *p_users, *p_hosts, *p_methods, *pr_hosts;
} Scan;

/* one occurrence, as classified; spans are [a, b) offsets into the chunk */
typedef struct {
    int verdict, kind;
    Py_ssize_t ls, le, pid0, pid1, u0, u1, h0, h1, m0, m1;
} Hit;

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *context) {
    Scan *sc = context;
    (void)from; (void)flags;
    return push(&sc->hits[FAMILY[id]], (int64_t)(to - LENGTH[id])) ? 1 : 0;  /* 1 stops the scan */
}

static inline int at(const Scan *sc, Py_ssize_t i, Py_ssize_t end, const char *lit, Py_ssize_t len) {
    return i >= 0 && i + len <= end && memcmp(sc->s + i, lit, (size_t)len) == 0;
}
#define AT(i, end, lit) at(sc, (i), (end), (lit), (Py_ssize_t)(sizeof(lit) - 1))

static inline Py_ssize_t token_end(const Scan *sc, Py_ssize_t i, Py_ssize_t end) {   /* \S* */
    while (i < end && !is_space(sc->s[i])) i++;
    return i;
}
static inline Py_ssize_t digits_end(const Scan *sc, Py_ssize_t i, Py_ssize_t end) {  /* \d* */
    while (i < end && is_digit(sc->s[i])) i++;
    return i;
}
static void line_of(const Scan *sc, Py_ssize_t pos, Hit *h) {
    const unsigned char *prev = memrchr(sc->s, '\n', (size_t)pos);   /* vectorised, both ways */
    const unsigned char *nl = memchr(sc->s + pos, '\n', (size_t)(sc->n - pos));
    h->ls = prev ? prev - sc->s + 1 : 0;
    h->le = nl ? nl - sc->s : sc->n;                                /* its '\n', or the end */
}

static int append_bytes(PyObject *list, const unsigned char *p, Py_ssize_t len) {
    PyObject *b = PyBytes_FromStringAndSize((const char *)p, len);
    if (b == NULL) return -1;
    int rc = PyList_Append(list, b);
    Py_DECREF(b);
    return rc;
}

/* HOST: (?:::ffff:)?([0-9A-Za-z][\w.:%-]*), greedy; its end, or -1 where the fast path stops */
static Py_ssize_t host_end(const Scan *sc, Py_ssize_t i, Py_ssize_t end) {
    if (AT(i, end, "::ffff:") || i >= end || !is_alnum(sc->s[i])) return -1;
    for (i++; i < end && is_host(sc->s[i]); i++) {}
    return i;
}

/* (?: port \d+)? */
static Py_ssize_t port_end(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    return AT(q, le, " port ") && q + 6 < le && is_digit(sc->s[q + 6]) ? digits_end(sc, q + 6, le) : q;
}

/* [ \t\r]*$ */
static int only_blanks_left(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    while (q < le && (is_blank(sc->s[q]) || sc->s[q] == '\r')) q++;
    return q == le;
}

/* <\d{1,3}> at q: its end, or q */
static Py_ssize_t pri_end(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    if (!AT(q, le, "<")) return q;
    Py_ssize_t d = digits_end(sc, q + 1, le);
    return d > q + 1 && d - q - 1 <= 3 && AT(d, le, ">") ? d + 1 : q;
}

/* \S+ followed by " " at q: the offset after the space, or -1 */
static Py_ssize_t word_sp(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    Py_ssize_t e = token_end(sc, q, le);
    return e > q && AT(e, le, " ") ? e + 1 : -1;
}

/* (?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*) at q:
 * the offset after its space, or q */
static Py_ssize_t stamp_end(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    const unsigned char *s = sc->s;
    Py_ssize_t i = q, d;
    if (q + 3 <= le && s[q] >= 'A' && s[q] <= 'Z' && s[q + 1] >= 'a' && s[q + 1] <= 'z'
        && s[q + 2] >= 'a' && s[q + 2] <= 'z') {
        i = q + 3;
        if (!AT(i, le, " ")) return q;
        i += AT(i + 1, le, " ") ? 2 : 1;
        d = digits_end(sc, i, le);
        if (d == i || d - i > 2) return q;
        i = d;
    } else {
        d = digits_end(sc, q, le);
        if (d - q != 4 || !AT(d, le, "-") || d + 16 > le) return q;
        i = d + 1;
        if (!is_digit(s[i]) || !is_digit(s[i + 1]) || s[i + 2] != '-' || !is_digit(s[i + 3])
            || !is_digit(s[i + 4]) || (s[i + 5] != 'T' && s[i + 5] != ' '))
            return q;
        i += 5;
    }
    /* " hh:mm:ss" (traditional) or "Thh:mm:ss" (ISO): i is at the separator */
    if (i + 9 > le || !is_digit(s[i + 1]) || !is_digit(s[i + 2]) || s[i + 3] != ':'
        || !is_digit(s[i + 4]) || !is_digit(s[i + 5]) || s[i + 6] != ':' || !is_digit(s[i + 7])
        || !is_digit(s[i + 8]))
        return q;
    if (s[q] >= 'A' && s[i] != ' ') return q;
    i += 9;
    if (s[q] < 'A') i = token_end(sc, i, le);                 /* ISO: \S* */
    return AT(i, le, " ") ? i + 1 : q;
}

/* The program position of the line starting at ls, as HEAD in collectors/auth/regexes.py:
 * (?><\d{1,3}>1 \S+ \S+ |(?:<\d{1,3}>)?+(?:STAMP )?+(?:[^\s\[\]]*[^\s\[\]:] )?+), every part
 * taken when present and never given back, so one reading: the tag's offset. */
static unsigned char HOST_BYTE[256];      /* [^\s\[\]]: built by the module's init */

static Py_ssize_t program_pos(const Scan *sc, Py_ssize_t ls, Py_ssize_t le) {
    const unsigned char *s = sc->s;
    Py_ssize_t q = ls, e;
    if (AT(q, le, "<")) {
        q = pri_end(sc, ls, le);
        if (q > ls && AT(q, le, "1 ")) {                                 /* RFC 5424 */
            Py_ssize_t t = word_sp(sc, q + 2, le);
            if (t >= 0 && (t = word_sp(sc, t, le)) >= 0) return t;
        }
    }
    /* the common stamp, "Mmm dd hh:mm:ss " or "Mmm  d hh:mm:ss ", at once; else the full reading */
    if (q + 16 <= le && s[q + 3] == ' ' && s[q + 6] == ' ' && s[q + 9] == ':' && s[q + 12] == ':'
        && s[q + 15] == ' ' && s[q] >= 'A' && s[q] <= 'Z' && s[q + 1] >= 'a' && s[q + 1] <= 'z'
        && s[q + 2] >= 'a' && s[q + 2] <= 'z' && (s[q + 4] == ' ' || is_digit(s[q + 4]))
        && is_digit(s[q + 5]) && is_digit(s[q + 7]) && is_digit(s[q + 8]) && is_digit(s[q + 10])
        && is_digit(s[q + 11]) && is_digit(s[q + 13]) && is_digit(s[q + 14]))
        q += 16;
    else
        q = stamp_end(sc, q, le);
    for (e = q; e < le && HOST_BYTE[s[e]]; e++) {}
    return e > q && s[e - 1] != ':' && AT(e, le, " ") ? e + 1 : q;    /* a host token */
}

/* The message start after sshd's tag at p (the "sshd" of "sshd[1]: " or of "[sshd]: "), as
 * MESSAGE_HEAD's end: (?:\[sshd(?:-session|-auth)?\]:?|sshd(?:-session|-auth)?(?:\[(\d+)\]:|
 * \d+ - ...)) then (?:kernel:...)?(?:(?:error|fatal): (?:PAM: )?)?(?:\[ID ...\] )?. Returns the
 * offset, NO_HEAD (no message can match on this line) or ODD_HEAD (a rarer form: the regexes
 * decide). */
#define NO_HEAD (-1)
#define ODD_HEAD (-2)
static Py_ssize_t header_end(const Scan *sc, Py_ssize_t p, int bracket, Py_ssize_t le,
                             Py_ssize_t *pid0, Py_ssize_t *pid1) {
    const unsigned char *s = sc->s;
    Py_ssize_t q = p + 4;
    *pid0 = *pid1 = -1;
    if (q >= le) return NO_HEAD;
    if (s[q] == '-') {                         /* each test only where its first byte is */
        if (AT(q, le, "-session")) q += 8;
        else if (AT(q, le, "-auth")) q += 5;
    } else if (s[q] == '(' && !bracket && AT(q, le, "(pam_unix)[")) {
        return ODD_HEAD;                                       /* old pam_unix: OLD_PAM */
    }
    if (q >= le) return NO_HEAD;
    if (bracket) {
        if (AT(q, le, "]: ")) q += 3;
        else if (AT(q, le, "] ")) q += 2;
        else return NO_HEAD;
    } else if (s[q] == '[') {
        Py_ssize_t d = digits_end(sc, q + 1, le);
        if (d == q + 1 || !AT(d, le, "]: ")) return NO_HEAD;
        *pid0 = q + 1;
        *pid1 = d;
        q = d + 3;
    } else if (s[q] == ' ' && q + 1 < le && is_digit(s[q + 1])) {
        return ODD_HEAD;                                   /* RFC 5424 */
    } else {
        return NO_HEAD;
    }
    if (q >= le) return q;
    switch (s[q]) {
    case 'k': if (AT(q, le, "kernel:")) return ODD_HEAD; break;
    case '[': if (AT(q, le, "[ID ")) return ODD_HEAD; break;
    case 'e': case 'f':
        if (AT(q, le, "error: ") || AT(q, le, "fatal: ")) {
            q += 7;
            if (AT(q, le, "PAM: ")) q += 5;
            if (AT(q, le, "[ID ")) return ODD_HEAD;
        }
        break;
    default: break;
    }
    return q;
}

/* the message start of the line of h when sshd's tag is at its program position, else NO_HEAD;
 * tag: where the tag's "sshd" must be (>= 0), or -1 */
static Py_ssize_t message_start(const Scan *sc, const Hit *h, Py_ssize_t tag, Py_ssize_t *pid0,
                                Py_ssize_t *pid1) {
    Py_ssize_t t = program_pos(sc, h->ls, h->le);
    int bracket = AT(t, h->le, "[");
    t += bracket;
    if ((tag >= 0 && t != tag) || !AT(t, h->le, "sshd")) return NO_HEAD;
    return header_end(sc, t, bracket, h->le, pid0, pid1);
}

/* the first lit (len bytes) in [a, e), found by memchr on its byte k (one rare in logs): its
 * offset, or -1. memmem costs more on lines this short. */
static Py_ssize_t find_lit(const Scan *sc, Py_ssize_t a, Py_ssize_t e, const char *lit,
                           Py_ssize_t len, Py_ssize_t k) {
    for (Py_ssize_t i = a + k; i < e;) {
        const unsigned char *f = memchr(sc->s + i, lit[k], (size_t)(e - i));
        if (f == NULL) return -1;
        Py_ssize_t at0 = f - sc->s - k;
        if (at0 + len <= e && memcmp(sc->s + at0, lit, (size_t)len) == 0) return at0;
        i = f - sc->s + 1;
    }
    return -1;
}
#define FIND(a, e, lit, k) find_lit(sc, (a), (e), (lit), (Py_ssize_t)(sizeof(lit) - 1), (k))

/* occurrences of " from " in [a, le) (stops counting at 2) */
static int froms(const Scan *sc, Py_ssize_t a, Py_ssize_t le) {
    int n = 0;
    while (n < 2 && a < le) {
        Py_ssize_t f = FIND(a, le, " from ", 1);
        if (f < 0) break;
        n++;
        a = f + 1;
    }
    return n;
}

/* the tail after a host, as collectors.auth.anchor._TAIL's first reading: (?: port \d+)?
 * (?: ssh\d*)? then ": " or blanks to the end; anything else (" on ", " [preauth]"): -1 */
static int tail_ok(const Scan *sc, Py_ssize_t q, Py_ssize_t le) {
    q = port_end(sc, q, le);
    if (AT(q, le, " on ")) return 0;
    if (AT(q, le, " ssh")) q = digits_end(sc, q + 4, le);
    return AT(q, le, ": ") || only_blanks_left(sc, q, le);
}

/* FAILED: at the message start, Failed (\S+) for (invalid user )?(rest), the rest read by
 * collectors.auth.anchor.after_for: fast when it has one reading, a one-word user and one
 * " from " after it (any number for a real account, whose name is one word). */
static int failed_at(const Scan *sc, Py_ssize_t p, Hit *h) {
    if (!AT(p + 6, sc->n, " ")) return NOTHING;
    line_of(sc, p, h);
    Py_ssize_t ms = message_start(sc, h, -1, &h->pid0, &h->pid1);
    if (ms == NO_HEAD) return NOTHING;
    if (ms == ODD_HEAD) return SLOW;
    if (ms != p) return NOTHING;
    Py_ssize_t le = h->le, m0 = p + 7, m1, q, u0;
    int invalid = 0;
    m1 = q = token_end(sc, m0, le);
    if (m1 == m0 || !AT(q, le, " for ")) return SLOW;
    q += 5;
    if (AT(q, le, "invalid user ")) { invalid = 1; q += 13; }
    u0 = q;
    q = token_end(sc, q, le);
    if (q == u0 || !AT(q, le, " from ")) return SLOW;
    if (invalid && froms(sc, q, le) != 1) return SLOW;
    h->h0 = q + 6;
    if ((h->h1 = q = host_end(sc, h->h0, le)) < 0) return SLOW;
    if (!tail_ok(sc, q, le)) return SLOW;
    const unsigned char *m = sc->s + m0;
    Py_ssize_t len = m1 - m0;
    if ((len == 8 && !memcmp(m, "password", 8)) || (len == 20 && !memcmp(m, "keyboard-interactive", 20))
        || (len == 24 && !memcmp(m, "keyboard-interactive/pam", 24)))
        h->kind = KIND_LOGIN;
    else if (len == 9 && !memcmp(m, "publickey", 9))
        h->kind = invalid ? KIND_PUBKEY_INVALID : KIND_PUBKEY_VALID;
    else if (len == 4 && !memcmp(m, "none", 4))
        h->kind = KIND_NONE;
    else
        h->kind = KIND_OTHER;
    return FAST;
}

/* INVALID: at the message start, Invalid user (rest), read by collectors.auth.anchor.invalid_user
 * (the last " from HOST[ port N]" ending the line): fast with one " from ", after a \S* user */
static int invalid_at(const Scan *sc, Py_ssize_t p, Hit *h) {
    if (!AT(p + 7, sc->n, " user ")) return NOTHING;
    line_of(sc, p, h);
    Py_ssize_t ms = message_start(sc, h, -1, &h->pid0, &h->pid1);
    if (ms == NO_HEAD) return NOTHING;
    if (ms == ODD_HEAD) return SLOW;
    if (ms != p) return NOTHING;
    Py_ssize_t le = h->le, q;
    h->u0 = p + 13;
    if (AT(h->u0, le, "from ") || froms(sc, h->u0 - 1, le) != 1) return SLOW;
    h->u1 = q = token_end(sc, h->u0, le);
    if (!AT(q, le, " from ")) return SLOW;
    h->h0 = q + 6;
    if ((h->h1 = q = host_end(sc, h->h0, le)) < 0) return SLOW;
    return only_blanks_left(sc, port_end(sc, q, le), le) ? FAST : SLOW;
}

/* SSHD: sshd(?:-session)?(?:\[(\d+)\]:|\]:?) (?:(?:error|fatal): (?:PAM: )?)? then one of its
 * messages (no message starts with "error", "fatal" or "PAM", so only the longest reading of the
 * optional part can match). FAST, with a pid: a PAM authentication failure (kind 0),
 *   pam_unix\(sshd:auth\): authentication failure;[^\n]*? ruser=(\S*) rhost=(\S+)(?:[ \t]+user=(\S*))?
 * taking the first " ruser=" (a later one is the lazy part's second try: slow), or an accepted
 * login (kind 1): Accepted([^\r\n]*) whose rest starts as ACCEPTED_REST, (\S+) for (\S+) from HOST */
static int accepted_at(const Scan *sc, Py_ssize_t p, Py_ssize_t q, Hit *h) {
    (void)p;
    Py_ssize_t le = h->le;
    if (h->pid0 < 0 || !AT(q, le, " ")) return SLOW;
    h->m0 = q + 1;
    h->m1 = q = token_end(sc, h->m0, le);
    if (h->m1 == h->m0 || !AT(q, le, " for ")) return SLOW;
    h->u0 = q + 5;
    h->u1 = q = token_end(sc, h->u0, le);
    if (h->u1 == h->u0 || !AT(q, le, " from ")) return SLOW;
    h->h0 = q + 6;
    if ((h->h1 = host_end(sc, h->h0, le)) < 0 || !tail_ok(sc, h->h1, le)) return SLOW;
    h->kind = 1;
    return FAST;
}

/* PROBES[0]: (?:Connection (?:closed|reset) by|Disconnected from) (?:authenticating|invalid)
 * user (?:.*) (\S+) port \d+(?: \[preauth\])?[ \t\r]*$, read from the end (kind 2) */
static int probe_at(const Scan *sc, Py_ssize_t q, Hit *h) {
    Py_ssize_t le = h->le, e = le, d, u0;
    if (AT(q, le, "authenticating user ")) u0 = q + 20;
    else if (AT(q, le, "invalid user ")) u0 = q + 13;
    else return NOTHING;                   /* no user: not a probe event */
    while (e > u0 && (is_blank(sc->s[e - 1]) || sc->s[e - 1] == '\r')) e--;
    if (e - 10 >= u0 && AT(e - 10, le, " [preauth]")) e -= 10;
    for (d = e; d > u0 && is_digit(sc->s[d - 1]); d--) {}
    if (d == e || d - 6 < u0 || !AT(d - 6, le, " port ")) return SLOW;
    h->h1 = d - 6;
    for (h->h0 = h->h1; h->h0 > u0 && !is_space(sc->s[h->h0 - 1]); h->h0--) {}
    if (h->h0 == h->h1 || h->h0 - 1 < u0 || sc->s[h->h0 - 1] != ' ') return SLOW;
    if (memchr(sc->s + u0, '\r', (size_t)(h->h0 - u0))) return SLOW;
    h->u0 = h->u1 = h->m0 = h->m1 = u0;
    if (h->pid0 < 0) h->pid0 = h->pid1 = u0;
    h->kind = 2;
    return FAST;
}

/* SSHD at an occurrence p of "sshd": the message is read first from p (most sshd lines are
 * none of the counted messages, and cost no more), then, for a counted one, whether this "sshd"
 * is the tag at the line's program position (line_of, program_pos). */
enum { ACT_PAM, ACT_SLOW, ACT_RECEIVED, ACT_ACCEPTED, ACT_PROBE };
static int sshd_at(const Scan *sc, Py_ssize_t p, Hit *h) {
    Py_ssize_t n = sc->n, q, arg = 0;
    unsigned char before = p > 0 ? sc->s[p - 1] : '\n';
    int bracket = before == '[', act;
    /* a tag follows the line start, a space (stamp, host), "<PRI>" or its own "[" */
    if (!bracket && before != ' ' && before != '\n' && before != '>') return NOTHING;
    q = header_end(sc, p, bracket, n, &h->pid0, &h->pid1);   /* literals never span a '\n' */
    if (q == NO_HEAD) return NOTHING;
    if (q == ODD_HEAD) {
        act = ACT_SLOW;
    } else {
        /* the counted messages by their first byte; ON takes the first literal of its case
         * that is at q (arg: the byte after it), a case with none at q is no counted message */
#define ON(lit, a) \
        if (AT(q, n, lit)) { act = (a); arg = q + (Py_ssize_t)(sizeof(lit) - 1); break; }
        switch (q < n ? sc->s[q] : 0) {
        case 'p': ON("pam_unix(sshd:auth): authentication failure;", ACT_PAM) return NOTHING;
        case 'R': ON("ROOT LOGIN REFUSED", ACT_SLOW) ON("Received disconnect from ", ACT_RECEIVED)
                  return NOTHING;
        case 'm': ON("message repeated ", ACT_SLOW)
                  ON("maximum authentication attempts exceeded", ACT_SLOW) return NOTHING;
        case 'A': ON("Accepted", ACT_ACCEPTED) ON("Authentication ", ACT_SLOW) return NOTHING;
        case 'a': ON("authentication ", ACT_SLOW) return NOTHING;
        case 'U': ON("User ", ACT_SLOW) ON("Unable to negotiate with ", ACT_SLOW) return NOTHING;
        case 'r': ON("refused connect from", ACT_SLOW) return NOTHING;
        case 'C': ON("Connection closed by ", ACT_PROBE) ON("Connection reset by ", ACT_PROBE)
                  return NOTHING;
        case 'D': ON("Disconnected from ", ACT_PROBE) ON("Disconnecting", ACT_SLOW)
                  ON("Did not receive identification string from ", ACT_SLOW) return NOTHING;
        case 'b': ON("banner exchange: Connection from ", ACT_SLOW) return NOTHING;
        case 'T': ON("Timeout before authentication for ", ACT_SLOW) return NOTHING;
        case 'd': ON("drop connection #", ACT_SLOW) return NOTHING;
        case 's': ON("srclimit_penalise: ", ACT_SLOW) return NOTHING;
        default: return NOTHING;
        }
#undef ON
        /* no user: not a probe event */
        if (act == ACT_PROBE && !AT(arg, n, "authenticating user ") && !AT(arg, n, "invalid user "))
            return NOTHING;
    }
    line_of(sc, p, h);
    if (program_pos(sc, h->ls, h->le) != p - bracket) return NOTHING;  /* not the tag: text */
    switch (act) {
    case ACT_SLOW: return SLOW;
    case ACT_RECEIVED:             /* ...(?: port \d+)?:[ \t]*3: : only code 3 can match */
        return FIND(q, h->le, "3: ", 1) >= 0 ? SLOW : NOTHING;
    case ACT_ACCEPTED: return accepted_at(sc, p, q + 8, h);
    case ACT_PROBE: return probe_at(sc, arg, h);
    default: break;                                            /* ACT_PAM */
    }
    if (h->pid0 < 0) return SLOW;
    Py_ssize_t le = h->le;
    Py_ssize_t r0 = FIND(q, le, " ruser=", 1), r1;
    if (r0 < 0) return SLOW;
    r0 += 7;
    r1 = token_end(sc, r0, le);
    if (!AT(r1, le, " rhost=")) return SLOW;
    h->h0 = r1 + 7;
    h->h1 = token_end(sc, h->h0, le);
    if (h->h1 == h->h0) return SLOW;
    Py_ssize_t k = h->h1;
    h->u0 = h->u1 = -1;
    while (k < le && is_blank(sc->s[k])) k++;
    if (k > h->h1 && AT(k, le, "user=")) { h->u0 = k + 5; h->u1 = token_end(sc, h->u0, le); }
    if (h->u0 < 0 || h->u1 == h->u0) { h->u0 = r0; h->u1 = r1; }      /* puser or ruser */
    h->kind = 0;
    h->m0 = h->m1 = q;
    return FAST;
}

/* SU: su(?<![\w-]su)(do)?(?:\(pam_unix\))?(?:\[(\d+)\])?: +([^\r\n]*), and for sudo what _sudo()
 * in collectors/auth/admin.py does with the message: QUIET, SLOW or COMMAND (a command run).  */
static int su_at(const Scan *sc, Py_ssize_t p, Hit *h) {
    Py_ssize_t n = sc->n, q = p + 2;
    if (p > 0 && (is_word(sc->s[p - 1]) || sc->s[p - 1] == '-')) return NOTHING;
    int sudo = AT(q, n, "do");
    if (sudo) q += 2;
    if (AT(q, n, "(pam_unix)")) q += 10;
    if (AT(q, n, "[")) {
        Py_ssize_t d = digits_end(sc, q + 1, n);
        if (d == q + 1 || !AT(d, n, "]")) return NOTHING;
        q = d + 1;
    }
    if (!AT(q, n, ": ")) return NOTHING;
    line_of(sc, p, h);
    if (!sudo) return SLOW;
    for (q += 1; q < h->le && sc->s[q] == ' '; q++) {}
    const unsigned char *cr = memchr(sc->s + q, '\r', (size_t)(h->le - q));
    Py_ssize_t end = cr ? cr - sc->s : h->le;
    size_t len = (size_t)(end - q);
    const unsigned char *m = sc->s + q;
    if (AT(q, end, "pam_"))
        return AT(q, end, "pam_unix(sudo:auth): authentication failure;")
               || AT(q, end, "pam_unix(sudo-i:auth): authentication failure;") ? SLOW : QUIET;
    if (!memmem(m, len, "COMMAND=", 8)) return QUIET;
    if (memmem(m, len, "incorrect password attempt", 26) || memmem(m, len, "NOT in sudoers", 14)
        || memmem(m, len, "command not allowed", 19))
        return SLOW;
    return COMMAND;
}

static int classify(const Scan *sc, int family, Py_ssize_t p, Hit *h) {
    switch (family) {
    case F_FAILED: return failed_at(sc, p, h);
    case F_INVALID: return invalid_at(sc, p, h);
    case F_SSHD: return sshd_at(sc, p, h);
    case F_SU: return su_at(sc, p, h);
    default: line_of(sc, p, h); return SLOW;          /* account tools: rare, the regex decides */
    }
}

/* a line's verdict: the one occurrence's, or slow when the pattern occurs twice */
static int emit(Scan *sc, int family, const Hit *h, int count) {
    const unsigned char *s = sc->s;
    int verdict = count > 1 ? SLOW : h->verdict;
    switch (verdict) {
    case SLOW: return push(&sc->slow[family], h->ls);
    case COMMAND: return push(&sc->sudo_starts, h->ls);
    case FAST: break;
    default: return 0;
    }
    switch (family) {
    case F_FAILED:
        return push(&sc->f_starts, h->ls) || push(&sc->f_kinds, h->kind)
               || append_bytes(sc->f_hosts, s + h->h0, h->h1 - h->h0) ? -1 : 0;
    case F_INVALID:
        return push(&sc->i_starts, h->ls)
               || append_bytes(sc->i_users, s + h->u0, h->u1 - h->u0 > 64 ? 64 : h->u1 - h->u0)
               || append_bytes(sc->i_hosts, s + h->h0, h->h1 - h->h0) ? -1 : 0;
    default:                                                            /* F_SSHD */
        if (h->kind == 2)                     /* a pre-auth probe: its own columns */
            return push(&sc->pr_starts, h->ls)
                   || append_bytes(sc->pr_hosts, s + h->h0, h->h1 - h->h0) ? -1 : 0;
        return push(&sc->p_starts, h->ls) || push(&sc->p_kinds, h->kind)
               || append_bytes(sc->p_pids, s + h->pid0, h->pid1 - h->pid0)
               || append_bytes(sc->p_users, s + h->u0, h->u1 - h->u0)
               || append_bytes(sc->p_hosts, s + h->h0, h->h1 - h->h0)
               || append_bytes(sc->p_methods, s + h->m0, h->m1 - h->m0) ? -1 : 0;
    }
}

static int run_family(Scan *sc, int family) {
    Vec *v = &sc->hits[family];
    for (Py_ssize_t i = 1; i < v->n; i++)
        if (v->v[i] < v->v[i - 1]) { qsort(v->v, (size_t)v->n, sizeof(int64_t), cmp_i64); break; }
    Hit cur = {0}, next;
    int count = 0;
    for (Py_ssize_t i = 0; i < v->n; i++) {
        if (count && v->v[i] < cur.le) { /* same line as the last occurrence that counted */
            if (classify(sc, family, v->v[i], &next) != NOTHING) count++;
            continue;
        }
        next.verdict = classify(sc, family, v->v[i], &next);
        if (next.verdict == NOTHING) continue;
        if (count && emit(sc, family, &cur, count) < 0) return -1;
        cur = next;
        count = 1;
    }
    return count && emit(sc, family, &cur, count) < 0 ? -1 : 0;
}

/* newlines, and whether every byte is ASCII and not NUL (then no line is malformed) */
static Py_ssize_t count_lines(const unsigned char *s, Py_ssize_t n, int *clean) {
    Py_ssize_t total = 0;
    unsigned char high = 0, nul = 0;
    while (n > 0) {                  /* blocks of 255 x 64: a byte counter cannot overflow */
        Py_ssize_t m = n < 255 * 64 ? n : 255 * 64, i;
        uint8_t acc[64] = {0}, any[64] = {0}, zero[64] = {0};
        for (i = 0; i + 64 <= m; i += 64)
            for (int j = 0; j < 64; j++) {
                acc[j] += s[i + j] == '\n';
                any[j] |= s[i + j];
                zero[j] |= s[i + j] == 0;
            }
        for (int j = 0; j < 64; j++) { total += acc[j]; high |= any[j]; nul |= zero[j]; }
        for (; i < m; i++) { total += s[i] == '\n'; high |= s[i]; nul |= s[i] == 0; }
        s += m;
        n -= m;
    }
    *clean = !(high & 0x80) && !nul;
    return total;
}

static PyObject *kinds_bytes(const Vec *a) {          /* small ints, one byte each */
    PyObject *b = PyBytes_FromStringAndSize(NULL, a->n);
    if (b == NULL) return NULL;
    char *out = PyBytes_AS_STRING(b);
    for (Py_ssize_t i = 0; i < a->n; i++) out[i] = (char)a->v[i];
    return b;
}

static void scan_free(Scan *sc) {
    for (int f = 0; f < N_FAMILIES; f++) { PyMem_Free(sc->hits[f].v); PyMem_Free(sc->slow[f].v); }
    PyMem_Free(sc->f_starts.v); PyMem_Free(sc->f_kinds.v); PyMem_Free(sc->i_starts.v);
    PyMem_Free(sc->p_starts.v); PyMem_Free(sc->p_kinds.v); PyMem_Free(sc->sudo_starts.v);
    PyMem_Free(sc->pr_starts.v); Py_XDECREF(sc->pr_hosts);
    Py_XDECREF(sc->f_hosts); Py_XDECREF(sc->i_users); Py_XDECREF(sc->i_hosts);
    Py_XDECREF(sc->p_pids); Py_XDECREF(sc->p_users); Py_XDECREF(sc->p_hosts);
    Py_XDECREF(sc->p_methods);
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Scan sc = {0};
    PyObject *result = NULL;
    sc.s = view.buf;
    sc.n = view.len;
    if (view.len > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "chunk larger than 4 GiB");
        goto done;
    }
    if (!(sc.f_hosts = PyList_New(0)) || !(sc.i_users = PyList_New(0)) || !(sc.i_hosts = PyList_New(0))
        || !(sc.p_pids = PyList_New(0)) || !(sc.p_users = PyList_New(0)) || !(sc.p_hosts = PyList_New(0))
        || !(sc.pr_hosts = PyList_New(0))
        || !(sc.p_methods = PyList_New(0)))
        goto done;
    hs_error_t err = hs_scan(database, (const char *)sc.s, (unsigned int)sc.n, 0, scratch, on_match, &sc);
    if (PyErr_Occurred()) goto done;
    if (err != HS_SUCCESS) { PyErr_Format(PyExc_RuntimeError, "hs_scan failed (%d)", err); goto done; }
    for (int f = 0; f < N_FAMILIES; f++)
        if (run_family(&sc, f) < 0) goto done;
    int clean;
    Py_ssize_t lines = count_lines(sc.s, sc.n, &clean);
    result = Py_BuildValue(
        "(nO)(NNO)(NOO)(NNOOOO)N(NNNNN)(NO)", lines, clean ? Py_True : Py_False,
        vec_bytes(&sc.f_starts), kinds_bytes(&sc.f_kinds), sc.f_hosts,
        vec_bytes(&sc.i_starts), sc.i_users, sc.i_hosts,
        vec_bytes(&sc.p_starts), kinds_bytes(&sc.p_kinds), sc.p_pids, sc.p_users, sc.p_hosts,
        sc.p_methods,
        vec_bytes(&sc.sudo_starts),
        vec_bytes(&sc.slow[F_FAILED]), vec_bytes(&sc.slow[F_INVALID]), vec_bytes(&sc.slow[F_SSHD]),
        vec_bytes(&sc.slow[F_SU]), vec_bytes(&sc.slow[F_ADMIN]),
        vec_bytes(&sc.pr_starts), sc.pr_hosts);
done:
    scan_free(&sc);
    PyBuffer_Release(&view);
    return result;
}

/* stamp_keys(chunk, starts) -> bytes of int64: for each line start, its traditional syslog stamp
 * "Mmm dd hh:mm:ss" (or "Mmm  d ...") as ((((letters * 100 + day) * 100 + hour) * 100 + minute)
 * * 100 + second), every field two digits so two texts never share a number; -1 for any other
 * line (collectors.auth.times parses those one by one).                                        */
static PyObject *stamp_keys(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer chunk, starts;
    if (!PyArg_ParseTuple(args, "y*y*", &chunk, &starts)) return NULL;
    Py_ssize_t count = starts.len / (Py_ssize_t)sizeof(int64_t);
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out != NULL) {
        const unsigned char *s = chunk.buf;
        int64_t *key = (int64_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < count; i++) {
            int64_t p;                       /* starts may be any buffer: unaligned, any value */
            memcpy(&p, (const char *)starts.buf + i * (Py_ssize_t)sizeof(int64_t), sizeof p);
            key[i] = -1;
            if (p < 0 || p > chunk.len - 15) continue;        /* no overflow, h only in bounds */
            const unsigned char *h = s + p;
            if (h[3] != ' ' || h[6] != ' ' || h[9] != ':'
                || h[12] != ':' || !(is_digit(h[4]) || h[4] == ' ') || !is_digit(h[5])
                || !is_digit(h[7]) || !is_digit(h[8]) || !is_digit(h[10]) || !is_digit(h[11])
                || !is_digit(h[13]) || !is_digit(h[14]))
                continue;
            int64_t day = (h[4] == ' ' ? 0 : h[4] - '0') * 10 + h[5] - '0';
            key[i] = (((((int64_t)h[0] << 16 | h[1] << 8 | h[2]) * 100 + day) * 100
                       + (h[7] - '0') * 10 + h[8] - '0') * 100 + (h[10] - '0') * 10 + h[11] - '0')
                     * 100 + (h[13] - '0') * 10 + h[14] - '0';
        }
    }
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&starts);
    return out;
}

/* an IPv4 address as inet_ntop writes it (no leading zero, each part <= 255): its own key */
static int plain_ipv4(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (int part = 0; part < 4; part++) {
        Py_ssize_t d0 = i;
        int v = 0;
        while (i < n && i - d0 < 4 && is_digit(p[i])) v = v * 10 + (p[i++] - '0');
        if (i == d0 || i - d0 > 3 || v > 255 || (i - d0 > 1 && p[d0] == '0')) return 0;
        if (part < 3 && (i >= n || p[i++] != '.')) return 0;
    }
    return i == n;
}

/* odd_addresses(tokens) -> the indexes of the tokens (a list of bytes) that are not a plain IPv4
 * address, the ones collectors.auth.anchor.address_key must read: most are plain ones */
static PyObject *odd_addresses(PyObject *self, PyObject *list) {
    (void)self;
    if (!PyList_Check(list)) { PyErr_SetString(PyExc_TypeError, "a list of bytes"); return NULL; }
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (PyBytes_Check(item)
            && plain_ipv4((const unsigned char *)PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item)))
            continue;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(out, index) < 0) Py_CLEAR(out);
        Py_XDECREF(index);
    }
    return out;
}

/* first_ids(items) -> (int64 ids as bytes, distinct items): each item's number in order of first
 * appearance (collectors.auth_log.FailureWindow's address ids, one dict probe per event) */
static PyObject *first_ids(PyObject *self, PyObject *list) {
    (void)self;
    if (!PyList_Check(list)) { PyErr_SetString(PyExc_TypeError, "a list"); return NULL; }
    Py_ssize_t n = PyList_GET_SIZE(list);
    PyObject *index = PyDict_New(), *names = PyList_New(0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t)), *result = NULL;
    if (index == NULL || names == NULL || out == NULL) goto done;
    int64_t *ids = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list) && i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i), *known = PyDict_GetItemWithError(index, item);
        if (known != NULL) {
            ids[i] = PyLong_AsLongLong(known);
            continue;
        }
        if (PyErr_Occurred()) goto done;
        Py_ssize_t id = PyList_GET_SIZE(names);
        PyObject *number = PyLong_FromSsize_t(id);
        int bad = number == NULL || PyDict_SetItem(index, item, number) < 0
                  || PyList_Append(names, item) < 0;
        Py_XDECREF(number);
        if (bad) goto done;
        ids[i] = id;
    }
    if (PyList_GET_SIZE(list) != n) {                 /* the list changed meanwhile: refuse */
        PyErr_SetString(PyExc_RuntimeError, "list changed during first_ids");
        goto done;
    }
    result = Py_BuildValue("(OO)", out, names);
done:
    Py_XDECREF(index); Py_XDECREF(names); Py_XDECREF(out);
    return result;
}

static PyMethodDef METHODS[] = {
    {"first_ids", first_ids, METH_O, "first_ids(items) -> (int64 ids, distinct items)"},
    {"odd_addresses", odd_addresses, METH_O, "odd_addresses(tokens) -> indexes of non-plain IPv4"},
    {"scan", scan, METH_O, "scan(chunk) -> (lines, failed, invalid, sshd, sudo_commands, slow, probes)"},
    {"stamp_keys", stamp_keys, METH_VARARGS, "stamp_keys(chunk, starts) -> int64 keys, -1: other"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_authscan",
                                    "One pass over auth log lines (see collectors/auth/_authscan.c).",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__authscan(void) {
    unsigned int flags[N_LITERALS], ids[N_LITERALS];
    hs_compile_error_t *error = NULL;
    for (int c = 0; c < 256; c++) HOST_BYTE[c] = !is_space((unsigned char)c) && c != '[' && c != ']';
    for (unsigned int i = 0; i < N_LITERALS; i++) {
        flags[i] = 0;
        ids[i] = i;
        LENGTH[i] = strlen(LITERALS[i]);
    }
    if (database == NULL) {
        if (hs_compile_lit_multi(LITERALS, flags, ids, LENGTH, N_LITERALS, HS_MODE_BLOCK, NULL,
                                 &database, &error) != HS_SUCCESS) {
            PyErr_Format(PyExc_ImportError, "hyperscan: %s", error ? error->message : "compile failed");
            hs_free_compile_error(error);
            return NULL;
        }
        if (hs_alloc_scratch(database, &scratch) != HS_SUCCESS) {
            PyErr_SetString(PyExc_ImportError, "hyperscan: cannot allocate scratch space");
            return NULL;
        }
    }
    return PyModule_Create(&MODULE);
}
