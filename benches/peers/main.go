// peer: one hashicorp/memberlist node for `cargo bench --bench peers`.
//
// It binds the gossip port, then obeys commands on stdin, one per line:
//
//	join ADDR:PORT   join the cluster through that member (prints "joined")
//	members          print the member list as this node sees it
//	quit             leave nothing behind: exit at once
//
// and reports on stdout, one JSON object per line:
//
//	{"ev":"ready","node":"n1"}
//	{"ev":"joined","node":"n2","contacted":1,"err":""}
//	{"ev":"join","node":"n3","alive":3}     a member became alive (NotifyJoin)
//	{"ev":"leave","node":"n3","alive":2}    a member was declared dead or left (NotifyLeave)
//	{"ev":"members","alive":["n1","n2"]}
//
// "alive" counts the members this node lists, itself included. End of stdin ends the process, so
// a crashed benchmark leaves no peer running. Built offline from Debian's packages:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o peer main.go
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func emit(v interface{}) {
	b, _ := json.Marshal(v)
	out.Lock()
	out.w.Write(b)
	out.w.WriteByte('\n')
	out.w.Flush()
	out.Unlock()
}

type events struct {
	sync.Mutex
	alive map[string]bool
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.Lock()
	e.alive[n.Name] = true
	k := len(e.alive)
	e.Unlock()
	emit(map[string]interface{}{"ev": "join", "node": n.Name, "alive": k})
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.Lock()
	delete(e.alive, n.Name)
	k := len(e.alive)
	e.Unlock()
	emit(map[string]interface{}{"ev": "leave", "node": n.Name, "alive": k})
}

func (e *events) NotifyUpdate(n *memberlist.Node) {}

func main() {
	name := flag.String("name", "", "node name")
	bind := flag.String("bind", "::", "bind address")
	port := flag.Int("port", 7947, "gossip port (UDP and TCP)")
	probe := flag.Duration("probe-interval", 0, "ProbeInterval (0: LAN default, 1s)")
	probeTimeout := flag.Duration("probe-timeout", 0, "ProbeTimeout (0: LAN default, 500ms)")
	gossip := flag.Duration("gossip-interval", 0, "GossipInterval (0: LAN default, 200ms)")
	suspicion := flag.Int("suspicion-mult", 0, "SuspicionMult (0: LAN default, 4)")
	meta := flag.Int("meta-bytes", 0, "bytes of node metadata to carry (at most 512)")
	key := flag.String("key", "", "SecretKey in hex (32 bytes: AES-256-GCM on every message, as stackring seals its gossip)")
	flag.Parse()

	conf := memberlist.DefaultLANConfig()
	conf.Name = *name
	conf.BindAddr = *bind
	conf.BindPort = *port
	conf.AdvertisePort = *port
	if *probe > 0 {
		conf.ProbeInterval = *probe
	}
	if *probeTimeout > 0 {
		conf.ProbeTimeout = *probeTimeout
	}
	if *gossip > 0 {
		conf.GossipInterval = *gossip
	}
	if *suspicion > 0 {
		conf.SuspicionMult = *suspicion
	}
	if *key != "" {
		secret, err := hex.DecodeString(*key)
		if err != nil {
			log.Fatalf("-key: %v", err)
		}
		conf.SecretKey = secret
	}
	conf.LogOutput = ioutil.Discard
	if os.Getenv("PEER_LOG") != "" {
		conf.LogOutput = os.Stderr
	}
	ev := &events{alive: map[string]bool{}}
	conf.Events = ev
	if *meta > 0 {
		conf.Delegate = &metaDelegate{meta: []byte(strings.Repeat("m", *meta))}
	}
	ml, err := memberlist.Create(conf)
	if err != nil {
		log.Fatalf("memberlist: %v", err)
	}
	emit(map[string]interface{}{"ev": "ready", "node": *name})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "join":
			go func(seeds []string) {
				// Retried as dskit retries join_members (a seed busy with many joiners).
				var n int
				var err error
				attempt := 1
				for ; attempt <= 5; attempt++ {
					if n, err = ml.Join(seeds); err == nil {
						break
					}
					time.Sleep(time.Second)
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				emit(map[string]interface{}{"ev": "joined", "node": *name, "contacted": n, "attempts": attempt, "err": msg})
			}(f[1:])
		case "members":
			var names []string
			for _, m := range ml.Members() {
				names = append(names, m.Name)
			}
			emit(map[string]interface{}{"ev": "members", "alive": names})
		case "quit":
			os.Exit(0)
		default:
			fmt.Fprintf(os.Stderr, "unknown command %q\n", f[0])
		}
	}
	// The benchmark is gone: do not linger.
	os.Exit(0)
}

type metaDelegate struct{ meta []byte }

func (d *metaDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return d.meta[:limit]
	}
	return d.meta
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}
