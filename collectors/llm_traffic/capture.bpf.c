// SPDX-License-Identifier: (MIT OR GPL-2.0)
// llm_traffic's capture: uprobes on OpenSSL 3's read and write paths (issue 19).
//
// Built by `make bpf` (clang -target bpf) into capture.bpf.o; loaded by collectors/llm_traffic/
// bpf.py through libbpf, in the agent's own process. What each program does and why:
//
// - enter_ex / enter_plain: at the entry of a read or write function, save (SSL*, buffer,
//   pointer to the byte count or 0) by thread id. The attach point is chosen by bpf.py:
//   OpenSSL's internal ssl_write_internal / ssl_read_internal where they can be found (their
//   first instruction is a push, which the kernel emulates: the hit costs one trap, where the
//   exported SSL_write_ex's `sub rsp` is stepped out of line, a second trap), else the exported
//   SSL_write(_ex) / SSL_read(_ex).
// - leave_write / leave_read: at the return, what the call really moved (the return value or
//   *count) goes out as one ring-buffer record: a header and up to call_bytes of payload. The
//   connection's stream position per direction travels with it, so a record lost to a full
//   ring is a gap of known size in user space.
// - A connection whose first written bytes are no HTTP request (not an HTTP client), or whose
//   first bytes are a request read (the server side of someone's TLS), is ignored in the kernel
//   from then on: one record says so, the rest cost their traps only.
// - sni: SSL_ctrl(SSL_CTRL_SET_TLSEXT_HOSTNAME = 55): the server name. on_free: SSL_free.
// - Records are written with the ring buffer's default wake-up: the reader is woken only when
//   it had caught up, and it waits a moment before it reads, so a busy client wakes it a few
//   times a second and an idle machine never.
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_CALL 16384          // payload bytes per call, at most (one TLS record)
#define NAME_MAX_LEN 256        // server name bytes

enum { K_DATA = 1, K_SNI = 2, K_FREE = 3, K_IGNORE = 4 };

struct call_args {
    __u64 tid;                  // the thread in this slot (slots are tid % CALL_SLOTS)
    __u64 ssl;
    __u64 buf;
    __u64 count;                // the callee's size_t *count, 0: the return value is the count
};

struct conn_key {
    __u32 pid;
    __u32 pad;
    __u64 ssl;
};

struct conn_state {
    __u64 pos[2];               // bytes moved so far: [0] written, [1] read
    __u32 ignored;
    __u32 pad;
};

// one record: the header, then `len` bytes of payload (the call's first bytes, or the name)
struct record {
    __u64 time;                 // bpf_ktime_get_ns (CLOCK_MONOTONIC)
    __u64 ssl;
    __u64 pos;                  // the stream position of the call's first byte
    __u64 total;                // bytes the call moved (the payload holds the first len of them)
    __u32 pid;
    __u32 len;
    __u8 kind;
    __u8 dir;                   // 0 written, 1 read
    __u8 skip;                  // K_IGNORE: 1 not HTTP, 2 a server
    __u8 pad[5];
    char comm[16];
    __u8 data[MAX_CALL];
};

#define CALL_SLOTS 65536
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, CALL_SLOTS);
    __type(key, __u32);
    __type(value, struct call_args);
} calls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct conn_key);
    __type(value, struct conn_state);
} conns SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct record);
} scratch SEC(".maps");

// Globals: direct loads and stores, no map lookup on the hot path. call_bytes is the only
// constant (.rodata, set by the loader before the load); lost_records the only counter (.bss).
const volatile __u64 call_bytes = MAX_CALL;     // payload bytes kept per call
__u64 lost_records;                             // records lost to a full ring

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} events SEC(".maps");

// The per-CPU scratch record, its header filled; the task's name only when ``named``.
static __always_inline struct record *new_record(__u8 kind, __u64 ssl, int named)
{
    __u32 zero = 0;
    struct record *r = bpf_map_lookup_elem(&scratch, &zero);
    if (!r)
        return 0;
    r->time = bpf_ktime_get_ns();
    r->ssl = ssl;
    r->pos = 0;
    r->total = 0;
    r->pid = bpf_get_current_pid_tgid() >> 32;
    r->len = 0;
    r->kind = kind;
    r->dir = 0;
    r->skip = 0;
    if (named)
        bpf_get_current_comm(r->comm, sizeof(r->comm));
    else
        r->comm[0] = 0;
    return r;
}

// The record with ``len`` payload bytes into the ring (the reader is woken only if it had
// caught up: the ring buffer's default); a full ring counts it lost.
static __always_inline void send(struct record *r, __u64 len)
{
    asm volatile("" : "+r"(len));      // keep the bound below for the verifier
    if (len > MAX_CALL)
        len = MAX_CALL;
    if (bpf_ringbuf_output(&events, r, offsetof(struct record, data) + len, 0))
        __sync_fetch_and_add(&lost_records, 1);
}

static __always_inline int enter(struct pt_regs *ctx, __u64 count)
{
    __u32 tid = bpf_get_current_pid_tgid();
    __u32 slot = tid & (CALL_SLOTS - 1);
    struct call_args *a = bpf_map_lookup_elem(&calls, &slot);
    if (a) {
        a->tid = tid;
        a->ssl = PT_REGS_PARM1(ctx);
        a->buf = PT_REGS_PARM2(ctx);
        a->count = count;
    }
    return 0;
}

