#!/bin/bash
# CPU of one join (on the seed and on the joiner) and of one GET /v1/nodes, for two builds of
# stackring, interleaved over 3 repetitions (as root; namespaces jcbr, jcn1, jcn2; bounded loops).
# CPU is the sum of every living thread's /proc/PID/task/*/schedstat (ns), finer than the 10 ms
# ticks of /proc/PID/stat; the GET cost has the idle (gossip) rate subtracted.
#   benches/cluster/joincost.sh BEFORE_BINARY AFTER_BINARY
# README "With security on, beside the build before it" quotes its output
# (docs/bench/cluster-security-2026-11-29-joincost.txt).
set -u
BEFORE=$1
AFTER=$2
cpu() { cat /proc/$1/task/*/schedstat | awk '{s+=$1} END {printf "%d\n", s/1000}'; }  # microseconds, living threads
post() { # ns tls path body
  if [ "$2" = 1 ]; then url="https://[::1]:9443$3"; else url="http://[::1]:3200$3"; fi
  ip netns exec $1 curl -s -k -m 30 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$4" "$url"
}
okcount() { ip netns exec $1 curl -s -m 5 http://[::1]:3200/v1/nodes | grep -o '"status":"OK"' | wc -l; }
one() { # label binary rep
  local label=$1 bin=$2 rep=$3 d=${TMPDIR:-/tmp}/stackring-joincost-$1-$3
  rm -rf $d; mkdir -p $d
  ip netns add jcbr; ip -n jcbr link add br0 type bridge; ip -n jcbr link set br0 up
  for i in 1 2; do
    ip netns add jcn$i; ip -n jcn$i link set lo up
    mkdir -p /etc/netns/jcn$i; printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/netns/jcn$i/hosts
    ip -n jcn$i link add eth0 type veth peer name p$i netns jcbr
    ip -n jcbr link set p$i master br0; ip -n jcbr link set p$i up; ip -n jcn$i link set eth0 up
    ip -n jcn$i addr add 2001:db8:77::$i/64 dev eth0 nodad
    mkdir -p $d/n$i
    printf "lifecycler: {id: node$i}\nnode: {runtime_dir: '$d/n$i/run', state_dir: '$d/n$i/state'}\n" > $d/n$i/config.yaml
  done
  ip netns exec jcn1 $bin --config $d/n1/config.yaml serve >/dev/null 2>&1 & P1=$!
  ip netns exec jcn2 $bin --config $d/n2/config.yaml serve >/dev/null 2>&1 & P2=$!
  for t in $(seq 100); do ip netns exec jcn2 curl -s -m 1 -o /dev/null http://[::1]:3200/v1/identity && ip netns exec jcn1 curl -s -m 1 -o /dev/null http://[::1]:3200/v1/identity && break; sleep 0.1; done
  tls=0; ip netns exec jcn1 bash -c 'exec 3<>/dev/tcp/::1/9443' 2>/dev/null && tls=1
  sleep 1
  a1=$(cpu $P1)
  c=$(post jcn1 $tls /v1/bootstrap/create_cluster '{"action":"create_cluster","cluster":{"name":"bench"},"credentials":{"username":"admin","password":"correct horse"}}')
  sleep 1
  b1=$(cpu $P1); b2=$(cpu $P2)
  j=$(post jcn2 $tls /v1/bootstrap/join_cluster '{"action":"join_cluster","cluster":{"name":"bench","nodes":["2001:db8:77::1"]},"credentials":{"username":"admin","password":"correct horse"}}')
  for t in $(seq 100); do [ "$(okcount jcn2)" -ge 2 ] && [ "$(okcount jcn1)" -ge 2 ] && break; sleep 0.1; done
  sleep 3
  c1=$(cpu $P1); c2=$(cpu $P2)
  # idle 10 s, then 300 GETs of /v1/nodes on node2 (curl's own CPU is not the daemon's)
  sleep 2; i0=$(cpu $P2); s0=$(date +%s%N); sleep 10; i2=$(cpu $P2); s1=$(date +%s%N)
  ip netns exec jcn2 python3 "$(dirname "$0")/poll.py" 1000
  g2=$(cpu $P2); s2=$(date +%s%N)
  idle_rate=$(( (i2-i0) * 1000000000 / (s1-s0) ))   # us of CPU per s
  poll_us=$(( ( (g2-i2) - idle_rate * (s2-s1) / 1000000000 ) / 1000 ))
  echo "$label rep$rep tls=$tls create=$c join=$j  create(seed)=$(((b1-a1)/1000))ms  join+3s: seed=$(((c1-b1)/1000))ms joiner=$(((c2-b2)/1000))ms  idle=${idle_rate}us/s  per GET /v1/nodes=${poll_us}us RSS=$(grep VmRSS /proc/$P2/status | awk '{print $2}')kB"
  kill -9 $P1 $P2; wait $P1 $P2 2>/dev/null
  ip netns del jcn1; ip netns del jcn2; ip netns del jcbr; rm -rf /etc/netns/jcn1 /etc/netns/jcn2 $d
}
for rep in 1 2 3; do
  if [ $((rep % 2)) = 1 ]; then one before $BEFORE $rep; one after $AFTER $rep; else one after $AFTER $rep; one before $BEFORE $rep; fi
done
