package main

// TestModel is TESTPLAN section 3's stateful model: rapid draws random
// sequences of publish, subscribe, disconnect, resume, revoke and
// kill-listener, runs them against two real instances on one database, and
// keeps an in-memory model of what every subscriber must have seen. After
// every step each open subscriber (SSE stream or long-poller) must hold:
//
//   - O2: only its own tenant's events, on its channels, byte for byte as
//     published (the data names the tenant: ids repeat across tenants);
//   - O3: ids strictly increasing across all its connections, with no
//     repeat: a resume names its last id, so nothing comes twice;
//   - O1: within deliveryWait, every event acknowledged on its channels
//     after the point where it first subscribed, across its incarnations
//     (a subscriber resumed on another instance or transport still owes
//     what was published while it was away).
//
// Every publish must also get the next ids of its tenant (gapless), and a
// stream whose signing key is revoked must end, with token_expired (SSE) or
// 401 (polling), within revokeBound.
//
// The default run is short, for make test: five sequences of about 40
// steps. For a longer hunt: -rapid.checks=100 -rapid.steps=50. A failure
// prints rapid's minimized sequence of steps, each logged in words; event
// ids there count from the sequence's start (#1 is a tenant's first event
// in it), so that replays on a database whose ids moved on read the same.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"pgregory.net/rapid"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/ssetest"
)

const (
	// deliveryWait bounds how long the check waits for events on their way.
	deliveryWait = 10 * time.Second
	// modelHeartbeat is the instances' heartbeat, which is also when a
	// stream checks that its signing key is still active.
	modelHeartbeat = time.Second
	// revokeBound is how long a stream may outlive its revoked signing key:
	// a heartbeat, the 5 s key cache, a held poll (2 s), and slack for a
	// loaded CI machine.
	revokeBound = modelHeartbeat + 5*time.Second + 2*time.Second + 5*time.Second
	// modelPollTimeout is how long a long-poll is held, in seconds.
	modelPollTimeout = "2"
)

var (
	modelTransports = []string{"sse", "poll"}
	modelSubjects   = []string{"u1", "u2"}
	// modelChannels are what publishers publish on; subscribers take
	// "a", "b" and their own user channel, so u2 must never see user:u1.
	modelChannels = []string{"a", "b", "user:u1", "user:u2"}
	modelGrants   = []string{"a", "b"}
)

func TestModel(t *testing.T) {
	// Short by default; flags given on the command line win. No fail file:
	// a real system does not replay exactly, and the seed says as much.
	rapidDefaults(map[string]string{"rapid.checks": "5", "rapid.steps": "40", "rapid.nofailfile": "true"})
	t.Parallel()
	env := newModelEnv(t)
	rapid.Check(t, func(rt *rapid.T) {
		m := env.newModel()
		rt.Cleanup(m.closeAll)
		rt.Repeat(map[string]func(*rapid.T){
			"publish":       m.publish,
			"subscribe":     m.subscribe,
			"disconnect":    m.disconnect,
			"resume":        m.resume,
			"revoke":        m.revoke,
			"kill-listener": m.killListener,
			"":              m.check,
		})
		m.awaitRevoked(rt)
	})
}

// rapidDefaults sets rapid's flags that the command line did not set. It
// runs before t.Parallel, while no other test runs.
func rapidDefaults(values map[string]string) {
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range values {
		if !given[name] {
			if err := flag.Set(name, v); err != nil {
				panic(err)
			}
		}
	}
}

// modelEnv is what the sequences share: two instances on one database, two
// tenants, and which listener backend belongs to which instance.
type modelEnv struct {
	t       *testing.T
	pool    *pgxpool.Pool
	ins     []*instance
	tenants []*modelTenant
	pids    []int32 // the listener backend of each instance, 0 when unknown
	killed  int32   // the backend killed last, which may linger a moment in pg_stat_activity

	firstFailure atomic.Pointer[string] // the particulars of the first failure rapid saw
}

type modelTenant struct {
	name   string
	apiKey string
	kid    string // the active signing key, which mints tokens
}

