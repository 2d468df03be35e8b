package main

// The real Pusher clients, for the tests of the Pusher door: pusher-js in
// Node (testdata/pusher/client.mjs), Laravel Echo on pusher-js (echo.mjs),
// the Node server library (server.mjs), the official Go server library
// (goserver/, a module of its own) and pusher-js's web build in Chromium
// (browser.html, served by pusherPageHandler). The JavaScript packages are
// pinned in testdata/pusher/package-lock.json; scripts/test.sh installs them.
//
// The long-running drivers take JSON-line commands and report JSON lines;
// the comment at the top of each .mjs lists both. The lines a test mostly
// waits for:
//
//	{"kind":"ready"}                                  reading commands
//	{"kind":"state","state":"connected","previous":…,"socketId":"1.2"}
//	{"kind":"subscribed","channel":…,"members":{id:info},"me":{"id","info"},"count":n}   (members… for presence)
//	{"kind":"subscription_error","channel":…,"type":"AuthError","status":401,"error":…}
//	{"kind":"event","channel":…,"event":…,"data":…,"id":…,"userId":…}   (id, userId when the frame has them)
//	{"kind":"error","error":{"code":4009,"message":…},"channel":…}        (a pusher:error frame)
//	{"kind":"closed","code":4009,"reason":…}            (the WebSocket closed)
//	{"kind":"done","op":…,"result":…} / {"kind":"fail","op":…,"error":…}   (each command)
//	{"kind":"exception","error":…}                     (thrown inside pusher-js; the driver goes on)
//	echo.mjs also: here {channel, users}, joining/leaving {channel, user}, whisper {channel, event, data}
//	FRAMES=1 in pusherConfig.Env adds {"kind":"frame","frame":"<raw text>"} and {"kind":"sent",…}.
//
// TestPusherDriversSoketi checks all of it against Soketi when SOKETI_URL is
// set (bench/soketi/check-drivers.sh starts Soketi and runs it); without
// SOKETI_URL it returns at once, as Soketi is not part of make test.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// pusherConfig says where the drivers connect and as which app.
type pusherConfig struct {
	Host   string // 127.0.0.1 when empty
	Port   int
	TLS    bool
	AppID  string
	Key    string
	Secret string
	// Env is more of the drivers' environment: FRAMES=1,
	// PUSHER_OPTIONS={"activityTimeout":2000}, ENCRYPTION_MASTER_KEY=…,
	// pusherTrust(t, srv) (to trust a TLS test server's certificate).
	Env []string
}

// pusherConfigAt is the configuration for a server at rawURL
// (http://host:port or https://…), as an app with these credentials.
func pusherConfigAt(t *testing.T, rawURL, appID, key, secret string) pusherConfig {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("pusherConfigAt(%q): %v", rawURL, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("pusherConfigAt(%q): no port", rawURL)
	}
	return pusherConfig{Host: u.Hostname(), Port: port, TLS: u.Scheme == "https" || u.Scheme == "wss",
		AppID: appID, Key: key, Secret: secret}
}

func (c pusherConfig) environ() []string {
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	tls := "0"
	if c.TLS {
		tls = "1"
	}
	return append(append(os.Environ(), "HOST="+host, "PORT="+strconv.Itoa(c.Port), "TLS="+tls,
		"APP_ID="+c.AppID, "KEY="+c.Key, "SECRET="+c.Secret), c.Env...)
}

// pusherTrust is the environment entry that makes the drivers (Node and Go) trust
// srv's certificate (a TLS httptest server), for pusherConfig.Env with TLS.
func pusherTrust(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, block, 0o644); err != nil {
		t.Fatal(err)
	}
	return "NODE_EXTRA_CA_CERTS=" + path
}

// pusherDir is testdata/pusher, with its packages installed.
func pusherDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "pusher"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pusher-js", "package.json")); err != nil {
		t.Fatalf("the Pusher clients are not installed: run `npm ci` in %s (scripts/test.sh does): %v", dir, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (.ci/run installs nodejs): %v", err)
	}
	return dir
}

// pusherJS is one long-running driver process (client.mjs or echo.mjs).
type pusherJS struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	exited chan struct{} // closed when stdout ends: the process is gone

	key        string          // the app key, for O2
	subscribed map[string]bool // channels reported subscribed, for O2

	mu    sync.Mutex
	all   []map[string]any
	taken []bool        // lines already returned by waitFor
	more  chan struct{} // closed and replaced at each new line
}

