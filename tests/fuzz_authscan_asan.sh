#!/usr/bin/env bash
# Fuzz the C auth log scanner (collectors/auth/_authscan.c) under AddressSanitizer and
# UndefinedBehaviorSanitizer: build it with -fsanitize=address,undefined in a temp dir, then feed
# scan() and stamp_keys() random bytes, syslog lines built from fragments that reach every branch,
# those lines cut at every length, and odd start offsets, as bytes, bytearray, memoryview and a
# buffer between two PROT_NONE pages (so a read even one byte past either end faults).
# Exits non-zero on any sanitizer report, Python exception or wrong result.
# Run by hand or by `make fuzz`, not by pytest:   bash tests/fuzz_authscan_asan.sh [seconds=60]
# Env: PY (default .venv/bin/python), SEED (default fixed), AUTHSCAN_SRC (a C file to test instead).
set -euo pipefail
SECS=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
SRC=$(realpath "${AUTHSCAN_SRC:-$ROOT/collectors/auth/_authscan.c}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"                                  # hypothesis writes .hypothesis/ into the cwd

mkdir -p collectors/auth && : > collectors/__init__.py && : > collectors/auth/__init__.py
INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
EXT=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    -shared -fPIC -I"$INC" "$SRC" -lhs -o "collectors/auth/_authscan$EXT"

cat > driver.py <<'EOF'
import ctypes, mmap, os, random, struct, sys, time
from collectors.auth import _authscan as A

END = time.monotonic() + float(sys.argv[1])
rng = random.Random(int(os.environ.get("SEED", "20240601")))
calls = {"scan": 0, "stamp_keys": 0, "odd_addresses": 0, "first_ids": 0}

STAMPS = [b"Nov 23 10:00:01 host ", b"Feb  7 16:01:07 h ", b"<38>Nov 23 10:00:01 h ", b""]
HEADS = [b"sshd[123]: ", b"sshd]: ", b"sshd] ", b"sshd-session[9]: ", b"sshd[12] ", b"sshd[]: ",
         b"sudo: ", b"sudo[8]: ", b"su[4]: ", b"su(pam_unix)[5]: ", b"sudo(pam_unix): ", b"-su: ",
         b"xsu: ", b"useradd[7]: ", b"groupadd[2]: ", b"usermod[3]: ", b"passwd[1]: ", b""]
PREFIXES = [b"", b"error: ", b"fatal: ", b"PAM: ", b"error: PAM: "]
MESSAGES = [
    b"Failed password for root from 1.2.3.4 port 22 ssh2",
    b"Failed publickey for invalid user x from ::ffff:1.2.3.4 port 1 ssh2: RSA",
    b"Failed publickey for bob from 1.2.3.4 port 1 ssh2: RSA SHA256:x",
    b"Failed none for x from a-b.c on tty ssh2]", b"Failed keyboard-interactive/pam for  from 1.2.3.4",
    b"Invalid user  from 1.2.3.4", b"Invalid user bob from 10.0.0.1 port 5 \t\r",
    b"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
    b"pam_unix(sshd:auth): authentication failure; ruser=a ruser=b rhost=h\tuser=",
    b"Accepted publickey for a from 10.0.0.1 port 22 ssh2", b"Accepted password for u from ::ffff:1.2.3.4",
    b"Received disconnect from 1.2.3.4 port 2:3: x", b"Received disconnect from 1.2.3.4 port 2:11: x",
    b"message repeated 5 times: [ Failed password for x from 1.2.3.4 port 22 ssh2]",
    b"maximum authentication attempts exceeded for root", b"ROOT LOGIN REFUSED FROM 1.2.3.4",
    b"Authentication refused: bad ownership", b"authentication failure", b"User root not allowed",
    b"refused connect from 1.2.3.4", b"Disconnecting invalid user x 1.2.3.4 port 2: Too many",
    b"COMMAND=/bin/ls", b"  root : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls\r",
    b"x : 3 incorrect password attempts ; COMMAND=/x", b"x : user NOT in sudoers ; COMMAND=/y",
    b"x : command not allowed ; COMMAND=/z", b"pam_unix(sudo:auth): authentication failure;",
    b"pam_unix(sudo-i:auth): authentication failure;", b"pam_systemd(sudo:session): x",
    b"new user: name=x, UID=1001"]
SEPS = [b" ", b"\t", b"\r", b"\n", b"\x00", b"\xff"]
FRAGMENTS = STAMPS + HEADS + PREFIXES + MESSAGES + SEPS

# 16 pages between two PROT_NONE pages: chunks go right after the first or right before the last
PAGE = mmap.PAGESIZE
MAP = mmap.mmap(-1, 18 * PAGE)
BASE = ctypes.addressof(ctypes.c_char.from_buffer(MAP))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
for page in (0, 17):
    assert libc.mprotect(BASE + page * PAGE, PAGE, 0) == 0, os.strerror(ctypes.get_errno())
GUARDED = memoryview(MAP)


def guarded(b, at_end):
    lo = 17 * PAGE - len(b) if at_end else PAGE
    GUARDED[lo:lo + len(b)] = b
    return GUARDED[lo:lo + len(b)]


def line():
    return (rng.choice(STAMPS) + rng.choice(HEADS) + rng.choice(PREFIXES) + rng.choice(MESSAGES)
            + rng.choice(SEPS + [b"\n"] * 6))


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randrange(4)):
        i, op = rng.randrange(len(b) + 1), rng.randrange(3)
        if op == 0: b[i:i] = rng.choice(FRAGMENTS)
        elif op == 1: del b[i:i + rng.randrange(1, 8)]
        elif i < len(b): b[i] = rng.randrange(256)
    return bytes(b)


