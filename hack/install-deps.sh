#!/usr/bin/env bash
# Installs the Debian packages Sluice's build, tests and demo use, when they are missing.
# As root it installs them; otherwise it lists what is missing and fails.
set -euo pipefail

# clang/llvm/libbpf-dev: BPF programs (make generate). frr, bird2, gobgpd: real BGP peers.
# arping, ndisc6, tcpdump: real ARP/NDP clients and captures. iproute2, iputils-ping, curl:
# the lab. setpriv (util-linux): ties test daemons' lives to the test process. iptables,
# nftables, conntrack: what the real kube-proxy needs, which the benchmarks compare with.
packages=(clang llvm libbpf-dev frr bird2 gobgpd arping ndisc6 tcpdump iproute2 iputils-ping curl util-linux iptables nftables conntrack)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# FRR's zebra (the lab router that installs ECMP routes) runs as root and insists that its
# user be in FRR's vty group.
vty_group() {
  if getent group frrvty >/dev/null && ! id -nG root | grep -qw frrvty; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "deps: root is not in group frrvty (zebra needs it); run as root, or: sudo usermod -aG frrvty root" >&2
      exit 1
    fi
    usermod -aG frrvty root
    echo "deps: added root to group frrvty (FRR's zebra, run as root in tests, requires it)"
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: Debian packages present (${packages[*]})"
  vty_group
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' own services are not used: tests start their daemons in namespaces.
for svc in frr bird; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
echo "deps: installed ${missing[*]}"
vty_group