// startPusherJS starts a pusher-js client (client.mjs), which connects at
// once, and waits until it reads commands. It ends at the test's cleanup.
func startPusherJS(t *testing.T, cfg pusherConfig) *pusherJS {
	return startPusherDriver(t, "client.mjs", cfg)
}

// startLaravelEcho starts a Laravel Echo client (echo.mjs), likewise.
func startLaravelEcho(t *testing.T, cfg pusherConfig) *pusherJS {
	return startPusherDriver(t, "echo.mjs", cfg)
}

func startPusherDriver(t *testing.T, script string, cfg pusherConfig) *pusherJS {
	t.Helper()
	p := &pusherJS{t: t, name: script, key: cfg.Key, stderr: &syncBuffer{}, exited: make(chan struct{}), more: make(chan struct{})}
	p.cmd = exec.Command("node", script)
	p.cmd.Dir = pusherDir(t)
	p.cmd.Env = cfg.environ()
	p.cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting node %s: %v", script, err)
	}
	go p.read(stdout)
	t.Cleanup(p.stop)
	p.waitFor(pusherLine("ready"), 20*time.Second)
	return p
}

func (p *pusherJS) read(stdout io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			line = map[string]any{"kind": "stdout", "text": sc.Text()}
		}
		p.check(line)
		p.mu.Lock()
		p.all = append(p.all, line)
		p.taken = append(p.taken, false)
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
}

// check is O2 for a driver's line: an event on a channel the driver
// subscribed to, its tenant's as published (see checkPusherEvent).
func (p *pusherJS) check(line map[string]any) {
	channel, _ := line["channel"].(string)
	event, _ := line["event"].(string)
	switch {
	case line["kind"] == "subscribed":
		p.mu.Lock()
		if p.subscribed == nil {
			p.subscribed = map[string]bool{}
		}
		p.subscribed[channel] = true
		p.mu.Unlock()
	case line["kind"] == "event" && channel != "" && !strings.HasPrefix(event, "pusher:") && !strings.HasPrefix(event, "."):
		p.mu.Lock()
		subscribed := p.subscribed[channel]
		p.mu.Unlock()
		id, _ := line["id"].(string)
		data, _ := json.Marshal(line["data"])
		checkPusherEvent(p.t, p.name, p.key, subscribed, channel, event, id, data)
	}
}

// stop closes stdin, on which the driver exits; it is killed if it has not
// within 5 s.
func (p *pusherJS) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
	}
	p.cmd.Wait()
}

// kill ends the driver at once (SIGKILL): its connection ends without a
// close frame, as when a browser crashes.
func (p *pusherJS) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// send writes one command.
func (p *pusherJS) send(cmd map[string]any) {
	p.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: sending %s: %v\n%s", p.name, b, err, p.transcript())
	}
}

// do sends a command and waits for its done line, whose result it returns;
// the test fails if the command failed.
func (p *pusherJS) do(cmd map[string]any) any {
	p.t.Helper()
	p.send(cmd)
	line := p.waitFor(func(l map[string]any) bool {
		return (l["kind"] == "done" || l["kind"] == "fail") && l["op"] == cmd["op"]
	}, 10*time.Second)
	if line["kind"] == "fail" {
		p.t.Fatalf("%s: %v failed: %v", p.name, cmd, line["error"])
	}
	return line["result"]
}

// waitFor returns the first line, in the order reported, that pred accepts
// and that no earlier waitFor returned (so waiting twice for "subscribed"
// sees the second subscription). It fails the test after timeout, or when
// the driver exits first.
func (p *pusherJS) waitFor(pred func(line map[string]any) bool, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.all); seen++ {
			if !p.taken[seen] && pred(p.all[seen]) {
				p.taken[seen] = true
				line := p.all[seen]
				p.mu.Unlock()
				return line
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.exited:
			p.mu.Lock()
			done := seen == len(p.all)
			p.mu.Unlock()
			if done {
				p.t.Fatalf("%s exited before the line waited for\n%s", p.name, p.transcript())
			}
		case <-deadline:
			p.t.Fatalf("%s: no such line within %v\n%s", p.name, timeout, p.transcript())
		}
	}
}

