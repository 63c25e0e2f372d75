#!/usr/bin/env bash
# Installs tern's build and test dependencies from Debian 12's packages (run as root; non-interactive).
# openssl (the CLI): scripts/tern-certs.sh, used by scripts/cluster.sh and the cluster tests.
# psmisc: fuser, used by the README quickstart to kill a node; libcli11-dev, nlohmann-json3-dev
# and libedit-dev: the tern CLI (client/cli/). faketime, libfiu-dev, fiu-utils and nftables:
# tern-jepsen's clock, disk and network nemeses (docs/jepsen.md; iproute2 makes the namespaces).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake make ninja-build pkg-config ca-certificates git python3 curl procps iproute2 \
  libasio-dev capnproto libcapnp-dev libspdlog-dev libfmt-dev librapidcheck-dev \
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libtomlplusplus-dev \
  nlohmann-json3-dev libxxhash-dev libzstd-dev libexpected-dev libedit-dev libssl-dev openssl psmisc \
  faketime libfiu-dev fiu-utils nftables >/dev/null
echo "install-deps: ok"
