"""Kernel messages that matter, as a table of rows; every format comes from the kernel's own source.

A row is tried on the message of a line whose program is ``kernel``: its fixed word must be in the
message and its pattern must match from the start (after the printk time stamp and caller id).
The first row that matches wins. Patterns are anchored at the start and, where the format allows,
at the end, because several kernel formats begin with a process name (``comm``, up to 15 bytes,
chosen by whoever runs the process): "%s[%d]: segfault at", "%s invoked oom-killer:". A process
named ``Oops: 0000 [#1]`` that segfaults is a segfault, never an Oops: rows for formats that start
with a comm come first, and every other pattern needs more fixed kernel text than 15 bytes can hold
or an end that no comm-first format has. The subject (``what``) is bounded by the caller and never
drives the severity: each row's severity and floor are fixed here.

The source of each format is named next to its row (torvalds/linux paths).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# printk's "[  518.050606] " time stamp and CONFIG_PRINTK_CALLER's "[ T8305] " / "[    C1] "
_PREFIX = rb"(?:\[ *\d+\.\d+\] ?)?(?:\[ *[TC]\d+\] ?)?"
KERNEL_EVENT = "kernel_event"     # the kind of the rows that belong to no family


@dataclass(frozen=True)
class KernelEvent:
    """One kernel message: a fixed word to find, an anchored pattern, its kind, severity and floor."""

    label: str
    word: bytes
    detail: re.Pattern[bytes]
    severity: str
    kind: str = KERNEL_EVENT
    floor: str = "none"


def _row(label: str, word: bytes, pattern: bytes, severity: str, kind: str = KERNEL_EVENT,
         floor: str = "none") -> KernelEvent:
    return KernelEvent(label, word, re.compile(_PREFIX + pattern), severity, kind, floor)


FS, DISK, HW, HANG, THERMAL, CRASH = ("filesystem_error", "disk_error", "hardware_error",
                                      "kernel_hang", "thermal_critical", "kernel_crash")
_DEV = rb"(?P<what>[\w.:/-]{1,64})"
_HW_ERR = rb"\[Hardware Error\]: "        # include/linux/printk.h HW_ERR
_MCE = rb"mce: " + _HW_ERR                # arch/x86/kernel/cpu/mce/core.c pr_fmt "mce: "
_MCE_CPU = _MCE + rb"CPU (?P<what>\d+): Machine Check"
_GHES = rb"(?:\{\d+\})?" + _HW_ERR + rb"event severity: "   # cper.c pfx "{%u}" + HW_ERR

KERNEL_EVENTS = (
    # --- formats that start with a process name: first, so a crafted name stays what it is ----
    # arch/x86/mm/fault.c show_signal_msg: "%s%s[%d]: segfault at %lx ip %px sp %px error %lx"
    _row("segfault", b": segfault at ",
         rb"(?P<what>.{1,64}?)\[(?P<pid>\d+)\]: segfault at [0-9a-f]+ ip ", "low"),
    # arch/x86/kernel/traps.c (pr_fmt "traps: "): "%s[%d] %s%s ip:%lx sp:%lx error:%lx"
    _row("general_protection", b"] general protection",
         rb"traps: (?P<what>.{1,64}?)\[(?P<pid>\d+)\] general protection(?: fault)? ip:[0-9a-f]+",
         "low"),
    # mm/oom_kill.c __oom_kill_process: "%s: Killed process %d (%s) total-vm:..." (message is
    # "Out of memory" or "Memory cgroup out of memory"); CentOS 6: "Killed process %d, UID %d, (%s)"
    _row("oom_kill", b"Killed process ",
         rb"(?:(?:Memory cgroup out|Out) of memory(?: \(oom_kill_allocating_task\))?: )?"
         rb"Killed process (?P<pid>\d+)(?:, UID \d+,)? \((?P<what>.+?)\)[ ,]", "medium"),
    # --- filesystems -----------------------------------------------------------------------------
    # fs/ext4/super.c ext4_handle_error: ext4_msg(sb, KERN_CRIT, "Remounting filesystem read-only")
    # -> "EXT4-fs (%s): Remounting filesystem read-only"; ext3 printed it without a prefix
    _row("fs_read_only", b"Remounting filesystem read-only",
         rb"(?:EXT[234]-fs \(" + _DEV + rb"\): )?Remounting filesystem read-only\.?$", "high", FS,
         "high"),
    # fs/btrfs/messages.c btrfs_handle_error: btrfs_info(fs_info, "forced readonly")
    _row("fs_read_only", b"forced readonly",
         rb"BTRFS \w+ \(device " + _DEV + rb"\): forced readonly$", "high", FS, "high"),
    # fs/ext4/super.c __ext4_error*: "EXT4-fs error (device %s): %s:%d: ..."
    _row("fs_error", b"-fs error (device ",
         rb"EXT[234]-fs error \(device " + _DEV + rb"\)", "high", FS, "high"),
    # fs/jbd2/journal.c jbd2_journal_abort: "Aborting journal on device %s.\n"
    _row("fs_error", b"Aborting journal on device ",
         rb"Aborting journal on device " + _DEV + rb"\.$", "high", FS, "high"),
    # fs/xfs/xfs_fsops.c xfs_do_force_shutdown: "%s (0x%x) detected at %pS (%s:%d).  Shutting down
    # filesystem." (older: "Corruption of in-memory data detected.  Shutting down filesystem")
    _row("xfs_shutdown", b"Shutting down filesystem",
         rb"XFS \(" + _DEV + rb"\): .{0,200}Shutting down filesystem\.?$", "high", FS, "high"),
    # fs/xfs/xfs_error.c xfs_verifier_error: "Metadata corruption detected at %pS, %s block 0x%llx"
    # / "Metadata CRC error detected at ..."; xfs_corruption_error: "Corruption detected. Unmount
    # and run xfs_repair"
    _row("xfs_corruption", b"XFS (",
         rb"XFS \(" + _DEV + rb"\): (?:Metadata (?:corruption|CRC error) detected at |"
         rb"Corruption detected\. Unmount and run xfs_repair)", "high", FS, "high"),
    # fs/btrfs/messages.c _btrfs_printk: "BTRFS %s (device %s): " with the level word, and
    # __btrfs_handle_fs_error: "BTRFS: error (device %s) in %s:%d: errno=%d %s"
    _row("btrfs_error", b"BTRFS",
         rb"BTRFS(?: (?:error|critical|alert|emergency)|: error) \(device " + _DEV + rb"\)", "high",
         FS, "high"),
    # fs/ext4/super.c print_daily_error_info: "error count since last fsck: %u"; ext4_setup_super:
    # "warning: mounting fs with errors, running e2fsck is recommended"
    _row("fs_errors_recorded", b"EXT4-fs (",
         rb"EXT4-fs \(" + _DEV + rb"\): (?:error count since last fsck: \d+$|"
         rb"warning: mounting fs with errors, running e2fsck is recommended$)", "medium", FS),
    # --- disks -------------------------------------------------------------------------------------
    # block/blk-core.c blk_print_req_error: "%s error, dev %s, sector %llu op 0x%x:(%s) ..." with
    # blk_errors[].name; older "blk_update_request:", "print_req_error:" and "end_request:" prefixes
    _row("io_error", b" error, dev ",
         rb"(?:(?:blk_update_request|print_req_error|end_request): )?(?:I/O|critical medium|"
         rb"critical target|critical nexus|recoverable transport|protection|"
         rb"critical space allocation) error, dev " + _DEV + rb", sector \d+", "high", DISK, "high"),
    _row("disk_timeout", b"timeout error, dev ",
         rb"(?:(?:blk_update_request|print_req_error): )?timeout error, dev " + _DEV
         + rb", sector \d+", "high", DISK, "high"),
    # fs/buffer.c: "Buffer I/O error on dev %pg, logical block %llu%s" (older "on device %s")
    _row("io_error", b"Buffer I/O error on dev",
         rb"Buffer I/O error on dev(?:ice)? " + _DEV + rb", logical block \d+", "high", DISK, "high"),
    # fs/ext4/page-io.c ext4_end_bio: "I/O error %d writing to inode %lu ..." (ext4_warning_inode);
    # fs/ext4/super.c ext4_commit_super: "I/O error while writing superblock"
    _row("io_error", b"I/O error",
         rb"EXT4-fs (?:warning \(device " + _DEV + rb"\): ext4_end_bio:\d+: I/O error -?\d+ writing|"
         rb"\((?P<sb>[\w.:/-]{1,64})\): I/O error while writing superblock$)", "high", DISK, "high"),
    # drivers/nvme/host/core.c nvme_log_error: "%s: %s(0x%x) @ LBA %llu, %u blocks, %s (sct 0x%x /
    # sc 0x%x) %s%s" (blktests nvme/039.out holds the expected lines)
    _row("io_error", b" @ LBA ",
         rb"(?P<what>nvme\d+n\d+): [\w ]{1,40}\(0x[0-9a-f]+\) @ LBA \d+, \d+ blocks, .{1,80} "
         rb"\(sct 0x[0-9a-f]+ / sc 0x[0-9a-f]+\)", "high", DISK, "high"),
    # drivers/nvme/host/pci.c nvme_timeout: "I/O %d QID %d timeout, aborting" / ", reset controller"
    # (newer: "I/O tag %d (%04x) opcode 0x%x (%s) QID %d timeout, ...")
    _row("disk_timeout", b" timeout, ",
         rb"nvme (?P<what>nvme\d+): I/O (?:tag )?\d+ .{0,60}?QID \d+ timeout, "
         rb"(?:aborting|reset controller|completion polled|disable controller)", "high", DISK,
         "high"),
    # drivers/nvme/host/pci.c: "Device not ready; aborting reset, CSTS=0x%x", "controller is down;
    # will reset: CSTS=0x%x, PCI_STATUS=0x%hx", "Removing after probe failure status: %d"
    _row("nvme_controller_down", b"nvme",
         rb"nvme (?P<what>nvme\d+): (?:Device not ready; aborting reset|controller is down; will reset|"
         rb"Removing after probe failure status: -?\d+$)", "high", DISK, "high"),
    # drivers/md/raid1.c / raid5.c / raid10.c: "md/raid1:%s: Disk failure on %pg, disabling device."
    _row("raid_disk_failure", b": Disk failure on ",
         rb"md/raid(?:1|10|):md\w{0,16}: Disk failure on " + _DEV + rb", disabling device\.", "high",
         DISK, "high"),
    # drivers/scsi/scsi_error.c scsi_eh_offline_sdevs: "Device offlined - not ready after error
    # recovery" (2.6: "scsi: Device offlined - ...: host %d channel %d id %d lun %d");
    # drivers/scsi/scsi_lib.c: "rejecting I/O to offline device"
    _row("scsi_offline", b"offline",
         rb"(?:(?:sd|sr|st) (?P<what>\d+:\d+:\d+:\d+): (?:scsi: )?|scsi: )?"
         rb"(?:Device offlined - not ready after error recovery|rejecting I/O to offline device)",
         "high", DISK, "high"),
    # drivers/scsi/scsi_logging.c scsi_print_sense_hdr: "Sense Key : %s [%s]" (Medium Error and
    # Hardware Error are the disk's own failures)
    _row("medium_error", b"Sense Key : ",
         rb"sd \d+:\d+:\d+:\d+: \[(?P<what>\w{1,32})\] (?:tag#\d+ )?Sense Key : "
         rb"(?:Medium Error|Hardware Error) ", "high", DISK, "high"),
    # drivers/ata/libata-eh.c ata_eh_link_report: "exception Emask 0x%x SAct 0x%x SErr 0x%x action
    # 0x%x%s%s" (under "ata%u.%02u: " or "ata%u: "); also link resets of optical drives at boot
    _row("ata_error", b": exception Emask ",
         rb"(?P<what>ata\d+(?:\.\d+)?): exception Emask 0x[0-9a-f]+ SAct 0x[0-9a-f]+ SErr 0x[0-9a-f]+ "
         rb"action 0x[0-9a-f]+", "medium", DISK),
    # --- machine checks and memory errors ---------------------------------------------------------
    # arch/x86/kernel/cpu/mce/core.c __print_mce: HW_ERR "CPU %d: Machine Check%s: %Lx Bank %d:
    # %016Lx" (HW_ERR is "[Hardware Error]: ", pr_fmt "mce: "); the status's bit 61 is UC
    _row("machine_check_uncorrected", b"Machine Check",
         _MCE_CPU + rb"(?: Exception: [0-9a-f]+ Bank \d+: [0-9a-f]{16}|"
         rb": [0-9a-f]+ Bank \d+: [2367abef][0-9a-f]{15})$", "high", HW, "high"),
    _row("machine_check_corrected", b"Machine Check",
         _MCE_CPU + rb": [0-9a-f]+ Bank \d+: [0-9a-f]{16}$", "low", HW),
    # mce/core.c mce_notify_irq: pr_info(HW_ERR "Machine check events logged\n")
    _row("machine_check_logged", b"Machine check events logged",
         _MCE + rb"Machine check events logged$", "low", HW),
    # drivers/edac/edac_mc.c edac_ue_error / edac_ce_error (edac_mc_printk: "EDAC MC%d: "):
    # "%d UE %s%son %s (%s page:0x%lx offset:0x%lx grain:%ld ...)"; older "UE page 0x%lx, ..."
    *(_row(label, b" %s " % letter,
           rb"EDAC MC(?P<what>\d+): (?:\d+ %s (?:.{1,200} )?on .{1,200}\(.*\)$|%s page 0x[0-9a-f]+)"
           % (letter, letter), severity, HW, floor)
      for label, letter, severity, floor in (("memory_uncorrected", b"UE", "high", "high"),
                                             ("memory_corrected", b"CE", "low", "none"))),
    # drivers/firmware/efi/cper.c cper_estatus_print: "%sevent severity: %s" with pfx
    # "{%u}[Hardware Error]: " (drivers/acpi/apei/ghes.c)
    _row("firmware_hardware_error", b"event severity: ",
         _GHES + rb"(?:fatal|recoverable)$", "high", HW, "high"),
    _row("firmware_corrected_error", b"event severity: ",
         _GHES + rb"corrected$", "low", HW),
    # --- hangs --------------------------------------------------------------------------------------
    # kernel/hung_task.c check_hung_task: "INFO: task %s:%d blocked for more than %ld seconds."
    _row("hung_task", b" blocked for more than ",
         rb"INFO: task (?P<what>.{1,64}):(?P<pid>\d+) blocked for more than \d+ seconds\.", "medium",
         HANG),
    # kernel/watchdog.c watchdog_timer_fn (pr_fmt "watchdog: "): "BUG: soft lockup - CPU#%d stuck
    # for %us! [%s:%d]"
    _row("soft_lockup", b"BUG: soft lockup - CPU#",
         rb"(?:(?:NMI )?watchdog: )?BUG: soft lockup - (?P<what>CPU#\d+) stuck for \d+s! \[", "high",
         HANG, "medium"),
    # kernel/watchdog.c watchdog_hardlockup_check / watchdog_perf.c (older "NMI watchdog: "):
    # "Watchdog detected hard LOCKUP on cpu %d"
    _row("hard_lockup", b"Watchdog detected hard LOCKUP on cpu ",
         rb"(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu (?P<what>\d+)$",
         "high", HANG, "high"),
    # kernel/rcu/tree_stall.h (pr_fmt "rcu: "): "INFO: %s detected stalls on CPUs/tasks:", "INFO: %s
    # self-detected stall on CPU"; tree_exp.h: "INFO: %s detected expedited stalls on CPUs/tasks: {"
    _row("rcu_stall", b"INFO: ",
         rb"(?:rcu: )?INFO: (?P<what>rcu_\w{1,16}) (?:self-detected stall on CPU|"
         rb"detected (?:expedited )?stalls on CPUs/tasks:)", "high", HANG, "medium"),
    # --- temperature --------------------------------------------------------------------------------
    # drivers/thermal/thermal_core.c: dev_emerg(&tz->device, "%s: critical temperature reached\n")
    # (older: "critical temperature reached (%d C), shutting down")
    _row("critical_temperature", b"ritical temperature reached",
         rb"(?:thermal (?P<what>thermal_zone\d+): (?:[\w-]{1,32}: )?c|C)ritical temperature reached",
         "high", THERMAL, "high"),
    # kernel/reboot.c hw_protection_shutdown (pr_fmt "reboot: "): "HARDWARE PROTECTION shutdown (%s)"
    _row("thermal_shutdown", b"HARDWARE PROTECTION shutdown (",
         rb"reboot: HARDWARE PROTECTION shutdown \((?P<what>Temperature too high)\)$", "high", THERMAL,
         "high"),
    # arch/x86/kernel/cpu/mce/therm_throt.c: "CPU%d: %s temperature above threshold, cpu clock
    # throttled (total events = %lu)"
    _row("thermal_throttling", b"temperature above threshold",
         rb"(?:mce: )?(?P<what>CPU\d+): (?:Core|Package) temperature above threshold", "medium"),
    # --- crashes --------------------------------------------------------------------------------------
    # kernel/panic.c panic: "Kernel panic - not syncing: %s" and its "---[ end Kernel panic ..."
    _row("kernel_panic", b"Kernel panic - not syncing: ",
         rb"(?:---\[ end )?Kernel panic - not syncing: (?P<what>.{1,64})", "high", CRASH, "high"),
    # arch/x86/kernel/dumpstack.c __die_header: "%s: %04lx [#%d]%s%s%s%s%s" (6.9+: "Oops: %s: ...",
    # flags PREEMPT SMP DEBUG_PAGEALLOC KASAN PTI/NOPTI); arm64 "Internal error: %s: %016lx [#%d]"
    _row("oops", b": ",
         rb"(?:Oops: )?(?:Internal error: )?(?P<what>Oops|invalid opcode|invalid operand|double fault|"
         rb"stack segment|general protection fault(?:, [\w ,-]{1,80}0x[0-9a-f]+)?): [0-9a-f]{1,16}"
         rb"(?: \[#\d+\])?(?: [A-Z][A-Z0-9_]*(?:\(\w+\))?)*$", "high", CRASH, "high"),
    # arch/x86/mm/fault.c page_fault_oops: "BUG: kernel NULL pointer dereference, address: %px",
    # "BUG: unable to handle page fault for address: %px" (older: "BUG: unable to handle kernel
    # NULL pointer dereference at %p" / "... kernel paging request at %p"); lib/bug.c report_bug:
    # "kernel BUG at %s:%u!"
    _row("kernel_bug", b"BUG",
         rb"(?:BUG: (?:kernel NULL pointer dereference, address: [0-9a-f]+$|unable to handle "
         rb"(?:page fault for address: [0-9a-f]+$|kernel (?:NULL pointer dereference|paging request) "
         rb"at [0-9a-f]+$))|kernel BUG at (?P<what>[\w./-]{1,80}):\d+!$)", "high", CRASH, "high"),
    # kernel/panic.c __warn: "WARNING: CPU: %d PID: %d at %pS" (older "... at %s:%d %pS")
    _row("kernel_warning", b"WARNING: CPU: ",
         rb"WARNING: CPU: \d+ PID: \d+ at (?P<what>[\w./-]{1,80})", "low"),
    # e1000e/igb/r8169...: "%s NIC Link is Down" / "Link is Down" (netdev_info: "DRIVER BUS IFACE: ")
    _row("link_down", b"Link is Down",
         rb".{0,80}?(?P<what>[\w.-]{1,32}):? (?:NIC )?Link is Down$", "medium"),
)

# Each event label as people say it (in messages and speech: the agent's own words, never the line's)
WORDS: dict[str, str] = {
    "segfault": "a program crash (segfault)",
    "general_protection": "a program crash (general protection fault)",
    "oom_kill": "an out-of-memory kill",
    "fs_read_only": "a filesystem turned read-only",
    "fs_error": "a filesystem error",
    "xfs_shutdown": "an XFS filesystem shut down",
    "xfs_corruption": "XFS corruption",
    "btrfs_error": "a Btrfs error",
    "fs_errors_recorded": "old filesystem errors on record",
    "io_error": "a disk read or write error",
    "disk_timeout": "a disk timeout",
    "nvme_controller_down": "an NVMe controller down",
    "raid_disk_failure": "a RAID disk failure",
    "scsi_offline": "a disk taken offline",
    "medium_error": "a disk medium error",
    "ata_error": "a SATA link error",
    "machine_check_uncorrected": "an uncorrected machine check",
    "machine_check_corrected": "a corrected machine check",
    "machine_check_logged": "machine check events",
    "memory_uncorrected": "an uncorrected memory error",
    "memory_corrected": "a corrected memory error",
    "firmware_hardware_error": "a hardware error reported by the firmware",
    "firmware_corrected_error": "a corrected error reported by the firmware",
    "hung_task": "a hung task",
    "soft_lockup": "a soft lockup",
    "hard_lockup": "a hard lockup",
    "rcu_stall": "an RCU stall",
    "critical_temperature": "a critical temperature",
    "thermal_shutdown": "a thermal shutdown",
    "thermal_throttling": "thermal throttling",
    "kernel_panic": "a kernel panic",
    "oops": "a kernel oops",
    "kernel_bug": "a kernel BUG",
    "kernel_warning": "a kernel warning",
    "link_down": "a network link down",
}


def words(label: str) -> str:
    """An event label as people say it."""
    return WORDS.get(label, label.replace("_", " "))


def match(message: bytes) -> tuple[KernelEvent, re.Match[bytes]] | None:
    """The first row matching a kernel line's message (its text after ``kernel:``), or None."""
    for event in KERNEL_EVENTS:
        if event.word in message:
            m = event.detail.match(message)
            if m is not None:
                return event, m
    return None


def subject(m: re.Match[bytes]) -> bytes:
    """The device, CPU or process a match names (empty when the format names none)."""
    for name in ("what", "sb"):
        if name in m.re.groupindex and m.group(name) is not None:
            return m.group(name)
    return b""
