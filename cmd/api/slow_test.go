package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestSlowConsumer: a client that stops reading is cut off within the write
// deadline; the hub never waits for it, and a normal subscriber on the same
// channel gets every event.
func TestSlowConsumer(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	cfg := testConfig()
	cfg.Stream.WriteTimeout = 8 * time.Second
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", nil, 600)

	fast := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok})
	fast.connID()

	// 9 MiB of events a round: more than twice what the socket buffers hold
	// (a send buffer grows to 4 MiB at most here, tcp_wmem).
	big := strings.Repeat("x", 60<<10)
	var batch []string
	for range 16 {
		batch = append(batch, `{"channel":"broadcast","type":"big","data":"`+big+`"}`)
	}
	publishRound := func() time.Duration {
		start := time.Now()
		for range 9 {
			p.events(`{"events":[` + strings.Join(batch, ",") + `]}`)
		}
		return time.Since(start)
	}
	// The baseline: the same round with no stalled client, on the same
	// machine and at the same load, so the comparison is not a timing guess.
	baseline := publishRound()
	fast.collect(9*16, 30*time.Second)

	// The slow client: a tiny receive buffer, and it never reads.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(in.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/realtime/sse?channels=broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok)
	for deadline := time.Now().Add(5 * time.Second); in.svc.registry.Count() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow client never connected")
		}
	}

	// Had the hub waited on the stalled stream, a publish would have taken
	// the write timeout (8 s) before the stream was cut off.
	if took := publishRound(); took > 2*baseline+4*time.Second {
		t.Errorf("publishing took %v with a stalled subscriber, %v without: the publisher waited on it", took, baseline)
	} else {
		t.Logf("publishing took %v with a stalled subscriber, %v without", took, baseline)
	}
	fast.collect(9*16, 20*time.Second)

	// The slow one is cut off: only the fast stream remains.
	for deadline := time.Now().Add(15 * time.Second); in.svc.registry.Count() != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("slow client still connected 15 s after the publishes (%d connections)", in.svc.registry.Count())
		}
	}
}