def random_chunk():
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(300))
    if kind == 1:
        return bytes(rng.choice(b"sudhFaiIvlnr[]:0123 \n\t\r-(") for _ in range(rng.randrange(64)))
    chunk = b"".join(line() for _ in range(rng.randrange(1, 6)))
    if kind == 2:
        return mutate(chunk)
    return chunk[rng.randrange(len(chunk) + 1):][:rng.randrange(len(chunk) + 1)]  # cut anywhere


def check_scan(chunk):
    """The same result from every kind of buffer; starts are line starts; no reference kept."""
    views = [chunk, bytearray(chunk), memoryview(b"#" + chunk + b"#")[1:-1]]
    if len(chunk) <= 8 * PAGE:                         # the two guarded copies must not overlap
        views += [guarded(chunk, True), guarded(chunk, False)]
    results = []
    for v in views:
        refs = sys.getrefcount(v)
        results.append(A.scan(v))
        calls["scan"] += 1
        assert isinstance(v, bytes) or sys.getrefcount(v) == refs, "scan() kept a reference"
    assert all(r == results[0] for r in results), (chunk, results)
    (lines, clean), failed, invalid, sshd, sudo, slow, probes = results[0]
    assert lines == chunk.count(b"\n") and clean == (chunk.isascii() and b"\0" not in chunk)
    for s in [failed[0], invalid[0], sshd[0], sudo, *slow, probes[0]]:
        for p in struct.unpack(f"{len(s) // 8}q", s):
            assert 0 <= p < len(chunk) and (p == 0 or chunk[p - 1] == 10), (chunk, p)
    assert len(failed[0]) // 8 == len(failed[1]) == len(failed[2])
    assert len(invalid[0]) // 8 == len(invalid[1]) == len(invalid[2])
    assert len({len(sshd[0]) // 8, len(sshd[1])} | {len(x) for x in sshd[2:]}) == 1
    assert len(probes[0]) // 8 == len(probes[1])
    tokens = failed[2] + invalid[2] + sshd[4] + probes[1] + [chunk[:40]]
    odd = A.odd_addresses(tokens)
    calls["odd_addresses"] += 1
    assert odd == sorted(set(odd)) and all(0 <= i < len(tokens) for i in odd)
    ids, names = A.first_ids(tokens)
    calls["first_ids"] += 1
    assert [names[i] for i in struct.unpack(f"{len(tokens)}q", ids)] == tokens


def stamp_ref(chunk, p):
    h = chunk[p:p + 15] if p >= 0 else b""
    if len(h) < 15 or h[3] != 32 or h[6] != 32 or h[9] != 58 or h[12] != 58 \
            or not (h[4:6].isdigit() or (h[4] == 32 and h[5:6].isdigit())) \
            or not (h[7:9] + h[10:12] + h[13:15]).isdigit():
        return -1
    day = (0 if h[4] == 32 else h[4] - 48) * 10 + h[5] - 48
    return ((((h[0] << 16 | h[1] << 8 | h[2]) * 100 + day) * 100 + int(h[7:9])) * 100
            + int(h[10:12])) * 100 + int(h[13:15])


def check_stamps(chunk):
    """Starts anywhere (negative, near or past the end, near INT64_MAX), misaligned, len % 8 != 0."""
    n = len(chunk)
    odd = [0, 1, n, n + 1, -1, -15, -2**63, 2**62, 2**63 - 15, 2**63 - 1, *range(n - 15, n)]
    starts = [rng.choice(odd) if rng.random() < 0.5 else rng.randrange(-20, n + 20)
              for _ in range(rng.randrange(12))]
    packed = struct.pack(f"{len(starts)}q", *starts) + bytes(rng.randrange(8))
    skew = rng.randrange(1, 8)
    want = [stamp_ref(chunk, p) for p in starts]
    for c, s in [(chunk, packed), (guarded(chunk, True) if n <= 8 * PAGE else chunk,
                                   memoryview(bytes(skew) + packed)[skew:])]:
        got = A.stamp_keys(c, s)
        calls["stamp_keys"] += 1
        assert list(struct.unpack(f"{len(starts)}q", got)) == want, (chunk, starts, got)


def every_cut():
    """One line at every length from either end: chunks ending mid head, mid message, ..."""
    one = line().rstrip(b"\n")
    for k in range(len(one) + 1):
        check_scan(one[:k])
        check_scan(one[k:])


try:
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st

    @settings(max_examples=300, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=6), max_size=24).map(b"".join),
           st.integers(0, 400))
    def hypo(chunk, cut):
        check_scan(chunk[:cut])
        check_stamps(chunk)
except ImportError:                                    # plain random only
    hypo = None

for n in range(4):                                     # chunks of 0 to 3 bytes
    for _ in range(200):
        check_scan(bytes(rng.choice(b"su\n[]: dh") for _ in range(n)))
while time.monotonic() < END:
    pick = rng.random()
    if pick < 0.1 and hypo is not None:
        hypo()
    elif pick < 0.3:
        every_cut()
    else:
        chunk = random_chunk()
        check_scan(chunk)
        check_stamps(chunk)
print("fuzz_authscan: ok,", ", ".join(f"{v} {k} calls" for k, v in calls.items()))
EOF

echo "fuzzing $SRC for ${SECS}s under ASan+UBSan"
status=0
LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
UBSAN_OPTIONS=print_stacktrace=1 PYTHONMALLOC=malloc PYTHONPATH="$WORK" \
    timeout $((SECS + 300)) "$PY" driver.py "$SECS" 2>&1 | tee log || status=$?
if grep -qE 'AddressSanitizer|runtime error:' log && [ "$status" = 0 ]; then status=1; fi
[ "$status" = 0 ] || echo "fuzz_authscan_asan: FAILED (exit $status)" >&2
exit "$status"