// socketID waits for the connection and returns its socket id.
func (p *pusherJS) socketID() string {
	p.t.Helper()
	line := p.waitFor(pusherLine("state", "state", "connected"), 10*time.Second)
	id, _ := line["socketId"].(string)
	return id
}

// lines is every line so far.
func (p *pusherJS) lines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.all...)
}

func (p *pusherJS) transcript() string {
	var b strings.Builder
	for _, l := range p.lines() {
		j, _ := json.Marshal(l)
		fmt.Fprintf(&b, "  %s\n", j)
	}
	return fmt.Sprintf("%s's lines:\n%s%s's stderr:\n%s", p.name, b.String(), p.name, p.stderr.String())
}

// pusherLine accepts the lines of kind whose fields equal the given values
// (pairs of name and value, compared as JSON), e.g.
// pusherLine("event", "channel", "news", "data", map[string]any{"n": 1}).
func pusherLine(kind string, fields ...any) func(line map[string]any) bool {
	want := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		b, _ := json.Marshal(fields[i+1])
		want[fmt.Sprint(fields[i])] = string(b)
	}
	return func(line map[string]any) bool {
		if line["kind"] != kind {
			return false
		}
		for k, v := range want {
			if b, _ := json.Marshal(line[k]); string(b) != v {
				return false
			}
		}
		return true
	}
}

// runPusherServer makes one call of the Node server library (see
// server.mjs) and returns its line: {"status","body"}, {"result"} or
// {"error":{"status","body","message"}}.
func runPusherServer(t *testing.T, cfg pusherConfig, call map[string]any) map[string]any {
	t.Helper()
	line, err := pusherCall(cfg, []string{"node", "server.mjs"}, pusherDir(t), call)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// runPusherGo makes one call of the official Go server library (see
// goserver/main.go: trigger, triggerBatch, channels, channel, users) and
// returns its line, as runPusherServer does.
func runPusherGo(t *testing.T, cfg pusherConfig, call map[string]any) map[string]any {
	t.Helper()
	line, err := pusherCall(cfg, []string{"go", "run", "."}, filepath.Join(pusherDir(t), "goserver"), call)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func pusherCall(cfg pusherConfig, argv []string, dir string, call map[string]any) (map[string]any, error) {
	b, err := json.Marshal(call)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // go run may build first
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], string(b))...)
	cmd.Dir = dir
	cmd.Env = cfg.environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), b, err, stdout.String(), stderr.String())
	}
	var line map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &line); err != nil {
		return nil, fmt.Errorf("%s %s printed no JSON line: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), b, err, stdout.String(), stderr.String())
	}
	return line, nil
}

