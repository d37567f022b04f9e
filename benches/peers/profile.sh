#!/bin/bash
# Callgrind profile of one stackring daemon (node1) in an N-node IPv6 cluster on a bridge.
# Usage (root): N=12 SECS=40 benches/peers/profile.sh (NODE_KEYS='' for the reachability prober on, as the bench's PEERS_REACH=1); then callgrind_annotate --inclusive=yes /tmp/cg/callgrind.out
mkdir -p "${OUT:-/tmp/cg}"
set -u
N=${N:-20}; SECS=${SECS:-60}; NODE_KEYS=${NODE_KEYS-reachability_interval: 0,}; B=${STACKRING:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/stackring}; P=cgp
cleanup() { for ns in $(ip netns list | awk '{print $1}' | grep "^$P"); do for p in $(ip netns pids $ns); do kill -9 $p 2>/dev/null; done; ip netns del $ns; rm -rf /etc/netns/$ns; done; }
trap cleanup EXIT
unset RUST_BACKTRACE
ip netns add ${P}lan; ip -n ${P}lan link add br0 type bridge; ip -n ${P}lan link set br0 type bridge mcast_snooping 0; ip -n ${P}lan link set br0 up
for i in $(seq 1 $N); do ns=$P$i; ip netns add $ns; mkdir -p /etc/netns/$ns; printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > /etc/netns/$ns/hosts
  ip -n $ns link set lo up; ip -n $ns link add eth0 type veth peer name p$i netns ${P}lan; ip -n ${P}lan link set p$i master br0; ip -n ${P}lan link set p$i up; ip -n $ns link set eth0 up
  ip -n $ns addr add 2001:db8:cc::$(printf %x $i)/64 dev eth0 nodad
  rm -rf /tmp/cg/$i; mkdir -p /tmp/cg/$i; printf "lifecycler: {id: node$i}\nnode: {$NODE_KEYS runtime_dir: /tmp/cg/$i/run, state_dir: /tmp/cg/$i/state}\n" > /tmp/cg/$i/c.yaml
  if [ $i = 1 ]; then ip netns exec $ns valgrind --tool=callgrind --callgrind-out-file=${OUT:-/tmp/cg}/callgrind.out $B --config /tmp/cg/$i/c.yaml serve 2>${OUT:-/tmp/cg}/node1.log &
  else ip netns exec $ns $B --config /tmp/cg/$i/c.yaml serve 2>/tmp/cg/$i/log & fi
done
for i in $(seq 1 $N); do for t in $(seq 1 300); do ip netns exec $P$i curl -sf -o /dev/null http://[::1]:3200/v1/identity && break; sleep 0.2; done; done
ip netns exec ${P}1 curl -sk -XPOST -H 'Content-Type: application/json' https://[::1]:9443/v1/bootstrap/create_cluster -d '{"action":"create_cluster","cluster":{"name":"cg"},"credentials":{"username":"admin","password":"correct horse"}}' >/dev/null
for i in $(seq 2 $N); do ip netns exec $P$i curl -sk -XPOST -H 'Content-Type: application/json' https://[::1]:9443/v1/bootstrap/join_cluster -d '{"action":"join_cluster","cluster":{"name":"cg","nodes":["2001:db8:cc::1"]},"credentials":{"username":"admin","password":"correct horse"}}' >/dev/null & done; wait_joins=$(jobs -p | wc -l)
sleep 20
ip netns exec ${P}1 curl -s http://[::1]:3200/v1/nodes | grep -o '"status":"[A-Z]*"' | sort | uniq -c
# Only the idle cluster is measured: the counts of the start and the joins are dropped.
callgrind_control --zero >/dev/null
sleep $SECS
kill -TERM $(ip netns pids ${P}1); sleep 5
