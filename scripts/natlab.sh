#!/usr/bin/env bash
# A NAT lab in network namespaces, for tests/tests/nat_lab.rs (and by hand).
#
#   scripts/natlab.sh up PREFIX     # make the namespaces PREFIX-{pub,r,nat1,nat2,a,b}
#   scripts/natlab.sh down PREFIX   # delete them (idempotent)
#
#            PREFIX-r  198.18.0.1         (public relay host)
#                 |
#   PREFIX-pub: bridge br0, 198.18.0.0/24 (the "internet")
#         |                          |
#   PREFIX-nat1 198.18.0.11    PREFIX-nat2 198.18.0.12   (nftables masquerade, forward filter,
#         | 10.1.0.1                 | 10.2.0.1           unsolicited inbound dropped)
#   PREFIX-a 10.1.0.2          PREFIX-b 10.2.0.2          (private hosts, default route via NAT)
#
# 198.18.0.0/15 (RFC 2544 benchmarking) is outside every range leafnet's `is_global` rejects, so
# the NATs' public addresses count as public-internet addresses; 10.x does not.
# Everything lives inside the namespaces this script makes: the host's own network is untouched.
# Needs root, `ip` (iproute2) and `nft` (nftables).
set -euo pipefail

cmd=${1:?usage: natlab.sh up|down PREFIX}
p=${2:?usage: natlab.sh up|down PREFIX}
PUB=$p-pub R=$p-r N1=$p-nat1 N2=$p-nat2 A=$p-a B=$p-b
ALL=("$A" "$B" "$N1" "$N2" "$R" "$PUB")

down() {
  for ns in "${ALL[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
}

# wire NS1 IF1 NS2 IF2: a veth pair between two namespaces, both ends up.
wire() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

# nat NS LAN_CIDR_GW: a masquerading router with a stateful forward filter.
nat() {
  ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$1" nft -f - <<NFT
table ip natlab {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "pub0" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "pub0" accept
  }
  chain input {
    # Like most home routers: unsolicited packets from outside are dropped silently (no TCP
    # RST, no ICMP port unreachable), which is what lets a simultaneous open survive a SYN that
    # arrives before the local side's own SYN went out.
    type filter hook input priority filter; policy accept;
    iifname "pub0" ct state established,related accept
    iifname "pub0" drop
  }
}
NFT
}

up() {
  command -v ip >/dev/null || { echo "natlab: no 'ip' (iproute2)" >&2; exit 3; }
  command -v nft >/dev/null || { echo "natlab: no 'nft' (nftables)" >&2; exit 3; }
  down
  trap 'down' ERR
  for ns in "${ALL[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip -n "$PUB" link add br0 type bridge
  ip -n "$PUB" link set br0 up
  wire "$R" pub0 "$PUB" r
  wire "$N1" pub0 "$PUB" nat1
  wire "$N2" pub0 "$PUB" nat2
  for i in r nat1 nat2; do ip -n "$PUB" link set "$i" master br0; done
  wire "$A" eth0 "$N1" lan0
  wire "$B" eth0 "$N2" lan0

  ip -n "$R" addr add 198.18.0.1/24 dev pub0
  ip -n "$N1" addr add 198.18.0.11/24 dev pub0
  ip -n "$N2" addr add 198.18.0.12/24 dev pub0
  ip -n "$N1" addr add 10.1.0.1/24 dev lan0
  ip -n "$N2" addr add 10.2.0.1/24 dev lan0
  ip -n "$A" addr add 10.1.0.2/24 dev eth0
  ip -n "$B" addr add 10.2.0.2/24 dev eth0
  ip -n "$A" route add default via 10.1.0.1
  ip -n "$B" route add default via 10.2.0.1
  nat "$N1"
  nat "$N2"

  if command -v ping >/dev/null; then
    # The private hosts reach the relay through their NAT.
    ip netns exec "$A" ping -c1 -W2 198.18.0.1 >/dev/null
    ip netns exec "$B" ping -c1 -W2 198.18.0.1 >/dev/null
  fi
  trap - ERR
  echo "natlab: up ($p)"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: natlab.sh up|down PREFIX" >&2; exit 2 ;;
esac