// waitPageResult returns the first of browser.html's window.results that
// pred accepts, waiting up to 15 s for it.
func waitPageResult(t *testing.T, ctx context.Context, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	var results []map[string]any
	for range 150 {
		var err error
		if results, err = chromedp.Run(ctx, chromedp.Evaluate[[]map[string]any](`window.results`)); err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if pred(r) {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no such result in the page within 15 s: %v", results)
	return nil
}

// pusherPageHandler serves browser.html at /, pusher-js's web builds beside
// it (/pusher.min.js, /pusher-with-encryption.min.js) and the endpoints an
// app's backend would: POST /pusher/auth (channel authorization) and POST
// /pusher/user-auth (user authentication), signed by the Node server
// library. The user (of presence channels and sign-in) is the form's
// user_id and user_info (JSON), which the page sends when connect's params
// carry them.
func pusherPageHandler(t *testing.T, cfg pusherConfig) http.Handler {
	dir := pusherDir(t)
	web := filepath.Join(dir, "node_modules", "pusher-js", "dist", "web")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "browser.html"))
	})
	for _, name := range []string{"pusher.min.js", "pusher-with-encryption.min.js"} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(web, name))
		})
	}
	sign := func(w http.ResponseWriter, r *http.Request, call map[string]any) {
		var user map[string]any
		channel := r.PostFormValue("channel_name")
		if id := r.PostFormValue("user_id"); id != "" && (channel == "" || strings.HasPrefix(channel, "presence-")) {
			var info any
			if s := r.PostFormValue("user_info"); s != "" {
				if err := json.Unmarshal([]byte(s), &info); err != nil {
					http.Error(w, "user_info is not JSON", http.StatusBadRequest)
					return
				}
			}
			user = map[string]any{"user_id": id, "user_info": info}
			if call["call"] == "authenticateUser" {
				user = map[string]any{"id": id, "user_info": info}
			}
		}
		call["socketId"] = r.PostFormValue("socket_id")
		call["user"] = user
		line, err := pusherCall(cfg, []string{"node", "server.mjs"}, dir, call)
		if err != nil || line["result"] == nil {
			t.Logf("pusherPageHandler: %v %v", line, err)
			http.Error(w, "cannot sign", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(line["result"])
	}
	mux.HandleFunc("POST /pusher/auth", func(w http.ResponseWriter, r *http.Request) {
		sign(w, r, map[string]any{"call": "authorizeChannel", "channel": r.PostFormValue("channel_name")})
	})
	mux.HandleFunc("POST /pusher/user-auth", func(w http.ResponseWriter, r *http.Request) {
		sign(w, r, map[string]any{"call": "authenticateUser"})
	})
	return mux
}

// TestPusherDriversSoketi checks the drivers against Soketi, a real
// Pusher-protocol server, and logs the frames it sends (the reference for
// hybridrt's). It runs only when SOKETI_URL is set (bench/soketi/check-drivers.sh
// sets it), and then fails, never skips, when something does not work.
// Soketi's app: SOKETI_APP_ID, SOKETI_KEY, SOKETI_SECRET (Soketi's defaults
// when unset), with client messages and user authentication enabled and 10
// client events a second.
func TestPusherDriversSoketi(t *testing.T) {
	base := os.Getenv("SOKETI_URL")
	if base == "" {
		return // Soketi is not part of make test; see the comment above
	}
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	cfg := pusherConfigAt(t, base, env("SOKETI_APP_ID", "app-id"), env("SOKETI_KEY", "app-key"), env("SOKETI_SECRET", "app-secret"))
	frames := cfg
	frames.Env = []string{"FRAMES=1"}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36) // channels of their own on a long-running Soketi
	name := func(prefix string) string { return prefix + suffix }
	logFrames := func(p *pusherJS, what string) {
		for _, l := range p.lines() {
			if l["kind"] == "frame" {
				t.Logf("%s: Soketi sent %s", what, l["frame"])
			}
		}
	}

	t.Run("channels", func(t *testing.T) {
		a := startPusherJS(t, frames)
		b := startPusherJS(t, cfg)
		a.socketID()
		bSocket := b.socketID()
		news, orders, secret, cached := name("news-"), name("private-orders-"), name("private-encrypted-vault-"), name("private-cache-last-")
		for _, ch := range []string{news, orders, secret, cached} {
			a.send(map[string]any{"op": "subscribe", "channel": ch})
			b.send(map[string]any{"op": "subscribe", "channel": ch})
			a.waitFor(pusherLine("subscribed", "channel", ch), 5*time.Second)
			b.waitFor(pusherLine("subscribed", "channel", ch), 5*time.Second)
		}
		a.waitFor(pusherLine("event", "channel", cached, "event", "pusher:cache_miss"), 5*time.Second)

		// Node library: one channel, many channels, socket_id, batch.
		for _, call := range []map[string]any{
			{"call": "trigger", "channel": news, "event": "App\\Events\\OrderShipped", "data": map[string]any{"n": 1}},
			{"call": "trigger", "channels": []string{orders, cached}, "event": "many", "data": "plain text"},
			{"call": "trigger", "channel": secret, "event": "sealed", "data": map[string]any{"n": 3}},
			{"call": "trigger", "channel": news, "event": "not-to-b", "data": "x", "socket_id": bSocket},
			{"call": "triggerBatch", "batch": []map[string]any{{"channel": news, "name": "b1", "data": "[1,2]"}, {"channel": orders, "name": "b2", "data": map[string]any{"n": 2}}}},
		} {
			if line := runPusherServer(t, cfg, call); line["status"] != float64(200) {
				t.Fatalf("server.mjs %v: %v", call, line)
			}
		}
		for _, p := range []*pusherJS{a, b} {
			p.waitFor(pusherLine("event", "channel", news, "event", "App\\Events\\OrderShipped", "data", map[string]any{"n": 1}), 5*time.Second)
			p.waitFor(pusherLine("event", "channel", orders, "event", "many", "data", "plain text"), 5*time.Second)
			p.waitFor(pusherLine("event", "channel", cached, "event", "many", "data", "plain text"), 5*time.Second)
			p.waitFor(pusherLine("event", "channel", secret, "event", "sealed", "data", map[string]any{"n": 3}), 5*time.Second)
			p.waitFor(pusherLine("event", "channel", news, "event", "b1", "data", []int{1, 2}), 5*time.Second)
			p.waitFor(pusherLine("event", "channel", orders, "event", "b2", "data", map[string]any{"n": 2}), 5*time.Second)
		}
		a.waitFor(pusherLine("event", "channel", news, "event", "not-to-b"), 5*time.Second)

		// A cache channel's last event comes on subscribe.
		c := startPusherJS(t, cfg)
		c.send(map[string]any{"op": "subscribe", "channel": cached})
		c.waitFor(pusherLine("event", "channel", cached, "event", "many", "data", "plain text"), 5*time.Second)

		// Queries, by the Node and the Go library.
		line := runPusherServer(t, cfg, map[string]any{"call": "channels", "params": map[string]any{"filter_by_prefix": "private-orders-" + suffix}})
		t.Logf("server.mjs channels: %v", line)
		line = runPusherServer(t, cfg, map[string]any{"call": "channel", "channel": news, "params": map[string]any{"info": "subscription_count"}})
		if body, _ := line["body"].(map[string]any); body["occupied"] != true || body["subscription_count"] != float64(2) {
			t.Errorf("server.mjs channel %s: %v", news, line)
		}
		line = runPusherGo(t, cfg, map[string]any{"call": "trigger", "channels": []string{news}, "event": "from-go", "data": map[string]any{"go": true}})
		if line["status"] != float64(200) {
			t.Fatalf("goserver trigger: %v", line)
		}
		b.waitFor(pusherLine("event", "channel", news, "event", "from-go", "data", map[string]any{"go": true}), 5*time.Second)
		line = runPusherGo(t, cfg, map[string]any{"call": "trigger", "channel": secret, "event": "sealed-by-go", "data": map[string]any{"go": 2}})
		if line["status"] != float64(200) {
			t.Fatalf("goserver trigger on %s: %v", secret, line)
		}
		b.waitFor(pusherLine("event", "channel", secret, "event", "sealed-by-go", "data", map[string]any{"go": 2}), 5*time.Second)
		line = runPusherGo(t, cfg, map[string]any{"call": "channel", "channel": news, "params": map[string]any{"info": "subscription_count"}})
		if body, _ := line["body"].(map[string]any); body["occupied"] != true {
			t.Errorf("goserver channel: %v", line)
		}
		line = runPusherGo(t, cfg, map[string]any{"call": "channels", "params": map[string]any{"filter_by_prefix": "news-" + suffix}})
		if body, _ := line["body"].(map[string]any); body["channels"] == nil {
			t.Errorf("goserver channels: %v", line)
		}

		// Refused subscriptions: a bad signature, another socket's signature, a public channel's auth ignored.
		a.send(map[string]any{"op": "subscribe", "channel": name("private-bad-"), "secret": "not-the-secret"})
		a.waitFor(pusherLine("subscription_error", "channel", name("private-bad-"), "status", 401), 5*time.Second)
		a.send(map[string]any{"op": "subscribe", "channel": name("private-replayed-"), "socketId": bSocket})
		a.waitFor(pusherLine("subscription_error", "channel", name("private-replayed-")), 5*time.Second)
		logFrames(a, "channels")

		// Reconnect: the client resubscribes by itself.
		b.do(map[string]any{"op": "disconnect"})
		b.waitFor(pusherLine("state", "state", "disconnected"), 5*time.Second)
		b.do(map[string]any{"op": "connect"})
		b.socketID()
		b.waitFor(pusherLine("subscribed", "channel", orders), 5*time.Second)
		runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": orders, "event": "after-reconnect", "data": "{}"})
		b.waitFor(pusherLine("event", "channel", orders, "event", "after-reconnect"), 5*time.Second)
	})

	t.Run("presence and client events", func(t *testing.T) {
		room := name("presence-room-")
		ann := startPusherJS(t, frames)
		ann.send(map[string]any{"op": "subscribe", "channel": room, "user": map[string]any{"user_id": "1", "user_info": map[string]any{"name": "Ann"}}})
		got := ann.waitFor(pusherLine("subscribed", "channel", room), 5*time.Second)
		if got["count"] != float64(1) {
			t.Errorf("Ann's presence subscription: %v", got)
		}
		bob := startPusherJS(t, frames)
		bob.send(map[string]any{"op": "subscribe", "channel": room, "user": map[string]any{"user_id": "2", "user_info": map[string]any{"name": "Bob"}}})
		got = bob.waitFor(pusherLine("subscribed", "channel", room), 5*time.Second)
		if got["count"] != float64(2) || fmt.Sprint(got["me"]) != "map[id:2 info:map[name:Bob]]" {
			t.Errorf("Bob's presence subscription: %v", got)
		}
		ann.waitFor(pusherLine("event", "channel", room, "event", "pusher:member_added", "data", map[string]any{"id": "2", "info": map[string]any{"name": "Bob"}}), 5*time.Second)

		// Members through the HTTP API.
		line := runPusherServer(t, cfg, map[string]any{"call": "users", "channel": room})
		if fmt.Sprint(line["body"]) != "map[users:[map[id:1] map[id:2]]]" && fmt.Sprint(line["body"]) != "map[users:[map[id:2] map[id:1]]]" {
			t.Errorf("server.mjs users: %v", line)
		}
		line = runPusherGo(t, cfg, map[string]any{"call": "users", "channel": room})
		t.Logf("goserver users: %v", line)
		line = runPusherServer(t, cfg, map[string]any{"call": "channel", "channel": room, "params": map[string]any{"info": "user_count"}})
		if body, _ := line["body"].(map[string]any); body["user_count"] != float64(2) {
			t.Errorf("server.mjs channel %s user_count: %v", room, line)
		}

		// A client event reaches Ann with Bob's user id, not Bob himself.
		if got := bob.do(map[string]any{"op": "trigger", "channel": room, "event": "client-typing", "data": map[string]any{"who": "bob"}}); got != true {
			t.Fatalf("channel.trigger returned %v", got)
		}
		ann.waitFor(pusherLine("event", "channel", room, "event", "client-typing", "userId", "2"), 5*time.Second)

		// Over the rate: Soketi answers with pusher:error.
		for i := 0; i < 15; i++ {
			bob.send(map[string]any{"op": "trigger", "channel": room, "event": "client-flood", "data": map[string]any{"i": i}})
		}
		bob.waitFor(pusherLine("error"), 5*time.Second)

		// A client event on a public channel, once the rate's second is over.
		time.Sleep(1100 * time.Millisecond)
		pub := name("public-")
		bob.send(map[string]any{"op": "subscribe", "channel": pub})
		bob.waitFor(pusherLine("subscribed", "channel", pub), 5*time.Second)
		bob.send(map[string]any{"op": "send", "event": "client-public", "data": map[string]any{}, "channel": pub})

		// Presence data that is not JSON (pusher-js throws on it, so it goes
		// raw) or over Soketi's 2 KB: logged below. Soketi answers the first
		// with nothing.
		bob.do(map[string]any{"op": "subscribe", "channel": name("presence-bad-"), "channelData": "{not json", "raw": true})
		bob.send(map[string]any{"op": "subscribe", "channel": name("presence-big-"), "user": map[string]any{"user_id": "2", "user_info": strings.Repeat("x", 3000)}})
		bob.waitFor(pusherLine("subscription_error", "channel", name("presence-big-")), 5*time.Second)
		time.Sleep(500 * time.Millisecond)

		// Leaving: Ann sees member_removed.
		bob.kill()
		ann.waitFor(pusherLine("event", "channel", room, "event", "pusher:member_removed", "data", map[string]any{"id": "2", "info": map[string]any{"name": "Bob"}}), 10*time.Second)
		logFrames(ann, "presence (Ann)")
		logFrames(bob, "presence (Bob)")
	})

	t.Run("user sign-in and terminate", func(t *testing.T) {
		p := startPusherJS(t, frames)
		p.socketID()
		p.do(map[string]any{"op": "signin", "user": map[string]any{"id": "u1", "user_info": map[string]any{"name": "Ann"}}})
		p.waitFor(pusherLine("event", "event", "pusher:signin_success"), 5*time.Second)
		line := runPusherServer(t, cfg, map[string]any{"call": "sendToUser", "userId": "u1", "event": "hello", "data": map[string]any{"to": "u1"}})
		if line["status"] != float64(200) {
			t.Fatalf("sendToUser: %v", line)
		}
		p.waitFor(pusherLine("event", "event", "hello", "data", map[string]any{"to": "u1"}), 5*time.Second)
		line = runPusherServer(t, cfg, map[string]any{"call": "terminateUserConnections", "userId": "u1"})
		if line["status"] != float64(200) {
			t.Fatalf("terminateUserConnections: %v", line)
		}
		p.waitFor(pusherLine("closed"), 5*time.Second)
		logFrames(p, "sign-in")
	})

	t.Run("Laravel Echo", func(t *testing.T) {
		e := startLaravelEcho(t, cfg)
		orders, room := name("orders-"), name("room-")
		e.send(map[string]any{"op": "private", "channel": orders, "listen": ".OrderShipped"})
		e.send(map[string]any{"op": "join", "channel": room, "user": map[string]any{"user_id": "1", "user_info": map[string]any{"id": 1, "name": "Ann"}}})
		e.waitFor(pusherLine("subscribed", "channel", "private-"+orders), 5*time.Second)
		e.waitFor(pusherLine("here", "channel", "presence-"+room, "users", []any{map[string]any{"id": 1, "name": "Ann"}}), 5*time.Second)
		runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-" + orders, "event": "OrderShipped", "data": map[string]any{"order": 7}})
		e.waitFor(pusherLine("event", "channel", "private-"+orders, "event", ".OrderShipped", "data", map[string]any{"order": 7}), 5*time.Second)
		bob := startPusherJS(t, cfg)
		bob.send(map[string]any{"op": "subscribe", "channel": "presence-" + room, "user": map[string]any{"user_id": "2", "user_info": map[string]any{"id": 2, "name": "Bob"}}})
		e.waitFor(pusherLine("joining", "user", map[string]any{"id": 2, "name": "Bob"}), 5*time.Second)
		bob.do(map[string]any{"op": "unsubscribe", "channel": "presence-" + room})
		e.waitFor(pusherLine("leaving", "user", map[string]any{"id": 2, "name": "Bob"}), 5*time.Second)
		e.do(map[string]any{"op": "leave", "channel": room})
	})

	t.Run("Chromium", func(t *testing.T) {
		page := httptest.NewServer(pusherPageHandler(t, cfg))
		defer page.Close()
		ctx, cancelTimeout := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancelTimeout()
		ctx = newBrowser(t, ctx)
		host := cfg.Host
		if host == "" {
			host = "127.0.0.1"
		}
		news, orders, room := name("browser-news-"), name("private-browser-"), name("presence-browser-")
		connect := fmt.Sprintf(`pusherTest.connect({key: %q, wsHost: %q, wsPort: %d, params: {user_id: "b1", user_info: '{"name":"Browser"}'}})`, cfg.Key, host, cfg.Port)
		run := func(js string) {
			t.Helper()
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
				t.Fatalf("%s: %v", js, err)
			}
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")); err != nil {
			t.Fatal(err)
		}
		run(connect)
		for _, ch := range []string{news, orders, room} {
			run(fmt.Sprintf(`pusherTest.subscribe(%q)`, ch))
		}
		waitResults := func(pred func(map[string]any) bool) map[string]any { t.Helper(); return waitPageResult(t, ctx, pred) }
		for _, ch := range []string{news, orders, room} {
			waitResults(pusherLine("subscribed", "channel", ch))
		}
		runPusherServer(t, cfg, map[string]any{"call": "trigger", "channels": []string{news, orders}, "event": "to-browser", "data": map[string]any{"n": 1}})
		waitResults(pusherLine("event", "channel", news, "event", "to-browser", "data", map[string]any{"n": 1}))
		waitResults(pusherLine("event", "channel", orders, "event", "to-browser"))
		if got := waitResults(pusherLine("subscribed", "channel", room)); fmt.Sprint(got["me"]) != "map[id:b1 info:map[name:Browser]]" {
			t.Errorf("the browser's presence subscription: %v", got)
		}
		run(`pusherTest.disconnect()`)
		waitResults(pusherLine("closed"))
	})
}