func newModelEnv(t *testing.T) *modelEnv {
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.Stream.Heartbeat = modelHeartbeat
	env := &modelEnv{t: t, pool: pool}
	t.Cleanup(func() {
		if d := env.firstFailure.Load(); d != nil && t.Failed() {
			t.Logf("the first failure rapid saw, before it minimized the sequence: %s", *d)
		}
	})
	// Start the instances one by one to learn their listeners' backends.
	for range 2 {
		in := newInstance(t, pool, cfg)
		env.ins = append(env.ins, in)
		var pid int32
		for _, p := range env.listenerPIDs(t) {
			if !slices.Contains(env.pids, p) {
				pid = p
			}
		}
		if pid == 0 {
			t.Fatalf("no listener backend for instance %d", len(env.ins))
		}
		env.pids = append(env.pids, pid)
	}
	for _, name := range []string{"Acme", "Globex"} {
		s := env.ins[0].signup(name)
		env.tenants = append(env.tenants, &modelTenant{
			name: name, apiKey: s.APIKey, kid: s.SigningKey.Kid,
		})
	}
	return env
}

// listenerPIDs returns the backends of this database's LISTEN connections.
func (env *modelEnv) listenerPIDs(t testing.TB) []int32 {
	rows, err := env.pool.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() ORDER BY pid`,
		realtime.ListenerAppName)
	if err != nil {
		t.Fatalf("list listeners: %v", err)
	}
	defer rows.Close()
	var pids []int32
	for rows.Next() {
		var p int32
		if err := rows.Scan(&p); err != nil {
			t.Fatalf("list listeners: %v", err)
		}
		pids = append(pids, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("list listeners: %v", err)
	}
	return pids
}

// model is one sequence's expectations.
type model struct {
	env     *modelEnv
	base    []int64                // per tenant: the head when the sequence began
	head    []int64                // per tenant: the last acknowledged id
	events  []map[int64]modelEvent // per tenant: what was acknowledged
	revoked []bool                 // per tenant: revoked in this sequence
	tokens  map[string]string      // tenant/subject/kid → token
	subs    []*modelSub            // in creation order
	serial  int                    // makes every event's data unique in the sequence
}

type modelEvent struct {
	channel string
	data    string
}

// modelSub is one subscriber across its connections.
type modelSub struct {
	name     string
	tenant   int
	subject  string
	channels []string
	kid      string  // the signing key of its current token
	start    int64   // where it first subscribed: O1 counts from here
	last     int64   // the last id it received, or start
	got      []int64 // every id received, in order
	seen     map[int64]bool
	conn     subConn // nil while disconnected
	revoked  time.Time
	history  []string
}

// subConn is one connection of a subscriber: an SSE stream or a long-poll loop.
type subConn interface {
	// take returns what arrived since the last call and, once the
	// connection has ended by itself, why ("" while it runs).
	take() (evs []envelope, ended string)
	close()
}

func (env *modelEnv) newModel() *model {
	m := &model{env: env, tokens: map[string]string{}}
	for _, ten := range env.tenants {
		var out struct{ ID string }
		env.ins[0].do("GET", "/v1/head", ten.apiKey, "").json(env.t, &out)
		h, _ := strconv.ParseInt(out.ID, 10, 64)
		m.base = append(m.base, h)
		m.head = append(m.head, h)
		m.events = append(m.events, map[int64]modelEvent{})
		m.revoked = append(m.revoked, false)
	}
	return m
}

// ins draws an instance; its logs number instances from 1.
func (m *model) ins(t *rapid.T, label string) int {
	return rapid.IntRange(0, len(m.env.ins)-1).Draw(t, label)
}

// tenant draws a tenant.
func (m *model) tenant(t *rapid.T) int {
	return rapid.IntRange(0, len(m.env.tenants)-1).Draw(t, "tenant")
}

// describe names a subscriber and its history, for failure messages.
func (m *model) describe(s *modelSub) string {
	return fmt.Sprintf("%s (%s, sub %s, channels %v, subscribed at #%d; %s)",
		s.name, m.env.tenants[s.tenant].name, s.subject, s.channels, m.rel(s.tenant, s.start), strings.Join(s.history, ", then "))
}

// fail fails the sequence with a message that names the failure but none
// of its particulars (which subscriber, which ids, which one noticed
// first), so that rapid, which keeps a shorter sequence only when it fails
// with the same message, can shrink a sequence on a real system whose
// timing varies. The particulars are logged, and shown with the minimized
// sequence; those of the first failure are also logged when the test ends.
func (m *model) fail(t *rapid.T, what, format string, args ...any) {
	t.Helper()
	details := fmt.Sprintf(format, args...)
	t.Logf("%s: %s", what, details)
	m.env.firstFailure.CompareAndSwap(nil, &details)
	t.Fatalf("%s", what)
}

// rel numbers ids from the tenant's head when the sequence began (#1 is
// its first event), so that a failure reads the same when rapid replays
// the sequence on a database whose ids have moved on: rapid keeps a
// smaller sequence only if it fails with the same message.
func (m *model) rel(ti int, id int64) int64 { return id - m.base[ti] }

func (m *model) rels(ti int, ids []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "#%d", m.rel(ti, id))
	}
	b.WriteByte(']')
	return b.String()
}

// publish sends a batch of 1–5 events through a random instance; the ids
// must be the tenant's next ones.
func (m *model) publish(t *rapid.T) {
	ti := m.tenant(t)
	in := m.ins(t, "instance")
	chans := rapid.SliceOfN(rapid.SampledFrom(modelChannels), 1, 5).Draw(t, "channels")
	ten := m.env.tenants[ti]
	var evs []string
	var datas []string
	for _, ch := range chans {
		m.serial++
		data := fmt.Sprintf(`{"tenant":%q,"n":%d}`, ten.name, m.serial)
		datas = append(datas, data)
		evs = append(evs, fmt.Sprintf(`{"channel":%q,"type":"m","data":%s}`, ch, data))
	}
	res := m.env.ins[in].do("POST", "/v1/events", ten.apiKey, `{"events":[`+strings.Join(evs, ",")+`]}`)
	if res.status != http.StatusCreated {
		t.Fatalf("publish through instance %d = %d %s", in+1, res.status, res.body)
	}
	var out struct{ IDs []string }
	res.json(m.env.t, &out)
	var ids []int64
	for i, s := range out.IDs {
		id, _ := strconv.ParseInt(s, 10, 64)
		ids = append(ids, id)
		if i < len(chans) {
			m.events[ti][id] = modelEvent{channel: chans[i], data: datas[i]}
		}
	}
	want := make([]int64, len(chans))
	for i := range want {
		want[i] = m.head[ti] + int64(i) + 1
	}
	if !slices.Equal(ids, want) {
		m.fail(t, "a publish got other ids than its tenant's next ones",
			"publish of %d events for %s through instance %d got ids %s, want the next ones %s", len(chans), ten.name, in+1, m.rels(ti, ids), m.rels(ti, want))
	}
	m.head[ti] = want[len(want)-1]
	t.Logf("publish: %s through instance %d, #%d..#%d (ids %d..%d) on %v", ten.name, in+1, m.rel(ti, want[0]), m.rel(ti, m.head[ti]), want[0], m.head[ti], chans)
}

// subscribe opens a new subscriber from now on.
func (m *model) subscribe(t *rapid.T) {
	ti := m.tenant(t)
	in := m.ins(t, "instance")
	transport := rapid.SampledFrom(modelTransports).Draw(t, "transport")
	subject := rapid.SampledFrom(modelSubjects).Draw(t, "subject")
	chans := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"a", "b", "user:" + subject}), 1, 3, rapid.ID[string]).Draw(t, "channels")
	s := &modelSub{
		name: fmt.Sprintf("s%d", len(m.subs)+1), tenant: ti, subject: subject, channels: chans,
		start: m.head[ti], last: m.head[ti], seen: map[int64]bool{},
	}
	m.subs = append(m.subs, s)
	m.open(t, s, in, transport, false)
	t.Logf("subscribe: %s", m.describe(s))
}

// open connects s on instance in: from its last id when resuming, else
// from now, which must be the head the model knows.
func (m *model) open(t *rapid.T, s *modelSub, in int, transport string, resume bool) {
	token := m.token(t, s)
	inst := m.env.ins[in]
	switch transport {
	case "sse":
		last := ""
		if resume {
			last = strconv.FormatInt(s.last, 10)
		}
		c, res, err := openModelSSE(inst, token, s.channels, last)
		if err != nil || c == nil {
			t.Fatalf("%s: SSE on instance %d = %d %s (%v)", s.name, in+1, res.status, res.body, err)
		}
		s.conn = c
		cursor, err := c.start()
		if err != nil || cursor != s.last {
			m.fail(t, "an SSE stream did not start where it asked to",
				"%s: SSE on instance %d starts at #%d (%v), want #%d", s.name, in+1, m.rel(s.tenant, cursor), err, m.rel(s.tenant, s.last))
		}
	case "poll":
		s.conn = startModelPoller(inst, token, s.channels, s.last)
	}
	s.history = append(s.history, fmt.Sprintf("%s on instance %d from #%d", transport, in+1, m.rel(s.tenant, s.last)))
}

// token returns a token for s signed with its tenant's active key.
func (m *model) token(t *rapid.T, s *modelSub) string {
	ten := m.env.tenants[s.tenant]
	key := ten.name + "/" + s.subject + "/" + ten.kid
	if tok, ok := m.tokens[key]; ok {
		s.kid = ten.kid
		return tok
	}
	b, _ := json.Marshal(map[string]any{"sub": s.subject, "channels": modelGrants, "ttl": 3600})
	res := m.env.ins[0].do("POST", "/v1/tokens", ten.apiKey, string(b))
	if res.status != http.StatusCreated {
		t.Fatalf("mint a token for %s = %d %s", s.name, res.status, res.body)
	}
	var out struct{ Token string }
	res.json(m.env.t, &out)
	m.tokens[key] = out.Token
	s.kid = ten.kid
	return out.Token
}

// disconnect closes a connected subscriber, as a client going away does.
func (m *model) disconnect(t *rapid.T) {
	s := m.draw(t, "disconnect", func(s *modelSub) bool { return s.conn != nil && s.revoked.IsZero() })
	m.update(t, s) // what arrived before the close counts
	s.conn.close()
	s.conn = nil
	s.history[len(s.history)-1] += fmt.Sprintf(" to #%d", m.rel(s.tenant, s.last))
	t.Logf("disconnect: %s", m.describe(s))
}

// resume reconnects a disconnected subscriber (or one whose key was
// revoked, once its stream has ended) with its last id, on a random
// instance and transport, with a fresh token when its key is gone.
func (m *model) resume(t *rapid.T) {
	s := m.draw(t, "resume", func(s *modelSub) bool { return s.conn == nil || !s.revoked.IsZero() })
	in := m.ins(t, "instance")
	transport := rapid.SampledFrom(modelTransports).Draw(t, "transport")
	if s.conn != nil { // revoked: wait for its stream to end
		for s.conn != nil {
			m.update(t, s)
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.revoked = time.Time{}
	m.open(t, s, in, transport, true)
	t.Logf("resume: %s", m.describe(s))
}

// draw picks one of the subscribers that ok accepts, or skips the action.
func (m *model) draw(t *rapid.T, what string, ok func(*modelSub) bool) *modelSub {
	var names []string
	var subs []*modelSub
	for _, s := range m.subs {
		if ok(s) {
			names = append(names, s.name)
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		t.Skip("no subscriber to " + what)
	}
	return subs[slices.Index(names, rapid.SampledFrom(names).Draw(t, "subscriber"))]
}

// revoke replaces a tenant's signing key: a new one, then the old one
// revoked. Streams on tokens of the old key must end within revokeBound.
// Once per tenant and sequence, which keeps a sequence's wait bounded.
func (m *model) revoke(t *rapid.T) {
	var names []string
	for i, ten := range m.env.tenants {
		if !m.revoked[i] {
			names = append(names, ten.name)
		}
	}
	if len(names) == 0 {
		t.Skip("every tenant's key was revoked already in this sequence") // before any draw: another action is drawn
	}
	name := rapid.SampledFrom(names).Draw(t, "tenant")
	ti := slices.IndexFunc(m.env.tenants, func(ten *modelTenant) bool { return ten.name == name })
	in := m.ins(t, "instance")
	m.revoked[ti] = true
	ten := m.env.tenants[ti]
	inst := m.env.ins[in]
	res := inst.do("POST", "/v1/signing-keys", ten.apiKey, "")
	if res.status != http.StatusCreated {
		t.Fatalf("create a signing key = %d %s", res.status, res.body)
	}
	var k struct{ Kid string }
	res.json(m.env.t, &k)
	old := ten.kid
	if res := inst.do("DELETE", "/v1/signing-keys/"+old, ten.apiKey, ""); res.status != http.StatusNoContent {
		t.Fatalf("revoke signing key %s = %d %s", old, res.status, res.body)
	}
	ten.kid = k.Kid
	now := time.Now()
	var hit []string
	for _, s := range m.subs {
		if s.tenant == ti && s.kid == old && s.conn != nil {
			s.revoked = now
			hit = append(hit, s.name)
		}
	}
	t.Logf("revoke: %s's signing key %s through instance %d; streams that must end: %v", ten.name, old, in+1, hit)
}

// killListener terminates one instance's LISTEN backend, as
// TestListenerKilled does, but only that instance's.
func (m *model) killListener(t *rapid.T) {
	i := m.ins(t, "instance")
	env := m.env
	pids := env.bothListening(t)
	// Whose backend is whose: the one we know, or the one that is not the
	// other instance's. When neither is known (a listener reconnected on
	// its own), kill one and let the logs say whose it was.
	victim, sure := pids[0], false
	switch {
	case slices.Contains(pids, env.pids[i]):
		victim, sure = env.pids[i], true
	case slices.Contains(pids, env.pids[1-i]):
		for _, p := range pids {
			if p != env.pids[1-i] {
				victim, sure = p, true
			}
		}
	}
	const lost = "listener lost its connection"
	before := make([]int, len(env.ins))
	for j, in := range env.ins {
		before[j] = strings.Count(in.logs.String(), lost)
	}
	var killed bool
	err := env.pool.QueryRow(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2 AND datname = current_database()`,
		victim, realtime.ListenerAppName).Scan(&killed)
	if err != nil || !killed {
		t.Fatalf("kill-listener: terminate backend %d: %v (terminated: %v)", victim, err, killed)
	}
	// The instance that logs the loss is the one whose listener it was.
	owner := -1
	for deadline := time.Now().Add(10 * time.Second); owner < 0; time.Sleep(5 * time.Millisecond) {
		for j, in := range env.ins {
			if strings.Count(in.logs.String(), lost) > before[j] {
				owner = j
			}
		}
		if owner < 0 && time.Now().After(deadline) {
			t.Fatalf("kill-listener: no instance noticed within 10 s that its listener backend %d was terminated", victim)
		}
	}
	if sure && owner != i {
		t.Fatalf("kill-listener: backend %d was instance %d's listener, but instance %d noticed its loss", victim, i+1, owner+1)
	}
	// The owner reconnects with a backend learnt at the next kill; the
	// other backend is the other instance's.
	for _, p := range pids {
		if p != victim {
			env.pids[1-owner] = p
		}
	}
	env.pids[owner] = 0
	env.killed = victim
	t.Logf("kill-listener: terminated the LISTEN backend %d of instance %d", victim, owner+1)
}

