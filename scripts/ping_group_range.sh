#!/bin/sh
# Let the service's group open ICMP datagram sockets, so ping runs under the unit without any
# capability (deploy/monitor-agent.service). Debian 12 leaves net.ipv4.ping_group_range at "1 0"
# (nobody) and gives ping a file capability instead, which NoNewPrivileges=yes disables.
# Usage: ping_group_range.sh GROUP [SYSCTL_FILE]. Never narrows a range that already admits GROUP.
set -eu
group=$1
conf=${2:-/etc/sysctl.d/60-monitor-agent-ping.conf}
gid=$(getent group "$group" | cut -d: -f3)
[ -n "$gid" ] || { echo "ping_group_range: no group $group" >&2; exit 1; }
# shellcheck disable=SC2046 # two numbers, split on purpose (dash's read of /proc fails here)
set -- $(cat /proc/sys/net/ipv4/ping_group_range)
low=$1 high=$2
if [ "$low" -le "$gid" ] && [ "$gid" -le "$high" ]; then
  echo "ping: net.ipv4.ping_group_range ($low $high) already admits $group ($gid)"
  exit 0
fi
if [ "$low" -le "$high" ]; then  # an operator's own range: widening it is their call
  echo "warning: net.ipv4.ping_group_range is $low $high and excludes $group ($gid):" \
       "ping cannot run under the unit until the range includes $gid" >&2
  exit 0
fi
printf '%s\n%s\n' "# make install: ICMP datagram sockets (ping) for the $group service only" \
  "net.ipv4.ping_group_range = $gid $gid" > "$conf"
if sysctl -q -p "$conf" 2>/dev/null; then
  echo "ping: $conf applied (net.ipv4.ping_group_range = $gid $gid)"
else
  echo "ping: wrote $conf; it applies at the next boot (or now: sysctl -p $conf)"
fi