SEC("uprobe")
int enter_ex(struct pt_regs *ctx) { return enter(ctx, PT_REGS_PARM4(ctx)); }

SEC("uprobe")
int enter_plain(struct pt_regs *ctx) { return enter(ctx, 0); }

// the first 4 bytes of an HTTP request: GET, POST, PUT, HEAD, DELETE, PATCH, OPTIONS, CONNECT,
// and PRI (the HTTP/2 preface)
static __always_inline int is_request(const __u8 *d)
{
    __u32 h = d[0] | d[1] << 8 | d[2] << 16 | (__u32)d[3] << 24;
    return h == 0x20544547 || h == 0x54534f50 || h == 0x20545550 || h == 0x44414548 ||
           h == 0x454c4544 || h == 0x43544150 || h == 0x4954504f || h == 0x4e4e4f43 ||
           h == 0x20495250;
}

static __always_inline int leave(struct pt_regs *ctx, __u8 dir)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tid = id;
    __u32 slot = tid & (CALL_SLOTS - 1);
    struct call_args *saved = bpf_map_lookup_elem(&calls, &slot);
    if (!saved || saved->tid != tid)
        return 0;               // never entered, or another thread took the slot meanwhile
    struct call_args a = *saved;
    saved->tid = 0;
    int ret = PT_REGS_RC(ctx);
    __u64 n = 0;
    if (ret <= 0 || !a.buf)
        return 0;
    if (a.count) {
        if (bpf_probe_read_user(&n, sizeof(n), (void *)a.count))
            return 0;
    } else {
        n = ret;
    }
    if (!n)
        return 0;
    struct conn_key key = {id >> 32, 0, a.ssl};
    struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
    if (!st) {
        struct conn_state fresh = {};
        bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST);
        st = bpf_map_lookup_elem(&conns, &key);
        if (!st)
            return 0;
    }
    if (st->ignored)
        return 0;
    __u64 pos = st->pos[dir & 1];
    int first = pos == 0 && st->pos[(dir & 1) ^ 1] == 0;    // the connection's first call
    st->pos[dir & 1] = pos + n;
    struct record *r = new_record(K_DATA, a.ssl, first);
    if (!r)
        return 0;
    __u64 len = n < call_bytes ? n : call_bytes;
    asm volatile("" : "+r"(len));      // keep the bound below for the verifier
    if (len > MAX_CALL)
        len = MAX_CALL;
    if (bpf_probe_read_user(r->data, len, (void *)a.buf))
        len = 0;
    if (pos == 0 && len >= 4) {
        __u8 skip = 0;
        if (dir == 0 && !is_request(r->data))
            // an HTTP/2 server writes a SETTINGS frame first (type 4, stream 0)
            skip = (r->data[3] == 4 && r->data[0] == 0) ? 2 : 1;
        else if (dir == 1 && is_request(r->data) && st->pos[0] == 0)
            skip = 2;
        if (skip) {
            st->ignored = 1;
            r->kind = K_IGNORE;
            r->skip = skip;
            send(r, 0);
            return 0;
        }
    }
    r->dir = dir;
    r->pos = pos;
    r->total = n;
    r->len = len;
    send(r, len);
    return 0;
}

SEC("uretprobe")
int leave_write(struct pt_regs *ctx) { return leave(ctx, 0); }

SEC("uretprobe")
int leave_read(struct pt_regs *ctx) { return leave(ctx, 1); }

SEC("uprobe")
int sni(struct pt_regs *ctx)
{
    if (PT_REGS_PARM2(ctx) != 55 || !PT_REGS_PARM4(ctx))
        return 0;
    struct conn_key key = {bpf_get_current_pid_tgid() >> 32, 0, PT_REGS_PARM1(ctx)};
    struct conn_state fresh = {};
    bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST);   // so that SSL_free reports it
    struct record *r = new_record(K_SNI, PT_REGS_PARM1(ctx), 1);
    if (!r)
        return 0;
    long got = bpf_probe_read_user_str(r->data, NAME_MAX_LEN, (void *)PT_REGS_PARM4(ctx));
    if (got <= 1)
        return 0;
    r->len = got - 1;
    send(r, got - 1);
    return 0;
}

SEC("uprobe")
int on_free(struct pt_regs *ctx)
{
    __u64 ssl = PT_REGS_PARM1(ctx);
    if (!ssl)
        return 0;
    struct conn_key key = {bpf_get_current_pid_tgid() >> 32, 0, ssl};
    if (!bpf_map_lookup_elem(&conns, &key))
        return 0;               // a connection that moved nothing: nothing to close
    bpf_map_delete_elem(&conns, &key);
    struct record *r = new_record(K_FREE, ssl, 0);
    if (r)
        send(r, 0);
    return 0;
}

// bench/llm_traffic_cost.py's floor: the same probe points with no work, what the traps cost alone
SEC("uprobe")
int nop(struct pt_regs *ctx) { return 0; }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