// bothListening waits until both instances listen, so that a kill hits a
// live listener, and returns their backends.
func (env *modelEnv) bothListening(t *rapid.T) []int32 {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := slices.DeleteFunc(env.listenerPIDs(env.t), func(p int32) bool { return p == env.killed })
		if len(pids) == len(env.ins) && env.ins[0].svc.hub.Listening() && env.ins[1].svc.hub.Listening() {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("kill-listener: the listeners are not both back 15 s after the last kill (backends %v)", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check is run after every step: O2 and O3 at once for what has arrived,
// O1 once what is on its way has had deliveryWait to arrive.
func (m *model) check(t *rapid.T) {
	deadline := time.Now().Add(deliveryWait)
	for {
		var late []string
		for _, s := range m.subs {
			if missing := m.update(t, s); len(missing) > 0 {
				late = append(late, fmt.Sprintf("%s is missing %s; it received %s", m.describe(s), m.rels(s.tenant, head(missing, 20)), m.rels(s.tenant, tail(s.got, 20))))
			}
		}
		if len(late) == 0 {
			return
		}
		if time.Now().After(deadline) {
			m.fail(t, fmt.Sprintf("O1 loss: acknowledged events not delivered within %v", deliveryWait), "%s", strings.Join(late, "\n  "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// update takes what s's connection received, checks it (O2, O3), handles
// the connection's end, and returns the acknowledged ids s still misses
// (O1), or none while its key's revocation may end it at any time.
func (m *model) update(t *rapid.T, s *modelSub) []int64 {
	if s.conn == nil {
		return nil
	}
	evs, ended := s.conn.take()
	for _, e := range evs {
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil {
			t.Fatalf("%s received event id %q, not a number", m.describe(s), e.ID)
		}
		want, ok := m.events[s.tenant][id]
		switch {
		case !ok:
			m.fail(t, "O2: a subscriber received an event its tenant did not publish",
				"%s received #%d on %q (%s), which its tenant never published in this sequence", m.describe(s), m.rel(s.tenant, id), e.Channel, e.Data)
		case want.channel != e.Channel || want.data != string(e.Data):
			m.fail(t, "O2: a subscriber received an event other than what was published",
				"%s received #%d as %q %s, published as %q %s", m.describe(s), m.rel(s.tenant, id), e.Channel, e.Data, want.channel, want.data)
		case !slices.Contains(s.channels, e.Channel):
			m.fail(t, "O2: a subscriber received an event on a channel it did not subscribe to",
				"%s received #%d on channel %q, which it did not subscribe to", m.describe(s), m.rel(s.tenant, id), e.Channel)
		case id <= s.last:
			m.fail(t, "O3: a subscriber received an id not above the last one",
				"%s received #%d after #%d", m.describe(s), m.rel(s.tenant, id), m.rel(s.tenant, s.last))
		}
		s.got = append(s.got, id)
		s.seen[id] = true
		s.last = id
	}
	if ended != "" {
		revoked := !s.revoked.IsZero()
		if !revoked || (ended != "token_expired" && ended != "401 invalid_token") {
			m.fail(t, "a subscriber's connection ended though nothing should have ended it",
				"%s: its connection ended (%s) though nothing should have ended it (signing key revoked: %v)", m.describe(s), ended, revoked)
		}
		s.conn.close()
		s.conn = nil
		s.history[len(s.history)-1] += fmt.Sprintf(" to #%d, ended by %s after its key's revocation", m.rel(s.tenant, s.last), ended)
		t.Logf("%s ended by %s %v after its key's revocation", s.name, ended, time.Since(s.revoked).Round(time.Millisecond))
		return nil
	}
	if !s.revoked.IsZero() {
		if time.Since(s.revoked) > revokeBound {
			m.fail(t, fmt.Sprintf("a stream outlived the revocation of its signing key by more than %v", revokeBound),
				"%s outlived the revocation of its signing key by more than %v", m.describe(s), revokeBound)
		}
		return nil
	}
	var missing []int64
	for id, e := range m.events[s.tenant] {
		if id > s.start && !s.seen[id] && slices.Contains(s.channels, e.channel) {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return missing
}

// awaitRevoked ends a sequence: every stream of a revoked key must end
// within revokeBound, even if no later step looked.
func (m *model) awaitRevoked(t *rapid.T) {
	for {
		waiting := false
		for _, s := range m.subs {
			m.update(t, s)
			if s.conn != nil && !s.revoked.IsZero() {
				waiting = true
			}
		}
		if !waiting {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closeAll closes every connection when a sequence ends, passed or failed.
func (m *model) closeAll() {
	for _, s := range m.subs {
		if s.conn != nil {
			s.conn.close()
			s.conn = nil
		}
	}
}

func tail(ids []int64, n int) []int64 {
	if len(ids) > n {
		return ids[len(ids)-n:]
	}
	return ids
}

// modelSSE is an SSE client that records what it receives. (The helper's
// stream buffers 100,000 events per stream; a sequence opens dozens.)
type modelSSE struct {
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan int64 // the cursor of the ready event

	mu      sync.Mutex
	evs     []envelope
	expired bool   // token_expired arrived
	bad     string // a frame that should not be there
}

// openModelSSE opens a stream, or returns the refusal.
func openModelSSE(in *instance, token string, channels []string, lastEventID string) (*modelSSE, response, error) {
	u := in.url + "/api/realtime/sse?channels=" + url.QueryEscape(strings.Join(channels, ","))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, response{}, err
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		refused := response{status: res.StatusCode, header: res.Header, body: body}
		oraclesOf(in.t).checkResponse("subscribe", refused)
		return nil, refused, nil
	}
	c := &modelSSE{cancel: cancel, done: make(chan struct{}), ready: make(chan int64, 1)}
	go c.read(res.Body)
	return c, response{status: res.StatusCode, header: res.Header}, nil
}

func (c *modelSSE) read(body io.ReadCloser) {
	defer close(c.done)
	defer body.Close()
	_ = ssetest.Read(context.Background(), body, func(e ssetest.Event) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch e.Type {
		case "ready":
			var d struct{ Cursor string }
			_ = json.Unmarshal([]byte(e.Data), &d)
			n, err := strconv.ParseInt(d.Cursor, 10, 64)
			if err != nil {
				c.bad = fmt.Sprintf("ready event %q has no cursor", e.Data)
			}
			select {
			case c.ready <- n:
			default:
				c.bad = "a second ready event"
			}
		case "token_expired":
			c.expired = true
		case "resync":
			c.bad = "resync, though nothing was pruned"
		default:
			var env envelope
			if err := json.Unmarshal([]byte(e.Data), &env); err != nil || env.ID != e.ID || env.Type != e.Type {
				c.bad = fmt.Sprintf("event id %q type %q with data %.200q, not its envelope", e.ID, e.Type, e.Data)
			}
			c.evs = append(c.evs, env)
		}
		return true
	})
}

// start waits for the ready event and returns its cursor.
func (c *modelSSE) start() (int64, error) {
	select {
	case n := <-c.ready:
		return n, nil
	case <-c.done:
		return 0, fmt.Errorf("the stream ended before its ready event")
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("no ready event within 10 s")
	}
}

func (c *modelSSE) take() ([]envelope, string) {
	ended := false
	select {
	case <-c.done: // what it read is all recorded by now
		ended = true
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	evs := c.evs
	c.evs = nil
	switch {
	case c.bad != "":
		return evs, c.bad
	case !ended:
		return evs, ""
	case c.expired:
		return evs, "token_expired"
	default:
		return evs, "the stream closed without token_expired"
	}
}

func (c *modelSSE) close() {
	c.cancel()
	<-c.done
}

// modelPoller is a long-polling client: it polls from its cursor until closed,
// or until an answer other than 200 ends it.
type modelPoller struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	evs   []envelope
	ended string
}

func startModelPoller(in *instance, token string, channels []string, cursor int64) *modelPoller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &modelPoller{cancel: cancel, done: make(chan struct{})}
	go p.run(ctx, in, token, channels, cursor)
	return p
}

func (p *modelPoller) run(ctx context.Context, in *instance, token string, channels []string, cursor int64) {
	defer close(p.done)
	base := in.url + "/api/realtime/polling?timeout=" + modelPollTimeout + "&channels=" + url.QueryEscape(strings.Join(channels, ","))
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"&cursor="+strconv.FormatInt(cursor, 10), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		if err != nil {
			if ctx.Err() == nil {
				p.end("poll failed: " + err.Error())
			}
			return
		}
		if res.StatusCode != http.StatusOK {
			oraclesOf(in.t).checkResponse("poll", response{status: res.StatusCode, header: res.Header, body: body})
			var problem struct{ Code string }
			_ = json.Unmarshal(body, &problem)
			p.end(fmt.Sprintf("%d %s", res.StatusCode, problem.Code))
			return
		}
		var out pollResult
		if err := json.Unmarshal(body, &out); err != nil {
			p.end(fmt.Sprintf("poll answer %.200s is not JSON: %v", body, err))
			return
		}
		next, err := strconv.ParseInt(out.Cursor, 10, 64)
		switch {
		case out.Resync:
			p.end("resync")
			return
		case err != nil || next < cursor:
			p.end(fmt.Sprintf("poll from %d answered cursor %q", cursor, out.Cursor))
			return
		}
		p.mu.Lock()
		p.evs = append(p.evs, out.Events...)
		p.mu.Unlock()
		cursor = next
	}
}

func (p *modelPoller) end(why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = why
}

func (p *modelPoller) take() ([]envelope, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.evs
	p.evs = nil
	return evs, p.ended
}

func (p *modelPoller) close() {
	p.cancel()
	<-p.done
}
